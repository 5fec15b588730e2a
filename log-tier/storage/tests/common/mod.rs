//! The kill loop the crash tests share.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng;

/// Runs the ignored test `child` of this test binary `kills` times with `dir_env` = `dir`,
/// SIGKILLing it after a random 60–400 ms each time, and calls `verify` after each kill;
/// returns what the last `verify` returned.
pub(crate) fn kill_loop(
    child: &str,
    dir_env: &str,
    dir: &Path,
    kills: usize,
    mut verify: impl FnMut() -> usize,
) -> usize {
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut verified = 0;
    for round in 0..kills {
        let mut process = Command::new(&exe)
            .args([
                "--exact",
                child,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(dir_env, dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(60..400)));
        assert!(
            process.try_wait().unwrap().is_none(),
            "child exited early in round {round}"
        );
        process.kill().unwrap(); // SIGKILL
        process.wait().unwrap();
        verified = verify();
    }
    verified
}
