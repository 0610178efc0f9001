//! Only allowed apps get tokens: kernel-identified executables, per-app scopes, consent, audit.
//! The "app" is socat (a real binary at a known path), speaking the socket protocol.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenbroker_e2e::daemon::{bin, Daemon};
use tokenbroker_e2e::peers::*;

const SOCAT: &str = "/usr/bin/socat";
const CONFIG: &str = "version = 1\n\n[policy]\nconsent_timeout_secs = 3\n";

fn setup() -> (AuthServer, SecretService, Daemon) {
    let server = AuthServer::start(AuthServerOptions {
        access_token_lifetime: Some(300),
        ..Default::default()
    })
    .unwrap();
    let ss = SecretService::start().unwrap();
    let d = Daemon::start(&ss, Some(CONFIG)).unwrap();
    // Apps here get fewer scopes than the account's: by a scoped refresh (DOT then narrows the
    // refresh token, which these tests do not mind; core.rs tests that case).
    d.add_dot_provider_with(&server, &["read", "write"], &["--scoped-refresh"]);
    d.add_dot_account("me", ALICE_USERNAME);
    d.login("me", ALICE_PASSWORD);
    (server, ss, d)
}

/// Run `exe` (a socat) as an app asking for a token; returns the GetToken reply. It declares
/// itself "tokenbroker-cli": a hint the daemon must not believe.
fn app_get_token(d: &Daemon, exe: &Path, scopes: &[&str]) -> Value {
    app_get_token_at(&d.socket, exe, scopes)
}

fn app_get_token_at(socket: &Path, exe: &Path, scopes: &[&str]) -> Value {
    let scopes: Vec<String> = scopes.iter().map(|s| format!("\"{s}\"")).collect();
    let input = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"Hello\",\"params\":{{\"protocol\":\"1.0\",\"client\":\"tokenbroker-cli\"}}}}\n{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"GetToken\",\"params\":{{\"account\":\"me\",\"scopes\":[{}]}}}}\n",
        scopes.join(",")
    );
    let mut child = Command::new(exe)
        .args(["-t", "30", "-"])
        .arg(format!("UNIX-CONNECT:{}", socket.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no reply: {text:?} {:?}", out.stderr));
    serde_json::from_str(line).unwrap()
}

fn token_of(v: &Value) -> String {
    v["result"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {v}"))
        .to_owned()
}

fn denial(v: &Value) -> String {
    assert_eq!(v["error"]["data"]["kind"], "denied", "{v}");
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// `tokenbroker consent watch`: the consent agent, reading its requests line by line.
struct Agent {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Agent {
    fn start(d: &Daemon) -> Agent {
        let mut child = Command::new(bin("tokenbroker"))
            .args(["consent", "watch"])
            .env("TOKENBROKER_SOCKET", &d.socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        // Registered once its subscription shows in the daemon: wait for the stderr banner.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut banner = String::new();
        err.read_line(&mut banner).unwrap();
        assert!(banner.contains("waiting for consent requests"), "{banner}");
        Agent { child, lines }
    }

    fn next_request(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a consent request");
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ask for a token from `exe` in a thread, answer its consent request with `answer`.
fn with_answer(
    d: &Daemon,
    agent: &Agent,
    exe: &Path,
    scopes: &[&str],
    answer: Option<&str>,
) -> (Value, Value) {
    let (socket, exe) = (d.socket.clone(), exe.to_owned());
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let asking = std::thread::spawn(move || {
        let s: Vec<&str> = scopes.iter().map(String::as_str).collect();
        app_get_token_at(&socket, &exe, &s)
    });
    let request = agent.next_request();
    if let Some(a) = answer {
        let id = request["id"].to_string();
        d.cli_ok(&["consent", "answer", &id, a], None);
    }
    (request, asking.join().unwrap())
}

#[test]
fn unknown_apps_are_asked_or_denied() {
    let (_server, _ss, d) = setup();
    // No consent agent: denied at once, with how to allow it.
    let started = Instant::now();
    let msg = denial(&app_get_token(&d, Path::new(SOCAT), &["read"]));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        msg.contains("tokenbroker allow me --app /usr/bin/socat"),
        "{msg}"
    );

    // With an agent: asked, with the executable, pid, account and scopes; denied when nobody answers.
    let agent = Agent::start(&d);
    let started = Instant::now();
    let (request, reply) = with_answer(&d, &agent, Path::new(SOCAT), &["read"], None);
    assert_eq!(request["exe"], SOCAT);
    assert_eq!(request["account"], "me");
    assert_eq!(request["scopes"], serde_json::json!(["read"]));
    assert!(request["pid"].as_i64().unwrap() > 0);
    let msg = denial(&reply);
    assert!(msg.contains("nobody answered"), "{msg}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "held for the consent timeout"
    );

    // Denied by the user.
    let (_, reply) = with_answer(&d, &agent, Path::new(SOCAT), &["read"], Some("deny"));
    assert!(denial(&reply).contains("the user denied"));

    // An app with no rule can neither sign the account in (to credentials of its choosing) nor
    // sign it out.
    let v = app_call(
        &d,
        Path::new(SOCAT),
        "SignIn",
        r#"{"account":"me","password":"x"}"#,
    );
    assert!(denial(&v).contains("only the tokenbroker CLI or tray may sign in"));
    let v = app_call(&d, Path::new(SOCAT), "SignOut", r#"{"account":"me"}"#);
    denial(&v);
    assert!(d
        .cli_ok(&["accounts", "--json"], None)
        .contains("signed_in"));

    // The self-declared client name ("tokenbroker-cli") buys nothing: the kernel's word counts.
    drop(agent);
    let msg = denial(&app_get_token(&d, Path::new(SOCAT), &[]));
    assert!(msg.contains("/usr/bin/socat"), "{msg}");
}

#[test]
fn allow_always_grants_exactly_the_allowed_scopes_and_copies_are_other_apps() {
    let (server, _ss, d) = setup();
    let agent = Agent::start(&d);
    let (_, reply) = with_answer(
        &d,
        &agent,
        Path::new(SOCAT),
        &["read"],
        Some("allow-always"),
    );
    let t = token_of(&reply);
    assert_eq!(server.introspect(&t)["scope"], "read");
    // Written to the policy.
    let policy: Value = serde_json::from_str(&d.cli_ok(&["policy", "me", "--json"], None)).unwrap();
    assert_eq!(policy[0]["exe"], SOCAT);
    assert_eq!(policy[0]["access"], "allow");
    assert_eq!(policy[0]["scopes"], serde_json::json!(["read"]));
    // Now without asking: its allowed scopes, and no more.
    let t = token_of(&app_get_token(&d, Path::new(SOCAT), &["read"]));
    assert_eq!(server.introspect(&t)["active"], true);
    let msg = denial(&app_get_token(&d, Path::new(SOCAT), &["read", "write"]));
    assert!(msg.contains("at most the scopes [read]"), "{msg}");
    let t = token_of(&app_get_token(&d, Path::new(SOCAT), &[]));
    assert_eq!(
        server.introspect(&t)["scope"],
        "read",
        "no scopes named: the widest allowed"
    );

    // A copy of the allowed binary at another path is another app: asked, and here denied.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("socat");
    std::fs::copy(SOCAT, &copy).unwrap();
    let (request, reply) = with_answer(&d, &agent, &copy, &["read"], Some("deny"));
    assert_eq!(request["exe"], copy.to_str().unwrap());
    denial(&reply);

    // deny and forget.
    d.cli_ok(&["deny", "me", "--app", SOCAT], None);
    assert!(denial(&app_get_token(&d, Path::new(SOCAT), &["read"])).contains("denied access"));
    d.cli_ok(&["forget", "me", "--app", SOCAT], None);
    let (request, _) = with_answer(&d, &agent, Path::new(SOCAT), &["read"], Some("deny"));
    assert_eq!(request["exe"], SOCAT, "asked again once forgotten");

    // Only the user's own tools may change the policy: not the app itself.
    let v = app_call(
        &d,
        Path::new(SOCAT),
        "SetAppPolicy",
        r#"{"account":"me","exe":"/usr/bin/socat","access":"allow"}"#,
    );
    assert!(denial(&v).contains("only the tokenbroker CLI or tray"));
}

fn app_call(d: &Daemon, exe: &Path, method: &str, params: &str) -> Value {
    tokenbroker_e2e::app::call(&d.socket, exe, method, params)
}

#[test]
fn allow_once_works_once_and_the_audit_shows_every_decision() {
    let (server, _ss, d) = setup();
    let agent = Agent::start(&d);
    let (_, reply) = with_answer(&d, &agent, Path::new(SOCAT), &["write"], Some("allow-once"));
    let t = token_of(&reply);
    assert_eq!(server.introspect(&t)["scope"], "write");
    // Asked again the next time, and nobody answers.
    let (_, reply) = with_answer(&d, &agent, Path::new(SOCAT), &["write"], None);
    denial(&reply);
    // The CLI's token for the same scopes (DOT narrowed the account to them: a token for the
    // whole grant would be refused as narrowed, see core.rs).
    let cli_token = d
        .cli_ok(&["token", "me", "--scope", "write"], None)
        .trim()
        .to_owned();

    let audit = d.cli_ok(&["audit", "--json", "--since", "1h"], None);
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let socat: Vec<&Value> = records.iter().filter(|r| r["exe"] == SOCAT).collect();
    assert_eq!(socat.len(), 2, "{audit}");
    assert_eq!(socat[0]["decision"], "allow");
    assert_eq!(socat[0]["reason"], "allowed once by the user");
    assert_eq!(socat[1]["decision"], "deny");
    assert!(socat
        .iter()
        .all(|r| r["uid"] == 0 && r["pid"].as_i64().unwrap() > 0 && r["transport"] == "socket"));
    assert!(records
        .iter()
        .any(|r| r["exe"].as_str().unwrap().ends_with("/tokenbroker")));
    // The audit file itself: 0600, and no token in it.
    let file = d.state_dir.join("tokenbroker").join("audit.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    for tok in [&t, &cli_token] {
        assert!(!text.contains(tok.as_str()));
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// A second local user, created for the test.
fn second_user() -> (u32, u32) {
    let u = tokenbroker_e2e::system::local_user("tbtest2");
    (u.uid, u.gid)
}

/// Let others traverse the test's own folders (never the temp dir itself).
fn open_path_to_others(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::env::temp_dir();
    let mut dir = p.to_path_buf();
    while dir.pop() && dir.starts_with(&tmp) && dir != tmp {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711));
    }
}

#[test]
fn another_user_gets_nothing_over_the_socket_or_dbus() {
    let (uid, gid) = second_user();
    let (_server, ss, d) = setup();
    let setpriv = |cmd: &mut Command| {
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups");
    };
    // The socket: even with its folder and file opened up, the peer check refuses.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    open_path_to_others(&d.socket);
    let mut cmd = Command::new("setpriv");
    setpriv(&mut cmd);
    let out = cmd
        .args(["timeout", "10", "socat", "-u"])
        .arg(format!("UNIX-CONNECT:{}", d.socket.display()))
        .arg("STDOUT")
        .output()
        .unwrap();
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(
        reply.contains("serves only its own user") && reply.contains("denied"),
        "{reply} {out:?}"
    );

    // The CLI run by the other user says "denied" (exit 4), every time: the refusal reaches it
    // even when the daemon closes before reading its Hello.
    let cli = tokenbroker_e2e::daemon::bin("tokenbroker");
    for _ in 0..10 {
        let mut cmd = Command::new("setpriv");
        setpriv(&mut cmd);
        let out = cmd
            .arg(&cli)
            .arg("status")
            .env("TOKENBROKER_SOCKET", &d.socket)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("serves only its own user"));
    }

    // D-Bus: the bus admits the other user; the broker refuses it.
    let addr = ss.bus_address().to_owned();
    let bus_path = addr
        .trim_start_matches("unix:path=")
        .split(',')
        .next()
        .unwrap();
    open_path_to_others(Path::new(bus_path));
    let mut cmd = Command::new("setpriv");
    setpriv(&mut cmd);
    let out = cmd
        .args(["timeout", "10", "busctl", &format!("--address={addr}")])
        .args([
            "call",
            "io.tokenbroker.Broker1",
            "/io/tokenbroker/Broker1",
            "io.tokenbroker.Broker1",
        ])
        .args(["GetToken", "sasu", "me", "0", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("serves only its own user"), "{err} {out:?}");
    // The same call as the owner (with busctl allowed) works, so the refusal is about the user.
    d.cli_ok(&["allow", "me", "--app", "/usr/bin/busctl"], None);
    let out = Command::new("busctl")
        .arg(format!("--address={addr}"))
        .args([
            "call",
            "io.tokenbroker.Broker1",
            "/io/tokenbroker/Broker1",
            "io.tokenbroker.Broker1",
        ])
        .args(["GetToken", "sasu", "me", "0", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(d.wait_log("refused a D-Bus caller of another user"));
}
