//! The password is gone from the daemon's memory after sign-in: read the running daemon's
//! memory (as root, through /proc/PID/mem) and search it.

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
