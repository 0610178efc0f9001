//! Per-app rules: which app (by the absolute path of its executable) may have which scopes of
//! an account. User mode only: the system service cannot see other users' executables.

use tokenbroker_client::{AppAccess, AppPolicy, BrokerError, Done};

use super::admin::Edit;
use super::messages::invalid;
use super::Broker;
use crate::config::AppRule;
use crate::engine::{scope_key, ScopeKey};
use crate::names::{check_app_path, check_scope, shorten};
use crate::policy::Caller;

impl Broker {
    pub fn get_policy(
        &self,
        caller: &Caller,
        account: Option<&str>,
    ) -> Result<Vec<AppPolicy>, BrokerError> {
        self.require_trusted(caller, "read the policy")?;
        if let Some(a) = account {
            self.visible_account(caller, a)?;
        }
        let config = self.config();
        let all = self.sees_all(caller);
        Ok(config
            .accounts
            .iter()
            .filter(|(n, a)| {
                account.is_none_or(|x| x == n.as_str()) && (all || self.owns(caller, a))
            })
            .flat_map(|(n, a)| {
                a.apps.iter().map(move |(exe, r)| AppPolicy {
                    account: n.clone(),
                    exe: exe.clone(),
                    access: r.access,
                    scopes: r.scopes.clone(),
                })
            })
            .collect())
    }

    pub async fn set_app_policy(&self, caller: &Caller, p: AppPolicy) -> Result<Done, BrokerError> {
        self.require_per_app_policy()?;
        self.require_admin(caller, "change the policy")?;
        self.visible_account(caller, &p.account)?;
        check_app_path(&p.exe).map_err(invalid)?;
        for s in &p.scopes {
            check_scope(s).map_err(invalid)?;
        }
        self.write_app_rule(&p.account, &p.exe, Some((p.access, scope_key(&p.scopes))))
            .await?;
        tracing::info!(target: "tokenbroker::audit", uid = caller.uid, account = %p.account, exe = %p.exe, access = ?p.access, "policy set");
        Ok(Done {})
    }

    pub async fn remove_app_policy(
        &self,
        caller: &Caller,
        account: &str,
        exe: &str,
    ) -> Result<Done, BrokerError> {
        self.require_per_app_policy()?;
        self.require_admin(caller, "change the policy")?;
        self.visible_account(caller, account)?;
        self.write_app_rule(account, exe, None).await?;
        Ok(Done {})
    }

    /// Set (or with None remove) one app's rule in the account's config.
    pub(super) async fn write_app_rule(
        &self,
        account: &str,
        exe: &str,
        rule: Option<(AppAccess, ScopeKey)>,
    ) -> Result<(), BrokerError> {
        let _admin = self.inner.admin.lock().await;
        let found = self.account(account)?;
        if rule.is_none() && !found.account.apps.contains_key(exe) {
            return Err(invalid(format!(
                "account {account:?} has no policy for {}",
                shorten(exe)
            )));
        }
        let rule = rule.map(|(access, scopes)| AppRule { access, scopes });
        self.edit(Edit::AppRule(account.to_owned(), exe.to_owned(), rule))
            .await
    }
}
