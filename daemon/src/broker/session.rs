//! Signing in and out. A password crosses only the local socket; it is handed to the token
//! engine, which wipes it after the one request it is for.

use tokenbroker_client::{AccountInfo, AppAccess, BrokerError, Grant, SecretText, SignOutReply};

use super::messages;
use super::{engine_account, Broker};
use crate::policy::{self, Caller};

impl Broker {
    pub async fn sign_in(
        &self,
        caller: &Caller,
        account: &str,
        password: SecretText,
    ) -> Result<AccountInfo, BrokerError> {
        // Otherwise an app could sign the account in to credentials of its own choosing.
        self.require_trusted(caller, "sign in")?;
        let found = self.own_account(caller, account)?;
        if found.account.grant != Grant::Password {
            return Err(messages::invalid(format!(
                "account {account:?} uses the client_credentials grant: it needs no sign-in"
            )));
        }
        let has_refresh = self
            .inner
            .engine
            .sign_in(&engine_account(account, &found), password)
            .await?;
        tracing::info!(
            target: "tokenbroker::audit",
            uid = caller.uid,
            pid = caller.pid,
            exe = %caller.exe_display(),
            account = %account,
            refresh_token = has_refresh,
            "signed in"
        );
        self.account_info(account, true)
    }

    /// Revoke at the server (best effort) and delete the stored and cached tokens.
    pub async fn sign_out(
        &self,
        caller: &Caller,
        account: &str,
    ) -> Result<SignOutReply, BrokerError> {
        // The owner, or an admin removing the account.
        let found = self.visible_account(caller, account)?;
        // The user's own tools, and apps the account's policy allows.
        let allowed_app = policy::exe_key(caller)
            .and_then(|e| {
                found
                    .account
                    .apps
                    .get(&e)
                    .map(|r| r.access == AppAccess::Allow)
            })
            .unwrap_or(false);
        if !allowed_app {
            self.require_trusted(
                caller,
                "sign out of an account whose policy does not allow it",
            )?;
        }
        let done = self
            .inner
            .engine
            .sign_out(&engine_account(account, &found))
            .await?;
        tracing::info!(
            target: "tokenbroker::audit",
            uid = caller.uid,
            pid = caller.pid,
            exe = %caller.exe_display(),
            account = %account,
            revoked = done.revoked,
            "signed out"
        );
        Ok(done.reply(self.is_trusted(caller)))
    }
}
