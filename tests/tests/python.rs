//! The Python client (`clients/python/`): built into a wheel, installed with pip into a fresh
//! venv (no network: the wheel is all it needs), and its own tests run there against a real
//! daemon signed in at the test authorization server; the token it got is active at the server.

use std::path::{Path, PathBuf};
use std::process::Command;

use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::peers::{
    AuthServer, AuthServerOptions, SecretService, ALICE_PASSWORD, ALICE_USERNAME,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn the_python_client_installs_and_passes_its_tests_against_the_daemon() {
    let server = AuthServer::start(AuthServerOptions::default()).unwrap();
    let ss = SecretService::start().unwrap();
    let d = Daemon::start(&ss, None).unwrap();
    d.add_dot_provider(&server, &["read", "write"]);
    d.add_dot_account("me", ALICE_USERNAME);
    d.add_dot_account("you", ALICE_USERNAME);
    d.login("me", ALICE_PASSWORD);

    let tmp = tempfile::tempdir().unwrap();
    // The wheel, built by the test server's venv (setuptools and wheel, pinned in
    // tests/authserver/requirements.txt), without an index.
    // From a copy: setuptools builds in the source folder it is given.
    let builder = repo().join("tests/authserver/.venv/bin/python");
    let source = tmp.path().join("python-client");
    run(Command::new("cp")
        .arg("-r")
        .arg(repo().join("clients/python"))
        .arg(&source));
    let wheels = tmp.path().join("wheels");
    run(Command::new(&builder)
        .args([
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "-w",
        ])
        .arg(&wheels)
        .arg(&source));
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("a wheel was built");
    // A fresh venv, and `pip install` of the wheel.
    let venv = tmp.path().join("venv");
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let python = venv.join("bin/python");
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--disable-pip-version-check",
        ])
        .arg(&wheel));
    // The interpreter as the kernel names it, allowed for "me" only.
    let exe = run(Command::new(&python).args([
        "-c",
        "import os, sys; print(os.path.realpath(sys.executable))",
    ]));
    d.cli_ok(&["allow", "me", "--app", exe.trim()], None);

    let token_out = tmp.path().join("token");
    // Run from outside the source tree, so that the installed package is the one imported.
    let out = run(Command::new(&python)
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(repo().join("clients/python/tests"))
        .current_dir(tmp.path())
        .env("TB_SOCKET", &d.socket)
        .env("TB_ACCOUNT", "me")
        .env("TB_OTHER", "you")
        .env("TB_TOKEN_OUT", &token_out));
    assert!(out.contains("Ran 8 tests") && out.contains("\nOK"), "{out}");
    let imported = run(Command::new(&python)
        .args(["-c", "import tokenbroker; print(tokenbroker.__file__)"])
        .current_dir(tmp.path()));
    assert!(imported.contains(venv.to_str().unwrap()), "{imported}");

    let token = std::fs::read_to_string(&token_out).unwrap();
    let info = server.introspect(&token);
    assert_eq!(info["active"], true, "{info}");
}
