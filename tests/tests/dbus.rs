//! The D-Bus interface on a real dbus-daemon: busctl and the Rust proxy, signals, abuse, and
//! taking over with --replace.

use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tokenbroker_client::dbus::{broker_error, Broker1ProxyBlocking, BUS_NAME, OBJECT_PATH};
use tokenbroker_client::ErrorKind;
use tokenbroker_e2e::daemon::{bin, Daemon};
use tokenbroker_e2e::peers::*;

fn busctl(ss: &SecretService, args: &[&str]) -> std::process::Output {
    Command::new("busctl")
        .arg(format!("--address={}", ss.bus_address()))
        .args(args)
        .output()
        .expect("run busctl")
}

fn proxy(ss: &SecretService) -> Broker1ProxyBlocking<'static> {
    let conn = zbus::blocking::connection::Builder::address(ss.bus_address())
        .unwrap()
        .build()
        .unwrap();
    Broker1ProxyBlocking::new(&conn).unwrap()
}

/// dbus-monitor on the test bus, writing the broker's signals to a file; killed on drop.
struct Monitor {
    child: std::process::Child,
    out: tempfile::NamedTempFile,
}

impl Monitor {
    fn start(ss: &SecretService) -> Monitor {
        let out = tempfile::NamedTempFile::new().unwrap();
        // Line-buffered: dbus-monitor block-buffers a file otherwise.
        let child = Command::new("stdbuf")
            .args(["-oL", "dbus-monitor", "--address", ss.bus_address()])
            .arg("type='signal',interface='io.tokenbroker.Broker1'")
            .stdout(out.reopen().unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        sleep(Duration::from_millis(300));
        Monitor { child, out }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    /// Wait (bounded) until the output holds `needle`.
    fn wait_for(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signed_in(lifetime: u64) -> (AuthServer, SecretService, Daemon) {
    let server = AuthServer::start(AuthServerOptions {
        access_token_lifetime: Some(lifetime),
        ..Default::default()
    })
    .unwrap();
    let ss = SecretService::start().unwrap();
    let d = Daemon::start(&ss, None).unwrap();
    d.add_dot_provider(&server, &["read", "write"]);
    d.add_dot_account("me", ALICE_USERNAME);
    // The apps of these tests: busctl, this test binary through the Rust proxy, and the CLI
    // with --dbus: over the bus the daemon cannot tell which process of a connection sends a
    // call, so the user's own tools are apps there like any other.
    let me = std::env::current_exe().unwrap();
    let cli = tokenbroker_e2e::daemon::bin("tokenbroker");
    for app in [
        std::path::Path::new("/usr/bin/busctl"),
        me.as_path(),
        cli.as_path(),
    ] {
        d.cli_ok(&["allow", "me", "--app", app.to_str().unwrap()], None);
    }
    (server, ss, d)
}

#[test]
fn tokens_accounts_and_signals_over_dbus() {
    let (server, ss, d) = signed_in(300);
    let monitor = Monitor::start(&ss);
    d.login("me", ALICE_PASSWORD);
    assert!(
        monitor.wait_for("signed_in"),
        "AccountChanged on login: {}",
        monitor.text()
    );
    assert!(monitor.text().contains("member=AccountChanged"));

    // Introspection is complete.
    let out = busctl(&ss, &["introspect", BUS_NAME, OBJECT_PATH]);
    let text = String::from_utf8_lossy(&out.stdout);
    for member in [
        "GetToken",
        "ListAccounts",
        "SignOut",
        "Status",
        "Version",
        "AccountChanged",
        "SignInRequired",
    ] {
        assert!(text.contains(member), "{member} missing from:\n{text}");
    }

    // GetToken through busctl: the token is valid at the server.
    let out = busctl(
        &ss,
        &[
            "--json=short",
            "call",
            BUS_NAME,
            OBJECT_PATH,
            BUS_NAME,
            "GetToken",
            "sasu",
            "me",
            "0",
            "60",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = v["data"][0].as_str().unwrap().to_owned();
    assert_eq!(server.introspect(&token)["active"], true);
    assert!(v["data"][2].as_u64().unwrap() > 0);

    // And through the Rust proxy, with scopes named (in another order: the same set).
    let p = proxy(&ss);
    let (named, token_type, expires_at, scopes) =
        p.get_token("me", &["write", "read"], 30).unwrap();
    assert_eq!(token_type.to_lowercase(), "bearer");
    assert!(expires_at > 0);
    assert_eq!(scopes, ["read", "write"]);
    assert_eq!(server.introspect(named.expose())["active"], true);
    // Fewer scopes than the account's are refused over the bus too (DOT would narrow it).
    let e = broker_error(p.get_token("me", &["read"], 30).unwrap_err());
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("scoped_refresh"), "{}", e.message);
    let accounts = p.list_accounts().unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(
        (accounts[0].0.as_str(), accounts[0].3.as_str()),
        ("me", "signed_in")
    );
    assert!(p.version().unwrap().contains("protocol 1.0"));
    let (_, protocol, pid, _) = p.status().unwrap();
    assert_eq!(protocol, "1.0");
    assert!(pid > 0);

    // Errors are io.tokenbroker.Error.* with messages a person can act on.
    let e = broker_error(p.get_token("nobody", &[], 0).unwrap_err());
    assert_eq!(e.kind, ErrorKind::NoSuchAccount);
    assert!(e.message.contains("nobody"));

    // The CLI over D-Bus gets the same cached token; sign-in refuses to use the bus.
    let via_bus = d.cli_ok(&["--dbus", "token", "me"], None);
    assert_eq!(via_bus.trim(), d.cli_ok(&["token", "me"], None).trim());
    assert!(d
        .cli_ok(&["--dbus", "accounts"], None)
        .contains("signed_in"));
    let out = d.cli(&["--dbus", "login", "me", "--password-stdin"], Some("x\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never crosses D-Bus"));

    // Sign-out from D-Bus: revoked, signalled.
    let (revoked, _) = p.sign_out("me").unwrap();
    assert!(revoked);
    assert!(
        monitor.wait_for("needs_sign_in"),
        "AccountChanged on logout: {}",
        monitor.text()
    );
    assert_eq!(server.introspect(&token)["active"], false);
    let e = broker_error(p.get_token("me", &[], 0).unwrap_err());
    assert_eq!(e.kind, ErrorKind::NeedsSignIn);
    // The audit log names the D-Bus callers by their executables.
    let audit = d.cli_ok(&["audit", "--json"], None);
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        records.iter().any(|r| r["transport"] == "dbus"
            && r["exe"] == "/usr/bin/busctl"
            && r["decision"] == "allow"),
        "{audit}"
    );
    assert!(!audit.contains(&token), "no token in the audit log");
}

#[test]
fn a_refused_refresh_raises_sign_in_required() {
    let (server, ss, mut d) = signed_in(300);
    d.login("me", ALICE_PASSWORD);
    let monitor = Monitor::start(&ss);
    // Revoke the refresh token behind the broker's back.
    let rt = ss.lookup("tokenbroker", "refresh_token:me").unwrap();
    let resp = server
        .http()
        .post(server.revocation_endpoint())
        .header(
            "Authorization",
            client_basic_auth(PASSWORD_CLIENT_ID, PASSWORD_CLIENT_SECRET),
        )
        .form(&[("token", rt.as_str()), ("token_type_hint", "refresh_token")])
        .send()
        .unwrap();
    assert!(resp.status().is_success());
    // Force a refresh: a restarted daemon has no cached token.
    d.restart().unwrap();
    let out = d.cli(&["token", "me"], None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        monitor.wait_for("member=SignInRequired"),
        "{}",
        monitor.text()
    );
    assert!(
        monitor.text().contains("invalid_grant"),
        "{}",
        monitor.text()
    );
    assert!(monitor.wait_for("needs_sign_in"));
    assert_eq!(
        ss.lookup("tokenbroker", "refresh_token:me"),
        None,
        "the refused token is deleted"
    );
}

#[test]
fn bad_calls_get_errors_and_the_daemon_keeps_serving() {
    let (_server, ss, d) = signed_in(300);
    d.login("me", ALICE_PASSWORD);
    // A wrong signature.
    let out = busctl(
        &ss,
        &[
            "call",
            BUS_NAME,
            OBJECT_PATH,
            BUS_NAME,
            "GetToken",
            "s",
            "me",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Signature mismatch"),
        "{out:?}"
    );
    let p = proxy(&ss);
    // 10,000 scopes.
    let many: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let e = broker_error(p.get_token("me", &refs, 0).unwrap_err());
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("at most 64"), "{}", e.message);
    // A 1 MiB account name: refused, and the error does not echo it back.
    let huge = "a".repeat(1 << 20);
    let e = broker_error(p.get_token(&huge, &[], 0).unwrap_err());
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message.len());
    assert!(e.message.len() < 1000);
    let e = broker_error(p.sign_out(&huge).unwrap_err());
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    // Others are still served.
    let (token, ..) = p.get_token("me", &[], 0).unwrap();
    assert!(!token.expose().is_empty());
    assert!(d.cli_ok(&["token", "me"], None).trim() == token.expose());
}

#[test]
fn replace_takes_over_the_name_and_the_socket() {
    let ss = SecretService::start().unwrap();
    let mut first = Daemon::start(&ss, None).unwrap();
    // A second daemon without --replace is refused with a clear message.
    let out = Command::new(bin("tokenbrokerd"))
        .envs(first.env().iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        (err.contains("already owned") || err.contains("already serving"))
            && err.contains("--replace"),
        "{err}"
    );

    // With --replace it takes over; the first one exits.
    let second = StopOnDrop(
        Command::new(bin("tokenbrokerd"))
            .arg("--replace")
            .envs(first.env().iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut exited = None;
    while Instant::now() < deadline && exited.is_none() {
        exited = first.try_wait();
        sleep(Duration::from_millis(100));
    }
    assert!(
        exited.is_some(),
        "the first daemon did not exit: {}",
        first.stderr_tail()
    );
    assert!(
        first.stderr_tail().contains("took over"),
        "{}",
        first.stderr_tail()
    );
    // The socket is the second daemon's and answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pid = None;
    while Instant::now() < deadline && pid.is_none() {
        pid = tokenbroker_client::Client::connect(&first.socket, "t")
            .and_then(|mut c| c.status())
            .ok()
            .map(|s| s.pid);
        sleep(Duration::from_millis(100));
    }
    assert_eq!(pid, Some(second.0.id()));
    assert_eq!(proxy(&ss).status().unwrap().2, second.0.id());
}

/// A daemon started by hand in a test, stopped (SIGTERM, then reaped) however the test ends.
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The packaged activation file starts the daemon on the first call.
#[test]
fn the_first_call_activates_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services");
    let runtime = dir.path().join("run");
    std::fs::create_dir_all(&services).unwrap();
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // The packaged file, pointed at the binary under test.
    let packaged = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/dbus/io.tokenbroker.Broker1.service"
    ))
    .unwrap();
    assert!(packaged.contains("SystemdService=tokenbrokerd.service"));
    let file = packaged.replace(
        "/usr/bin/tokenbrokerd",
        bin("tokenbrokerd").to_str().unwrap(),
    );
    std::fs::write(services.join("io.tokenbroker.Broker1.service"), file).unwrap();
    let socket = dir.path().join("bus");
    let config = dir.path().join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <servicedir>{}</servicedir>
  <policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy>
</busconfig>"#,
            socket.display(),
            services.display()
        ),
    )
    .unwrap();
    let address = format!("unix:path={}", socket.display());
    let bus = StopOnDrop(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("TOKENBROKER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("bus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    // Nothing is running yet: the call itself starts the daemon.
    let out = Command::new("busctl")
        .arg(format!("--address={address}"))
        .args([
            "--json=short",
            "call",
            BUS_NAME,
            OBJECT_PATH,
            BUS_NAME,
            "Status",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n--- bus log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.path().join("bus.log")).unwrap_or_default()
        )
    });
    let pid = v["data"][2].as_u64().unwrap() as i32;
    let _daemon = StopPid(pid);
    assert_eq!(v["data"][1], "1.0");
    assert!(
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .unwrap()
            .ends_with("tokenbrokerd"),
        "the activated process is tokenbrokerd"
    );
    // It serves its socket too.
    assert!(runtime.join("tokenbroker").join("socket").exists());
    drop(bus);
}

/// A process known only by pid (started by the bus), stopped however the test ends.
struct StopPid(i32);

impl Drop for StopPid {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && std::path::Path::new(&format!("/proc/{}", self.0)).exists()
        {
            // Reaped by the bus daemon, its parent.
            sleep(Duration::from_millis(50));
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.0)) {
                if stat.split_whitespace().nth(2) == Some("Z") {
                    break;
                }
            }
        }
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}
