//! The system-bus policy file (packaging/dbus/system.d/io.tokenbroker.Broker1.conf) under a
//! real dbus-daemon with a system-like configuration: only the `tokenbroker` user may own
//! io.tokenbroker.Broker1; any user may call it and receive its signals.
//!
//! Needs root (the peers run as other users through `setpriv`). It makes the `tokenbroker`
//! system user when the .deb has not (scripts/test-packaging.sh installs it), and uses
//! `nobody` as the other local user. Every process it starts is stopped; every wait is bounded.

use std::fs;
use std::io::{BufRead, BufReader, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tokenbroker_e2e::system::system_bus_config;

const NAME: &str = "io.tokenbroker.Broker1";
const PATH: &str = "/io/tokenbroker/Broker1";
const WAIT: Duration = Duration::from_secs(20);
/// Set for the copies of this test binary that act as bus peers (see `peer_main`).
const PEER_ENV: &str = "TOKENBROKER_PACKAGING_PEER";
const BUS_ENV: &str = "TOKENBROKER_PACKAGING_BUS";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A child that is killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command to completion, killing it after `WAIT`.
fn run_bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ensure_service_user() {
    let known = Command::new("getent")
        .args(["passwd", "tokenbroker"])
        .stdout(Stdio::null())
        .status()
        .expect("getent");
    if !known.success() {
        let made = run_bounded(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/var/lib/tokenbroker",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            "tokenbroker",
        ]));
        // Another test may have made it meanwhile.
        let err = String::from_utf8_lossy(&made.stderr);
        assert!(
            made.status.success() || err.contains("exists"),
            "useradd tokenbroker: {err}"
        );
    }
}

/// `id FLAG user`: the uid (`-u`) or primary gid (`-g`) of a local user.
fn id_of(flag: &str, user: &str) -> String {
    let out = run_bounded(Command::new("id").args([flag, user]));
    assert!(out.status.success(), "no local user {user}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `setpriv` prefix that runs as `user` (its primary group, no supplementary groups).
fn as_user(user: &str, program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={}", id_of("-u", user)))
        .arg(format!("--regid={}", id_of("-g", user)))
        .arg("--clear-groups")
        .arg("--")
        .arg(program);
    c
}

/// A private system-like bus; stopped on drop.
struct Bus {
    _proc: Proc,
    address: String,
}

fn start_bus(dir: &Path) -> Bus {
    let socket = dir.join("system_bus_socket");
    let config = dir.join("system.conf");
    let services = repo().join("packaging/dbus/system-services");
    fs::write(&config, system_bus_config(&socket, Some(&services))).expect("write bus config");
    let mut child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--nopidfile", "--print-address=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dbus-daemon (apt-get install dbus-daemon)");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    let address = read_line_bounded(stdout, "the bus address");
    // Every local user must reach the socket (as /run/dbus/system_bus_socket is 0666).
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).expect("chmod socket");
    Bus {
        _proc: proc,
        address: address.trim().to_owned(),
    }
}

/// The first line of `r`, or a panic naming `what` after `WAIT`.
fn read_line_bounded(r: impl std::io::Read + Send + 'static, what: &str) -> String {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(r).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(WAIT) {
        Ok(l) if !l.is_empty() => l,
        _ => panic!("{what} did not come within {WAIT:?}"),
    }
}

/// `dbus-send --print-reply` as `user`; Ok(stdout) or Err(stderr).
fn dbus_send(user: &str, bus: &Bus, args: &[&str]) -> Result<String, String> {
    let out = run_bounded(
        as_user(user, Path::new("/usr/bin/dbus-send"))
            .arg(format!("--bus={}", bus.address))
            .arg("--print-reply")
            .arg("--reply-timeout=5000")
            .args(args),
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn request_name(user: &str, bus: &Bus) -> Result<String, String> {
    dbus_send(
        user,
        bus,
        &[
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.RequestName",
            &format!("string:{NAME}"),
            "uint32:4",
        ],
    )
}

/// A copy of this test binary, where every user can run it (the build folder may not be).
fn peer_exe(dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let copy = dir.join("packaging-peer");
    fs::copy(&exe, &copy).expect("copy test binary");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

/// Starts `role` of `peer_main` as `user`; returns once it prints its first line.
fn start_peer(user: &str, exe: &Path, bus: &Bus, role: &str) -> (Proc, mpsc::Receiver<String>) {
    let mut child = as_user(user, exe)
        .args([
            "--exact",
            "peer_main",
            "--ignored",
            "--nocapture",
            "--quiet",
        ])
        .env(PEER_ENV, role)
        .env(BUS_ENV, &bus.address)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn peer");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), rx)
}

fn expect_line(rx: &mpsc::Receiver<String>, want: &str, who: &str) {
    let deadline = Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.trim() == want => return,
            Ok(l) if l.starts_with("ERROR") => panic!("{who}: {l}"),
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    panic!("{who} did not print {want} within {WAIT:?}");
}

#[test]
fn system_bus_policy_lets_only_tokenbroker_own_and_anyone_call() {
    if !is_root() {
        eprintln!("skipped: the system-bus policy test runs peers as other users and needs root");
        return;
    }
    ensure_service_user();
    let dir = tempfile::Builder::new()
        .prefix("tokenbroker-packaging-")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let bus = start_bus(dir.path());

    // The system-bus activation file is read and names our service.
    let names = dbus_send(
        "root",
        &bus,
        &[
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListActivatableNames",
        ],
    )
    .expect("ListActivatableNames");
    assert!(names.contains(NAME), "not activatable: {names}");

    // Neither root nor another local user may own the name.
    for user in ["root", "nobody"] {
        let e = request_name(user, &bus).expect_err(&format!("{user} owned {NAME}"));
        assert!(e.contains("AccessDenied"), "{user}: {e}");
    }
    // The service user may.
    let r = request_name("tokenbroker", &bus).expect("tokenbroker may own the name");
    assert!(r.contains("uint32 1"), "RequestName reply: {r}");

    // With the name held by the service user, root and another user may call it: the call
    // reaches the daemon (here: an empty object server that answers UnknownObject), not
    // an AccessDenied from the bus.
    let exe = peer_exe(dir.path());
    let (holder, holder_out) = start_peer("tokenbroker", &exe, &bus, "owner");
    expect_line(&holder_out, "OWNED", "the name owner");
    for user in ["root", "nobody"] {
        let e = dbus_send(
            user,
            &bus,
            &[
                &format!("--dest={NAME}"),
                PATH,
                "io.tokenbroker.Broker1.ListAccounts",
            ],
        )
        .expect_err("the empty object server answers with an error");
        assert!(!e.contains("AccessDenied"), "{user} may not call: {e}");
        assert!(
            e.contains("org.freedesktop.DBus.Error.Unknown"),
            "{user}'s call did not reach the owner: {e}"
        );
    }

    // Another user receives its signals.
    let (listener, listener_out) = start_peer("nobody", &exe, &bus, "listener");
    expect_line(&listener_out, "LISTENING", "the listener");
    expect_line(&listener_out, "SIGNAL", "the listener");
    drop(listener);
    drop(holder);
}

/// Not a test of its own: the code of the bus peers that `start_peer` runs (as other users)
/// from a copy of this binary. Does nothing unless `TOKENBROKER_PACKAGING_PEER` is set.
#[test]
#[ignore = "a helper process of system_bus_policy_lets_only_tokenbroker_own_and_anyone_call"]
fn peer_main() {
    let Ok(role) = std::env::var(PEER_ENV) else {
        return;
    };
    let address = std::env::var(BUS_ENV).expect("bus address");
    if let Err(e) = peer(&role, &address) {
        println!("ERROR {e:#}");
        std::process::exit(1);
    }
}

fn peer(role: &str, address: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    // Under `cargo test --workspace` zbus is built with its tokio feature (the daemon's), and
    // its object server then spawns onto the current tokio runtime: give it one.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let _entered = runtime.enter();
    let builder = zbus::blocking::connection::Builder::address(address)?;
    match role {
        "owner" => {
            let conn = builder.name(NAME)?.build().context("owning the name")?;
            // Start the object server so that calls get an answer (UnknownObject).
            let _ = conn.object_server();
            println!("OWNED");
            // Emit a signal every 100 ms until the test closes stdin or the time is up.
            let (tx, rx) = mpsc::channel::<()>();
            thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut buf);
                let _ = tx.send(());
            });
            let deadline = Instant::now() + 3 * WAIT;
            while Instant::now() < deadline {
                conn.emit_signal(
                    None::<()>,
                    PATH,
                    "io.tokenbroker.Broker1",
                    "AccountChanged",
                    &("me", "signed_in"),
                )?;
                if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                    break;
                }
            }
            Ok(())
        }
        "listener" => {
            let conn = builder.build()?;
            let rule = zbus::MatchRule::builder()
                .msg_type(zbus::message::Type::Signal)
                .sender(NAME)?
                .build();
            let mut it = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, Some(8))?;
            println!("LISTENING");
            // The owner signals every 100 ms; the test bounds the wait and kills us after.
            if let Some(msg) = it.next() {
                msg?;
                println!("SIGNAL");
            }
            Ok(())
        }
        other => anyhow::bail!("unknown peer role {other}"),
    }
}
