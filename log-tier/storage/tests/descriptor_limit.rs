//! `raise_open_files_limit` raises the soft `RLIMIT_NOFILE` to the hard limit. In its own test
//! binary: it changes a limit of the whole process, which the unit tests read.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use nix::sys::resource::{Resource, getrlimit, setrlimit};

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let low = hard.min(256);
    setrlimit(Resource::RLIMIT_NOFILE, low, hard).unwrap();
    let limit = headwater_log::raise_open_files_limit().unwrap();
    assert_eq!(
        (limit.soft_before, limit.soft, limit.hard),
        (low, hard, hard)
    );
    assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
    // At the hard limit already: nothing to do.
    let again = headwater_log::raise_open_files_limit().unwrap();
    assert_eq!((again.soft_before, again.soft), (hard, hard));
    assert!(
        hard > 256,
        "a hard limit of {hard} leaves nothing to raise: the test proves little"
    );
}
