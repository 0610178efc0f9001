//! No secret outlives its request in the daemon's memory: read the running daemon's memory (as
//! root, through /proc/PID/mem) and search it for the password, the client secret and every
//! refresh token the server issued, in the forms they travelled in, after sign-in, after
//! rotations and after sign-out. Freed buffers of the HTTP and D-Bus stacks count: the daemon's
//! allocator wipes what it frees.

use std::io::{Read, Seek, SeekFrom};

use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::peers::*;

/// Every readable, writable (or anonymous) mapping of `pid`, concatenated.
fn read_memory(pid: u32) -> Vec<u8> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let mut mem =
        std::fs::File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem (needs root)");
    let mut out = Vec::new();
    for line in maps.lines().take(10_000) {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !perms.starts_with("rw") {
            continue;
        }
        let path = parts.nth(3).unwrap_or("");
        if path.starts_with("[vvar") || path.starts_with("[vsyscall") {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        if b - a > 512 << 20 {
            continue;
        }
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_ok() && mem.read_exact(&mut buf).is_ok() {
            out.extend_from_slice(&buf);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_password_is_wiped_after_sign_in() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "reading another process's memory needs root"
    );
    let server = AuthServer::start(AuthServerOptions::default()).unwrap();
    let ss = SecretService::start().unwrap();
    let d = Daemon::start(&ss, None).unwrap();
    d.add_dot_provider(&server, &["read"]);
    d.add_dot_account("bob", BOB_USERNAME);
    d.login("bob", BOB_PASSWORD);
    let token = d.cli_ok(&["token", "bob"], None).trim().to_owned();

    let pid = d.client().status().unwrap().pid;
    let memory = read_memory(pid);
    assert!(
        memory.len() > 1 << 20,
        "read {} bytes of the daemon's memory",
        memory.len()
    );
    // The scan finds what is meant to be there: the cached access token.
    assert!(
        contains(&memory, token.as_bytes()),
        "the scan cannot find the cached access token"
    );
    // And not the password, in any encoding it travelled in.
    let form: String = form_urlencoded::byte_serialize(BOB_PASSWORD.as_bytes()).collect();
    for (what, needle) in [("raw", BOB_PASSWORD.to_owned()), ("form-encoded", form)] {
        assert!(
            !contains(&memory, needle.as_bytes()),
            "the password ({what}) is still in the daemon's memory"
        );
    }
}

/// The forms a secret travels in: as it is, form-encoded, JSON-escaped.
fn forms(secret: &str) -> Vec<String> {
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap();
    vec![secret.to_owned(), form, json.trim_matches('"').to_owned()]
}

fn assert_gone(memory: &[u8], phase: &str, secrets: &[(&str, String)]) {
    for (what, secret) in secrets {
        for form in forms(secret) {
            assert!(
                !contains(memory, form.as_bytes()),
                "{phase}: the {what} ({form:?}) is in the daemon's memory"
            );
        }
    }
}

#[test]
fn no_refresh_token_client_secret_or_password_is_left_after_a_request() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "reading another process's memory needs root"
    );
    // Short-lived tokens: a used token is refreshed, with rotation, about every 6 s.
    let server = AuthServer::start(AuthServerOptions {
        access_token_lifetime: Some(8),
        ..Default::default()
    })
    .unwrap();
    let ss = SecretService::start().unwrap();
    let d = Daemon::start(&ss, None).unwrap();
    d.add_dot_provider(&server, &["read"]);
    d.add_dot_account("bob", BOB_USERNAME);
    d.login("bob", BOB_PASSWORD);
    let pid = d.client().status().unwrap().pid;
    let scan = |phase: &str, access: Option<&str>| {
        let memory = read_memory(pid);
        if let Some(t) = access {
            assert!(
                contains(&memory, t.as_bytes()),
                "{phase}: the scan cannot find the cached access token"
            );
        }
        let mut secrets = vec![
            ("password", BOB_PASSWORD.to_owned()),
            ("client secret", PASSWORD_CLIENT_SECRET.to_owned()),
        ];
        let rts = server.refresh_tokens().unwrap();
        assert!(!rts.is_empty());
        secrets.extend(rts.into_iter().map(|t| ("refresh token", t)));
        assert_gone(&memory, phase, &secrets);
    };
    let t = d.cli_ok(&["token", "bob"], None).trim().to_owned();
    scan("after sign-in", Some(&t));
    let first_rt = ss.lookup("tokenbroker", "refresh_token:bob").unwrap();
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_secs(7));
        d.cli_ok(&["token", "bob"], None);
    }
    let t = d.cli_ok(&["token", "bob"], None).trim().to_owned();
    assert_ne!(
        ss.lookup("tokenbroker", "refresh_token:bob").unwrap(),
        first_rt,
        "the refresh token was rotated"
    );
    scan("after rotations", Some(&t));
    d.cli_ok(&["logout", "bob"], None);
    scan("after sign-out", None);
}
