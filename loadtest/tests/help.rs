//! Black-box checks of the binary: `--help` documents every option, bad input exits 2.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_headwater-loadtest"))
}

#[test]
fn help_documents_every_option() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut options = 0;
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with("--") || line.len() - trimmed.len() > 8 {
            continue;
        }
        options += 1;
        let doc = lines.get(i + 1).map_or("", |l| l.trim());
        assert!(!doc.is_empty(), "option without a description: {trimmed}");
    }
    assert!(options >= 30, "{options} options in:\n{text}");
    for needle in [
        "--transport",
        "--mode",
        "--rate",
        "--verify-kafka",
        "--verify-ledger",
        "--invalid-share",
    ] {
        assert!(text.contains(needle), "{needle} missing");
    }
}

#[test]
fn bad_options_exit_2() {
    let out = bin()
        .args(["--mix", "nope=1", "--no-plots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown type"));
}
