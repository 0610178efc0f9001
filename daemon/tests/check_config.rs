//! `tokenbrokerd --check-config` says what is wrong, with the line, and exits non-zero.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn check(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokenbrokerd"))
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .env_remove("TOKENBROKER_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_valid_config_passes() {
    let (ok, stdout, _) = check(
        "version = 1\n[providers.p]\ntoken_endpoint = \"https://as.example/token\"\nclient_id = \"c\"\n\n[accounts.a]\nprovider = \"p\"\ngrant = \"password\"\nusername = \"u\"\n",
    );
    assert!(ok);
    assert!(
        stdout.contains("valid (1 provider(s), 1 account(s))"),
        "{stdout}"
    );
}

#[test]
fn errors_name_file_and_line() {
    let (ok, _, stderr) = check("version = 1\n[providers.p]\ntoken_endpoint = \"http://as.example/token\"\nclient_id = \"c\"\n");
    assert!(!ok);
    assert!(stderr.contains("config.toml:3:"), "{stderr}");
    assert!(stderr.contains("only https"), "{stderr}");

    let (ok, _, stderr) = check("version = 1\n\n[accounts.a]\nprovider = \"missing\"\ngrant = \"password\"\nusername = \"u\"\n");
    assert!(!ok);
    assert!(
        stderr.contains("config.toml:4:") && stderr.contains("not configured"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_an_error_for_check_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenbrokerd"))
        .args([
            "--check-config",
            "--config",
            "/nonexistent/tokenbroker.toml",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/tokenbroker.toml")
    );
}
