//! The service core. Both transports decode a request, identify the caller, admit it
//! ([`Broker::admit`]) and call one of these methods; no logic lives in a transport.
//!
//! The broker is wiring: it checks who may do what ([`access`]), asks the user about unknown
//! apps ([`consent`]), hands token requests to the [`Engine`] ([`tokens`], [`session`]), edits
//! the config ([`admin`], [`rules`]), reloads it ([`reload`]) and reports ([`status`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokenbroker_client::{BrokerError, Notification};

pub mod access;
pub mod admin;
pub mod consent;
pub mod events;
pub mod limits;
pub mod messages;
pub mod providers;
pub mod reload;
pub mod rules;
pub mod session;
pub mod status;
pub mod tokens;

pub use access::Mode;
pub use consent::AgentGuard;
pub use events::Subscription;
pub use reload::Reloaded;

use crate::audit::Audit;
use crate::clock::{Clock, SystemClock};
use crate::config::{AccountConfig, Config, Layout, ProviderConfig, Shared};
use crate::engine::{self, scope_key, Engine, TokenEndpoint};
use crate::oauth::Http;
use crate::policy::Trusted;
use crate::store::Store;
use consent::Consents;
use messages::{account_without_provider, no_account};
use providers::Providers;

/// What the broker needs besides its config and store.
pub struct Options {
    pub mode: Mode,
    /// The append-only audit file; None logs decisions only.
    pub audit_path: Option<PathBuf>,
    /// The user's own tools, allowed any of the user's tokens.
    pub trusted: Trusted,
}

#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    mode: Mode,
    socket_path: Mutex<String>,
    config: Shared,
    /// Serializes config edits.
    admin: tokio::sync::Mutex<()>,
    providers: Arc<Providers>,
    store: Store,
    engine: Engine,
    events: tokio::sync::broadcast::Sender<Notification>,
    started: Instant,
    audit: Audit,
    trusted: Trusted,
    consents: Consents,
    limits: limits::RateLimits,
}

/// An account as the config has it, with its provider.
pub(crate) struct Found {
    pub account: AccountConfig,
    pub provider: ProviderConfig,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn engine_settings(c: &Config) -> engine::Settings {
    engine::Settings {
        refresh_at_fraction: c.engine.refresh_at_fraction,
        proactive_refresh: c.engine.proactive_refresh,
        retry: c.http.retry_policy(),
    }
}

impl Broker {
    /// The daemon's broker: tokens from the providers over HTTP, time from the system clock.
    pub fn new(
        layout: Layout,
        config: Config,
        store: Store,
        options: Options,
    ) -> Result<Self, BrokerError> {
        Self::build(layout, config, store, options, None, Arc::new(SystemClock))
    }

    /// A broker whose token engine asks `endpoint` instead of the providers, and reads `clock`:
    /// for tests in process.
    pub fn with_endpoint(
        layout: Layout,
        config: Config,
        store: Store,
        options: Options,
        endpoint: Arc<dyn TokenEndpoint>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BrokerError> {
        Self::build(layout, config, store, options, Some(endpoint), clock)
    }

    fn build(
        layout: Layout,
        config: Config,
        store: Store,
        options: Options,
        endpoint: Option<Arc<dyn TokenEndpoint>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BrokerError> {
        let http =
            Http::new(config.http.http_options()).map_err(|e| messages::internal(e.to_string()))?;
        let (events, _) = tokio::sync::broadcast::channel(256);
        let settings = engine_settings(&config);
        let audit = Audit::open(options.audit_path, config.audit.limits());
        let shared = Shared::new(config);
        let providers = Arc::new(Providers::new(http, shared.clone(), store.clone()));
        let endpoint = endpoint.unwrap_or_else(|| providers.clone());
        let engine = Engine::new(endpoint, store.clone(), events.clone(), settings, clock);
        Ok(Self {
            inner: Arc::new(Inner {
                layout,
                mode: options.mode,
                socket_path: Mutex::new(String::new()),
                config: shared,
                admin: tokio::sync::Mutex::new(()),
                providers,
                store,
                engine,
                events,
                started: Instant::now(),
                audit,
                trusted: options.trusted,
                consents: Consents::default(),
                limits: Default::default(),
            }),
        })
    }

    pub fn set_socket_path(&self, p: &std::path::Path) {
        *lock(&self.inner.socket_path) = p.display().to_string();
    }

    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    pub fn config(&self) -> Arc<Config> {
        self.inner.config.get()
    }

    /// Adopt a new config (after an edit or a reload).
    fn replace_config(&self, c: Config) {
        if c.http != self.config().http {
            tracing::warn!("http settings changed on disk: they take effect at the next start");
        }
        self.inner.engine.set_settings(engine_settings(&c));
        self.inner.config.replace(c);
    }

    /// Sum up a run of repeated denials in the audit log when it has gone on long enough
    /// (the daemon calls this every few seconds).
    pub fn audit_tick(&self) {
        self.inner.audit.tick();
    }

    fn emit(&self, n: Notification) {
        tracing::debug!(event = ?n, "event");
        let _ = self.inner.events.send(n);
    }

    /// Look in the secret store once at start-up, so that account states are right before the
    /// first request: a refresh token there means signed in, without a new login.
    pub async fn load_states(&self) {
        let config = self.config();
        for name in config.accounts.keys() {
            if let Ok(found) = self.account(name) {
                self.inner
                    .engine
                    .load_state(&engine_account(name, &found))
                    .await;
            }
        }
    }

    /// The account and its provider; an unknown name or a malformed one is an error.
    fn account(&self, name: &str) -> Result<Found, BrokerError> {
        crate::names::check_name("account", name).map_err(messages::invalid)?;
        let config = self.config();
        let account = config
            .accounts
            .get(name)
            .cloned()
            .ok_or_else(|| no_account(name))?;
        let provider = config
            .providers
            .get(&account.provider)
            .cloned()
            .ok_or_else(|| account_without_provider(name, &account.provider))?;
        Ok(Found { account, provider })
    }
}

/// What the token engine needs to know of an account.
fn engine_account(name: &str, found: &Found) -> engine::Account {
    engine::Account {
        name: name.to_owned(),
        provider: found.account.provider.clone(),
        grant: found.account.grant,
        username: found.account.username.clone(),
        default_scopes: scope_key(found.account.default_scopes(&found.provider)),
        scoped_refresh: found.provider.scoped_refresh,
    }
}

#[cfg(test)]
mod tests;
