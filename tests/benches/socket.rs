//! Benchmark: cached GetToken over the daemon's Unix socket, next to a raw Unix-socket JSON-RPC
//! echo server in this process, measured in the same run; then throughput with 64 concurrent
//! clients and the daemon's memory (idle RSS, peak VmHWM). See docs/PERFORMANCE.md.
//!
//! The bench starts the built binaries, which `cargo bench` does not build (they belong to other
//! packages), so build them in the same profile first:
//!
//!     cargo build --release --workspace && cargo bench -p tokenbroker-e2e --bench socket
//!
//! Knobs (environment): TB_BENCH_N (sequential requests per server, default 20000),
//! TB_BENCH_CLIENTS (concurrent clients, default 64), TB_BENCH_M (requests per client, default
//! 2000). Prints markdown tables to stdout.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tokenbroker_client::Client;
use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::peers::*;

const ACCOUNT: &str = "me";
const WARMUP: usize = 2_000;
/// Sequential samples are taken in alternating chunks (echo, daemon, echo, ...) so that drift
/// in the machine's state hits both sides alike.
const CHUNK: usize = 1_000;
/// One app may hold at most 200 connections (BENCH_CONFIG); the bench holds clients + 1.
const DAEMON_MAX_CONNECTIONS: usize = 200;
/// Bound on the echo server's accept loop.
const ECHO_MAX_CONNECTIONS: usize = 1_024;
const IDLE_SETTLE: Duration = Duration::from_secs(2);
const MIB: f64 = 1024.0 * 1024.0;

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a count")),
        Err(_) => Ok(default),
    }
}

// ---------------------------------------------------------------------------
// The baseline: a raw JSON-RPC echo server on a Unix socket, one thread per connection.

struct EchoServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<Vec<JoinHandle<()>>>>,
    _dir: tempfile::TempDir,
}

impl EchoServer {
    /// Answers `Hello` with a HelloReply and every other request with `token_result`, so that the
    /// very same `tokenbroker_client::Client` (and its parsing) is used against both servers.
    fn start(token_result: Value) -> anyhow::Result<EchoServer> {
        let dir = tempfile::Builder::new()
            .prefix("tb-bench-echo-")
            .tempdir()?;
        let path = dir.path().join("echo.sock");
        let listener = UnixListener::bind(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let token_result = Arc::new(token_result);
        let accept = {
            let stop = stop.clone();
            thread::Builder::new()
                .name("echo-accept".into())
                .spawn(move || {
                    let mut conns = Vec::new();
                    for _ in 0..ECHO_MAX_CONNECTIONS {
                        let Ok((stream, _)) = listener.accept() else {
                            break;
                        };
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let token_result = token_result.clone();
                        conns.push(thread::spawn(move || {
                            echo_connection(stream, &token_result)
                        }));
                    }
                    conns
                })?
        };
        Ok(EchoServer {
            path,
            stop,
            accept: Some(accept),
            _dir: dir,
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop; it sees the flag and returns its connection threads, which end
        // at their client's EOF (or their read timeout).
        let _ = UnixStream::connect(&self.path);
        if let Some(accept) = self.accept.take() {
            if let Ok(conns) = accept.join() {
                for c in conns {
                    let _ = c.join();
                }
            }
        }
    }
}

fn echo_connection(stream: UnixStream, token_result: &Value) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(8192, stream);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Ok(req) = serde_json::from_slice::<Value>(&line) else {
            return;
        };
        let result = if req["method"] == "Hello" {
            json!({"protocol": "1.0", "daemon_version": "echo"})
        } else if req["method"] == ECHO_CPU_METHOD {
            // Not part of any measured request: the CPU time this connection's thread used.
            json!(thread_cpu_ns())
        } else {
            token_result.clone()
        };
        let Ok(mut out) =
            serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": req["id"], "result": result}))
        else {
            return;
        };
        out.push(b'\n');
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}

/// Asks the echo server for the CPU time of the connection's thread.
const ECHO_CPU_METHOD: &str = "BenchCpu";

/// The calling thread's time on the CPU, in ns (first field of its schedstat).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Per live thread of `pid`: tid -> (name, ns on the CPU, context switches).
fn thread_snapshot(pid: u32) -> BTreeMap<u32, (String, u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let p = e.path();
        let cpu = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .sum();
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        out.insert(tid, (name.trim().to_owned(), cpu, switches));
    }
    out
}

/// CPU µs and context switches per request between two snapshots, in total and per thread
/// (threads that used at least 0.1 µs per request).
fn per_request(
    before: &BTreeMap<u32, (String, u64, u64)>,
    after: &BTreeMap<u32, (String, u64, u64)>,
    requests: usize,
) -> (f64, f64, String) {
    let n = requests as f64;
    let (mut cpu, mut sw) = (0.0, 0.0);
    let mut threads = Vec::new();
    for (tid, (name, c1, s1)) in after {
        let (c0, s0) = before.get(tid).map_or((0, 0), |(_, c, s)| (*c, *s));
        let (c, s) = (
            c1.saturating_sub(c0) as f64 / n / 1e3,
            s1.saturating_sub(s0) as f64 / n,
        );
        cpu += c;
        sw += s;
        if c >= 0.1 {
            threads.push(format!("{name}[{tid}] {c:.1} µs / {s:.2} cs"));
        }
    }
    (cpu, sw, threads.join(", "))
}

// ---------------------------------------------------------------------------
// Statistics

#[derive(Debug, Clone, Copy)]
struct Stats {
    n: usize,
    p50: f64,
    p99: f64,
    mean: f64,
    max: f64,
}

/// Nanosecond samples to microsecond statistics (nearest-rank percentiles).
fn stats(samples: &mut [u64]) -> Stats {
    assert!(!samples.is_empty());
    samples.sort_unstable();
    let n = samples.len();
    let rank = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1e3;
    let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    Stats {
        n,
        p50: rank(0.50),
        p99: rank(0.99),
        mean: sum as f64 / n as f64 / 1e3,
        max: samples[n - 1] as f64 / 1e3,
    }
}

fn timed_calls(
    client: &mut Client,
    scopes: &[String],
    count: usize,
    out: &mut Vec<u64>,
) -> anyhow::Result<()> {
    for _ in 0..count {
        let t = Instant::now();
        let reply = client.get_token(ACCOUNT, scopes, 0)?;
        out.push(t.elapsed().as_nanos() as u64);
        if reply.access_token.is_empty() {
            bail!("empty access token");
        }
    }
    Ok(())
}

struct Load {
    requests: usize,
    secs: f64,
    latency: Stats,
}

impl Load {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
}

/// `clients` threads, each with its own connection (opened before the clock starts), each doing
/// `per_client` GetToken calls.
fn load(
    socket: &Path,
    scopes: &[String],
    clients: usize,
    per_client: usize,
) -> anyhow::Result<Load> {
    let barrier = Barrier::new(clients + 1);
    let (secs, results) = thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let barrier = &barrier;
                s.spawn(move || -> anyhow::Result<Vec<u64>> {
                    let connected = Client::connect(socket, &format!("bench-{i}"));
                    // Everyone reaches the barrier, even a client that failed to connect.
                    barrier.wait();
                    let mut client = connected?;
                    let mut samples = Vec::with_capacity(per_client);
                    timed_calls(&mut client, scopes, per_client, &mut samples)?;
                    Ok(samples)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("client thread panicked")))
            })
            .collect();
        (start.elapsed().as_secs_f64(), results)
    });
    let mut all = Vec::with_capacity(clients * per_client);
    for r in results {
        all.extend(r?);
    }
    Ok(Load {
        requests: all.len(),
        secs,
        latency: stats(&mut all),
    })
}

// ---------------------------------------------------------------------------
// /proc

fn proc_kv(pid: u32, file: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .with_context(|| format!("read /proc/{pid}/{file}"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// A `kB` field of /proc/<pid>/status or smaps_rollup, in bytes.
fn kb_field(map: &BTreeMap<String, String>, key: &str) -> u64 {
    map.get(key)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[derive(Debug, Clone)]
struct Mem {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
    shmem: u64,
    locked: u64,
    threads: String,
}

fn mem(pid: u32) -> anyhow::Result<Mem> {
    let st = proc_kv(pid, "status")?;
    Ok(Mem {
        rss: kb_field(&st, "VmRSS"),
        hwm: kb_field(&st, "VmHWM"),
        anon: kb_field(&st, "RssAnon"),
        file: kb_field(&st, "RssFile"),
        shmem: kb_field(&st, "RssShmem"),
        locked: kb_field(&st, "VmLck"),
        threads: st.get("Threads").cloned().unwrap_or_default(),
    })
}

/// One row of the mapping breakdown.
#[derive(Debug, Default, Clone)]
struct MapGroup {
    name: String,
    count: usize,
    rss: u64,
    /// Size of the accessible (not PROT_NONE) mappings.
    accessible: u64,
}

/// /proc/<pid>/smaps grouped by file name; anonymous mappings are grouped by their size and
/// permissions (thread stacks and malloc arenas have telling sizes). Also returns the total size
/// of the accessible mappings: what mlockall(MCL_CURRENT) makes resident.
fn smaps_groups(pid: u32) -> anyhow::Result<(Vec<MapGroup>, u64)> {
    struct Map {
        path: String,
        perms: String,
        size: u64,
        rss: u64,
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut maps: Vec<Map> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        let kb = || {
            words
                .clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: address perms offset dev inode [path]
            let perms = words.next().unwrap_or("").to_owned();
            let path = words.skip(3).collect::<Vec<_>>().join(" ");
            maps.push(Map {
                path,
                perms,
                size: 0,
                rss: 0,
            });
        } else if let Some(m) = maps.last_mut() {
            match first {
                "Size:" => m.size = kb(),
                "Rss:" => m.rss = kb(),
                _ => {}
            }
        }
    }
    let mut by: BTreeMap<String, MapGroup> = BTreeMap::new();
    let mut accessible_total = 0;
    for m in &maps {
        let accessible = !m.perms.starts_with("---");
        let name = if m.path.is_empty() {
            format!("[anon {} {} KiB]", m.perms, m.size / 1024)
        } else {
            m.path.rsplit('/').next().unwrap_or(&m.path).to_owned()
        };
        let g = by.entry(name.clone()).or_insert_with(|| MapGroup {
            name,
            ..MapGroup::default()
        });
        g.count += 1;
        g.rss += m.rss;
        if accessible {
            g.accessible += m.size;
            accessible_total += m.size;
        }
    }
    let mut v: Vec<_> = by.into_values().collect();
    v.sort_by(|a, b| b.rss.cmp(&a.rss).then(b.accessible.cmp(&a.accessible)));
    Ok((v, accessible_total))
}

/// The names of the process's threads, counted: "tokio-runtime-w x2, ...".
fn thread_names(pid: u32) -> String {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            *names.entry(comm.trim().to_owned()).or_default() += 1;
        }
    }
    names
        .iter()
        .map(|(n, c)| format!("{n} x{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn memlock_limit(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max locked memory"))
                .map(|l| {
                    l["Max locked memory".len()..]
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
        })
        .unwrap_or_else(|| "?".into())
}

fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / MIB)
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**NOT met**"
    }
}

/// Sum of the token endpoint's request counters of the authorization server.
fn token_requests(server: &AuthServer) -> u64 {
    server.counters()["token"]
        .as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpus} CPUs ({cpu}), MemTotal {mem}, kernel {}",
        kernel.trim()
    )
}

// ---------------------------------------------------------------------------

fn main() {
    if let Err(e) = run() {
        eprintln!("socket bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let n = env_usize("TB_BENCH_N", 20_000)?.max(1);
    let clients = env_usize("TB_BENCH_CLIENTS", 64)?.max(1);
    let per_client = env_usize("TB_BENCH_M", 2_000)?.max(1);
    if clients + 1 > DAEMON_MAX_CONNECTIONS {
        bail!("TB_BENCH_CLIENTS={clients}: the daemon serves at most {DAEMON_MAX_CONNECTIONS} connections");
    }
    // The daemon and CLI come from this profile's target folder (see tokenbroker_e2e::daemon::bin);
    // say how to build them rather than fail deep in the harness.
    let exe = std::env::current_exe()?;
    let bin_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("target folder")?;
    for b in ["tokenbrokerd", "tokenbroker"] {
        if !bin_dir.join(b).is_file() {
            bail!(
                "{} is missing: build the binaries in the bench's profile first: cargo build --release --workspace",
                bin_dir.join(b).display()
            );
        }
    }

    eprintln!("starting the authorization server, the Secret Service and tokenbrokerd ...");
    // Declaration order is the reverse of drop order: the daemon stops before its peers.
    let server = AuthServer::start(AuthServerOptions {
        access_token_lifetime: Some(3600),
        ..Default::default()
    })?;
    let ss = SecretService::start()?;
    let daemon = Daemon::start(&ss, Some(tokenbroker_e2e::daemon::BENCH_CONFIG))?;
    let mut control = daemon.client();
    let pid = control.status()?.pid;
    let mem_started = mem(pid)?;

    daemon.add_dot_provider(&server, &["read"]);
    daemon.add_dot_account(ACCOUNT, ALICE_USERNAME);
    daemon.login(ACCOUNT, ALICE_PASSWORD);
    // Per-app policy: this bench executable may have the account's tokens without a consent
    // prompt (the echo server has no policy).
    let exe_text = exe.to_str().context("the bench's path is not UTF-8")?;
    daemon.cli_ok(
        &["allow", ACCOUNT, "--app", exe_text, "--scope", "read"],
        None,
    );
    let scopes = vec!["read".to_owned()];
    let warm = control.get_token(ACCOUNT, &scopes, 0)?;
    let token_result = serde_json::to_value(&warm)?;
    thread::sleep(IDLE_SETTLE);
    let mem_idle = mem(pid)?;
    let rollup = proc_kv(pid, "smaps_rollup").unwrap_or_default();
    let (mappings, accessible) = smaps_groups(pid).unwrap_or_default();
    let idle_threads = thread_names(pid);
    let memlock = memlock_limit(pid);
    let log = daemon.log();
    let memory_locked = log
        .lines()
        .find(|l| l.contains("hardened"))
        .and_then(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("memory_locked="))
        })
        .unwrap_or("memory_locked=?")
        .to_owned();

    let echo = EchoServer::start(token_result)?;

    // 1. Sequential latency, one persistent connection per server.
    eprintln!("sequential latency: {n} requests per server ...");
    server.reset_counters();
    let mut echo_client = Client::connect(&echo.path, "bench-echo")?;
    let mut daemon_client = daemon.client();
    let (mut echo_samples, mut daemon_samples) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut discard = Vec::with_capacity(WARMUP);
    timed_calls(&mut echo_client, &scopes, WARMUP, &mut discard)?;
    discard.clear();
    timed_calls(&mut daemon_client, &scopes, WARMUP, &mut discard)?;
    let log_lines_before = daemon.log().lines().count();
    let audit_file = daemon.state_dir.join("tokenbroker").join("audit.jsonl");
    let audit_size = || std::fs::metadata(&audit_file).map_or(0, |m| m.len());
    let audit_before = audit_size();
    let load_before = loadavg();
    let echo_cpu_before: u64 = echo_client.call(ECHO_CPU_METHOD, &json!({}))?;
    let daemon_threads_before = thread_snapshot(pid);
    let mut chunk_ratios = Vec::with_capacity(n.div_ceil(CHUNK));
    let mut left = n;
    while left > 0 {
        let k = left.min(CHUNK);
        timed_calls(&mut echo_client, &scopes, k, &mut echo_samples)?;
        timed_calls(&mut daemon_client, &scopes, k, &mut daemon_samples)?;
        let tail = |v: &[u64]| stats(&mut v[v.len() - k..].to_vec()).p50;
        chunk_ratios.push(tail(&daemon_samples) / tail(&echo_samples));
        left -= k;
    }
    chunk_ratios.sort_by(f64::total_cmp);
    let log_lines_per_call = (daemon.log().lines().count() - log_lines_before) as f64 / n as f64;
    let audit_bytes_per_call = audit_size().saturating_sub(audit_before) as f64 / n as f64;
    let (daemon_cpu_seq, daemon_cs_seq, daemon_threads_seq) =
        per_request(&daemon_threads_before, &thread_snapshot(pid), n);
    let echo_cpu_after: u64 = echo_client.call(ECHO_CPU_METHOD, &json!({}))?;
    let echo_cpu_seq = echo_cpu_after.saturating_sub(echo_cpu_before) as f64 / n as f64 / 1e3;
    drop((echo_client, daemon_client));
    let (echo_seq, daemon_seq) = (stats(&mut echo_samples), stats(&mut daemon_samples));

    // 2. Throughput with concurrent clients.
    eprintln!("throughput: {clients} clients x {per_client} requests per server ...");
    let echo_load = load(&echo.path, &scopes, clients, per_client)?;
    let daemon_threads_before = thread_snapshot(pid);
    let daemon_load = load(&daemon.socket, &scopes, clients, per_client)?;
    let (daemon_cpu_load, daemon_cs_load, _) = per_request(
        &daemon_threads_before,
        &thread_snapshot(pid),
        daemon_load.requests,
    );
    let mem_loaded = mem(pid)?;
    let token_hits = token_requests(&server);
    drop(echo);

    // --- Report
    let ratio = daemon_seq.p50 / echo_seq.p50;
    println!("## tokenbroker socket benchmark\n");
    println!("Machine: {}\n", machine());
    println!(
        "Load average (/proc/loadavg) before the sequential run: {load_before}; after the whole run: {}\n",
        loadavg()
    );
    println!(
        "Daemon: {} (pid {pid}), {memory_locked}, RLIMIT_MEMLOCK {memlock}; log lines written per GetToken: {log_lines_per_call:.2}, audit file bytes per GetToken: {audit_bytes_per_call:.0}; token endpoint requests during the measurements: {token_hits} (0 = every GetToken was served from the cache)\n",
        bin_dir.join("tokenbrokerd").display()
    );
    println!("### Sequential latency: one persistent connection, {n} requests each (chunks of {CHUNK}, interleaved; {WARMUP} warm-up requests each)\n");
    println!("| server | requests | p50 µs | p99 µs | mean µs | max µs |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, s) in [
        (
            "raw JSON-RPC echo (thread per connection, serde_json)",
            echo_seq,
        ),
        ("tokenbrokerd cached GetToken", daemon_seq),
    ] {
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.n, s.p50, s.p99, s.mean, s.max
        );
    }
    println!(
        "\np50 ratio GetToken / echo: **{ratio:.2}** (target <= 1.5: {}); p99 ratio {:.2}; mean ratio {:.2}\n",
        met(ratio <= 1.5),
        daemon_seq.p99 / echo_seq.p99,
        daemon_seq.mean / echo_seq.mean
    );
    println!(
        "p50 ratio per chunk of {CHUNK} (echo and GetToken chunks taken back to back), over {} chunks: min {:.2}, median {:.2}, max {:.2}\n",
        chunk_ratios.len(),
        chunk_ratios[0],
        chunk_ratios[chunk_ratios.len() / 2],
        chunk_ratios[chunk_ratios.len() - 1]
    );
    println!(
        "Server CPU time per request (thread schedstat; independent of where the scheduler places the threads): echo {echo_cpu_seq:.1} µs, tokenbrokerd {daemon_cpu_seq:.1} µs (ratio {:.2}); tokenbrokerd context switches per request {daemon_cs_seq:.2}; by thread: {daemon_threads_seq}.\n",
        daemon_cpu_seq / echo_cpu_seq
    );
    println!("### Throughput: {clients} concurrent clients, each its own connection, {per_client} requests each\n");
    println!("| server | requests | seconds | requests/s | p50 µs | p99 µs |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, l) in [
        ("raw JSON-RPC echo", &echo_load),
        ("tokenbrokerd cached GetToken", &daemon_load),
    ] {
        println!(
            "| {name} | {} | {:.2} | {:.0} | {:.1} | {:.1} |",
            l.requests,
            l.secs,
            l.rps(),
            l.latency.p50,
            l.latency.p99
        );
    }
    println!(
        "\nGetToken throughput is {:.0}% of the echo server's.\n",
        100.0 * daemon_load.rps() / echo_load.rps()
    );
    println!("tokenbrokerd CPU time per GetToken under this load: {daemon_cpu_load:.1} µs; context switches per GetToken {daemon_cs_load:.2}.\n");
    println!("### tokenbrokerd memory (/proc/{pid}/status)\n");
    println!("| when | VmRSS | RssAnon | RssFile | RssShmem | VmLck | VmHWM | threads |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (when, m) in [
        ("started, no accounts", &mem_started),
        ("idle: signed in, 1 GetToken, 2 s settle", &mem_idle),
        ("after the load", &mem_loaded),
    ] {
        println!(
            "| {when} | {} | {} | {} | {} | {} | {} | {} |",
            mib(m.rss),
            mib(m.anon),
            mib(m.file),
            mib(m.shmem),
            mib(m.locked),
            mib(m.hwm),
            m.threads
        );
    }
    println!(
        "\nIdle RSS {} (target <= 10 MiB: {}); peak VmHWM under load {}.\n",
        mib(mem_idle.rss),
        met(mem_idle.rss <= 10 * 1024 * 1024),
        mib(mem_loaded.hwm)
    );
    println!("### Idle memory breakdown\n");
    println!(
        "smaps_rollup: Rss {}, Pss {}, Anonymous {}, Shared_Clean {}, Private_Clean {}, Private_Dirty {}, Locked {}.",
        mib(kb_field(&rollup, "Rss")),
        mib(kb_field(&rollup, "Pss")),
        mib(kb_field(&rollup, "Anonymous")),
        mib(kb_field(&rollup, "Shared_Clean")),
        mib(kb_field(&rollup, "Private_Clean")),
        mib(kb_field(&rollup, "Private_Dirty")),
        mib(kb_field(&rollup, "Locked")),
    );
    println!(
        "Accessible (not PROT_NONE) mappings total {}: what mlockall(MCL_CURRENT) would make resident at that moment.\n",
        mib(accessible)
    );
    println!("Threads when idle: {idle_threads}.\n");
    println!("| mapping (anonymous: perms, size each) | count | Rss | accessible size |");
    println!("| --- | ---: | ---: | ---: |");
    for g in mappings
        .iter()
        .filter(|g| g.rss > 0 || g.accessible >= 1024 * 1024)
        .take(14)
    {
        println!(
            "| {} | {} | {} | {} |",
            g.name,
            g.count,
            mib(g.rss),
            mib(g.accessible)
        );
    }
    println!();

    drop(control);
    drop(daemon);
    drop(ss);
    drop(server);
    Ok(())
}
