//! SIGHUP: read the config files again and adopt them. Cached tokens stay for every account
//! whose provider and settings did not change; an invalid config changes nothing.

use tokenbroker_client::Notification;

use super::admin::same_but_rules;
use super::{engine_account, Broker};
use crate::error::Error;

/// What a reload did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub providers: usize,
    pub accounts: usize,
    /// Providers whose settings changed or that are gone (their discovery and secret caches
    /// are dropped).
    pub providers_changed: usize,
    /// Accounts whose settings changed or that are gone (their cached tokens are dropped).
    pub accounts_reset: usize,
}

impl Broker {
    pub async fn reload(&self) -> Result<Reloaded, Error> {
        let _admin = self.inner.admin.lock().await;
        let layout = self.inner.layout.clone();
        let new = tokio::task::spawn_blocking(move || layout.load())
            .await
            .map_err(|e| Error::broker(tokenbroker_client::ErrorKind::Internal, e.to_string()))??;
        let old = self.config();
        let mut summary = Reloaded::default();
        for (name, p) in &old.providers {
            if new.providers.get(name) != Some(p) {
                self.inner.providers.forget(name);
                summary.providers_changed += 1;
            }
        }
        let mut added = Vec::new();
        for (name, a) in &old.accounts {
            let kept = new.accounts.get(name).is_some_and(|n| {
                same_but_rules(a, n)
                    && new.providers.get(&a.provider) == old.providers.get(&a.provider)
            });
            if !kept {
                self.inner.engine.forget(name);
                summary.accounts_reset += 1;
                if new.accounts.contains_key(name) {
                    added.push(name.clone());
                }
            }
        }
        added.extend(
            new.accounts
                .keys()
                .filter(|n| !old.accounts.contains_key(*n))
                .cloned(),
        );
        summary.providers = new.providers.len();
        summary.accounts = new.accounts.len();
        self.replace_config(new);
        for name in &added {
            if let Ok(found) = self.account(name) {
                self.inner
                    .engine
                    .load_state(&engine_account(name, &found))
                    .await;
            }
            if let Ok(info) = self.account_info(name, false) {
                self.emit(Notification::AccountChanged {
                    account: name.clone(),
                    state: info.state,
                });
            }
        }
        Ok(summary)
    }
}
