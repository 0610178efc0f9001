//! The audit log: one JSON line per token handed out or refused, appended to a 0600 file and
//! written to the log. Never a token.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokenbroker_client::{AuditQuery, AuditRecord, Decision};

use crate::clock::now_unix;
use crate::policy::Caller;

pub struct Audit {
    path: Option<PathBuf>,
    file: Mutex<Option<std::fs::File>>,
}

/// The default audit file: `$XDG_STATE_HOME/tokenbroker/audit.jsonl`.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("io", "tokenbroker", "tokenbroker")
        .and_then(|d| d.state_dir().map(|s| s.join("audit.jsonl")))
}

impl Audit {
    pub fn open(path: Option<PathBuf>) -> Self {
        let file = path.as_deref().and_then(|p| match open_append(p) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(path = %p.display(), error = %e, "cannot open the audit file: decisions go to the log only");
                None
            }
        });
        Self {
            path,
            file: Mutex::new(file),
        }
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
        };
        match decision {
            Decision::Allow => tracing::info!(
                target: "tokenbroker::audit",
                decision = "allow",
                uid = rec.uid,
                pid = rec.pid,
                exe = %rec.exe,
                hint = caller.client_hint.as_deref().unwrap_or(""),
                transport = %rec.transport,
                account = %rec.account,
                scopes = %rec.scopes.join(" "),
                reason = %rec.reason,
                "access token handed out"
            ),
            Decision::Deny => tracing::warn!(
                target: "tokenbroker::audit",
                decision = "deny",
                uid = rec.uid,
                pid = rec.pid,
                exe = %rec.exe,
                hint = caller.client_hint.as_deref().unwrap_or(""),
                transport = %rec.transport,
                account = %rec.account,
                scopes = %rec.scopes.join(" "),
                reason = %rec.reason,
                "token request denied"
            ),
        }
        let Ok(mut line) = serde_json::to_vec(&rec) else {
            return;
        };
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = file.as_mut() {
            if let Err(e) = f.write_all(&line) {
                tracing::error!(error = %e, "cannot write the audit file");
            }
        }
    }

    /// The newest records at or after `q.since`, oldest first.
    pub fn read(&self, q: &AuditQuery) -> std::io::Result<Vec<AuditRecord>> {
        let Some(path) = &self.path else {
            return Ok(Vec::new());
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let limit = if q.limit == 0 { 1000 } else { q.limit as usize };
        let mut out: Vec<AuditRecord> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<AuditRecord>(l).ok())
            .filter(|r| r.time >= q.since)
            .collect();
        if out.len() > limit {
            out.drain(..out.len() - limit);
        }
        Ok(out)
    }
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

    #[test]
    fn records_append_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit.jsonl");
        let a = Audit::open(Some(path.clone()));
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
}
