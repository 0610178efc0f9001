//! Signing an account in (the password grant) and out (revocation, then deletion), and the
//! account's state as the secret store has it.

use tokenbroker_client::{AccountState, BrokerError, Grant, SecretText, SignOutReply};

use super::{messages, rt_key, Account, Engine, Reason, TokenKind};
use crate::error::{Error, Result};
use crate::oauth::retry::with_retries;
use crate::oauth::TokenRequest;

/// What a sign-out did.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedOut {
    /// Whether the server confirmed a revocation; the local tokens are deleted either way.
    pub revoked: bool,
    pub warning: Option<Reason>,
}

impl SignedOut {
    /// The reply a caller gets: `trusted` is one of the user's own tools.
    pub fn reply(&self, trusted: bool) -> SignOutReply {
        SignOutReply {
            revoked: self.revoked,
            warning: self
                .warning
                .as_ref()
                .map(|w| w.for_caller(trusted).to_owned()),
        }
    }
}

impl Engine {
    /// A new account starts clean, even if an old one of that name left a token behind.
    pub async fn start_clean(&self, account: &Account) {
        self.forget(&account.name);
        if account.grant == Grant::Password {
            if let Err(e) = self.inner.store.delete(&rt_key(&account.name)).await {
                tracing::warn!(account = %account.name, error = %e, "cannot clear an old refresh token");
            }
            self.slot(&account.name).lock().has_refresh = Some(false);
        }
    }

    /// Look in the secret store, so that the state is right before the first request: a
    /// refresh token there means signed in, without a new login.
    pub async fn load_state(&self, account: &Account) {
        if account.grant != Grant::Password {
            return;
        }
        let found = self.inner.store.get(&rt_key(&account.name)).await;
        let slot = self.slot(&account.name);
        let mut st = slot.lock();
        match found {
            Ok(v) => st.has_refresh = Some(v.is_some()),
            Err(e) => {
                tracing::warn!(account = %account.name, error = %e, "cannot read the secret store");
                st.error = Some(Reason::ours(e.to_string()));
            }
        }
    }

    /// Sign in with the password grant. The password is wiped when this returns, whatever the
    /// outcome. Returns whether the server issued a refresh token.
    pub async fn sign_in(
        &self,
        account: &Account,
        password: SecretText,
    ) -> Result<bool, BrokerError> {
        let name = &account.name;
        let username = account.username.clone().unwrap_or_default();
        let slot = self.slot(name);
        let _flight = slot.flight.lock().await;
        let scopes = account.default_scopes.clone();
        let result = {
            let request = TokenRequest::Password {
                username: &username,
                password: &password,
                scopes: &scopes,
            };
            self.request(account, &request).await
        };
        drop(password);
        let resp = result.map_err(|e| {
            if e.is_invalid_grant() {
                messages::wrong_credentials(&username, name, &e)
            } else {
                messages::grant_failure(name, &account.provider, "password", e)
            }
        })?;
        let stored = match &resp.refresh_token {
            Some(rt) => self.inner.store.set(&rt_key(name), rt).await,
            None => self.inner.store.delete(&rt_key(name)).await,
        };
        stored.map_err(|e| {
            messages::store_failed(
                &format!("cannot store the refresh token of account {name:?}"),
                &e,
            )
        })?;
        let has_refresh = resp.refresh_token.is_some();
        {
            let mut st = slot.lock();
            st.tokens.clear();
            st.granted = Some(
                resp.scopes
                    .as_deref()
                    .map(super::scope_key)
                    .unwrap_or_else(|| scopes.clone()),
            );
            st.has_refresh = Some(has_refresh);
            st.sign_in_reason = None;
            st.error = None;
        }
        self.cache(account, &slot, scopes, resp, false);
        self.changed(name, AccountState::SignedIn);
        Ok(has_refresh)
    }

    /// Revoke at the server (best effort) and delete the stored and cached tokens.
    pub async fn sign_out(&self, account: &Account) -> Result<SignedOut, BrokerError> {
        let name = &account.name;
        let slot = self.slot(name);
        let _flight = slot.flight.lock().await;
        let rt = if account.grant == Grant::Password {
            self.inner
                .store
                .get(&rt_key(name))
                .await
                .map_err(|e| messages::store_failed("", &e))?
        } else {
            None
        };
        let access: Vec<SecretText> = slot
            .lock()
            .tokens
            .values()
            .map(|t| t.token.clone())
            .collect();
        let mut todo: Vec<(&SecretText, TokenKind)> = Vec::new();
        if let Some(rt) = &rt {
            todo.push((rt, TokenKind::RefreshToken));
        }
        todo.extend(access.iter().map(|t| (t, TokenKind::AccessToken)));
        let (mut warning, mut revoked): (Option<Reason>, bool) = (None, false);
        let again = |r: &Result<bool>| r.as_ref().err().is_some_and(Error::is_retryable);
        for (token, kind) in todo {
            let outcome = with_retries(self.settings().retry, again, |_| {
                self.inner.endpoint.revoke(account, token, kind)
            })
            .await;
            match outcome {
                Ok(true) => revoked = true,
                Ok(false) => {
                    warning = Some(Reason::ours(format!(
                        "provider {:?} has no revocation endpoint: the tokens were deleted here but stay valid at the server until they expire",
                        account.provider
                    )));
                    break;
                }
                Err(Error::Broker(b)) => {
                    let r = Reason::from(&b);
                    warning = Some(Reason::new(
                        format!("could not revoke at the server: {}", r.full),
                        format!("could not revoke at the server: {}", r.for_apps),
                    ));
                    break;
                }
                Err(e) => {
                    warning = Some(Reason::new(
                        format!("the server did not confirm the revocation: {e}"),
                        "the server did not confirm the revocation",
                    ))
                }
            }
        }
        if account.grant == Grant::Password {
            self.inner
                .store
                .delete(&rt_key(name))
                .await
                .map_err(|e| messages::store_failed("cannot delete the refresh token", &e))?;
        }
        let state = {
            let mut st = slot.lock();
            st.tokens.clear();
            st.has_refresh = Some(false);
            st.error = None;
            st.sign_in_reason = Some(Reason::ours("signed out"));
            st.state(account.grant, self.now())
        };
        self.changed(name, state);
        Ok(SignedOut { revoked, warning })
    }
}
