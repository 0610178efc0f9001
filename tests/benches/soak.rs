//! Soak: 64 clients for 60 s, half over the socket and half over D-Bus, each opening a new
//! connection every few requests (churn), against one daemon with a cached token. Reports the
//! errors, the calls, and the daemon's resident memory and open descriptors after a warm-up and
//! at the end: both must stay flat (growth under 1 MiB and 4 descriptors). See
//! docs/PERFORMANCE.md.
//!
//!     cargo build --release --workspace && cargo bench -p tokenbroker-e2e --bench soak
//!
//! Knobs: TB_SOAK_SECS (default 60), TB_SOAK_CLIENTS (default 64), TB_SOAK_CHURN (requests per
//! connection, default 20). Exits non-zero when a target is missed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenbroker_client::dbus::Broker1ProxyBlocking;
use tokenbroker_client::Client;
use tokenbroker_e2e::daemon::{Daemon, BENCH_CONFIG};
use tokenbroker_e2e::peers::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The daemon's resident memory (KiB) and open descriptors.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    errors: AtomicU64,
    connections: AtomicU64,
}

fn socket_client(d: &Daemon, churn: u64, stop: &AtomicBool, c: &Counts) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut client) = Client::connect(&d.socket, "soak") else {
            c.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        c.connections.fetch_add(1, Ordering::Relaxed);
        for _ in 0..churn {
            match client.get_token("me", &[], 0) {
                Ok(_) => c.calls.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    eprintln!("socket: {e}");
                    c.errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
}

fn dbus_client(address: &str, churn: u64, stop: &AtomicBool, c: &Counts) {
    while !stop.load(Ordering::Relaxed) {
        let conn = zbus::blocking::connection::Builder::address(address).and_then(|b| b.build());
        let Ok(conn) = conn else {
            c.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Ok(proxy) = Broker1ProxyBlocking::new(&conn) else {
            c.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        c.connections.fetch_add(1, Ordering::Relaxed);
        for _ in 0..churn {
            match proxy.get_token("me", &[], 0) {
                Ok(_) => c.calls.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    eprintln!("dbus: {e}");
                    c.errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
}

fn main() -> anyhow::Result<()> {
    let secs = env_u64("TB_SOAK_SECS", 60);
    let clients = env_u64("TB_SOAK_CLIENTS", 64);
    let churn = env_u64("TB_SOAK_CHURN", 20).max(1);
    // zbus's blocking API runs on tokio here (the daemon's feature unifies it in).
    let rt = tokio::runtime::Runtime::new()?;
    let _guard = rt.enter();

    let server = AuthServer::start(AuthServerOptions::default())?;
    let ss = SecretService::start()?;
    let d = Arc::new(Daemon::start(&ss, Some(BENCH_CONFIG))?);
    d.add_dot_provider(&server, &["read"]);
    d.add_dot_account("me", ALICE_USERNAME);
    d.login("me", ALICE_PASSWORD);
    let me = std::env::current_exe()?;
    d.cli_ok(
        &["allow", "me", "--app", me.to_str().unwrap_or_default()],
        None,
    );
    let pid = d.client().status()?.pid;
    let (_, fds_idle) = footprint(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let (sock, bus) = (Arc::new(Counts::default()), Arc::new(Counts::default()));
    let mut threads = Vec::new();
    for i in 0..clients {
        let (d, stop) = (d.clone(), stop.clone());
        let address = ss.bus_address().to_owned();
        let (sock, bus) = (sock.clone(), bus.clone());
        threads.push(std::thread::spawn(move || {
            if i % 2 == 0 {
                socket_client(&d, churn, &stop, &sock)
            } else {
                dbus_client(&address, churn, &stop, &bus)
            }
        }));
    }
    let warmup = Duration::from_secs((secs / 6).max(2));
    std::thread::sleep(warmup);
    let (rss0, fds0) = footprint(pid);
    let started = Instant::now();
    let mut peak_rss = rss0;
    while started.elapsed() < Duration::from_secs(secs).saturating_sub(warmup) {
        std::thread::sleep(Duration::from_secs(1));
        peak_rss = peak_rss.max(footprint(pid).0);
    }
    let (rss1, fds1) = footprint(pid);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    std::thread::sleep(Duration::from_secs(1));
    let (rss_after, fds_after) = footprint(pid);

    println!("| transport | clients | calls | connections | errors |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, c) in [("socket", &sock), ("D-Bus", &bus)] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            clients / 2,
            c.calls.load(Ordering::SeqCst),
            c.connections.load(Ordering::SeqCst),
            c.errors.load(Ordering::SeqCst)
        );
    }
    println!();
    println!("| daemon | after warm-up | at the end | growth | peak | after the clients left |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| RSS | {:.1} MiB | {:.1} MiB | {} KiB | {:.1} MiB | {:.1} MiB |",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss1 as i64 - rss0 as i64,
        peak_rss as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    println!(
        "| open descriptors | {fds0} | {fds1} | {} | | {fds_after} (idle before: {fds_idle}) |",
        fds1 as i64 - fds0 as i64
    );
    let errors = sock.errors.load(Ordering::SeqCst) + bus.errors.load(Ordering::SeqCst);
    let ok = errors == 0
        && (rss1 as i64 - rss0 as i64) < 1024
        && (fds_after as i64 - fds_idle as i64) < 4;
    println!();
    println!("{}", if ok { "soak: PASS" } else { "soak: FAIL" });
    drop(d);
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
