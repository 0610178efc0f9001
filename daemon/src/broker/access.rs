//! Who may do what. Every rule about callers that is not a per-app token decision lives here:
//! which uids a daemon serves at all, which callers are the user's own tools, who administers,
//! and which accounts a caller may see.
//!
//! User mode: the socket lives in a 0700 folder and is itself 0600, and the session bus is the
//! user's; the kernel's credentials are checked on every connection anyway and any other uid is
//! refused ([`Broker::admit`]), so that a mistake in the folder's permissions, a root-created
//! socket or a shared bus does not open the broker to other users.
//!
//! System mode: the service runs as its own unprivileged user, and the kernel shows the
//! executable of another user's process (`/proc/PID/exe`) only to that user or to a holder of
//! CAP_SYS_PTRACE, which a hardened service must not have. So there the caller is the uid (and
//! groups) the kernel reports, whatever program it runs: every process of a user acts for that
//! user, and admin rights come from uid 0 or the admin group.

use tokenbroker_client::{BrokerError, Notification};

use super::messages::{self, no_account};
use super::{Broker, Found};
use crate::config::AccountConfig;
use crate::policy::Caller;
use crate::users::{current_uid, lookup_group};

/// Whom the daemon serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One user: every account is the user's; the socket and bus refuse other uids.
    User,
    /// Every local user: each account has an owner, the only uid that may use it; root and the
    /// admin group administer.
    System,
}

impl Broker {
    /// Whether the daemon serves this caller at all: in user mode, its own uid only. Every
    /// transport asks this for every caller before anything else.
    pub fn admit(&self, caller: &Caller) -> Result<(), BrokerError> {
        if self.inner.mode == Mode::User && caller.uid != current_uid() {
            let what = match caller.transport {
                "dbus" => "refused a D-Bus caller of another user",
                _ => "refused a connection from another user",
            };
            tracing::warn!(
                target: "tokenbroker::audit",
                decision = "deny",
                uid = caller.uid,
                pid = caller.pid,
                exe = %caller.exe_display(),
                transport = caller.transport,
                "{what}"
            );
            return Err(messages::other_user());
        }
        Ok(())
    }

    /// Whether the caller is one of the user's own tokenbroker tools (the CLI and the tray
    /// beside the daemon, over the socket: see `Trusted::is_users_tool`). In system mode every
    /// caller is its uid (see the module's notes).
    pub fn is_trusted(&self, caller: &Caller) -> bool {
        self.inner.mode == Mode::System || self.inner.trusted.is_users_tool(caller)
    }

    /// Only the user's own tokenbroker tools may change policy, answer consent, or administer.
    pub fn require_trusted(&self, caller: &Caller, what: &str) -> Result<(), BrokerError> {
        if self.is_trusted(caller) {
            Ok(())
        } else {
            Err(messages::not_trusted(what, &caller.exe_display()))
        }
    }

    /// System mode: root and members of the admin group administer. In user mode the user's
    /// own tools do (the transports admit the user only).
    pub fn is_admin(&self, caller: &Caller) -> bool {
        match self.inner.mode {
            Mode::User => true,
            Mode::System => {
                caller.uid == 0
                    || lookup_group(&self.config().system.admin_group)
                        .is_some_and(|g| caller.in_group(g))
            }
        }
    }

    /// The user's own tools, run by an admin.
    pub fn require_admin(&self, caller: &Caller, what: &str) -> Result<(), BrokerError> {
        self.require_trusted(caller, what)?;
        if self.is_admin(caller) {
            return Ok(());
        }
        Err(messages::not_admin(what, &self.config().system.admin_group))
    }

    /// Per-app rules need the caller's executable, which only the user-mode daemon can see.
    pub(super) fn require_per_app_policy(&self) -> Result<(), BrokerError> {
        if self.inner.mode == Mode::System {
            return Err(messages::per_app_rules_are_user_mode());
        }
        Ok(())
    }

    /// Whether the caller owns the account: in system mode, the account's owner uid; in user
    /// mode, always (the transports admit the user only).
    pub(super) fn owns(&self, caller: &Caller, acct: &AccountConfig) -> bool {
        match self.inner.mode {
            Mode::User => true,
            Mode::System => acct.owner_uid == Some(caller.uid),
        }
    }

    /// An account the caller may see: its own, or any for an admin.
    pub(super) fn may_see(&self, caller: &Caller, acct: &AccountConfig) -> bool {
        self.owns(caller, acct) || self.sees_all(caller)
    }

    /// A system-mode admin sees every account. Listings ask this once, not per account: it
    /// looks the admin group up in the group database.
    pub(super) fn sees_all(&self, caller: &Caller) -> bool {
        self.inner.mode == Mode::System && self.is_admin(caller)
    }

    /// The account, if the caller owns it. Another user's account is reported as missing, the
    /// same as one that does not exist, so that account names do not leak between users.
    pub(super) fn own_account(&self, caller: &Caller, name: &str) -> Result<Found, BrokerError> {
        let found = self.account(name)?;
        if self.owns(caller, &found.account) {
            Ok(found)
        } else {
            Err(no_account(name))
        }
    }

    /// The account, if the caller may see it (owner or admin).
    pub(super) fn visible_account(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<Found, BrokerError> {
        let found = self.account(name)?;
        if self.may_see(caller, &found.account) {
            Ok(found)
        } else {
            Err(no_account(name))
        }
    }

    /// Whether an event is for this subscriber: events of accounts it may see; consent
    /// requests of its own apps only.
    pub fn event_is_for(&self, caller: &Caller, event: &Notification) -> bool {
        if self.inner.mode == Mode::User {
            return true;
        }
        if let Notification::ConsentRequired { request } = event {
            return request.uid == caller.uid;
        }
        self.config()
            .accounts
            .get(event.account())
            .is_some_and(|a| self.may_see(caller, a))
    }
}
