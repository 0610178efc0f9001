//! The token engine: access tokens cached per (account, scope set) in memory only, single-flight
//! refresh per account that never blocks other accounts, refresh ahead of expiry for tokens that
//! callers use, refresh-token rotation (the new refresh token is stored before the new access
//! token is released), `invalid_grant` to `needs_sign_in`, and bounded retries.
//!
//! It decides nothing about callers: the broker has checked who may have which scopes before it
//! asks. Its seams are the [`TokenEndpoint`] (the HTTP client in the daemon), the secret
//! [`Store`] and the [`Clock`], which tests fill in process.
//!
//! Locks: a slot's `flight` (async) is held across network calls, one account at a time; its
//! state (sync) only for short, non-async sections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokenbroker_client::{
    AccountState, BrokerError, ErrorKind, Grant, Notification, SecretText, TokenReply,
};

mod cache;
mod endpoint;
pub mod messages;
mod refresh;
mod scopes;
mod session;

pub use session::SignedOut;

pub use cache::{
    refresh_point, scope_key, Cached, Lookup, Reason, ScopeKey, Slot, SlotState, MIN_REMAINING,
};
pub use endpoint::{BoxFuture, TokenEndpoint, TokenKind};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::oauth::retry::{with_retries, RetryPolicy};
use crate::oauth::{TokenRequest, TokenResponse};
use crate::store::{SecretKey, Store};

/// How the engine behaves; changed by a config reload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Refresh a used token at about this fraction of its life.
    pub refresh_at_fraction: f64,
    pub proactive_refresh: bool,
    pub retry: RetryPolicy,
}

/// What the engine needs to know of an account.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub name: String,
    pub provider: String,
    pub grant: Grant,
    pub username: Option<String>,
    /// The scopes of a request that names none, sorted: what the account signs in with.
    pub default_scopes: ScopeKey,
    /// The provider keeps a refresh token's scope: fewer scopes may be asked by a refresh.
    pub scoped_refresh: bool,
}

/// What the engine knows of an account's state, for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: AccountState,
    /// When the latest cached access token expires, if one is cached and still valid.
    pub expires_at: Option<u64>,
    /// Why the account is in `error` or `needs_sign_in`, when known.
    pub detail: Option<Reason>,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Arc<dyn TokenEndpoint>,
    store: Store,
    events: tokio::sync::broadcast::Sender<Notification>,
    settings: RwLock<Settings>,
    clock: Arc<dyn Clock>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn rt_key(account: &str) -> SecretKey {
    SecretKey::RefreshToken {
        account: account.to_owned(),
    }
}

impl Engine {
    pub fn new(
        endpoint: Arc<dyn TokenEndpoint>,
        store: Store,
        events: tokio::sync::broadcast::Sender<Notification>,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                endpoint,
                store,
                events,
                settings: RwLock::new(settings),
                clock,
                slots: Mutex::default(),
            }),
        }
    }

    pub fn settings(&self) -> Settings {
        *self
            .inner
            .settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_settings(&self, s: Settings) {
        *self
            .inner
            .settings
            .write()
            .unwrap_or_else(|p| p.into_inner()) = s;
    }

    fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    fn emit(&self, n: Notification) {
        tracing::debug!(event = ?n, "event");
        let _ = self.inner.events.send(n);
    }

    fn changed(&self, account: &str, state: AccountState) {
        self.emit(Notification::AccountChanged {
            account: account.to_owned(),
            state,
        });
    }

    fn slot(&self, account: &str) -> Arc<Slot> {
        lock(&self.inner.slots)
            .entry(account.to_owned())
            .or_default()
            .clone()
    }

    fn existing_slot(&self, account: &str) -> Option<Arc<Slot>> {
        lock(&self.inner.slots).get(account).cloned()
    }

    /// Drop everything cached for an account (removed, or its settings changed).
    pub fn forget(&self, account: &str) {
        lock(&self.inner.slots).remove(account);
    }

    pub fn status(&self, account: &Account) -> Status {
        let now = self.now();
        let slot = self.slot(&account.name);
        let st = slot.lock();
        let state = st.state(account.grant, now);
        let detail = match state {
            AccountState::Error => st.error.clone(),
            AccountState::NeedsSignIn => st.sign_in_reason.clone(),
            AccountState::SignedIn => None,
        };
        Status {
            state,
            expires_at: st.latest_expiry().filter(|e| *e > now),
            detail,
        }
    }

    /// A token for `key` with at least `min_ttl` seconds left: from the cache, or fetched once
    /// however many callers wait for it.
    pub async fn token(
        &self,
        account: &Account,
        key: ScopeKey,
        min_ttl: u64,
    ) -> Result<TokenReply, BrokerError> {
        let slot = self.slot(&account.name);
        match slot.lookup(&key, min_ttl, self.now()) {
            Lookup::Hit { reply, refresh_due } => {
                if refresh_due && self.settings().proactive_refresh {
                    self.spawn_refresh(account.clone(), key);
                }
                Ok(reply)
            }
            Lookup::Miss => {
                // A min_ttl the server's tokens cannot meet would only burn a refresh.
                let known = slot.lock().last_lifetime;
                if let Some(life) = known.filter(|l| min_ttl.saturating_add(MIN_REMAINING) > *l) {
                    return Err(messages::too_long(&account.name, life, min_ttl));
                }
                let _flight = slot.flight.lock().await;
                // Another request may have refreshed while this one waited.
                if let Lookup::Hit { reply, .. } = slot.lookup(&key, min_ttl, self.now()) {
                    return Ok(reply);
                }
                let reply = self.fetch(account, &slot, key, true).await?;
                let left = reply.expires_at.saturating_sub(self.now());
                if left < min_ttl {
                    return Err(messages::too_long(&account.name, left, min_ttl));
                }
                Ok(reply)
            }
        }
    }

    /// One request to the token endpoint, retried as the settings say when it cannot have
    /// been carried out.
    async fn request(
        &self,
        account: &Account,
        request: &TokenRequest<'_>,
    ) -> Result<TokenResponse> {
        let again = |r: &Result<TokenResponse>| r.as_ref().err().is_some_and(Error::is_retryable);
        with_retries(self.settings().retry, again, |_| {
            self.inner.endpoint.token(account, request)
        })
        .await
    }

    /// A new access token for `key` from the server. The caller holds the account's flight
    /// lock. `used` marks the token as handed out (for proactive refresh).
    async fn fetch(
        &self,
        account: &Account,
        slot: &Arc<Slot>,
        key: ScopeKey,
        used: bool,
    ) -> Result<TokenReply, BrokerError> {
        let resp = match self.fetch_inner(account, slot, &key).await {
            Ok(r) => r,
            Err(e) => {
                if matches!(
                    e.kind,
                    ErrorKind::ServerError | ErrorKind::NetworkError | ErrorKind::Store
                ) {
                    slot.lock().error = Some(Reason::from(&e));
                    self.changed(&account.name, AccountState::Error);
                }
                return Err(e);
            }
        };
        let was_error = slot.lock().error.is_some();
        let reply = self.cache(account, slot, key, resp, used);
        if was_error {
            self.changed(&account.name, AccountState::SignedIn);
        }
        Ok(reply)
    }

    async fn fetch_inner(
        &self,
        account: &Account,
        slot: &Arc<Slot>,
        key: &ScopeKey,
    ) -> Result<TokenResponse, BrokerError> {
        let name = &account.name;
        match account.grant {
            Grant::ClientCredentials => {
                let request = TokenRequest::ClientCredentials { scopes: key };
                self.request(account, &request).await.map_err(|e| {
                    messages::grant_failure(name, &account.provider, "client_credentials", e)
                })
            }
            Grant::Password => {
                let stored = self
                    .inner
                    .store
                    .get(&rt_key(name))
                    .await
                    .map_err(|e| messages::store_failed("", &e))?;
                let Some(rt) = stored else {
                    let reason = {
                        let st = slot.lock();
                        match (&st.sign_in_reason, st.tokens.is_empty()) {
                            (Some(r), _) => r.clone(),
                            (None, true) => Reason::ours("the account is not signed in"),
                            (None, false) => Reason::ours(
                                "its access token expired and the server issues no refresh token",
                            ),
                        }
                    };
                    return Err(self.needs_sign_in(name, slot, reason));
                };
                let scopes = scopes::refresh_scopes(account, key)?;
                let request = TokenRequest::Refresh {
                    refresh_token: &rt,
                    scopes,
                };
                match self.request(account, &request).await {
                    Ok(resp) => {
                        if let Some(new_rt) = &resp.refresh_token {
                            if !new_rt.ct_eq(&rt) {
                                let arrived = std::time::Instant::now();
                                self.store_rotated(account, slot, new_rt).await?;
                                // The window in which a crash loses the session: the server
                                // has spent the old token, the new one is not yet durable.
                                tracing::info!(
                                    account = %name,
                                    durable_after_us = arrived.elapsed().as_micros() as u64,
                                    "refresh token rotated"
                                );
                            }
                        }
                        if scopes.is_none() {
                            scopes::check_not_narrowed(account, slot, &resp)?;
                        }
                        Ok(resp)
                    }
                    Err(e) if e.is_invalid_grant() => {
                        if let Err(se) = self.inner.store.delete(&rt_key(name)).await {
                            tracing::warn!(account = %name, error = %se, "cannot delete the refused refresh token");
                        }
                        {
                            let mut st = slot.lock();
                            st.has_refresh = Some(false);
                            st.tokens.clear();
                        }
                        // The code is known to be invalid_grant: naming it is our word.
                        let reason = Reason::new(
                            format!("the server refused the refresh token ({e})"),
                            "the server refused the refresh token (invalid_grant)",
                        );
                        Err(self.needs_sign_in(name, slot, reason))
                    }
                    Err(e) => Err(messages::grant_failure(
                        name,
                        &account.provider,
                        "refresh_token",
                        e,
                    )),
                }
            }
        }
    }

    /// Store a rotated refresh token before the new access token is released: the old one is
    /// already spent. When the store fails, nothing is released.
    async fn store_rotated(
        &self,
        account: &Account,
        slot: &Arc<Slot>,
        new_rt: &SecretText,
    ) -> Result<(), BrokerError> {
        self.inner
            .store
            .set(&rt_key(&account.name), new_rt)
            .await
            .map_err(|e| messages::store_failed("cannot store the rotated refresh token", &e))?;
        // Servers that rotate may revoke the access tokens issued with the old refresh token
        // (DOT does): drop them from the cache.
        slot.lock().tokens.clear();
        Ok(())
    }

    /// The account needs sign-in: its state says why, and the event (which any subscriber and
    /// the whole bus see) says it in the daemon's words alone.
    fn needs_sign_in(&self, name: &str, slot: &Arc<Slot>, reason: Reason) -> BrokerError {
        {
            let mut st = slot.lock();
            st.sign_in_reason = Some(reason.clone());
            st.error = None;
        }
        self.emit(Notification::SignInRequired {
            account: name.to_owned(),
            reason: reason.for_apps.clone(),
        });
        self.changed(name, AccountState::NeedsSignIn);
        messages::needs_sign_in(name, &reason)
    }
}

#[cfg(test)]
mod tests;
