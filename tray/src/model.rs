//! What the tray shows: the link to the daemon, the accounts, the overall state, the menu.
//! Plain data, built without a display, so that it is unit-tested.

use tokenbroker_client::{AccountInfo, AccountState, AuditRecord, Decision, Grant};

/// The tray's view of the daemon.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub link: Link,
    pub accounts: Vec<AccountInfo>,
}

impl PartialEq for Model {
    fn eq(&self, other: &Self) -> bool {
        // `AccountInfo` has no `PartialEq`: compare what the tray shows of it.
        let key = |a: &AccountInfo| {
            (
                a.name.clone(),
                a.provider.clone(),
                a.grant,
                a.username.clone(),
                a.scopes.clone(),
                a.state,
                a.expires_at,
                a.detail.clone(),
            )
        };
        self.link == other.link
            && self.accounts.len() == other.accounts.len()
            && self
                .accounts
                .iter()
                .zip(&other.accounts)
                .all(|(a, b)| key(a) == key(b))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Not connected (yet, or any more); why, when known.
    Offline(Option<String>),
    Connected {
        daemon_version: String,
    },
}

impl Default for Link {
    fn default() -> Self {
        Link::Offline(None)
    }
}

/// What the icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overall {
    /// Every account signed in (or none configured): nothing to do.
    SignedIn,
    /// An account needs sign-in.
    NeedsSignIn,
    /// An account is in error.
    Error,
    /// The daemon is not reachable.
    Offline,
}

impl Overall {
    pub fn describe(self) -> &'static str {
        match self {
            Overall::SignedIn => "all accounts signed in",
            Overall::NeedsSignIn => "an account needs sign-in",
            Overall::Error => "an account has an error",
            Overall::Offline => "the daemon is not running",
        }
    }
}

impl Model {
    /// The worst state of any account; an error outranks a needed sign-in.
    pub fn overall(&self) -> Overall {
        if matches!(self.link, Link::Offline(_)) {
            return Overall::Offline;
        }
        let mut o = Overall::SignedIn;
        for a in &self.accounts {
            match a.state {
                AccountState::Error => return Overall::Error,
                AccountState::NeedsSignIn => o = Overall::NeedsSignIn,
                AccountState::SignedIn => {}
            }
        }
        o
    }

    pub fn tooltip(&self) -> String {
        let mut s = format!("tokenbroker: {}", self.overall().describe());
        if let Link::Offline(Some(why)) = &self.link {
            s.push_str(&format!(" ({why})"));
        }
        s
    }

    pub fn account(&self, name: &str) -> Option<&AccountInfo> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// The menu, top to bottom, at time `now` (unix seconds).
    pub fn menu(&self, now: u64) -> Vec<Entry> {
        let mut v = vec![Entry::Label(self.tooltip()), Entry::Separator];
        match &self.link {
            Link::Offline(_) => v.push(Entry::Label(
                "Waiting for tokenbrokerd to start…".to_owned(),
            )),
            Link::Connected { .. } if self.accounts.is_empty() => v.push(Entry::Label(
                "No accounts: add one with `tokenbroker account add`".to_owned(),
            )),
            Link::Connected { .. } => {
                for a in &self.accounts {
                    v.push(Entry::Label(account_line(a, now)));
                    if a.grant == Grant::Password {
                        v.push(Entry::Item {
                            action: Action::SignIn(a.name.clone()),
                            label: format!("    Sign in to {}…", a.name),
                            enabled: true,
                        });
                    }
                    v.push(Entry::Item {
                        action: Action::SignOut(a.name.clone()),
                        label: format!("    Sign out of {}", a.name),
                        enabled: a.state == AccountState::SignedIn,
                    });
                }
            }
        }
        v.push(Entry::Separator);
        v.push(Entry::Item {
            action: Action::ShowAudit,
            label: "Show audit log".to_owned(),
            enabled: matches!(self.link, Link::Connected { .. }),
        });
        v.push(Entry::Item {
            action: Action::Quit,
            label: "Quit".to_owned(),
            enabled: true,
        });
        v
    }
}

/// "me (alice at dot): signed in, expires in 42 min".
pub fn account_line(a: &AccountInfo, now: u64) -> String {
    let who = match (&a.username, a.grant) {
        (Some(u), _) => format!("{u} at {}", a.provider),
        (None, Grant::ClientCredentials) => format!("client credentials at {}", a.provider),
        (None, Grant::Password) => a.provider.clone(),
    };
    let state = match a.state {
        AccountState::SignedIn => "signed in",
        AccountState::NeedsSignIn => "needs sign-in",
        AccountState::Error => "error",
    };
    let mut s = format!("{} ({who}): {state}", a.name);
    if a.state == AccountState::SignedIn {
        if let Some(exp) = a.expires_at {
            s.push_str(&format!(", {}", expiry(exp, now)));
        }
    }
    if a.state != AccountState::SignedIn {
        if let Some(d) = &a.detail {
            let d: String = d.chars().take(80).collect();
            s.push_str(&format!(" — {d}"));
        }
    }
    s
}

/// "token expires in 42 min", "token expired".
pub fn expiry(expires_at: u64, now: u64) -> String {
    if expires_at <= now {
        return "token expired".to_owned();
    }
    let left = expires_at - now;
    if left < 60 {
        format!("token expires in {left} s")
    } else if left < 2 * 3600 {
        format!("token expires in {} min", left / 60)
    } else {
        format!("token expires in {} h", left / 3600)
    }
}

/// One line of the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Text that does nothing (shown greyed out).
    Label(String),
    Item {
        action: Action,
        label: String,
        enabled: bool,
    },
    Separator,
}

/// What a menu item does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SignIn(String),
    SignOut(String),
    ShowAudit,
    Quit,
}

impl Action {
    /// The menu item's id.
    pub fn id(&self) -> String {
        match self {
            Action::SignIn(a) => format!("sign-in:{a}"),
            Action::SignOut(a) => format!("sign-out:{a}"),
            Action::ShowAudit => "audit".to_owned(),
            Action::Quit => "quit".to_owned(),
        }
    }

    pub fn from_id(id: &str) -> Option<Action> {
        if let Some(a) = id.strip_prefix("sign-in:") {
            return Some(Action::SignIn(a.to_owned()));
        }
        if let Some(a) = id.strip_prefix("sign-out:") {
            return Some(Action::SignOut(a.to_owned()));
        }
        match id {
            "audit" => Some(Action::ShowAudit),
            "quit" => Some(Action::Quit),
            _ => None,
        }
    }
}

/// Unix seconds as "2026-12-01 23:05:09 UTC".
pub fn utc(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The audit log as text, newest first.
pub fn audit_text(records: &[AuditRecord]) -> String {
    if records.is_empty() {
        return "No token was handed out or refused yet.\n".to_owned();
    }
    let mut s = String::new();
    for r in records.iter().rev() {
        let decision = match r.decision {
            Decision::Allow => "allow",
            Decision::Deny => "DENY ",
        };
        let pid = r.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
        s.push_str(&format!(
            "{}  {decision}  {}  [{}]  {} (pid {pid}, uid {}, {})\n        {}\n",
            utc(r.time),
            r.account,
            r.scopes.join(" "),
            r.exe,
            r.uid,
            r.transport,
            r.reason
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn acct(name: &str, state: AccountState) -> AccountInfo {
        AccountInfo {
            name: name.into(),
            provider: "dot".into(),
            grant: Grant::Password,
            username: Some("alice".into()),
            scopes: vec!["read".into()],
            state,
            expires_at: None,
            detail: None,
            owner: None,
        }
    }

    fn connected(accounts: Vec<AccountInfo>) -> Model {
        Model {
            link: Link::Connected {
                daemon_version: "0.1.0".into(),
            },
            accounts,
        }
    }

    #[test]
    fn overall_is_the_worst_state() {
        assert_eq!(Model::default().overall(), Overall::Offline);
        assert_eq!(connected(vec![]).overall(), Overall::SignedIn);
        let ok = acct("a", AccountState::SignedIn);
        let need = acct("b", AccountState::NeedsSignIn);
        let bad = acct("c", AccountState::Error);
        assert_eq!(connected(vec![ok.clone()]).overall(), Overall::SignedIn);
        assert_eq!(
            connected(vec![ok.clone(), need.clone()]).overall(),
            Overall::NeedsSignIn
        );
        assert_eq!(
            connected(vec![bad, need.clone(), ok]).overall(),
            Overall::Error
        );
        let offline = Model {
            link: Link::Offline(Some("no socket".into())),
            accounts: vec![need],
        };
        assert_eq!(offline.overall(), Overall::Offline);
        assert!(offline.tooltip().contains("no socket"));
    }

    #[test]
    fn menu_lists_accounts_with_state_expiry_and_actions() {
        let mut a = acct("me", AccountState::SignedIn);
        a.expires_at = Some(1000 + 42 * 60 + 5);
        let mut b = acct("robot", AccountState::NeedsSignIn);
        b.grant = Grant::ClientCredentials;
        b.username = None;
        let m = connected(vec![a, b]);
        let menu = m.menu(1000);
        let labels: Vec<String> = menu
            .iter()
            .filter_map(|e| match e {
                Entry::Label(l) => Some(l.clone()),
                _ => None,
            })
            .collect();
        assert!(labels.contains(&"me (alice at dot): signed in, token expires in 42 min".into()));
        assert!(labels.contains(&"robot (client credentials at dot): needs sign-in".into()));
        let items: Vec<(Action, bool)> = menu
            .iter()
            .filter_map(|e| match e {
                Entry::Item {
                    action, enabled, ..
                } => Some((action.clone(), *enabled)),
                _ => None,
            })
            .collect();
        assert_eq!(
            items,
            vec![
                (Action::SignIn("me".into()), true),
                (Action::SignOut("me".into()), true),
                // No sign-in for client credentials; nothing to sign out of.
                (Action::SignOut("robot".into()), false),
                (Action::ShowAudit, true),
                (Action::Quit, true),
            ]
        );
    }

    #[test]
    fn offline_menu_waits_and_still_quits() {
        let menu = Model::default().menu(0);
        assert!(menu
            .iter()
            .any(|e| matches!(e, Entry::Label(l) if l.contains("Waiting"))));
        assert!(menu.contains(&Entry::Item {
            action: Action::Quit,
            label: "Quit".into(),
            enabled: true
        }));
        assert!(menu.contains(&Entry::Item {
            action: Action::ShowAudit,
            label: "Show audit log".into(),
            enabled: false
        }));
    }

    #[test]
    fn action_ids_round_trip() {
        for a in [
            Action::SignIn("me:x".into()),
            Action::SignOut("a b".into()),
            Action::ShowAudit,
            Action::Quit,
        ] {
            assert_eq!(Action::from_id(&a.id()), Some(a));
        }
        assert_eq!(Action::from_id("nope"), None);
    }

    #[test]
    fn expiry_and_utc() {
        assert_eq!(expiry(10, 20), "token expired");
        assert_eq!(expiry(50, 20), "token expires in 30 s");
        assert_eq!(expiry(20 + 3 * 3600, 20), "token expires in 3 h");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_320_575), "2026-11-22 04:09:35 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn audit_text_is_newest_first() {
        let r = |time, decision| AuditRecord {
            time,
            decision,
            uid: 1000,
            pid: Some(7),
            exe: "/usr/bin/socat".into(),
            account: "me".into(),
            scopes: vec!["read".into()],
            transport: "socket".into(),
            reason: "allowed once by the user".into(),
            repeated: 0,
        };
        let t = audit_text(&[r(1, Decision::Allow), r(2, Decision::Deny)]);
        let deny = t.find("DENY").unwrap();
        let allow = t.find("allow ").unwrap();
        assert!(deny < allow, "{t}");
        assert!(t.contains("/usr/bin/socat (pid 7, uid 1000, socket)"));
        assert!(audit_text(&[]).contains("No token"));
    }
}
