//! Benchmark: the rotation window, the time in which a crash of the daemon loses an account:
//! the server has spent the old refresh token (its reply has arrived) and the new one is not yet
//! durable in the secret store. Measured for the keychain (the daemon's own log line
//! `durable_after_us` over real refreshes against django-oauth-toolkit and gnome-keyring) and for
//! the sealed store of system mode (its writes, timed directly), then the kill test: SIGKILL of
//! the daemon at a random moment during a rotating refresh, with the server's grace period for
//! rotated refresh tokens off and on. See docs/SECURITY.md.
//!
//!     cargo build --release --workspace && cargo bench -p tokenbroker-e2e --bench rotation
//!
//! Knobs: TB_ROTATIONS (refreshes timed, default 30), TB_KILLS (kills per grace setting,
//! default 20), TB_KILL_MAX_MS (the latest kill after the request, default 80).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng;
use tokenbroker_client::SecretText;
use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::peers::*;
use tokenbrokerd::store::sealed::{Sealed, StoreKey};
use tokenbrokerd::store::{Backend, SecretKey};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn signed_in(grace: u64) -> anyhow::Result<(AuthServer, SecretService, Daemon)> {
    let server = AuthServer::start(AuthServerOptions {
        access_token_lifetime: Some(3600),
        refresh_grace_secs: Some(grace),
    })?;
    let ss = SecretService::start()?;
    let d = Daemon::start(&ss, None)?;
    d.add_dot_provider(&server, &["read"]);
    d.add_dot_account("me", ALICE_USERNAME);
    d.login("me", ALICE_PASSWORD);
    Ok((server, ss, d))
}

/// The keychain: every refresh of a restarted daemon rotates; its log says how long the new
/// token took to be stored.
fn keychain_window(n: usize) -> anyhow::Result<Vec<f64>> {
    let (_server, _ss, mut d) = signed_in(0)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        d.restart()?;
        d.cli_ok(&["token", "me"], None);
        anyhow::ensure!(d.wait_log("durable_after_us="), "no rotation logged");
        let log = d.log();
        let us: f64 = log
            .rsplit("durable_after_us=")
            .next()
            .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|t| t.parse().ok())
            .context("durable_after_us")?;
        out.push(us / 1000.0);
    }
    Ok(out)
}

/// The sealed store: the write of a refresh token, as the engine makes it (through the blocking
/// pool), timed alone.
fn sealed_window(n: usize) -> anyhow::Result<Vec<f64>> {
    // Under the state directory's file system where there is one, else the temporary one.
    let base = std::path::Path::new("/var/lib");
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base)?
    } else {
        tempfile::tempdir()?
    };
    let store = Sealed::open(&dir.path().join("secrets"), StoreKey::generate()?)?;
    let store = std::sync::Arc::new(store);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let key = SecretKey::RefreshToken {
        account: "me".into(),
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let value = SecretText::new(format!("rotated-refresh-token-{i:04}-{}", "x".repeat(30)));
        let (s, k) = (store.clone(), key.clone());
        let started = Instant::now();
        rt.block_on(async move { tokio::task::spawn_blocking(move || s.set(&k, &value)).await })??;
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}

/// Kill the daemon at a random moment of a rotating refresh; count the accounts lost.
fn kill_test(grace: u64, kills: usize, max_ms: u64) -> anyhow::Result<(usize, usize)> {
    let (_server, _ss, mut d) = signed_in(grace)?;
    let mut lost = 0;
    let mut rng = rand::rng();
    for _ in 0..kills {
        d.restart()?;
        let pid = d.client().status()?.pid;
        let delay = Duration::from_millis(rng.random_range(0..=max_ms));
        let mut cli = std::process::Command::new(tokenbroker_e2e::daemon::bin("tokenbroker"))
            .args(["token", "me"])
            .envs(d.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TOKENBROKER_SOCKET", &d.socket)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        std::thread::sleep(delay);
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let _ = cli.wait();
        d.restart()?;
        let out = d.cli(&["token", "me"], None);
        if !out.status.success() {
            lost += 1;
            d.login("me", ALICE_PASSWORD);
        }
    }
    Ok((lost, kills))
}

fn main() -> anyhow::Result<()> {
    let n = env_usize("TB_ROTATIONS", 30).max(1);
    let kills = env_usize("TB_KILLS", 20).max(1);
    let max_ms = env_usize("TB_KILL_MAX_MS", 80) as u64;
    let mut keychain = keychain_window(n)?;
    let mut sealed = sealed_window(n.max(100))?;
    println!("| store | samples | p50 | p99 | max |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, v) in [
        ("keychain (gnome-keyring)", &mut keychain),
        ("sealed (system mode)", &mut sealed),
    ] {
        let len = v.len();
        let (p50, p99, max) = (percentile(v, 0.5), percentile(v, 0.99), percentile(v, 1.0));
        println!("| {name} | {len} | {p50:.2} ms | {p99:.2} ms | {max:.2} ms |");
    }
    println!();
    println!("| server grace period | kills | accounts lost |");
    println!("| --- | --- | --- |");
    for grace in [0, 60] {
        let (lost, total) = kill_test(grace, kills, max_ms)?;
        println!("| {grace} s | {total} (0 to {max_ms} ms into the refresh) | {lost} |");
    }
    Ok(())
}
