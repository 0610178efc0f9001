//! Real peers for the end-to-end tests: a django-oauth-toolkit authorization server
//! (`tests/authserver`) and a Secret Service (gnome-keyring on a private D-Bus bus).
//!
//! Every process started here is stopped (SIGTERM, short wait, SIGKILL) and reaped on
//! drop, and every wait is bounded. Install the peers with `scripts/install-test-deps.sh`.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use tempfile::TempDir;

// Fixtures seeded by tests/authserver/serve.py (documented in tests/authserver/README.md).
pub const ALICE_USERNAME: &str = "alice";
pub const ALICE_PASSWORD: &str = "correct horse battery staple";
pub const BOB_USERNAME: &str = "bob";
pub const BOB_PASSWORD: &str = "p&ss=w+rd%20/:x ünï";
/// Confidential client, grant `password`.
pub const PASSWORD_CLIENT_ID: &str = "tb-password";
pub const PASSWORD_CLIENT_SECRET: &str = "s3cr&t=+%/: é";
/// Confidential client, grant `client_credentials`.
pub const CC_CLIENT_ID: &str = "tb-cc";
pub const CC_CLIENT_SECRET: &str = "tb-cc-secret";
/// Public client (no secret), grant `password`.
pub const PUBLIC_CLIENT_ID: &str = "tb-public";
/// Confidential client, grant `client_credentials`, used by [`AuthServer::introspect`].
pub const INTROSPECT_CLIENT_ID: &str = "tb-introspect";
pub const INTROSPECT_CLIENT_SECRET: &str = "tb-introspect-secret";
/// Scopes the server knows (plus `openid`, as OIDC is enabled).
pub const SCOPES: [&str; 4] = ["read", "write", "profile", "introspection"];
/// Scope granted when a request names none.
pub const DEFAULT_SCOPE: &str = "read";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// `Authorization` header value for client authentication with `client_secret_basic`:
/// id and secret are form-urlencoded before base64 (RFC 6749 §2.3.1).
pub fn client_basic_auth(client_id: &str, client_secret: &str) -> String {
    use base64::Engine as _;
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(client_id), enc(client_secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A child process that is stopped and reaped on drop, with stdout/stderr in files.
pub(crate) struct Peer {
    name: &'static str,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Peer {
    /// Spawns `cmd` with stdout and stderr sent to `<dir>/<name>.stdout|stderr`.
    /// With `stdin`, the bytes are written to the child's stdin, which is then closed.
    pub(crate) fn spawn(
        name: &'static str,
        dir: &Path,
        cmd: &mut Command,
        stdin: Option<&[u8]>,
    ) -> anyhow::Result<Peer> {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        cmd.stdout(fs::File::create(&stdout)?)
            .stderr(fs::File::create(&stderr)?)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        let mut peer = Peer {
            name,
            child: None,
            stdout,
            stderr,
        };
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            let written = pipe.write_all(bytes);
            drop(pipe);
            peer.child = Some(child);
            written.with_context(|| format!("cannot write {name}'s stdin"))?;
        } else {
            peer.child = Some(child);
        }
        Ok(peer)
    }

    /// Last part of the captured stderr, for error messages.
    pub(crate) fn stderr_tail(&self) -> String {
        file_tail(&self.stderr, 4000)
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status, if the process has exited.
    pub(crate) fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Err if the process has exited.
    pub(crate) fn check_running(&mut self) -> anyhow::Result<()> {
        let name = self.name;
        let Some(child) = self.child.as_mut() else {
            bail!("{name} was stopped")
        };
        if let Some(status) = child.try_wait()? {
            bail!(
                "{name} exited early ({status}); stderr:\n{}",
                self.stderr_tail()
            );
        }
        Ok(())
    }

    /// Polls `ready` until it returns Some, the process exits, or `timeout` passes.
    pub(crate) fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&Peer) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let start = Instant::now();
        let max_polls = (timeout.as_millis() / POLL.as_millis()).max(1);
        let mut last_err = String::new();
        for _ in 0..max_polls {
            self.check_running()?;
            match ready(self) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last_err = format!("{e:#}"),
            }
            if start.elapsed() > timeout {
                break;
            }
            thread::sleep(POLL);
        }
        bail!(
            "{} not ready ({what}) after {:?}; last error: {last_err}; stderr:\n{}",
            self.name,
            start.elapsed(),
            self.stderr_tail()
        )
    }

    /// SIGTERM, wait up to 3 s, then SIGKILL; always reaps. Idempotent.
    pub(crate) fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on our own, not yet reaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn file_tail(path: &Path, max: usize) -> String {
    let Ok(bytes) = fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Runs a short-lived tool with a time limit; returns its output whatever its status.
pub(crate) fn run_tool(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> anyhow::Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A tool that exits without reading gives EPIPE; its status tells the story.
        let _ = pipe.write_all(bytes);
    }
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let err = drain(Box::new(child.stderr.take().expect("stderr is piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{program} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = out.join().map_err(|_| anyhow!("stdout reader panicked"))?;
    let stderr = err.join().map_err(|_| anyhow!("stderr reader panicked"))?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn http_client() -> anyhow::Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .build()?)
}

// ---------------------------------------------------------------------------
// Authorization server

#[derive(Debug, Clone, Default)]
pub struct AuthServerOptions {
    /// Access token lifetime in seconds (server default 3600).
    pub access_token_lifetime: Option<u64>,
    /// How long a rotated refresh token still works (DOT's REFRESH_TOKEN_GRACE_PERIOD_SECONDS;
    /// default 0).
    pub refresh_grace_secs: Option<u64>,
}

/// The test authorization server: django-oauth-toolkit on 127.0.0.1 with a fresh
/// sqlite database (see tests/authserver/README.md for its behaviour).
pub struct AuthServer {
    peer: Peer,
    port: u16,
    http: reqwest::blocking::Client,
    // Dropped after `peer` (fields drop in order), so the server stops first.
    _dir: TempDir,
}

impl AuthServer {
    pub fn start(options: AuthServerOptions) -> anyhow::Result<AuthServer> {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("authserver");
        let python = here.join(".venv/bin/python");
        if !python.is_file() {
            bail!(
                "{} is missing: run bash tests/authserver/setup.sh (or scripts/install-test-deps.sh)",
                python.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("tb-authserver-")
            .tempdir()?;
        let mut cmd = Command::new(&python);
        cmd.arg(here.join("serve.py"))
            .args(["--port", "0", "--data-dir"])
            .arg(dir.path().join("data"));
        if let Some(secs) = options.access_token_lifetime {
            cmd.args(["--access-token-lifetime", &secs.to_string()]);
        }
        cmd.current_dir(&here).env_remove("DJANGO_SETTINGS_MODULE");
        cmd.env(
            "TB_AUTH_REFRESH_GRACE",
            options.refresh_grace_secs.unwrap_or(0).to_string(),
        );
        let mut peer = Peer::spawn("authserver", dir.path(), &mut cmd, None)?;
        let port = peer.wait_for("READY line on stdout", START_TIMEOUT, |p| {
            let out = fs::read_to_string(&p.stdout)?;
            let Some(line) = out.lines().find(|l| l.starts_with("READY port=")) else {
                return Ok(None);
            };
            let port = line["READY port=".len()..].trim().parse::<u16>();
            Ok(Some(
                port.with_context(|| format!("bad READY line {line:?}"))?,
            ))
        })?;
        Ok(AuthServer {
            peer,
            port,
            http: http_client()?,
            _dir: dir,
        })
    }

    /// Every refresh token the server has issued, read from its database: for tests that
    /// search files and logs for them.
    pub fn refresh_tokens(&self) -> anyhow::Result<Vec<String>> {
        let db = self._dir.path().join("data").join("authserver.sqlite3");
        let out = run_tool(
            Command::new("python3").arg("-c").arg(
                "import sqlite3, sys\nfor (t,) in sqlite3.connect(sys.argv[1]).execute('select token from oauth2_provider_refreshtoken'):\n    print(t)",
            ).arg(&db),
            None,
            Duration::from_secs(20),
        )?;
        if !out.status.success() {
            bail!(
                "cannot read {}: {}",
                db.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>/o`; RFC 8414 metadata is at
    /// `<base>/.well-known/oauth-authorization-server/o`, OIDC discovery at
    /// `<issuer>/.well-known/openid-configuration`.
    pub fn issuer(&self) -> String {
        format!("{}/o", self.base_url())
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/o/token/", self.base_url())
    }

    pub fn revocation_endpoint(&self) -> String {
        format!("{}/o/revoke_token/", self.base_url())
    }

    pub fn introspection_endpoint(&self) -> String {
        format!("{}/o/introspect/", self.base_url())
    }

    /// A blocking HTTP client without proxy, for tests talking to the server directly.
    pub fn http(&self) -> &reqwest::blocking::Client {
        &self.http
    }

    /// RFC 7662 introspection of an access token, authenticated as `tb-introspect`.
    /// Refresh tokens always introspect as `{"active": false}` in django-oauth-toolkit.
    pub fn introspect(&self, token: &str) -> Value {
        let req = self
            .http
            .post(self.introspection_endpoint())
            .header(
                "Authorization",
                client_basic_auth(INTROSPECT_CLIENT_ID, INTROSPECT_CLIENT_SECRET),
            )
            .form(&[("token", token)]);
        self.json("introspect", req)
    }

    /// `{"token": {"password": n, "refresh_token": n, "client_credentials": n, ...},
    ///   "token_status": {"200": n, "400": n, "401": n, ...}, "revoke": n}`
    pub fn counters(&self) -> Value {
        self.json(
            "counters",
            self.http.get(format!("{}/test/counters", self.base_url())),
        )
    }

    pub fn reset_counters(&self) {
        let url = format!("{}/test/counters/reset", self.base_url());
        self.json("reset counters", self.http.post(url));
    }

    /// Stops the server (SIGTERM, then SIGKILL); the value stays usable for its URLs.
    pub fn stop(&mut self) {
        self.peer.stop();
    }

    /// The server's captured stderr (request log and errors), last few KB.
    pub fn stderr_tail(&self) -> String {
        self.peer.stderr_tail()
    }

    fn json(&self, what: &str, req: reqwest::blocking::RequestBuilder) -> Value {
        let result = (|| -> anyhow::Result<Value> {
            let resp = req.send()?;
            let status = resp.status();
            let body = resp.text()?;
            if !status.is_success() {
                bail!("HTTP {status}: {body}");
            }
            Ok(serde_json::from_str(&body)?)
        })();
        match result {
            Ok(v) => v,
            Err(e) => panic!(
                "authserver {what} failed: {e:#}\nstderr:\n{}",
                self.stderr_tail()
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Secret Service

/// A private D-Bus session bus with gnome-keyring-daemon serving
/// `org.freedesktop.secrets`, its login (= default) collection unlocked.
///
/// The `keyring` crate's Secret Service store (zbus-secret-service-keyring-store 1.0.1)
/// stores an entry (service, user) as an item in the default collection with attributes
/// `service` = service and `username` = user (plus `target` only when a `target`
/// modifier is given) and label `keyring:{user}@{service}`.
/// gnome-keyring may add `xdg:schema` = `org.freedesktop.Secret.Generic` to an item (seen
/// on UTF-8 secrets), which does not change lookups by `service` and `username`.
pub struct SecretService {
    // Field order is drop order: keyring first, then the bus, then the directories.
    keyring: Peer,
    bus: Peer,
    address: String,
    data_home: PathBuf,
    runtime_dir: PathBuf,
    _dir: TempDir,
}

const KEYRING_PASSWORD: &[u8] = b"tokenbroker-e2e-keyring";

impl SecretService {
    pub fn start() -> anyhow::Result<SecretService> {
        let dir = tempfile::Builder::new().prefix("tb-secrets-").tempdir()?;
        let data_home = dir.path().join("data");
        let runtime_dir = dir.path().join("run");
        fs::create_dir(&data_home)?;
        fs::create_dir(&runtime_dir)?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&runtime_dir, fs::Permissions::from_mode(0o700))?;
        }
        // A bus of our own, without service directories: nothing can be auto-started
        // on it, so a tool run too early fails instead of launching another keyring.
        let config = dir.path().join("bus.conf");
        fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <!-- Other local users may connect: the broker's own uid check is what tests exercise. -->
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.path().join("bus").display()
            ),
        )?;
        let mut bus = Peer::spawn(
            "dbus-daemon",
            dir.path(),
            Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .args(["--nofork", "--print-address=1"]),
            None,
        )
        .context("is dbus-daemon installed? run scripts/install-test-deps.sh")?;
        let address = bus.wait_for("address on stdout", START_TIMEOUT, |p| {
            let out = fs::read_to_string(&p.stdout)?;
            Ok(out
                .lines()
                .next()
                .filter(|_| out.ends_with('\n'))
                .map(str::to_owned))
        })?;

        let mut cmd = Command::new("gnome-keyring-daemon");
        cmd.args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("XDG_DATA_HOME", &data_home)
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("GNOME_KEYRING_CONTROL");
        let keyring = Peer::spawn(
            "gnome-keyring-daemon",
            dir.path(),
            &mut cmd,
            Some(KEYRING_PASSWORD),
        )
        .context("is gnome-keyring installed? run scripts/install-test-deps.sh")?;
        let mut ss = SecretService {
            keyring,
            bus,
            address,
            data_home,
            runtime_dir,
            _dir: dir,
        };

        // Ready when a store/lookup/clear round trip through the default collection works.
        let start = Instant::now();
        let mut last_err = String::new();
        for _ in 0..(START_TIMEOUT.as_millis() / POLL.as_millis()) {
            match ss.round_trip() {
                Ok(()) => return Ok(ss),
                Err(e) => last_err = format!("{e:#}"),
            }
            ss.bus.check_running()?;
            ss.keyring.check_running()?;
            if start.elapsed() > START_TIMEOUT {
                break;
            }
            thread::sleep(POLL);
        }
        bail!(
            "gnome-keyring-daemon not usable after {:?}: {last_err}; stderr:\n{}",
            start.elapsed(),
            ss.keyring.stderr_tail()
        )
    }

    fn round_trip(&self) -> anyhow::Result<()> {
        let (service, user) = ("tokenbroker-e2e-probe", "ready");
        let out = self.tool(
            &[
                "store",
                "--label=probe",
                "service",
                service,
                "username",
                user,
            ],
            Some(b"ok"),
        )?;
        if !out.status.success() {
            bail!(
                "secret-tool store: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if self.lookup(service, user).as_deref() != Some("ok") {
            bail!("secret-tool lookup did not return the stored probe");
        }
        let out = self.tool(&["clear", "service", service, "username", user], None)?;
        if !out.status.success() {
            bail!(
                "secret-tool clear: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// `DBUS_SESSION_BUS_ADDRESS`, `XDG_DATA_HOME` and `XDG_RUNTIME_DIR` (a 0700 directory
    /// the broker daemon under test may use too) for processes that use this keyring.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.address.clone()),
            ("XDG_DATA_HOME".into(), self.data_home.display().to_string()),
            (
                "XDG_RUNTIME_DIR".into(),
                self.runtime_dir.display().to_string(),
            ),
        ]
    }

    pub fn bus_address(&self) -> &str {
        &self.address
    }

    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// The secret of the item the `keyring` crate uses for (service, user), if any.
    pub fn lookup(&self, service: &str, user: &str) -> Option<String> {
        let out = self
            .tool(&["lookup", "service", service, "username", user], None)
            .unwrap_or_else(|e| panic!("secret-tool lookup: {e:#}"));
        // secret-tool exits 1 with empty output when nothing matches.
        if out.status.success() {
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        } else if out.stdout.is_empty() && out.stderr.is_empty() {
            None
        } else {
            panic!(
                "secret-tool lookup failed ({}): {}\nkeyring stderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.keyring.stderr_tail()
            )
        }
    }

    /// Stores a secret the way the `keyring` crate does for (service, user).
    pub fn store(&self, service: &str, user: &str, secret: &str) -> anyhow::Result<()> {
        let label = format!("--label=keyring:{user}@{service}");
        let out = self.tool(
            &["store", &label, "service", service, "username", user],
            Some(secret.as_bytes()),
        )?;
        if !out.status.success() {
            bail!(
                "secret-tool store failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Every item on the Secret Service with its label, attributes and secret, as text
    /// (for checks that no secret leaks into the keyring).
    pub fn dump_all(&self) -> String {
        self.try_dump_all().unwrap_or_else(|e| {
            panic!(
                "dumping the keyring failed: {e:#}\nkeyring stderr:\n{}",
                self.keyring.stderr_tail()
            )
        })
    }

    fn try_dump_all(&self) -> anyhow::Result<String> {
        // Enumerate items and their attributes over D-Bus (busctl), then read each
        // secret with secret-tool search, which matches on those attributes.
        let found = self.busctl(&[
            "call",
            "org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service",
            "SearchItems",
            "a{ss}",
            "0",
        ])?;
        let mut paths: Vec<String> = found["data"]
            .as_array()
            .context("SearchItems reply")?
            .iter()
            .flat_map(|list| list.as_array().into_iter().flatten())
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect();
        paths.sort();
        paths.dedup();
        let mut dump = String::new();
        for path in paths {
            let attrs = self.busctl(&[
                "get-property",
                "org.freedesktop.secrets",
                &path,
                "org.freedesktop.Secret.Item",
                "Attributes",
            ])?;
            let attrs = attrs["data"].as_object().context("Attributes reply")?;
            writeln!(dump, "item {path}")?;
            let mut args = vec![
                "search".to_owned(),
                "--all".to_owned(),
                "--unlock".to_owned(),
            ];
            for (k, v) in attrs {
                writeln!(dump, "  attribute {k} = {}", v.as_str().unwrap_or_default())?;
                args.push(k.clone());
                args.push(v.as_str().unwrap_or_default().to_owned());
            }
            if attrs.is_empty() {
                writeln!(
                    dump,
                    "  (no attributes: secret not readable with secret-tool)"
                )?;
                continue;
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = self.tool(&args, None)?;
            if !out.status.success() {
                bail!(
                    "secret-tool search failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                writeln!(dump, "  {line}")?;
            }
        }
        Ok(dump)
    }

    fn tool(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Output> {
        let mut cmd = Command::new("secret-tool");
        cmd.args(args)
            .envs(self.env())
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        run_tool(&mut cmd, stdin, TOOL_TIMEOUT).context("is libsecret-tools installed?")
    }

    fn busctl(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut cmd = Command::new("busctl");
        cmd.arg(format!("--address={}", self.address))
            .arg("--json=short")
            .args(args);
        let out =
            run_tool(&mut cmd, None, TOOL_TIMEOUT).context("is busctl (systemd) installed?")?;
        if !out.status.success() {
            bail!(
                "busctl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}
