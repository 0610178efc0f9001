//! The socket transport: framing limits, malformed input, the handshake, permissions and the
//! peer-credential check. A bad connection is closed; others keep working.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::Value;
use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::peers::SecretService;

const HELLO: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"Hello","params":{"protocol":"1.0","client":"test"}}"#;

fn connect(d: &Daemon) -> (UnixStream, BufReader<UnixStream>) {
    let s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn send(s: &mut UnixStream, r: &mut BufReader<UnixStream>, line: &str) -> Value {
    // The daemon may answer and close before an oversized line is written out: a broken pipe
    // here is expected, and its reply is still there to read.
    let _ = s
        .write_all(line.as_bytes())
        .and_then(|()| s.write_all(b"\n"));
    let mut reply = String::new();
    r.read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
}

fn closed(r: &mut BufReader<UnixStream>) -> bool {
    let mut rest = Vec::new();
    matches!(r.read_to_end(&mut rest), Ok(0))
}

fn code(v: &Value) -> i64 {
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no error in {v}"))
}

#[test]
fn bad_requests_close_only_their_connection() {
    let ss = SecretService::start().unwrap();
    let d = Daemon::start(&ss, None).unwrap();

    // A good connection, opened first and used last.
    let (mut good, mut good_r) = connect(&d);
    assert_eq!(
        send(&mut good, &mut good_r, HELLO)["result"]["protocol"],
        "1.0"
    );

    // Not JSON.
    let (mut s, mut r) = connect(&d);
    send(&mut s, &mut r, HELLO);
    assert_eq!(code(&send(&mut s, &mut r, "this is not json")), -32700);
    assert!(closed(&mut r));

    // Longer than 64 KiB.
    let (mut s, mut r) = connect(&d);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"Hello","params":{{"x":"{}"}}}}"#,
        "a".repeat(70_000)
    );
    let v = send(&mut s, &mut r, &big);
    assert_eq!(code(&v), -32600);
    assert!(v["error"]["message"].as_str().unwrap().contains("65536"));
    assert!(closed(&mut r));

    // A first request that is not Hello.
    let (mut s, mut r) = connect(&d);
    let v = send(
        &mut s,
        &mut r,
        r#"{"jsonrpc":"2.0","id":1,"method":"ListAccounts"}"#,
    );
    assert_eq!(code(&v), -32600);
    assert!(closed(&mut r));

    // An incompatible protocol version.
    let (mut s, mut r) = connect(&d);
    let v = send(
        &mut s,
        &mut r,
        r#"{"jsonrpc":"2.0","id":1,"method":"Hello","params":{"protocol":"2.0"}}"#,
    );
    assert_eq!(v["error"]["data"]["kind"], "protocol");
    assert!(closed(&mut r));

    // Errors of a method keep the connection: unknown method, bad params, unknown account.
    let (mut s, mut r) = connect(&d);
    send(&mut s, &mut r, HELLO);
    assert_eq!(
        code(&send(
            &mut s,
            &mut r,
            r#"{"jsonrpc":"2.0","id":2,"method":"Nope"}"#
        )),
        -32601
    );
    assert_eq!(
        code(&send(
            &mut s,
            &mut r,
            r#"{"jsonrpc":"2.0","id":3,"method":"GetToken","params":{"acount":"x"}}"#
        )),
        -32602
    );
    let v = send(
        &mut s,
        &mut r,
        r#"{"jsonrpc":"2.0","id":4,"method":"GetToken","params":{"account":"x"}}"#,
    );
    assert_eq!(v["error"]["data"]["kind"], "no_such_account");
    assert_eq!(v["id"], 4);
    let many: Vec<String> = (0..10_000).map(|i| format!("\"s{i}\"")).collect();
    let v = send(
        &mut s,
        &mut r,
        &format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"GetToken","params":{{"account":"x","scopes":[{}]}}}}"#,
            many.join(",")
        ),
    );
    assert!(v["error"].is_object(), "{v}");

    // The first connection still works.
    let v = send(
        &mut good,
        &mut good_r,
        r#"{"jsonrpc":"2.0","id":9,"method":"ListAccounts"}"#,
    );
    assert_eq!(v["result"], serde_json::json!([]));
    assert_eq!(v["id"], 9);
}

#[test]
fn socket_is_private_and_other_users_are_refused() {
    let ss = SecretService::start().unwrap();
    let d = Daemon::start(&ss, None).unwrap();
    let dir = d.socket.parent().unwrap();
    assert_eq!(
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Open the path to everyone, to show that the peer-credential check holds on its own.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test acts as another user: run it as root"
    );
    let mut p = d.socket.clone();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    // Only the test's own folders below the temp dir, never the temp dir itself.
    let tmp = std::env::temp_dir();
    while p.pop() && p.starts_with(&tmp) && p != tmp {
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o711));
    }
    assert_eq!(
        std::fs::metadata(&tmp).unwrap().permissions().mode() & 0o7777,
        0o1777,
        "the temp dir is untouched"
    );
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "timeout",
            "10",
            "socat",
            "-u",
        ])
        .arg(format!("UNIX-CONNECT:{}", d.socket.display()))
        .arg("STDOUT")
        .output()
        .unwrap();
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(
        reply.contains("serves only its own user"),
        "{reply} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(reply.contains("\"denied\""), "{reply}");
    assert!(d.wait_log("refused a connection from another user"));
}
