//! What callers can read: accounts and their state, the daemon's status, presets, the audit log.

use tokenbroker_client::{
    AccountInfo, AuditQuery, AuditRecord, BrokerError, PresetInfo, StatusReply, PROTOCOL_VERSION,
};

use super::messages;
use super::{engine_account, lock, Broker, Mode};
use crate::policy::Caller;

impl Broker {
    /// An account as a caller sees it: `trusted` (one of the user's own tools) also sees what
    /// the server said about its state.
    pub fn account_info(&self, name: &str, trusted: bool) -> Result<AccountInfo, BrokerError> {
        let found = self.account(name)?;
        let status = self.inner.engine.status(&engine_account(name, &found));
        let acct = &found.account;
        Ok(AccountInfo {
            name: name.to_owned(),
            provider: acct.provider.clone(),
            grant: acct.grant,
            username: acct.username.clone(),
            scopes: acct.default_scopes(&found.provider).to_vec(),
            state: status.state,
            expires_at: status.expires_at,
            detail: status.detail.map(|d| d.for_caller(trusted).to_owned()),
            owner: acct.owner.clone(),
        })
    }

    /// The accounts the caller may see: in system mode its own (an admin's: all).
    pub fn list_accounts(&self, caller: &Caller) -> Vec<AccountInfo> {
        let config = self.config();
        let all = self.sees_all(caller);
        let trusted = self.is_trusted(caller);
        config
            .accounts
            .iter()
            .filter(|(_, a)| all || self.owns(caller, a))
            .filter_map(|(n, _)| self.account_info(n, trusted).ok())
            .collect()
    }

    pub fn status(&self, caller: &Caller) -> StatusReply {
        StatusReply {
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            uptime_secs: self.inner.started.elapsed().as_secs(),
            config_path: self.inner.layout.main.display().to_string(),
            socket_path: lock(&self.inner.socket_path).clone(),
            accounts: self.list_accounts(caller),
        }
    }

    pub fn list_presets() -> Vec<PresetInfo> {
        crate::oauth::preset::PRESETS
            .iter()
            .map(|p| PresetInfo {
                name: p.name.into(),
                description: p.description.into(),
                requires: p.requires.iter().map(|r| r.to_string()).collect(),
                client_auth: p.client_auth,
            })
            .collect()
    }

    pub fn read_audit(
        &self,
        caller: &Caller,
        q: &AuditQuery,
    ) -> Result<Vec<AuditRecord>, BrokerError> {
        self.require_trusted(caller, "read the audit log")?;
        let mut records = self
            .inner
            .audit
            .read(q)
            .map_err(|e| messages::internal(format!("cannot read the audit log: {e}")))?;
        // Outside user mode, a user who is not an admin reads only the records of its own calls.
        if self.inner.mode == Mode::System && !self.is_admin(caller) {
            records.retain(|r| r.uid == caller.uid);
        }
        Ok(records)
    }
}
