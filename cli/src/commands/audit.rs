//! `tokenbroker audit`: every token handed out and every denial.

use std::path::PathBuf;

use tokenbroker_client::{AuditQuery, Decision};

use super::connect;
use crate::failure::Failure;
use crate::output;

pub fn show(socket: &Option<PathBuf>, since: Option<&str>, json: bool) -> Result<(), Failure> {
    let since = match since {
        Some(t) => parse_since(t).ok_or_else(|| {
            Failure::Usage(format!(
                "--since {t:?}: use unix seconds or an age like 90s, 15m, 2h, 7d"
            ))
        })?,
        None => 0,
    };
    let records = connect(socket)?.read_audit(&AuditQuery { since, limit: 0 })?;
    for r in &records {
        if json {
            output::json_line(r);
            continue;
        }
        let d = match (r.decision, r.repeated) {
            (Decision::Allow, _) => "allow".to_owned(),
            (Decision::Deny, 0) => "deny".to_owned(),
            (Decision::Deny, n) => format!("deny x{n} more"),
        };
        println!(
            "{}\t{d}\tuid {}\tpid {}\t{}\t{}\t[{}]\t{}\t{}",
            r.time,
            r.uid,
            output::pid(r.pid),
            r.exe,
            r.account,
            r.scopes.join(" "),
            r.transport,
            r.reason
        );
    }
    Ok(())
}

/// Unix seconds, or an age like 90s, 15m, 2h, 7d before now.
pub fn parse_since(t: &str) -> Option<u64> {
    if let Ok(n) = t.parse::<u64>() {
        return Some(n);
    }
    let (num, unit) = t.split_at(t.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(output::now_unix().saturating_sub(secs))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn since_parses_times_and_ages() {
        assert_eq!(parse_since("1700000000"), Some(1_700_000_000));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let h = parse_since("2h").unwrap();
        assert!((now - 7200..=now - 7199).contains(&h), "{h} vs {now}");
        for bad in ["", "h", "2x", "-1h", "1.5h"] {
            assert_eq!(parse_since(bad), None, "{bad:?}");
        }
    }
}
