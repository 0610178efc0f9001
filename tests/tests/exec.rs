//! `tokenbroker exec` and `tokenbroker env` against a real daemon: the command gets the token in
//! its environment and nowhere in its argv, its exit status and signals are its own, and a
//! failure runs nothing (docs/INTEGRATIONS.md).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokenbroker_e2e::daemon::{bin, Daemon};
use tokenbroker_e2e::fake::{FakeServer, Mode};
use tokenbroker_e2e::peers::SecretService;

fn setup() -> (FakeServer, SecretService, Daemon) {
    let fake = FakeServer::start(Mode::Good { expires_in: 3600 }).unwrap();
    let ss = SecretService::start().unwrap();
    let d = Daemon::start_robot(&ss, &fake).unwrap();
    (fake, ss, d)
}

fn cli(d: &Daemon) -> Command {
    let mut c = Command::new(bin("tokenbroker"));
    c.envs(d.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    c
}

#[test]
fn the_command_gets_the_token_in_its_environment_only_and_its_status_comes_back() {
    let (_fake, _ss, d) = setup();
    let token = d.cli_ok(&["token", "robot"], None).trim().to_owned();
    // The command prints the variable and its own argv (as the kernel has it), then exits 7.
    let out = cli(&d)
        .args(["exec", "robot", "--", "sh", "-c"])
        .arg(r#"printf '%s\n' "$ACCESS_TOKEN"; tr '\0' ' ' < /proc/$$/cmdline; echo; exit 7"#)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(token.as_str()));
    let argv = lines.next().unwrap_or_default();
    assert!(argv.starts_with("sh -c "), "{argv}");
    assert!(!argv.contains(&token), "the token is in the argv: {argv}");

    // Another variable name.
    let out = cli(&d)
        .args(["exec", "robot", "--env", "API_TOKEN", "--", "sh", "-c"])
        .arg(r#"printf '%s|%s' "$API_TOKEN" "${ACCESS_TOKEN:-unset}""#)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{token}|unset")
    );
}

#[test]
fn a_signal_sent_to_exec_reaches_the_command() {
    let (_fake, _ss, d) = setup();
    let mut child = cli(&d)
        .args(["exec", "robot", "--", "sh", "-c"])
        .arg(r#"trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done"#)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // The pid `exec` was started as is the command's.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the command did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "got-term");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn a_failure_runs_nothing_and_says_why() {
    let (_fake, _ss, d) = setup();
    let marker = tempfile::tempdir().unwrap();
    let touched = marker.path().join("ran");
    let touch = format!("touch {}", touched.display());
    // No such account: the broker's exit code, nothing run.
    let out = cli(&d)
        .args(["exec", "nosuch", "--", "sh", "-c", &touch])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a variable name: a usage error.
    let out = cli(&d)
        .args([
            "exec",
            "robot",
            "--env",
            "NOT-A-NAME",
            "--",
            "sh",
            "-c",
            &touch,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an environment variable name"));
    // No command.
    let out = cli(&d).args(["exec", "robot"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!touched.exists(), "a failed exec ran its command");
    // A command that does not exist: 127, as a shell says it.
    let out = cli(&d)
        .args(["exec", "robot", "--", "/nonexistent/tool"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot run /nonexistent/tool: command not found"),
        "{err}"
    );
    // One that is not executable: 126.
    let out = cli(&d)
        .args(["exec", "robot", "--"])
        .arg(marker.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
}

#[test]
fn env_prints_a_line_each_shell_reads_back() {
    let (_fake, _ss, d) = setup();
    let token = d.cli_ok(&["token", "robot"], None).trim().to_owned();
    let line = d.cli_ok(&["env", "robot"], None);
    assert_eq!(line, format!("export ACCESS_TOKEN='{token}'\n"));
    // The shell reads it back as the token.
    let out = Command::new("sh")
        .args(["-c", &format!("{line} printf %s \"$ACCESS_TOKEN\"")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), token);
    let fish = d.cli_ok(&["env", "robot", "--env", "T", "--shell", "fish"], None);
    assert_eq!(fish, format!("set -gx T '{token}'\n"));
}

#[test]
fn exec_over_dbus_is_an_app_like_the_cli_there() {
    let (_fake, _ss, d) = setup();
    let out = cli(&d)
        .args(["--dbus", "exec", "robot", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_path = bin("tokenbroker");
    d.cli_ok(
        &["allow", "robot", "--app", cli_path.to_str().unwrap()],
        None,
    );
    let out = cli(&d)
        .args([
            "--dbus",
            "exec",
            "robot",
            "--",
            "sh",
            "-c",
            r#"test -n "$ACCESS_TOKEN""#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
