//! The CLI's behaviour without a daemon, and its usage errors.

use std::process::Command;

fn cli(args: &[&str], socket: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tokenbroker"))
        .args(args)
        .env("TOKENBROKER_SOCKET", socket)
        .output()
        .unwrap()
}

#[test]
fn a_missing_daemon_says_how_to_start_it() {
    let dir = std::env::temp_dir().join(format!("tb-cli-test-{}", std::process::id()));
    let sock = dir.join("socket");
    let out = cli(&["status"], sock.to_str().unwrap());
    assert_eq!(out.status.code(), Some(6));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not running") && err.contains("tokenbrokerd"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = cli(&["token"], "/nonexistent");
    assert_eq!(out.status.code(), Some(2));
    let out = cli(
        &["provider", "add", "p", "--client-id", "c"],
        "/nonexistent",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--issuer"));
}
