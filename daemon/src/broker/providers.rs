//! The providers as the daemon reaches them: each one's endpoints (explicit, or discovered once
//! and remembered) and client secret (read from the secret store once and remembered), and the
//! HTTP client. This is the token engine's [`TokenEndpoint`] in the daemon.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokenbroker_client::{BrokerError, ClientAuth, ErrorKind, IntrospectReply, SecretText};

use super::messages;
use crate::config::{ProviderConfig, Shared};
use crate::engine::{Account, BoxFuture, TokenEndpoint, TokenKind};
use crate::error::{Error, Result};
use crate::oauth::assertion::ClientKey;
use crate::oauth::discovery::discover;
use crate::oauth::preset::Dialect;
use crate::oauth::{grant, ClientCredentials, Endpoints, Http, TokenRequest, TokenResponse};
use crate::store::{SecretKey, Store};

/// What is remembered of one provider until its settings change.
#[derive(Default)]
pub struct ProviderState {
    pub endpoints: tokio::sync::OnceCell<Endpoints>,
}

pub struct Providers {
    http: Http,
    config: Shared,
    store: Store,
    states: Mutex<HashMap<String, Arc<ProviderState>>>,
}

/// Everything a request to a provider needs, resolved once per request.
pub struct ClientMaterial {
    pub endpoints: Endpoints,
    client_id: String,
    method: ClientAuth,
    secret: Option<SecretText>,
    key: Option<ClientKey>,
    dialect: Dialect,
}

impl ClientMaterial {
    pub fn credentials(&self) -> ClientCredentials<'_> {
        ClientCredentials {
            client_id: &self.client_id,
            method: self.method,
            secret: self.secret.as_ref(),
            key: self.key.as_ref(),
            dialect: &self.dialect,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Providers {
    pub fn new(http: Http, config: Shared, store: Store) -> Self {
        Self {
            http,
            config,
            store,
            states: Mutex::default(),
        }
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    fn state(&self, name: &str) -> Arc<ProviderState> {
        lock(&self.states)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Forget what is remembered of a provider (its settings changed, or it is gone).
    pub fn forget(&self, name: &str) {
        lock(&self.states).remove(name);
    }

    /// Remember a provider's state from scratch (a provider just added, or a new secret).
    pub fn insert(&self, name: &str, state: ProviderState) {
        lock(&self.states).insert(name.to_owned(), Arc::new(state));
    }

    /// Discover a provider's endpoints now (for a provider being added).
    pub async fn discover(&self, name: &str, p: &ProviderConfig) -> Result<Endpoints, BrokerError> {
        let what = p
            .discovery()
            .ok_or_else(|| messages::discovery_failure(name, &Error::NoIssuer))?;
        discover(&self.http, &what)
            .await
            .map_err(|e| messages::discovery_failure(name, &e))
    }

    async fn endpoints(&self, name: &str, p: &ProviderConfig) -> Result<Endpoints, BrokerError> {
        if let Some(e) = p
            .explicit_endpoints()
            .map_err(|e| messages::config(e.to_string()))?
        {
            return Ok(e);
        }
        self.state(name)
            .endpoints
            .get_or_try_init(|| self.discover(name, p))
            .await
            .cloned()
    }

    /// The provider's client secret, if it uses one, from the secret store.
    pub async fn client_secret(
        &self,
        name: &str,
        p: &ProviderConfig,
    ) -> Result<Option<SecretText>, BrokerError> {
        if !p.auth().needs_secret() {
            return Ok(None);
        }
        let key = SecretKey::ClientSecret {
            provider: name.to_owned(),
        };
        self.store
            .get(&key)
            .await
            .map_err(|e| BrokerError::new(ErrorKind::Store, e.to_string()))
    }

    /// Everything a request to provider `name` needs.
    pub async fn material(&self, name: &str) -> Result<ClientMaterial, BrokerError> {
        let config = self.config.get();
        let p = config
            .providers
            .get(name)
            .ok_or_else(|| messages::provider_gone(name))?;
        let endpoints = self.endpoints(name, p).await?;
        let secret = self.client_secret(name, p).await?;
        let auth = p.auth();
        if auth.needs_secret() && secret.is_none() {
            return Err(messages::no_client_secret(name, auth));
        }
        Ok(ClientMaterial {
            endpoints,
            client_id: p.client_id.clone(),
            method: auth,
            secret,
            key: p.client_key.as_ref().map(|k| ClientKey {
                path: PathBuf::from(k),
                kid: p.client_key_id.clone(),
            }),
            dialect: p.dialect(),
        })
    }

    /// RFC 7662 introspection of `token` at `material`'s provider.
    pub async fn introspect(
        &self,
        material: &ClientMaterial,
        token: &SecretText,
    ) -> Result<IntrospectReply> {
        grant::introspect(
            &self.http,
            &material.endpoints,
            &material.credentials(),
            token,
        )
        .await
    }
}

impl TokenEndpoint for Providers {
    fn token<'a>(
        &'a self,
        account: &'a Account,
        request: &'a TokenRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenResponse>> {
        Box::pin(async move {
            let m = self.material(&account.provider).await?;
            grant::request_token(&self.http, &m.endpoints, &m.credentials(), request).await
        })
    }

    fn revoke<'a>(
        &'a self,
        account: &'a Account,
        token: &'a SecretText,
        kind: TokenKind,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let m = self.material(&account.provider).await?;
            grant::revoke(
                &self.http,
                &m.endpoints,
                &m.credentials(),
                token,
                kind.hint(),
            )
            .await
        })
    }
}
