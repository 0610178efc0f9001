//! The system service under test: `tokenbrokerd --system` started the way its systemd unit
//! starts it — as the `tokenbroker` user, with `RUNTIME_DIRECTORY`, `STATE_DIRECTORY`,
//! `LOGS_DIRECTORY` and `CREDENTIALS_DIRECTORY` folders of the unit's owners and modes, and
//! `NOTIFY_SOCKET` — on a private dbus-daemon with a system-bus configuration that includes the
//! packaged policy file (packaging/dbus/system.d/). Local users are real users made for the
//! test; they run the built CLI and busctl through `setpriv`.
//!
//! Needs root. Every process started here is stopped on Drop; every wait is bounded.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tempfile::TempDir;
use tokenbroker_client::Client;

use crate::daemon::bin;
use crate::peers::{run_tool, Peer};

/// The packaged files, in the repository.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A local user of the machine.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups its processes get.
    pub groups: Vec<u32>,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn id_of(flag: &str, name: &str) -> Option<u32> {
    let o = Command::new("id").args([flag, name]).output().ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// The system user `name`, made (with its own group, no home, no shell) if missing.
pub fn local_user(name: &str) -> User {
    assert!(
        is_root(),
        "the system-mode tests need root (they make local users)"
    );
    if id_of("-u", name).is_none() {
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                name,
            ])
            .output()
            .expect("useradd");
        // Another test may have made it meanwhile.
        assert!(
            out.status.success() || String::from_utf8_lossy(&out.stderr).contains("exists"),
            "useradd {name}: {out:?}"
        );
    }
    User {
        name: name.to_owned(),
        uid: id_of("-u", name).expect("uid"),
        gid: id_of("-g", name).expect("gid"),
        groups: Vec::new(),
    }
}

/// The gid of system group `name`, made if missing.
pub fn local_group(name: &str) -> u32 {
    let gid = |n: &str| -> Option<u32> {
        let o = Command::new("getent").args(["group", n]).output().ok()?;
        String::from_utf8_lossy(&o.stdout)
            .split(':')
            .nth(2)?
            .trim()
            .parse()
            .ok()
    };
    if let Some(g) = gid(name) {
        return g;
    }
    let out = Command::new("groupadd")
        .args(["--system", name])
        .output()
        .expect("groupadd");
    assert!(
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("exists"),
        "groupadd {name}: {out:?}"
    );
    gid(name).expect("gid of the new group")
}

/// Root, as the admin of the machine.
pub fn root() -> User {
    User {
        name: "root".into(),
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    }
}

impl User {
    /// A command that runs `program` as this user, with exactly its groups.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid));
        if self.groups.is_empty() {
            c.arg("--clear-groups");
        } else {
            let g: Vec<String> = self.groups.iter().map(u32::to_string).collect();
            c.arg(format!("--groups={}", g.join(",")));
        }
        c.arg("--").arg(program);
        c
    }
}

/// A private bus configured like the system bus (nothing may be owned or called unless a
/// policy file opens it, as in /usr/share/dbus-1/system.conf), listening on `socket`, with the
/// packaged policy folder (packaging/dbus/system.d/) included and, when given, a service
/// folder for activation files.
pub fn system_bus_config(socket: &Path, servicedir: Option<&Path>) -> String {
    let servicedir = servicedir
        .map(|d| format!("\n  <servicedir>{}</servicedir>", d.display()))
        .unwrap_or_default();
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>{servicedir}
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <includedir>{policy}</includedir>
</busconfig>
"#,
        socket = socket.display(),
        policy = repo().join("packaging/dbus/system.d").display(),
    )
}

fn chown(path: &Path, user: &User) {
    let out = Command::new("chown")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(path)
        .output()
        .expect("chown");
    assert!(out.status.success(), "chown {}: {out:?}", path.display());
}

fn mkdir(path: &Path, mode: u32, owner: &User) {
    fs::create_dir_all(path).expect("mkdir");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    chown(path, owner);
}

/// What the packaged system unit says about how the daemon is started.
#[derive(Debug)]
pub struct Unit {
    pub user: String,
    pub exec_start: String,
    pub runtime_mode: u32,
    pub state_mode: u32,
    pub logs_mode: u32,
}

impl Unit {
    /// packaging/systemd/system/tokenbrokerd.service, read for the settings the harness copies.
    pub fn packaged() -> Unit {
        let path = repo().join("packaging/systemd/system/tokenbrokerd.service");
        let text = fs::read_to_string(&path).expect("the packaged system unit");
        let get = |key: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{} has no {key}=", path.display()))
                .trim()
                .to_owned()
        };
        let mode = |key: &str| u32::from_str_radix(&get(key), 8).expect("an octal mode");
        Unit {
            user: get("User"),
            exec_start: get("ExecStart"),
            runtime_mode: mode("RuntimeDirectoryMode"),
            state_mode: mode("StateDirectoryMode"),
            logs_mode: mode("LogsDirectoryMode"),
        }
    }
}

/// The system daemon and its private system bus.
pub struct SystemDaemon {
    pub dir: TempDir,
    /// The service user.
    pub service: User,
    /// /etc/tokenbroker: config.toml and config.d/.
    pub etc: PathBuf,
    pub state: PathBuf,
    pub logs: PathBuf,
    pub creds: PathBuf,
    pub socket: PathBuf,
    pub bus_address: String,
    notify: std::os::unix::net::UnixDatagram,
    notify_path: PathBuf,
    bus: Option<Peer>,
    daemon: Option<Peer>,
    runs: u32,
}

impl SystemDaemon {
    /// Lay out the unit's folders, start the bus, and start the daemon with `credential` as
    /// the `store-key` credential (None: the daemon makes its key file).
    pub fn start(config: &str, credential: Option<&[u8]>) -> anyhow::Result<SystemDaemon> {
        let unit = Unit::packaged();
        assert_eq!(unit.exec_start, "/usr/bin/tokenbrokerd --system");
        let service = local_user(&unit.user);
        let dir = tempfile::tempdir()?;
        // Others traverse the test's folder, as they do / and /run.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))?;
        let etc = dir.path().join("etc");
        // As tmpfiles.d makes them: the daemon writes config.toml; config.d is root's.
        fs::create_dir_all(etc.join("config.d"))?;
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o775))?;
        let out = Command::new("chgrp")
            .arg(service.gid.to_string())
            .arg(&etc)
            .output()?;
        assert!(out.status.success(), "chgrp: {out:?}");
        let main = etc.join("config.toml");
        fs::write(&main, config)?;
        chown(&main, &service);
        // As systemd makes them for StateDirectory=, LogsDirectory=, RuntimeDirectory=.
        let state = dir.path().join("state");
        let logs = dir.path().join("logs");
        let run = dir.path().join("run");
        mkdir(&state, unit.state_mode, &service);
        mkdir(&logs, unit.logs_mode, &service);
        mkdir(&run, unit.runtime_mode, &service);
        // $CREDENTIALS_DIRECTORY: the service's own, read-only.
        let creds = dir.path().join("credentials");
        fs::create_dir_all(&creds)?;
        if let Some(key) = credential {
            let f = creds.join("store-key");
            fs::write(&f, key)?;
            fs::set_permissions(&f, fs::Permissions::from_mode(0o400))?;
            chown(&f, &service);
        }
        fs::set_permissions(&creds, fs::Permissions::from_mode(0o500))?;
        chown(&creds, &service);

        let bus_dir = dir.path().join("bus");
        fs::create_dir_all(&bus_dir)?;
        fs::set_permissions(&bus_dir, fs::Permissions::from_mode(0o755))?;
        let bus_socket = bus_dir.join("system_bus_socket");
        let bus_conf = bus_dir.join("system.conf");
        fs::write(&bus_conf, system_bus_config(&bus_socket, None))?;
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg(format!("--config-file={}", bus_conf.display()))
            .args(["--nofork", "--nopidfile"]);
        let mut bus = Peer::spawn("system-bus", dir.path(), &mut cmd, None)?;
        bus.wait_for("the bus socket", Duration::from_secs(10), |_| {
            Ok(bus_socket.exists().then_some(()))
        })?;
        fs::set_permissions(&bus_socket, fs::Permissions::from_mode(0o666))?;

        let notify_path = dir.path().join("notify");
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path)?;
        fs::set_permissions(&notify_path, fs::Permissions::from_mode(0o666))?;
        notify.set_read_timeout(Some(Duration::from_millis(200)))?;

        let mut d = SystemDaemon {
            socket: run.join("socket"),
            bus_address: format!("unix:path={}", bus_socket.display()),
            dir,
            service,
            etc,
            state,
            logs,
            creds,
            notify,
            notify_path,
            bus: Some(bus),
            daemon: None,
            runs: 0,
        };
        d.launch()?;
        Ok(d)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        self.runs += 1;
        let name: &'static str = match self.runs {
            1 => "tokenbrokerd-system",
            2 => "tokenbrokerd-system-2",
            3 => "tokenbrokerd-system-3",
            _ => "tokenbrokerd-system-n",
        };
        let mut cmd = self.service.command(&bin("tokenbrokerd"));
        cmd.arg("--system")
            .arg("--config")
            .arg(self.etc.join("config.toml"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("RUNTIME_DIRECTORY", self.socket.parent().expect("run dir"))
            .env("STATE_DIRECTORY", &self.state)
            .env("LOGS_DIRECTORY", &self.logs)
            .env("CREDENTIALS_DIRECTORY", &self.creds)
            .env("NOTIFY_SOCKET", &self.notify_path)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env(
                "TOKENBROKER_LOG",
                "debug,hyper=info,reqwest=info,zbus=info,h2=info,rustls=info",
            );
        let mut peer = Peer::spawn(name, self.dir.path(), &mut cmd, None)?;
        let socket = self.socket.clone();
        peer.wait_for("socket accepting", Duration::from_secs(20), |_| {
            Ok(Client::connect(&socket, "e2e").ok().map(|_| ()))
        })?;
        self.daemon = Some(peer);
        Ok(())
    }

    /// The next notification the daemon sent systemd, within `timeout`.
    pub fn next_notification(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        None
    }

    /// Wait for a notification that contains `needle`.
    pub fn wait_notification(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.next_notification(deadline.saturating_duration_since(Instant::now())) {
                Some(n) if n.contains(needle) => return true,
                Some(_) => {}
                None => return false,
            }
        }
        false
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().and_then(Peer::pid)
    }

    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.pid().expect("the daemon runs") as libc::pid_t;
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, sig) };
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.daemon.take() {
            p.stop();
        }
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    /// Everything the daemon logged, over all its runs.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for n in 1..=self.runs.min(4) {
            let name = match n {
                1 => "tokenbrokerd-system",
                2 => "tokenbrokerd-system-2",
                3 => "tokenbrokerd-system-3",
                _ => "tokenbrokerd-system-n",
            };
            let p = self.dir.path().join(format!("{name}.stderr"));
            out.push_str(&fs::read_to_string(p).unwrap_or_default());
        }
        out
    }

    /// Wait (at most 5 s) until the log holds `needle`.
    pub fn wait_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The CLI, as `user`, against the system daemon (`--system`, with the test's socket).
    pub fn cli(&self, user: &User, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = user.command(&bin("tokenbroker"));
        cmd.arg("--system")
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_remove("TOKENBROKER_SOCKET");
        run_tool(&mut cmd, stdin.map(str::as_bytes), Duration::from_secs(60))
            .expect("run tokenbroker")
    }

    /// The CLI, required to succeed; its stdout.
    pub fn cli_ok(&self, user: &User, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.cli(user, args, stdin);
        if !out.status.success() {
            panic!(
                "tokenbroker {args:?} as {} failed ({}): {}\n--- daemon log ---\n{}",
                user.name,
                out.status,
                String::from_utf8_lossy(&out.stderr),
                crate::daemon::tail(&self.log(), 4000)
            );
        }
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `busctl call` of a Broker1 method on the private system bus, as `user`.
    pub fn busctl(&self, user: &User, method: &str, args: &[&str]) -> Output {
        let mut cmd = user.command(Path::new("/usr/bin/busctl"));
        cmd.arg(format!("--address={}", self.bus_address))
            .args([
                "call",
                "io.tokenbroker.Broker1",
                "/io/tokenbroker/Broker1",
                "io.tokenbroker.Broker1",
                method,
            ])
            .args(args);
        run_tool(&mut cmd, None, Duration::from_secs(30)).expect("run busctl")
    }

    /// Run `program args` as `user` (bounded).
    pub fn run_as(&self, user: &User, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = user.command(Path::new(program));
        cmd.args(args);
        run_tool(&mut cmd, None, Duration::from_secs(30))
    }

    /// The files of the encrypted store.
    pub fn store_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let dir = self.state.join("secrets");
        let mut v: Vec<PathBuf> = fs::read_dir(&dir)
            .with_context(|| format!("read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        if v.is_empty() {
            bail!("the store {} is empty", dir.display());
        }
        Ok(v)
    }
}

impl Drop for SystemDaemon {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut b) = self.bus.take() {
            b.stop();
        }
    }
}
