//! Benchmark: cached GetToken over D-Bus next to a raw zbus echo method with the same signature,
//! both on the same private dbus-daemon, measured in the same run.
//!
//!     cargo build --release --workspace && cargo bench -p tokenbroker-e2e --bench dbus
//!
//! Prints a markdown table (p50, p99, mean) and the ratio of the p50s (target: at most 1.5).

use std::time::{Duration, Instant};

use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::peers::*;

const N: usize = 5_000;
const WARMUP: usize = 200;

struct Echo;

#[zbus::interface(name = "io.tokenbroker.Bench1")]
impl Echo {
    /// Same signature and a reply of the same shape as GetToken.
    fn echo(
        &self,
        account: String,
        scopes: Vec<String>,
        min_ttl: u32,
    ) -> (String, String, u64, Vec<String>) {
        let _ = (account, min_ttl);
        ("x".repeat(30), "Bearer".into(), 1_800_000_000, scopes)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn measure(mut call: impl FnMut()) -> (Duration, Duration, Duration) {
    for _ in 0..WARMUP {
        call();
    }
    let mut samples = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        call();
        samples.push(t.elapsed());
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / N as u32;
    (percentile(&samples, 0.5), percentile(&samples, 0.99), mean)
}

fn main() {
    let server = AuthServer::start(AuthServerOptions::default()).expect("authorization server");
    let ss = SecretService::start().expect("secret service");
    let d = Daemon::start(&ss, Some(tokenbroker_e2e::daemon::BENCH_CONFIG)).expect("tokenbrokerd");
    d.add_dot_provider(&server, &["read"]);
    d.add_dot_account("me", ALICE_USERNAME);
    d.login("me", ALICE_PASSWORD);
    let me = std::env::current_exe().expect("own path");
    d.cli_ok(
        &["allow", "me", "--app", me.to_str().expect("utf-8 path")],
        None,
    );

    let _echo = zbus::blocking::connection::Builder::address(ss.bus_address())
        .and_then(|b| b.name("io.tokenbroker.Bench"))
        .and_then(|b| b.serve_at("/io/tokenbroker/Bench", Echo))
        .and_then(|b| b.build())
        .expect("echo service");
    let conn = zbus::blocking::connection::Builder::address(ss.bus_address())
        .and_then(|b| b.build())
        .expect("client connection");
    let args = ("me", vec!["read"], 0u32);
    type Reply = (String, String, u64, Vec<String>);
    let get_token = || {
        let m = conn
            .call_method(
                Some("io.tokenbroker.Broker1"),
                "/io/tokenbroker/Broker1",
                Some("io.tokenbroker.Broker1"),
                "GetToken",
                &args,
            )
            .expect("GetToken");
        let r: Reply = m.body().deserialize().expect("reply");
        assert!(!r.0.is_empty());
    };
    let echo = || {
        let m = conn
            .call_method(
                Some("io.tokenbroker.Bench"),
                "/io/tokenbroker/Bench",
                Some("io.tokenbroker.Bench1"),
                "Echo",
                &args,
            )
            .expect("Echo");
        let r: Reply = m.body().deserialize().expect("reply");
        assert!(!r.0.is_empty());
    };
    let (e50, e99, emean) = measure(echo);
    let (g50, g99, gmean) = measure(get_token);
    let us = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
    println!("| call (D-Bus, {N} sequential) | p50 µs | p99 µs | mean µs |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| raw zbus echo (same signature) | {} | {} | {} |",
        us(e50),
        us(e99),
        us(emean)
    );
    println!(
        "| cached GetToken | {} | {} | {} |",
        us(g50),
        us(g99),
        us(gmean)
    );
    let ratio = g50.as_secs_f64() / e50.as_secs_f64();
    println!(
        "\np50 ratio GetToken / echo: {ratio:.2} (target at most 1.5: {})",
        if ratio <= 1.5 { "met" } else { "NOT met" }
    );
}
