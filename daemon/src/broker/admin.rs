//! Providers and accounts: added, removed, a client secret set. Every change is an edit of the
//! main config file, checked as a whole before it is written; entries of a drop-in belong to
//! config management and are changed in their file, not here.

use tokenbroker_client::{
    AccountInfo, AccountSpec, AddProviderParams, BrokerError, Done, ErrorKind, ProviderInfo,
    SecretText, SetClientSecretParams,
};

use super::messages::{self, bad_client_secret, err, invalid, no_provider};
use super::providers::ProviderState;
use super::{engine_account, Broker, Found, Mode};
use crate::config::{AccountConfig, AppRule, ConfigEditor, ProviderConfig};
use crate::names::{check_name, shorten};
use crate::policy::Caller;
use crate::store::SecretKey;
use crate::users::resolve_user;

/// One change to the config file.
pub(super) enum Edit {
    Provider(String, Box<ProviderConfig>),
    Account(String, AccountConfig),
    Remove(&'static str, String),
    AppRule(String, String, Option<AppRule>),
}

fn check_secret(s: &SecretText) -> Result<(), BrokerError> {
    if s.is_empty() || s.expose().len() > 4096 {
        return Err(bad_client_secret());
    }
    Ok(())
}

fn secret_key(provider: &str) -> SecretKey {
    SecretKey::ClientSecret {
        provider: provider.to_owned(),
    }
}

impl Broker {
    pub async fn list_providers(&self) -> Vec<ProviderInfo> {
        let config = self.config();
        let mut out = Vec::with_capacity(config.providers.len());
        for (name, p) in &config.providers {
            // Looks in the secret store: whether there is one, never what it is.
            let has_client_secret = matches!(
                self.inner.providers.client_secret(name, p).await,
                Ok(Some(_))
            );
            out.push(ProviderInfo {
                spec: p.to_spec(name),
                has_client_secret,
            });
        }
        out
    }

    pub async fn add_provider(
        &self,
        caller: &Caller,
        params: AddProviderParams,
    ) -> Result<ProviderInfo, BrokerError> {
        self.require_admin(caller, "add providers")?;
        let name = params.provider.name.clone();
        check_name("provider", &name).map_err(invalid)?;
        let pc = ProviderConfig::from_settings(params.provider.settings.clone());
        pc.validate(&name).map_err(|(_, m)| invalid(m))?;
        if let Some(s) = &params.client_secret {
            if !pc.auth().needs_secret() {
                return Err(invalid(
                    "a client secret was given, but the provider's client authentication uses none",
                ));
            }
            check_secret(s)?;
        }
        let _admin = self.inner.admin.lock().await;
        if self.config().providers.contains_key(&name) {
            return Err(err(
                ErrorKind::AlreadyExists,
                format!("provider {name:?} exists already: remove it first"),
            ));
        }
        // Check the provider now, so that a typo in the issuer fails here and not at sign-in.
        let fresh = ProviderState::default();
        if pc.token_url().is_none() {
            let ep = self.inner.providers.discover(&name, &pc).await?;
            let _ = fresh.endpoints.set(ep);
        }
        let key = secret_key(&name);
        if let Some(s) = &params.client_secret {
            self.inner
                .store
                .set(&key, s)
                .await
                .map_err(|e| messages::store(&e))?;
        }
        let committed = self
            .edit(Edit::Provider(name.clone(), Box::new(pc.clone())))
            .await;
        if let Err(e) = committed {
            if params.client_secret.is_some() {
                let _ = self.inner.store.delete(&key).await;
            }
            return Err(e);
        }
        self.inner.providers.insert(&name, fresh);
        tracing::info!(target: "tokenbroker::audit", uid = caller.uid, provider = %name, "provider added");
        Ok(ProviderInfo {
            spec: pc.to_spec(&name),
            has_client_secret: params.client_secret.is_some(),
        })
    }

    pub async fn set_client_secret(
        &self,
        caller: &Caller,
        p: SetClientSecretParams,
    ) -> Result<Done, BrokerError> {
        self.require_admin(caller, "set client secrets")?;
        let config = self.config();
        let prov = config
            .providers
            .get(&p.provider)
            .ok_or_else(|| no_provider(&p.provider))?;
        if !prov.auth().needs_secret() {
            return Err(invalid(format!(
                "provider {:?} authenticates with {}: it has no client secret",
                p.provider,
                prov.auth().as_str()
            )));
        }
        check_secret(&p.client_secret)?;
        let _admin = self.inner.admin.lock().await;
        self.inner
            .store
            .set(&secret_key(&p.provider), &p.client_secret)
            .await
            .map_err(|e| messages::store(&e))?;
        tracing::info!(target: "tokenbroker::audit", uid = caller.uid, provider = %p.provider, "client secret set");
        Ok(Done {})
    }

    pub async fn remove_provider(&self, caller: &Caller, name: &str) -> Result<Done, BrokerError> {
        self.require_admin(caller, "remove providers")?;
        let _admin = self.inner.admin.lock().await;
        let config = self.config();
        if !config.providers.contains_key(name) {
            return Err(no_provider(name));
        }
        let users: Vec<&str> = config
            .accounts
            .iter()
            .filter(|(_, a)| a.provider == name)
            .map(|(n, _)| n.as_str())
            .collect();
        if !users.is_empty() {
            return Err(invalid(format!(
                "provider {name:?} is used by account(s) {}: remove them first",
                users.join(", ")
            )));
        }
        self.edit(Edit::Remove("providers", name.to_owned()))
            .await?;
        if let Err(e) = self.inner.store.delete(&secret_key(name)).await {
            tracing::warn!(provider = %name, error = %e, "cannot delete the client secret");
        }
        self.inner.providers.forget(name);
        tracing::info!(target: "tokenbroker::audit", uid = caller.uid, provider = %name, "provider removed");
        Ok(Done {})
    }

    pub async fn add_account(
        &self,
        caller: &Caller,
        spec: AccountSpec,
    ) -> Result<AccountInfo, BrokerError> {
        self.require_trusted(caller, "add accounts")?;
        check_name("account", &spec.name).map_err(invalid)?;
        let mut spec = spec;
        if self.inner.mode == Mode::System {
            // An account belongs to the caller unless an admin names another user.
            match &spec.owner {
                None => spec.owner = Some(caller.uid.to_string()),
                Some(o) => {
                    let uid = resolve_user(o).ok_or_else(|| {
                        invalid(format!("owner {:?} is not a local user", shorten(o)))
                    })?;
                    if uid != caller.uid {
                        self.require_admin(caller, "add accounts for other users")?;
                    }
                }
            }
        } else if spec.owner.is_some() {
            return Err(invalid(
                "--owner is for a system-mode daemon (tokenbroker --system): this one serves its own user only",
            ));
        }
        let ac = AccountConfig::from_spec(&spec);
        let _admin = self.inner.admin.lock().await;
        let config = self.config();
        if config.accounts.contains_key(&spec.name) {
            return Err(err(
                ErrorKind::AlreadyExists,
                format!("account {:?} exists already: remove it first", spec.name),
            ));
        }
        let prov = config
            .providers
            .get(&spec.provider)
            .ok_or_else(|| no_provider(&spec.provider))?;
        ac.validate(&spec.name, prov).map_err(|(_, m)| invalid(m))?;
        self.edit(Edit::Account(spec.name.clone(), ac.clone()))
            .await?;
        let found = Found {
            account: ac,
            provider: prov.clone(),
        };
        self.inner
            .engine
            .start_clean(&engine_account(&spec.name, &found))
            .await;
        tracing::info!(target: "tokenbroker::audit", uid = caller.uid, account = %spec.name, "account added");
        self.account_info(&spec.name, true)
    }

    pub async fn remove_account(&self, caller: &Caller, name: &str) -> Result<Done, BrokerError> {
        self.require_trusted(caller, "remove accounts")?;
        let found = self.visible_account(caller, name)?;
        if !self.owns(caller, &found.account) {
            self.require_admin(caller, "remove accounts of other users")?;
        }
        // Sign out first: revoke at the server and delete the refresh token.
        match self.sign_out(caller, name).await {
            Ok(r) => {
                if let Some(w) = r.warning {
                    tracing::warn!(account = %name, warning = %w, "sign-out while removing the account");
                }
            }
            Err(e) if e.kind == ErrorKind::Store => return Err(e),
            Err(e) => {
                tracing::warn!(account = %name, error = %e, "sign-out while removing the account")
            }
        }
        let _admin = self.inner.admin.lock().await;
        self.edit(Edit::Remove("accounts", name.to_owned())).await?;
        self.inner.engine.forget(name);
        tracing::info!(target: "tokenbroker::audit", uid = caller.uid, account = %name, "account removed");
        Ok(Done {})
    }

    /// Edit the config file and adopt the result. The caller holds the admin lock. Entries of a
    /// drop-in are the config management's: they are changed in their file, not here.
    pub(super) async fn edit(&self, edit: Edit) -> Result<(), BrokerError> {
        let (section, name) = match &edit {
            Edit::Provider(n, _) => ("providers", n.as_str()),
            Edit::Account(n, _) => ("accounts", n.as_str()),
            Edit::Remove(section, n) => (*section, n.as_str()),
            Edit::AppRule(account, _, _) => ("accounts", account.as_str()),
        };
        if let Some(file) = self.config().origin(section, name) {
            return Err(messages::defined_in_dropin(section, name, file));
        }
        let layout = self.inner.layout.clone();
        let new = tokio::task::spawn_blocking(move || {
            let mut ed = ConfigEditor::open(&layout.main)?;
            match &edit {
                Edit::Provider(name, p) => ed.set("providers", name, p.as_ref())?,
                Edit::Account(name, a) => ed.set("accounts", name, a)?,
                Edit::Remove(section, name) => ed.remove(section, name),
                Edit::AppRule(account, exe, rule) => {
                    ed.set_app_rule(account, exe, rule.as_ref())?
                }
            }
            ed.commit(&layout)
        })
        .await
        .map_err(|e| messages::internal(format!("config edit failed: {e}")))?
        .map_err(|e| e.to_broker())?;
        self.replace_config(new);
        Ok(())
    }
}

/// Whether two accounts are the same but for their app rules (which need no cache reset).
pub(super) fn same_but_rules(a: &AccountConfig, b: &AccountConfig) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    a.apps.clear();
    b.apps.clear();
    a == b
}
