//! The audit log: one JSON line per token handed out or refused, appended to a 0600 file and
//! written to the log. Never a token.
//!
//! It cannot be used to fill the disk: a run of identical denials (the same app, account,
//! scopes and reason) is written once, then once more with the count when the run ends (a
//! different record, ten seconds, or a read); the file is rotated when it reaches its size cap,
//! keeping a bounded number of old files. It is read from the end, so that reading the newest
//! records costs the same however large the file is.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokenbroker_client::{AuditQuery, AuditRecord, Decision};

use crate::clock::now_unix;
use crate::policy::Caller;

/// How large the audit file may grow, and how many rotated files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub keep_files: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 16 * 1024 * 1024,
            keep_files: 3,
        }
    }
}

/// A run of identical denials is summed up at most this late.
const RUN_WINDOW: Duration = Duration::from_secs(10);

/// The default audit file: `$XDG_STATE_HOME/tokenbroker/audit.jsonl`.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("io", "tokenbroker", "tokenbroker")
        .and_then(|d| d.state_dir().map(|s| s.join("audit.jsonl")))
}

pub struct Audit {
    path: Option<PathBuf>,
    limits: Limits,
    state: Mutex<State>,
}

struct State {
    file: Option<std::fs::File>,
    size: u64,
    /// The denial being repeated, and how often since it was written.
    run: Option<Run>,
}

struct Run {
    record: AuditRecord,
    repeated: u64,
    since: Instant,
}

/// Whether two records are the same denial but for their time and pid.
fn same_denial(a: &AuditRecord, b: &AuditRecord) -> bool {
    a.decision == Decision::Deny
        && b.decision == Decision::Deny
        && a.uid == b.uid
        && a.exe == b.exe
        && a.account == b.account
        && a.scopes == b.scopes
        && a.transport == b.transport
        && a.reason == b.reason
}

fn log(rec: &AuditRecord, hint: &str) {
    match rec.decision {
        Decision::Allow => tracing::info!(
            target: "tokenbroker::audit",
            decision = "allow",
            uid = rec.uid,
            pid = rec.pid,
            exe = %rec.exe,
            hint,
            transport = %rec.transport,
            account = %rec.account,
            scopes = %rec.scopes.join(" "),
            reason = %rec.reason,
            "access token handed out"
        ),
        Decision::Deny if rec.repeated > 0 => tracing::warn!(
            target: "tokenbroker::audit",
            decision = "deny",
            uid = rec.uid,
            exe = %rec.exe,
            transport = %rec.transport,
            account = %rec.account,
            repeated = rec.repeated,
            "the same token request was denied again"
        ),
        Decision::Deny => tracing::warn!(
            target: "tokenbroker::audit",
            decision = "deny",
            uid = rec.uid,
            pid = rec.pid,
            exe = %rec.exe,
            hint,
            transport = %rec.transport,
            account = %rec.account,
            scopes = %rec.scopes.join(" "),
            reason = %rec.reason,
            "token request denied"
        ),
    }
}

impl Audit {
    pub fn open(path: Option<PathBuf>, limits: Limits) -> Self {
        let file = path.as_deref().and_then(|p| match open_append(p) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(path = %p.display(), error = %e, "cannot open the audit file: decisions go to the log only");
                None
            }
        });
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Self {
            path,
            limits,
            state: Mutex::new(State {
                file,
                size,
                run: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(
        &self,
        caller: &Caller,
        account: &str,
        scopes: &[String],
        decision: Decision,
        reason: &str,
    ) {
        let rec = AuditRecord {
            time: now_unix(),
            decision,
            uid: caller.uid,
            pid: caller.pid,
            exe: caller.exe_display(),
            account: account.to_owned(),
            scopes: scopes.to_vec(),
            transport: caller.transport.to_owned(),
            reason: reason.to_owned(),
            repeated: 0,
        };
        let mut st = self.lock();
        if let Some(run) = st.run.as_mut() {
            if same_denial(&run.record, &rec) && run.since.elapsed() < RUN_WINDOW {
                run.repeated += 1;
                return;
            }
        }
        self.end_run(&mut st);
        log(&rec, caller.client_hint.as_deref().unwrap_or(""));
        self.write(&mut st, &rec);
        if decision == Decision::Deny {
            st.run = Some(Run {
                record: rec,
                repeated: 0,
                since: Instant::now(),
            });
        }
    }

    /// Write the count of a run of repeated denials that has gone on long enough.
    pub fn tick(&self) {
        let mut st = self.lock();
        if st
            .run
            .as_ref()
            .is_some_and(|r| r.since.elapsed() >= RUN_WINDOW)
        {
            self.end_run(&mut st);
        }
    }

    fn end_run(&self, st: &mut State) {
        let Some(run) = st.run.take() else { return };
        if run.repeated == 0 {
            return;
        }
        let rec = AuditRecord {
            time: now_unix(),
            repeated: run.repeated,
            ..run.record
        };
        log(&rec, "");
        self.write(st, &rec);
    }

    fn write(&self, st: &mut State, rec: &AuditRecord) {
        let Ok(mut line) = serde_json::to_vec(rec) else {
            return;
        };
        line.push(b'\n');
        if st.file.is_some() && st.size + line.len() as u64 > self.limits.max_file_bytes {
            self.rotate(st);
        }
        if let Some(f) = st.file.as_mut() {
            match f.write_all(&line) {
                Ok(()) => st.size += line.len() as u64,
                Err(e) => tracing::error!(error = %e, "cannot write the audit file"),
            }
        }
    }

    /// audit.jsonl -> audit.jsonl.1 -> ... -> audit.jsonl.KEEP (dropped), and a new file.
    fn rotate(&self, st: &mut State) {
        let Some(path) = &self.path else { return };
        st.file = None;
        let keep = self.limits.keep_files;
        if keep == 0 {
            let _ = std::fs::remove_file(path);
        } else {
            let _ = std::fs::remove_file(rotated(path, keep));
            for n in (1..keep).rev() {
                let _ = std::fs::rename(rotated(path, n), rotated(path, n + 1));
            }
            let _ = std::fs::rename(path, rotated(path, 1));
        }
        match open_append(path) {
            Ok(f) => {
                st.file = Some(f);
                st.size = 0;
            }
            Err(e) => tracing::error!(error = %e, "cannot open a new audit file"),
        }
    }

    /// The newest records (at most `q.limit`, default 1000) at or after `q.since`, oldest
    /// first: read from the end of the file, and of the rotated ones if more are wanted.
    pub fn read(&self, q: &AuditQuery) -> std::io::Result<Vec<AuditRecord>> {
        {
            let mut st = self.lock();
            self.end_run(&mut st);
        }
        let Some(path) = &self.path else {
            return Ok(Vec::new());
        };
        let limit = if q.limit == 0 { 1000 } else { q.limit as usize };
        let mut newest_first = Vec::with_capacity(limit.min(4096));
        let files = std::iter::once(path.clone())
            .chain((1..=self.limits.keep_files).map(|n| rotated(path, n)));
        for file in files {
            let done = read_back(&file, q.since, limit, &mut newest_first)?;
            if done {
                break;
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Read `path` backwards, a block at a time, pushing records newest first until `limit` are
/// found or one older than `since` is met. Returns whether the reading is done.
fn read_back(
    path: &Path,
    since: u64,
    limit: usize,
    out: &mut Vec<AuditRecord>,
) -> std::io::Result<bool> {
    const BLOCK: u64 = 64 * 1024;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut end = f.metadata()?.len();
    // Bytes of a line that began before the block read last.
    let mut carry: Vec<u8> = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let mut block = vec![0u8; (end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut block)?;
        block.extend_from_slice(&carry);
        let mut lines: Vec<&[u8]> = block.split(|b| *b == b'\n').collect();
        // The first piece may be the end of a line that starts in the block before.
        carry = if start > 0 {
            lines.remove(0).to_vec()
        } else {
            Vec::new()
        };
        for line in lines.into_iter().rev().filter(|l| !l.is_empty()) {
            let Ok(rec) = serde_json::from_slice::<AuditRecord>(line) else {
                continue;
            };
            if rec.time < since {
                return Ok(true);
            }
            out.push(rec);
            if out.len() >= limit {
                return Ok(true);
            }
        }
        end = start;
    }
    Ok(false)
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        crate::files::create_private_dir(dir)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn app(exe: &str) -> Caller {
        let mut c = Caller::internal();
        c.exe = Some(PathBuf::from(exe));
        c
    }

    #[test]
    fn records_append_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit.jsonl");
        let a = Audit::open(Some(path.clone()), Limits::default());
        let c = Caller::internal();
        a.record(&c, "me", &["read".into()], Decision::Allow, "policy");
        a.record(&c, "me", &["write".into()], Decision::Deny, "no");
        let all = a.read(&AuditQuery::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].decision, Decision::Deny);
        let last = a.read(&AuditQuery { since: 0, limit: 1 }).unwrap();
        assert_eq!(last[0].reason, "no");
        assert!(a
            .read(&AuditQuery {
                since: u64::MAX,
                limit: 0
            })
            .unwrap()
            .is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn a_run_of_identical_denials_is_written_once_with_its_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let a = Audit::open(Some(path.clone()), Limits::default());
        let flood = app("/usr/bin/flood");
        for _ in 0..10_000 {
            a.record(&flood, "me", &[], Decision::Deny, "no policy");
        }
        a.record(
            &app("/usr/bin/other"),
            "me",
            &[],
            Decision::Deny,
            "no policy",
        );
        let all = a.read(&AuditQuery::default()).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(
            (all[0].exe.as_str(), all[0].repeated),
            ("/usr/bin/flood", 0)
        );
        assert_eq!(
            (all[1].exe.as_str(), all[1].repeated),
            ("/usr/bin/flood", 9_999)
        );
        assert_eq!(all[2].exe, "/usr/bin/other");
        assert!(std::fs::metadata(&path).unwrap().len() < 2_000);
    }

    #[test]
    fn the_file_is_rotated_at_its_cap_and_old_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let limits = Limits {
            max_file_bytes: 4_096,
            keep_files: 2,
        };
        let a = Audit::open(Some(path.clone()), limits);
        for n in 0..2_000 {
            a.record(
                &Caller::internal(),
                &format!("acct{n}"),
                &[],
                Decision::Allow,
                "ok",
            );
        }
        let mut total = 0;
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len <= 4_096, "{} is {len} bytes", p.display());
            total += len;
        }
        assert!(!rotated(&path, 3).exists());
        assert!(total <= 3 * 4_096);
        // The newest records are read across the files, newest last.
        let recent = a
            .read(&AuditQuery {
                since: 0,
                limit: 50,
            })
            .unwrap();
        assert_eq!(recent.len(), 50);
        assert_eq!(recent[49].account, "acct1999");
        assert_eq!(recent[0].account, "acct1950");
    }

    #[test]
    fn reading_from_the_end_of_a_large_file_finds_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut text = String::new();
        for n in 0..20_000u64 {
            let rec = AuditRecord {
                time: 1_000 + n,
                decision: Decision::Allow,
                uid: 1,
                pid: None,
                exe: "/x".into(),
                account: format!("a{n}"),
                scopes: vec![],
                transport: "socket".into(),
                reason: "r".repeat(40),
                repeated: 0,
            };
            text.push_str(&serde_json::to_string(&rec).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let a = Audit::open(Some(path), Limits::default());
        let got = a.read(&AuditQuery { since: 0, limit: 3 }).unwrap();
        let names: Vec<&str> = got.iter().map(|r| r.account.as_str()).collect();
        assert_eq!(names, ["a19997", "a19998", "a19999"]);
        let got = a
            .read(&AuditQuery {
                since: 1_000 + 19_990,
                limit: 0,
            })
            .unwrap();
        assert_eq!(got.len(), 10);
    }
}
