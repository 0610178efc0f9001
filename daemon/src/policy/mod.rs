//! Which app may have which account's tokens.
//!
//! Apps are named by the absolute path of their executable, as the kernel reports it for the
//! calling process (`/proc/PID/exe`, reached through a pidfd where one is available); a name the
//! caller declares itself is only a hint in the log. The `tokenbroker` CLI and the
//! `tokenbroker-tray` binary installed beside this daemon are the user's own tools and may have
//! any of the user's tokens. Any other app needs a rule in the account's policy, or the user's
//! consent. See docs/SECURITY.md for what this does and does not protect against.

use std::path::{Path, PathBuf};

use tokenbroker_client::AppAccess;

pub mod caller;

pub use caller::Caller;

use crate::config::{AccountConfig, ProviderConfig};
use crate::engine::{scope_key, ScopeKey};

/// What to do with a token request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Hand out a token for these scopes; `rule` says why (for the audit log).
    Allow {
        scopes: ScopeKey,
        rule: String,
    },
    Deny(String),
    /// No rule: ask the user.
    Ask {
        scopes: ScopeKey,
    },
}

/// The user's own tools: binaries installed beside the daemon.
#[derive(Debug, Clone, Default)]
pub struct Trusted {
    exes: Vec<PathBuf>,
}

impl Trusted {
    /// These executables.
    pub fn new(exes: Vec<PathBuf>) -> Self {
        Self { exes }
    }

    /// The `tokenbroker` and `tokenbroker-tray` binaries in the daemon's own folder.
    pub fn beside_daemon() -> Self {
        let dir = std::env::current_exe()
            .ok()
            .and_then(|e| e.canonicalize().ok())
            .and_then(|e| e.parent().map(Path::to_path_buf));
        let exes = dir
            .map(|d| vec![d.join("tokenbroker"), d.join("tokenbroker-tray")])
            .unwrap_or_default();
        Self { exes }
    }

    pub fn contains(&self, exe: &Path) -> bool {
        self.exes.iter().any(|t| t == exe)
    }

    /// Whether `caller` is one of the user's own tools: its executable is one of these, seen
    /// from the daemon's namespaces, and it came over the socket.
    ///
    /// Over D-Bus no caller is: the bus tells which process opened a connection, not which one
    /// sends each call, so a process that opened one and then executed the CLI could lend the
    /// CLI's name to a child's calls. The socket checks the sender of every request.
    pub fn is_users_tool(&self, caller: &Caller) -> bool {
        caller.transport != "dbus" && exe_key(caller).is_some_and(|e| self.contains(Path::new(&e)))
    }
}

/// The caller's executable as a policy key, or None when it cannot be trusted: unknown,
/// replaced on disk since the process started (`/proc/PID/exe` then ends in " (deleted)"), or
/// a path of another mount or user namespace.
pub fn exe_key(caller: &Caller) -> Option<String> {
    if caller.foreign.is_some() {
        return None;
    }
    let exe = caller.exe.as_ref()?.to_str()?;
    if exe.ends_with(" (deleted)") || !exe.starts_with('/') {
        return None;
    }
    Some(exe.to_owned())
}

/// Decide a request for `requested` scopes (already defaulted to the account's when the caller
/// named none; `explicit` says whether it named any).
pub fn decide(
    trusted: &Trusted,
    caller: &Caller,
    account: &str,
    acct: &AccountConfig,
    prov: &ProviderConfig,
    requested: &ScopeKey,
    explicit: bool,
) -> Verdict {
    if let Some(ns) = caller.foreign {
        return Verdict::Deny(format!(
            "{} runs in its own {ns}: its path names a file the daemon cannot see, so no rule for a path on this system matches it",
            caller.exe_display()
        ));
    }
    let Some(exe) = exe_key(caller) else {
        return Verdict::Deny(
            "the caller's executable cannot be determined (or was replaced since it started)"
                .into(),
        );
    };
    if trusted.is_users_tool(caller) {
        return Verdict::Allow {
            scopes: requested.clone(),
            rule: "the user's own tokenbroker client".into(),
        };
    }
    let Some(rule) = acct.apps.get(&exe) else {
        return Verdict::Ask {
            scopes: requested.clone(),
        };
    };
    match rule.access {
        AppAccess::Deny => Verdict::Deny(format!(
            "{exe} is denied access to account {account:?} by its policy"
        )),
        AppAccess::Allow => {
            let allowed = if rule.scopes.is_empty() {
                scope_key(acct.default_scopes(prov))
            } else {
                scope_key(&rule.scopes)
            };
            if requested.iter().all(|s| allowed.contains(s)) {
                Verdict::Allow {
                    scopes: requested.clone(),
                    rule: format!("policy allows {exe}"),
                }
            } else if !explicit {
                // No scopes named: the widest the app may have.
                Verdict::Allow {
                    scopes: allowed,
                    rule: format!("policy allows {exe} (its allowed scopes)"),
                }
            } else {
                Verdict::Deny(format!(
                    "{exe} may get at most the scopes [{}] of account {account:?}, and asked for [{}]: widen its policy with `tokenbroker allow {account} --app {exe} --scope ...`",
                    allowed.join(" "),
                    requested.join(" ")
                ))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::AppRule;
    use tokenbroker_client::{ClientAuth, Grant};

    fn caller(exe: &str) -> Caller {
        Caller {
            groups: Vec::new(),
            uid: 1000,
            gid: 1000,
            pid: Some(42),
            exe: Some(PathBuf::from(exe)),
            foreign: None,
            transport: "socket",
            client_hint: None,
        }
    }

    fn fixtures() -> (AccountConfig, ProviderConfig) {
        let mut apps = std::collections::BTreeMap::new();
        apps.insert(
            "/usr/bin/app".to_owned(),
            AppRule {
                access: AppAccess::Allow,
                scopes: vec!["read".into()],
            },
        );
        apps.insert(
            "/usr/bin/evil".to_owned(),
            AppRule {
                access: AppAccess::Deny,
                scopes: vec![],
            },
        );
        apps.insert(
            "/usr/bin/wide".to_owned(),
            AppRule {
                access: AppAccess::Allow,
                scopes: vec![],
            },
        );
        let acct = AccountConfig {
            provider: "p".into(),
            grant: Grant::Password,
            username: Some("u".into()),
            scopes: vec!["read".into(), "write".into()],
            owner: None,
            owner_uid: None,
            apps,
        };
        let prov = ProviderConfig(tokenbroker_client::ProviderSettings {
            token_endpoint: Some("https://x.example/t".into()),
            client_id: "c".into(),
            client_auth: Some(ClientAuth::None),
            ..Default::default()
        });
        (acct, prov)
    }

    fn key(s: &[&str]) -> ScopeKey {
        scope_key(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn rules_decide() {
        let (acct, prov) = fixtures();
        let t = Trusted {
            exes: vec![PathBuf::from("/usr/bin/tokenbroker")],
        };
        let d = |exe: &str, scopes: &[&str], explicit: bool| {
            decide(&t, &caller(exe), "a", &acct, &prov, &key(scopes), explicit)
        };
        assert!(matches!(
            d("/usr/bin/tokenbroker", &["read", "write"], true),
            Verdict::Allow { .. }
        ));
        assert!(matches!(
            d("/usr/bin/app", &["read"], true),
            Verdict::Allow { .. }
        ));
        match d("/usr/bin/app", &["read", "write"], true) {
            Verdict::Deny(m) => assert!(m.contains("at most the scopes [read]"), "{m}"),
            v => panic!("{v:?}"),
        }
        assert_eq!(
            d("/usr/bin/app", &["read", "write"], false),
            Verdict::Allow {
                scopes: key(&["read"]),
                rule: "policy allows /usr/bin/app (its allowed scopes)".into()
            }
        );
        assert!(matches!(
            d("/usr/bin/wide", &["read", "write"], true),
            Verdict::Allow { .. }
        ));
        assert!(matches!(
            d("/usr/bin/evil", &["read"], true),
            Verdict::Deny(_)
        ));
        assert!(
            matches!(d("/tmp/app", &["read"], true), Verdict::Ask { .. }),
            "a copy elsewhere is another app"
        );
        assert!(matches!(
            d("/usr/bin/app (deleted)", &["read"], true),
            Verdict::Deny(_)
        ));
        let mut nobody = caller("/x");
        nobody.exe = None;
        assert!(matches!(
            decide(&t, &nobody, "a", &acct, &prov, &key(&["read"]), true),
            Verdict::Deny(_)
        ));
        // The same path seen from another mount namespace is not the host's file.
        let mut boxed = caller("/usr/bin/tokenbroker");
        boxed.foreign = Some("mount namespace");
        match decide(&t, &boxed, "a", &acct, &prov, &key(&["read"]), true) {
            Verdict::Deny(m) => assert!(m.contains("its own mount namespace"), "{m}"),
            v => panic!("{v:?}"),
        }
    }
}
