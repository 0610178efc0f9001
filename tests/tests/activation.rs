//! Socket activation: `systemd-socket-activate` (systemd's own tool, as the `.socket` units do)
//! binds the socket and executes tokenbrokerd at the first connection; the daemon serves the
//! listener it was passed, with its own permissions, and leaves the socket to the manager at
//! exit.

use std::os::unix::fs::PermissionsExt;

use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::peers::SecretService;

fn exe(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[test]
fn the_first_client_starts_the_daemon_on_the_passed_socket() {
    let ss = SecretService::start().unwrap();
    let mut d = Daemon::start_activated(&ss, None).unwrap();
    let pid = d.pid().unwrap();
    // Nothing has connected: the activator holds the socket, no daemon runs yet.
    assert!(
        exe(pid).ends_with("systemd-socket-activate"),
        "{}",
        exe(pid)
    );

    // The first client's connection starts it, and is served.
    let status = d.cli_ok(&["status"], None);
    assert!(status.contains(&format!("pid {pid}")), "{status}");
    assert!(exe(pid).ends_with("tokenbrokerd"), "{}", exe(pid));
    assert!(d.wait_log("activated=true"), "{}", d.stderr_tail());
    // Served as a socket bound here would be: private to the user, whatever the activator made.
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    // Requests work as usual, the per-request sender check (SO_PASSCRED) included.
    d.cli_ok(&["provider", "presets"], None);
    d.cli_ok(&["accounts"], None);

    // At exit the socket stays: it is the manager's, which listens on it for the next start.
    d.stop();
    assert!(d.socket.exists(), "the daemon removed the manager's socket");
    // A daemon started by hand afterwards replaces the stale socket and serves.
    d.restart().unwrap();
    d.cli_ok(&["status"], None);
}
