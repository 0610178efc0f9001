//! A looping app cannot fill the disk or the daemon's memory: identical denials are written
//! once with a count, requests past the app's rate get `rate_limited`, another app is not
//! affected, and `tokenbroker audit` reads the newest records of a 100 MiB file at once.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use tokenbroker_e2e::app::{self, SOCAT};
use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::fake::{FakeServer, Mode};
use tokenbroker_e2e::peers::SecretService;

/// An unknown app (python) that sends `n` GetToken requests down one connection as fast as it
/// can, reading every reply; prints how many of each error kind came back, as JSON.
const FLOOD: &str = r#"
import json, socket, sys
path, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX)
s.connect(path)
f = s.makefile("rwb")
f.write(b'{"jsonrpc":"2.0","id":0,"method":"Hello","params":{"protocol":"1.0"}}\n')
f.flush()
f.readline()
kinds = {}
batch = 500
for start in range(0, n, batch):
    for i in range(start, min(n, start + batch)):
        f.write(b'{"jsonrpc":"2.0","id":%d,"method":"GetToken","params":{"account":"robot"}}\n' % (i + 1))
    f.flush()
    for i in range(start, min(n, start + batch)):
        r = json.loads(f.readline())
        k = r.get("error", {}).get("data", {}).get("kind", "ok")
        kinds[k] = kinds.get(k, 0) + 1
print(json.dumps(kinds))
"#;

fn flood(d: &Daemon, n: usize) -> Value {
    let out = Command::new("python3")
        .args(["-c", FLOOD])
        .arg(&d.socket)
        .arg(n.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn audit_file(d: &Daemon) -> std::path::PathBuf {
    d.state_dir.join("tokenbroker").join("audit.jsonl")
}

#[test]
fn a_denial_flood_is_collapsed_limited_and_costs_the_disk_nothing() {
    let fake = FakeServer::start(Mode::Good { expires_in: 3600 }).unwrap();
    let ss = SecretService::start().unwrap();
    let config = format!(
        r#"version = 1

[audit]
max_file_bytes = 200000000

[providers.fake]
token_endpoint = "{}"
client_id = "fake-client"
client_auth = "client_secret_post"
allow_insecure_loopback = true

[accounts.robot]
provider = "fake"
grant = "client_credentials"
"#,
        fake.token_endpoint()
    );
    let mut d = Daemon::start(&ss, Some(&config)).unwrap();
    let log_before = d.log().len();

    let kinds = flood(&d, 20_000);
    let denied = kinds["denied"].as_u64().unwrap_or(0);
    let limited = kinds["rate_limited"].as_u64().unwrap_or(0);
    assert_eq!(denied + limited, 20_000, "{kinds}");
    assert!(denied >= 100, "the burst is served: {kinds}");
    assert!(limited > 10_000, "the rest is rate limited: {kinds}");
    assert_eq!(fake.requests(), 0, "nothing reached the server");

    // Another app is not limited by the first one's flood.
    let v = app::call(
        &d.socket,
        std::path::Path::new(SOCAT),
        "GetToken",
        r#"{"account":"robot"}"#,
    );
    assert_eq!(v["error"]["data"]["kind"], "denied", "{v}");

    // The audit file holds a few lines, the log a few more; the flood is one counted record.
    let size = std::fs::metadata(audit_file(&d)).unwrap().len();
    assert!(size < 16 * 1024, "the audit file grew by {size} bytes");
    let log_growth = d.log().len() - log_before;
    assert!(
        log_growth < 256 * 1024,
        "the log grew by {log_growth} bytes"
    );
    let audit = d.cli_ok(&["audit", "--json"], None);
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let counted: u64 = records
        .iter()
        .filter(|r| r["exe"].as_str().is_some_and(|e| e.contains("python")))
        // A record stands for one denial; a summary for the `repeated` ones after it.
        .map(|r| r["repeated"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(counted, denied, "every denial is counted: {kinds} {audit}");
    assert!(d.log().contains("requests refused as rate_limited"));

    // A 100 MiB audit file: the newest records come back at once.
    d.stop();
    {
        let rec = records.last().unwrap().to_string();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(audit_file(&d))
            .unwrap();
        let mut chunk = String::new();
        while chunk.len() < 1 << 20 {
            chunk.push_str(&rec);
            chunk.push('\n');
        }
        for _ in 0..100 {
            f.write_all(chunk.as_bytes()).unwrap();
        }
    }
    assert!(std::fs::metadata(audit_file(&d)).unwrap().len() >= 100 << 20);
    d.restart().unwrap();
    let started = Instant::now();
    let out = Command::new(tokenbroker_e2e::daemon::bin("tokenbroker"))
        .args(["audit", "--json"])
        .envs(d.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1000);
    assert!(
        took.as_millis() < 1000,
        "tokenbroker audit took {took:?} on a 100 MiB file"
    );
}
