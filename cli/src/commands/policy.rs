//! Per-app rules: `allow`, `deny`, `forget`, `policy`.

use std::path::{Path, PathBuf};

use tokenbroker_client::{AppAccess, AppPolicy};

use super::connect;
use crate::failure::Failure;
use crate::output;

/// An app's absolute path: a bare name (no `/`) is looked up on PATH, as a shell would run it,
/// and what it resolved to is said on standard error; relative paths are made absolute; the
/// file must exist.
pub fn app_path(p: &Path) -> Result<String, Failure> {
    let bare = p.components().count() == 1 && !p.as_os_str().to_string_lossy().contains('/');
    let found;
    let p = if bare {
        found = on_path(p, std::env::var_os("PATH").as_deref()).ok_or_else(|| {
            Failure::Usage(format!(
                "--app {}: no executable of that name on PATH; give its path",
                p.display()
            ))
        })?;
        eprintln!(
            "tokenbroker: --app {} is {} (from PATH)",
            p.display(),
            found.display()
        );
        found.as_path()
    } else {
        p
    };
    let abs = std::fs::canonicalize(p)
        .map_err(|e| Failure::Usage(format!("--app {}: {e}", p.display())))?;
    abs.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::Usage(format!("--app {}: not UTF-8", p.display())))
}

/// The first executable file named `name` in the folders of `path` (a PATH value).
fn on_path(name: &Path, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|c| std::fs::metadata(c).is_ok_and(|m| m.is_file() && executable(&m)))
}

#[cfg(unix)]
fn executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn executable(_m: &std::fs::Metadata) -> bool {
    true
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_is_the_first_executable_of_that_name_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        // In a: not executable; in b: executable.
        std::fs::write(a.path().join("tool"), "").unwrap();
        std::fs::write(b.path().join("tool"), "").unwrap();
        std::fs::set_permissions(
            b.path().join("tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        assert_eq!(
            on_path(Path::new("tool"), Some(&path)),
            Some(b.path().join("tool"))
        );
        assert_eq!(on_path(Path::new("nothing"), Some(&path)), None);
        // Relative PATH entries (the current folder) are not searched.
        assert_eq!(
            on_path(Path::new("tool"), Some(std::ffi::OsStr::new("."))),
            None
        );
    }
}
