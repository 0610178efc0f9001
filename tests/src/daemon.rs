//! The broker under test: `tokenbrokerd` started against a real Secret Service, and the
//! `tokenbroker` CLI run against it. Every daemon started here is stopped on Drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tempfile::TempDir;
use tokenbroker_client::Client;

use crate::peers::{AuthServer, Peer, SecretService, PASSWORD_CLIENT_ID, PASSWORD_CLIENT_SECRET};

/// A binary built by this workspace, next to the test executable's `deps/` folder.
/// A config for benchmarks: the bench is one app that asks as fast as it can, with up to 200
/// connections, so the per-app limits are lifted.
pub const BENCH_CONFIG: &str = "version = 1\n\n[limits]\napp_requests_per_second = 10000000\napp_request_burst = 10000000\napp_connections = 200\napp_subscriptions = 4\n";

pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace` (which builds every binary)",
        path.display()
    );
    path
}

pub struct Daemon {
    peer: Option<Peer>,
    env: Vec<(String, String)>,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub dir: TempDir,
    runs: u32,
    /// Started the way socket activation starts it: systemd-socket-activate holds the socket,
    /// and executes the daemon when the first client connects.
    activated: bool,
}

impl Daemon {
    /// Start a daemon whose keychain is `ss`, with an empty config (or `config_text`).
    pub fn start(ss: &SecretService, config_text: Option<&str>) -> anyhow::Result<Daemon> {
        Self::start_as(ss, config_text, false)
    }

    /// A daemon serving the fake server's provider `fake` and its client_credentials account
    /// `robot` ([`FakeServer::robot_config`]), with the client secret set.
    pub fn start_robot(
        ss: &SecretService,
        fake: &crate::fake::FakeServer,
    ) -> anyhow::Result<Daemon> {
        let d = Self::start(ss, Some(&fake.robot_config()))?;
        d.cli_ok(&["provider", "set-secret", "fake"], Some("fake-secret\n"));
        Ok(d)
    }

    /// Like [`Daemon::start`], but socket-activated: `systemd-socket-activate` binds the socket
    /// and waits; the daemon is executed (in the same process) by the first connection, which
    /// is the caller's to make. Returns once the socket exists.
    pub fn start_activated(
        ss: &SecretService,
        config_text: Option<&str>,
    ) -> anyhow::Result<Daemon> {
        Self::start_as(ss, config_text, true)
    }

    /// The pid of the daemon's process (before activation, the activator's).
    pub fn pid(&self) -> Option<u32> {
        self.peer.as_ref().and_then(|p| p.pid())
    }

    fn start_as(
        ss: &SecretService,
        config_text: Option<&str>,
        activated: bool,
    ) -> anyhow::Result<Daemon> {
        let dir = tempfile::tempdir()?;
        let config_home = dir.path().join("config");
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(config_home.join("tokenbroker"))?;
        std::fs::create_dir_all(&state_dir)?;
        let config = config_home.join("tokenbroker").join("config.toml");
        if let Some(text) = config_text {
            std::fs::write(&config, text)?;
        }
        let mut env = ss.env();
        env.push(("XDG_CONFIG_HOME".into(), config_home.display().to_string()));
        env.push(("XDG_STATE_HOME".into(), state_dir.display().to_string()));
        env.push(("NO_PROXY".into(), "127.0.0.1,localhost".into()));
        env.push((
            "TOKENBROKER_LOG".into(),
            "debug,hyper=info,reqwest=info,zbus=info".into(),
        ));
        let socket = ss.runtime_dir().join("tokenbroker").join("socket");
        let mut d = Daemon {
            peer: None,
            env,
            socket,
            config,
            state_dir,
            dir,
            runs: 0,
            activated,
        };
        d.launch()?;
        Ok(d)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        self.runs += 1;
        let activated = self.activated && self.runs == 1;
        let mut cmd = if activated {
            // The activator passes on only the variables named with -E.
            let mut c = Command::new("systemd-socket-activate");
            c.arg("-l").arg(&self.socket);
            for (k, v) in &self.env {
                c.arg("-E").arg(format!("{k}={v}"));
            }
            c.arg(bin("tokenbrokerd"));
            if let Some(dir) = self.socket.parent() {
                std::fs::create_dir_all(dir)?;
            }
            c
        } else {
            Command::new(bin("tokenbrokerd"))
        };
        cmd.env_remove("TOKENBROKER_SOCKET")
            .env_remove("TOKENBROKER_CONFIG");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let name: &'static str = if self.runs == 1 {
            "tokenbrokerd"
        } else {
            "tokenbrokerd-restarted"
        };
        let mut peer = Peer::spawn(name, self.dir.path(), &mut cmd, None)?;
        let socket = self.socket.clone();
        if activated {
            peer.wait_for(
                "socket bound by the activator",
                Duration::from_secs(20),
                |_| Ok(socket.exists().then_some(())),
            )?;
        } else {
            peer.wait_for("socket accepting", Duration::from_secs(20), |_| {
                Ok(Client::connect(&socket, "e2e").ok().map(|_| ()))
            })?;
        }
        self.peer = Some(peer);
        Ok(())
    }

    /// The daemon's exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.peer.as_mut().and_then(|p| p.try_wait())
    }

    /// The captured stderr of this daemon's current run.
    pub fn stderr_tail(&self) -> String {
        self.peer
            .as_ref()
            .map(|p| p.stderr_tail())
            .unwrap_or_default()
    }

    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.peer.take().and_then(|mut p| p.stop())
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Everything the daemon logged so far, over all its runs.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for name in ["tokenbrokerd", "tokenbrokerd-restarted"] {
            let p = self.dir.path().join(format!("{name}.stderr"));
            out.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
        out
    }

    /// Wait (at most 5 s) until the log holds `needle`: the daemon writes its log from a
    /// writer thread, a moment after the event.
    pub fn wait_log(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket, "e2e").expect("connect to the daemon")
    }

    /// Provider `dot` at the test authorization server: the password client with Basic auth
    /// (its awkward secret through the keychain) and `scopes` as its default scopes.
    pub fn add_dot_provider(&self, server: &AuthServer, scopes: &[&str]) {
        self.add_dot_provider_with(server, scopes, &[]);
    }

    /// Provider `dot` with these scopes and more `provider add` arguments.
    pub fn add_dot_provider_with(&self, server: &AuthServer, scopes: &[&str], extra: &[&str]) {
        let mut args = dot_provider_args(server, scopes);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli_ok(&args, Some(&format!("{PASSWORD_CLIENT_SECRET}\n")));
    }

    /// A password account `name` of provider `dot` for `username`.
    pub fn add_dot_account(&self, name: &str, username: &str) {
        self.cli_ok(
            &[
                "account",
                "add",
                name,
                "--provider",
                "dot",
                "--username",
                username,
            ],
            None,
        );
    }

    /// Sign `account` in with `password` on standard input.
    pub fn login(&self, account: &str, password: &str) {
        self.cli_ok(
            &["login", account, "--password-stdin"],
            Some(&format!("{password}\n")),
        );
    }

    /// Run the CLI with `args`, optionally feeding `stdin`.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_cli(&self.socket, self.env(), args, stdin)
    }

    /// Run the CLI and require success; returns stdout.
    pub fn cli_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.cli(args, stdin);
        assert!(
            out.status.success(),
            "tokenbroker {args:?} failed ({}): {}\n--- daemon log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 4000)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `provider add dot ...` for the test authorization server's password client (Basic auth, its
/// secret on standard input: [`PASSWORD_CLIENT_SECRET`]) with `scopes` as default scopes.
pub fn dot_provider_args(server: &AuthServer, scopes: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "provider",
        "add",
        "dot",
        "--issuer",
        &server.issuer(),
        "--client-id",
        PASSWORD_CLIENT_ID,
        "--client-auth",
        "basic",
        "--client-secret-stdin",
        "--allow-insecure-loopback",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in scopes {
        args.extend(["--scope".to_owned(), s.to_string()]);
    }
    args
}

pub fn run_cli(
    socket: &Path,
    env: &[(String, String)],
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(bin("tokenbroker"));
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("TOKENBROKER_SOCKET", socket)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .context("spawn tokenbroker")
        .expect("spawn tokenbroker");
    if let Some(s) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        // A CLI that refuses before reading its input closes the pipe: that is not an error here.
        if let Err(e) = pipe.write_all(s.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
        }
    }
    child.wait_with_output().expect("wait for tokenbroker")
}

pub fn tail(s: &str, max: usize) -> &str {
    let start = s.len().saturating_sub(max);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}
