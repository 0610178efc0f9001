//! Everything the CLI prints: tables for people, `--json` for scripts. Secrets are printed only
//! where the command exists to print them (`token`), from buffers that are wiped afterwards.

use std::io::Write;

use serde::Serialize;
use tokenbroker_client::{AccountInfo, Grant, SignOutReply, TokenReply};
use zeroize::Zeroize;

use crate::failure::Failure;

/// A value as pretty-printed JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// A value as one JSON line on stdout (for streams: audit records, consent requests).
pub fn json_line<T: Serialize + ?Sized>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(value).unwrap_or_default());
    let _ = out.flush();
}

/// Only the token, or JSON with its type, expiry and scopes. The JSON text is wiped after use.
pub fn token(t: &TokenReply, as_json: bool) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let written = if as_json {
        // The reply type serializes exactly these fields; sized exactly and wiped after use.
        let mut line = tokenbroker_client::protocol::to_line(t)
            .map_err(|e| Failure::Other(format!("cannot encode the token: {e}")))?;
        let r = out.write_all(&line);
        line.zeroize();
        r
    } else {
        writeln!(out, "{}", t.access_token.expose())
    };
    written.map_err(|e| Failure::Other(e.to_string()))
}

pub fn signed_out(account: &str, r: &SignOutReply) {
    if let Some(w) = &r.warning {
        eprintln!("tokenbroker: warning: {w}");
    }
    println!(
        "signed out of {account}{}",
        if r.revoked {
            " (revoked at the server)"
        } else {
            ""
        }
    );
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn accounts(accounts: &[AccountInfo], as_json: bool) {
    if as_json {
        return json(accounts);
    }
    if accounts.is_empty() {
        println!("no accounts: add one with `tokenbroker account add`");
    }
    let now = now_unix();
    for a in accounts {
        let expiry = a
            .expires_at
            .map(|e| format!("token valid {} s more", e.saturating_sub(now)))
            .unwrap_or_else(|| "-".into());
        let who = match (a.grant, a.username.as_deref()) {
            (Grant::ClientCredentials, _) => "(client)",
            (_, Some(u)) => u,
            (_, None) => "-",
        };
        print!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            a.name,
            a.provider,
            who,
            a.grant.as_str(),
            a.state.as_str(),
            expiry
        );
        if let Some(o) = &a.owner {
            print!("\towner={o}");
        }
        match &a.detail {
            Some(d) => println!("\t{d}"),
            None => println!(),
        }
    }
}

/// A pid, or "?" when the kernel gave none.
pub fn pid(p: Option<i32>) -> String {
    p.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
}
