//! No app, however many connections it opens, keeps the user's own tools from the broker: one
//! app holding 128 subscribed connections, 1,000 idle ones and a connection that sends requests
//! without reading the replies, and reconnecting all the while, leaves `tokenbroker token` and
//! `tokenbroker login` working within 100 ms.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::fake::{FakeServer, Mode};
use tokenbroker_e2e::peers::SecretService;

const ATTACK: &str = r#"
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
path, duration = sys.argv[1], float(sys.argv[2])
HELLO = b'{"jsonrpc":"2.0","id":0,"method":"Hello","params":{"protocol":"1.0"}}\n'
SUB = b'{"jsonrpc":"2.0","id":1,"method":"Subscribe","params":{}}\n'
held, failed = [], 0
def conn():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    return s
for i in range(128):
    try:
        s = conn(); s.sendall(HELLO + SUB); held.append(s)
    except OSError:
        failed += 1
for i in range(1000):
    try:
        held.append(conn())
    except OSError:
        failed += 1
try:
    p = conn(); p.sendall(HELLO); p.setblocking(False)
    req = b'{"jsonrpc":"2.0","id":2,"method":"ListAccounts","params":{}}\n' * 1000
    deadline = time.time() + 1
    while time.time() < deadline:
        try:
            p.send(req)
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break
    held.append(p)
except OSError:
    failed += 1
print("ready", len(held), failed, flush=True)
end = time.time() + duration
while time.time() < end:
    try:
        s = conn(); s.sendall(HELLO + SUB); held.append(s)
    except OSError:
        failed += 1
    if len(held) > 3000:
        held.pop(0).close()
    time.sleep(0.002)
print("done", flush=True)
"#;

fn timed(d: &Daemon, args: &[&str], stdin: Option<&str>) -> Duration {
    let started = Instant::now();
    let out = d.cli(args, stdin);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{args:?} failed under attack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn one_app_cannot_lock_the_users_tools_out() {
    let fake = FakeServer::start(Mode::Good { expires_in: 3600 }).unwrap();
    let ss = SecretService::start().unwrap();
    let config = format!(
        r#"version = 1

[providers.fake]
token_endpoint = "{}"
client_id = "fake-client"
client_auth = "client_secret_post"
allow_insecure_loopback = true

[accounts.me]
provider = "fake"
grant = "password"
username = "user"
"#,
        fake.token_endpoint()
    );
    let d = Daemon::start(&ss, Some(&config)).unwrap();
    d.cli_ok(&["provider", "set-secret", "fake"], Some("fake-secret\n"));
    d.cli_ok(&["login", "me", "--password-stdin"], Some("pw\n"));
    d.cli_ok(&["token", "me"], None);

    let mut attacker = Command::new("python3")
        .args(["-c", ATTACK])
        .arg(&d.socket)
        .arg("30")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut lines = BufReader::new(attacker.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.starts_with("ready"), "{ready}");

    let tokens: Vec<Duration> = (0..20).map(|_| timed(&d, &["token", "me"], None)).collect();
    let logins: Vec<Duration> = (0..5)
        .map(|_| timed(&d, &["login", "me", "--password-stdin"], Some("pw\n")))
        .collect();
    let _ = attacker.kill();
    let _ = attacker.wait();

    let (t, l) = (median(tokens.clone()), median(logins.clone()));
    assert!(
        t < Duration::from_millis(100),
        "token took {t:?} (all: {tokens:?})"
    );
    assert!(
        l < Duration::from_millis(100),
        "login took {l:?} (all: {logins:?})"
    );
    assert!(tokens
        .iter()
        .chain(&logins)
        .all(|d| *d < Duration::from_secs(1)));
    // The daemon is fine afterwards, and the attacker's slots came back.
    for _ in 0..20 {
        let v = tokenbroker_e2e::app::call(
            &d.socket,
            std::path::Path::new(tokenbroker_e2e::app::SOCAT),
            "Status",
            "{}",
        );
        if v["result"]["pid"].is_u64() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("an app gets no slot after the attacker is gone");
}
