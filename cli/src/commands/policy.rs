//! Per-app rules: `allow`, `deny`, `forget`, `policy`.

use std::path::{Path, PathBuf};

use tokenbroker_client::{AppAccess, AppPolicy};

use super::connect;
use crate::failure::Failure;
use crate::output;

/// An app's absolute path: relative paths are made absolute; the file must exist.
pub fn app_path(p: &Path) -> Result<String, Failure> {
    let abs = std::fs::canonicalize(p)
        .map_err(|e| Failure::Usage(format!("--app {}: {e}", p.display())))?;
    abs.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::Usage(format!("--app {}: not UTF-8", p.display())))
}

fn set(
    socket: &Option<PathBuf>,
    account: &str,
    app: &Path,
    access: AppAccess,
    scopes: Vec<String>,
) -> Result<String, Failure> {
    let exe = app_path(app)?;
    connect(socket)?.set_app_policy(&AppPolicy {
        account: account.to_owned(),
        exe: exe.clone(),
        access,
        scopes,
    })?;
    Ok(exe)
}

pub fn allow(
    socket: &Option<PathBuf>,
    account: &str,
    app: &Path,
    scopes: Vec<String>,
) -> Result<(), Failure> {
    let exe = set(socket, account, app, AppAccess::Allow, scopes)?;
    println!("allowed {exe} for account {account}");
    Ok(())
}

pub fn deny(socket: &Option<PathBuf>, account: &str, app: &Path) -> Result<(), Failure> {
    let exe = set(socket, account, app, AppAccess::Deny, Vec::new())?;
    println!("denied {exe} for account {account}");
    Ok(())
}

pub fn forget(socket: &Option<PathBuf>, account: &str, app: &Path) -> Result<(), Failure> {
    // The app may be gone from disk already: an absolute path is taken as written.
    let exe = if app.is_absolute() {
        app.to_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::Usage(format!("--app {}: not UTF-8", app.display())))?
    } else {
        app_path(app)?
    };
    connect(socket)?.remove_app_policy(account, &exe)?;
    println!("forgot the rule for {exe} on account {account}");
    Ok(())
}

pub fn show(socket: &Option<PathBuf>, account: Option<&str>, json: bool) -> Result<(), Failure> {
    let rules = connect(socket)?.get_policy(account)?;
    if json {
        output::json(&rules);
        return Ok(());
    }
    if rules.is_empty() {
        println!("no app rules: apps other than tokenbroker itself are asked about (or denied when no consent agent runs)");
    }
    for r in rules {
        let access = match r.access {
            AppAccess::Allow => "allow",
            AppAccess::Deny => "deny",
        };
        let scopes = if r.scopes.is_empty() {
            "(account's scopes)".to_owned()
        } else {
            r.scopes.join(" ")
        };
        println!("{}\t{}\t{}\t{}", r.account, access, r.exe, scopes);
    }
    Ok(())
}
