//! The service core. Both transports decode a request, identify the caller, and call these
//! methods; no logic lives in a transport.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;
use tokenbroker_client::{
    AccountInfo, AccountSpec, AccountState, AddProviderParams, BrokerError, Done, ErrorKind,
    GetTokenParams, Grant, ProviderInfo, SecretText, SetClientSecretParams, SignOutReply,
    StatusReply, TokenReply, PROTOCOL_VERSION,
};

use crate::caller::Caller;
use crate::config::{check_name, check_scope, AccountConfig, Config, ConfigEditor, ProviderConfig};
use crate::engine::{now_unix, refresh_point, scope_key, Cached, Lookup, ScopeKey, Slot};
use crate::grant::{self, ClientCredentials, GrantError, TokenResponse};
use crate::http::Http;
use crate::provider::{discover, explicit_endpoints, Endpoints};
use crate::store::{SecretKey, Store};

/// The most scopes one request may name.
pub const MAX_SCOPES: usize = 64;
/// The largest min_ttl a caller may ask for (a day).
pub const MAX_MIN_TTL: u32 = 86_400;

/// Something that changed, for the transports to announce (D-Bus signals, socket events).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    AccountChanged {
        account: String,
        state: AccountState,
    },
    SignInRequired {
        account: String,
        reason: String,
    },
}

#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config_path: PathBuf,
    socket_path: Mutex<String>,
    config: RwLock<Arc<Config>>,
    /// Serializes config edits.
    admin: tokio::sync::Mutex<()>,
    http: Http,
    store: Store,
    providers: Mutex<HashMap<String, Arc<ProviderState>>>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    events: tokio::sync::broadcast::Sender<Event>,
    started: Instant,
}

#[derive(Default)]
struct ProviderState {
    endpoints: tokio::sync::OnceCell<Endpoints>,
    secret: tokio::sync::OnceCell<Option<SecretText>>,
}

fn err(kind: ErrorKind, message: impl Into<String>) -> BrokerError {
    BrokerError::new(kind, message)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Broker {
    pub fn new(config_path: PathBuf, config: Config, store: Store) -> Result<Self, BrokerError> {
        let http = Http::new(&config.http).map_err(|e| err(ErrorKind::Internal, e.to_string()))?;
        let (events, _) = tokio::sync::broadcast::channel(256);
        Ok(Self {
            inner: Arc::new(Inner {
                config_path,
                socket_path: Mutex::new(String::new()),
                config: RwLock::new(Arc::new(config)),
                admin: tokio::sync::Mutex::new(()),
                http,
                store,
                providers: Mutex::default(),
                slots: Mutex::default(),
                events,
                started: Instant::now(),
            }),
        })
    }

    pub fn set_socket_path(&self, p: &std::path::Path) {
        *lock(&self.inner.socket_path) = p.display().to_string();
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    fn emit(&self, e: Event) {
        tracing::debug!(event = ?e, "event");
        let _ = self.inner.events.send(e);
    }

    pub fn config(&self) -> Arc<Config> {
        self.inner
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn replace_config(&self, c: Config) {
        *self.inner.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
    }

    fn slot(&self, account: &str) -> Arc<Slot> {
        lock(&self.inner.slots)
            .entry(account.to_owned())
            .or_default()
            .clone()
    }

    fn provider_state(&self, name: &str) -> Arc<ProviderState> {
        lock(&self.inner.providers)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Look at the secret store once at start-up, so that account states are right before the
    /// first request: a refresh token there means signed in, without a new login.
    pub async fn load_states(&self) {
        let config = self.config();
        for (name, acct) in &config.accounts {
            if acct.grant != Grant::Password {
                continue;
            }
            let key = SecretKey::RefreshToken {
                account: name.clone(),
            };
            let found = self.inner.store.get(&key).await;
            let slot = self.slot(name);
            let mut st = slot.lock();
            match found {
                Ok(v) => st.has_refresh = Some(v.is_some()),
                Err(e) => {
                    tracing::warn!(account = %name, error = %e, "cannot read the secret store");
                    st.error = Some(e.to_string());
                }
            }
        }
    }

    fn account(
        &self,
        name: &str,
    ) -> Result<(Arc<Config>, AccountConfig, ProviderConfig), BrokerError> {
        check_name("account", name).map_err(|m| err(ErrorKind::InvalidArgument, m))?;
        let config = self.config();
        let acct = config.accounts.get(name).cloned().ok_or_else(|| {
            err(
                ErrorKind::NoSuchAccount,
                format!("no account named {name:?}: see `tokenbroker accounts`"),
            )
        })?;
        let prov = config
            .providers
            .get(&acct.provider)
            .cloned()
            .ok_or_else(|| {
                err(
                    ErrorKind::Config,
                    format!(
                        "account {name:?} names provider {:?}, which is not configured",
                        acct.provider
                    ),
                )
            })?;
        Ok((config, acct, prov))
    }

    async fn endpoints(&self, name: &str, p: &ProviderConfig) -> Result<Endpoints, BrokerError> {
        if let Some(e) = explicit_endpoints(p).map_err(|e| err(ErrorKind::Config, e.0))? {
            return Ok(e);
        }
        let state = self.provider_state(name);
        state
            .endpoints
            .get_or_try_init(|| async { discover(&self.inner.http, p).await })
            .await
            .cloned()
            .map_err(|e| {
                err(
                    ErrorKind::NetworkError,
                    format!("provider {name:?}: discovery failed: {e}"),
                )
            })
    }

    async fn client_secret(
        &self,
        name: &str,
        p: &ProviderConfig,
    ) -> Result<Option<SecretText>, BrokerError> {
        if !p.client_auth.needs_secret() {
            return Ok(None);
        }
        let state = self.provider_state(name);
        let key = SecretKey::ClientSecret {
            provider: name.to_owned(),
        };
        state
            .secret
            .get_or_try_init(|| async { self.inner.store.get(&key).await })
            .await
            .cloned()
            .map_err(|e| err(ErrorKind::Store, e.to_string()))
    }

    /// Everything a grant needs: endpoints and the client's credentials.
    async fn client(
        &self,
        p_name: &str,
        p: &ProviderConfig,
    ) -> Result<(Endpoints, Option<SecretText>), BrokerError> {
        let endpoints = self.endpoints(p_name, p).await?;
        let secret = self.client_secret(p_name, p).await?;
        if p.client_auth.needs_secret() && secret.is_none() {
            return Err(err(
                ErrorKind::Config,
                format!(
                    "provider {p_name:?} uses {} but no client secret is stored: run `tokenbroker provider set-secret {p_name}`",
                    p.client_auth.as_str()
                ),
            ));
        }
        Ok((endpoints, secret))
    }

    fn normalize_scopes(
        &self,
        acct: &AccountConfig,
        prov: &ProviderConfig,
        requested: &[String],
    ) -> Result<ScopeKey, BrokerError> {
        if requested.len() > MAX_SCOPES {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "{} scopes requested: at most {MAX_SCOPES} are allowed",
                    requested.len()
                ),
            ));
        }
        for s in requested {
            check_scope(s).map_err(|m| err(ErrorKind::InvalidArgument, m))?;
        }
        if requested.is_empty() {
            Ok(scope_key(acct.default_scopes(prov)))
        } else {
            Ok(scope_key(requested))
        }
    }

    // ---- tokens ----

    pub async fn get_token(
        &self,
        caller: &Caller,
        p: GetTokenParams,
    ) -> Result<TokenReply, BrokerError> {
        if p.min_ttl > MAX_MIN_TTL {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "min_ttl {} is more than the allowed {MAX_MIN_TTL} seconds",
                    p.min_ttl
                ),
            ));
        }
        let (_, acct, prov) = self.account(&p.account)?;
        let key = self.normalize_scopes(&acct, &prov, &p.scopes)?;
        let min_ttl = u64::from(p.min_ttl);
        let slot = self.slot(&p.account);

        let reply = match slot.lookup(&key, min_ttl, now_unix()) {
            Lookup::Hit { reply, refresh_due } => {
                if refresh_due {
                    self.spawn_refresh(p.account.clone(), key.clone(), None);
                }
                reply
            }
            Lookup::Miss => {
                let _flight = slot.flight.lock().await;
                // Another request may have refreshed while this one waited.
                match slot.lookup(&key, min_ttl, now_unix()) {
                    Lookup::Hit { reply, .. } => reply,
                    Lookup::Miss => {
                        let reply = self
                            .fetch(&p.account, &acct, &prov, &slot, key.clone(), true)
                            .await?;
                        let left = reply.expires_at.saturating_sub(now_unix());
                        if left < min_ttl {
                            return Err(err(
                                ErrorKind::InvalidArgument,
                                format!(
                                    "the server issues tokens for account {:?} valid for {left} s, less than the min_ttl of {min_ttl} s",
                                    p.account
                                ),
                            ));
                        }
                        reply
                    }
                }
            }
        };
        tracing::info!(
            target: "tokenbroker::audit",
            decision = "allow",
            uid = caller.uid,
            pid = caller.pid,
            exe = %caller.exe_display(),
            transport = caller.transport,
            account = %p.account,
            scopes = %reply.scopes.join(" "),
            "access token handed out"
        );
        Ok(reply)
    }

    /// Get a new access token for `key` from the server. The caller holds the account's flight
    /// lock. `used` marks the token as handed out (for proactive refresh).
    async fn fetch(
        &self,
        name: &str,
        acct: &AccountConfig,
        prov: &ProviderConfig,
        slot: &Arc<Slot>,
        key: ScopeKey,
        used: bool,
    ) -> Result<TokenReply, BrokerError> {
        let result = self.fetch_inner(name, acct, prov, slot, &key).await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                if matches!(
                    e.kind,
                    ErrorKind::ServerError | ErrorKind::NetworkError | ErrorKind::Store
                ) {
                    slot.lock().error = Some(e.message.clone());
                    self.emit(Event::AccountChanged {
                        account: name.to_owned(),
                        state: AccountState::Error,
                    });
                }
                return Err(e);
            }
        };
        let was_error = slot.lock().error.is_some();
        let reply = self.cache(name, slot, key, resp, used);
        if was_error {
            self.emit(Event::AccountChanged {
                account: name.to_owned(),
                state: AccountState::SignedIn,
            });
        }
        Ok(reply)
    }

    async fn fetch_inner(
        &self,
        name: &str,
        acct: &AccountConfig,
        prov: &ProviderConfig,
        slot: &Arc<Slot>,
        key: &ScopeKey,
    ) -> Result<TokenResponse, BrokerError> {
        let (endpoints, secret) = self.client(&acct.provider, prov).await?;
        let client = ClientCredentials {
            client_id: &prov.client_id,
            method: prov.client_auth,
            secret: secret.as_ref(),
        };
        match acct.grant {
            Grant::ClientCredentials => {
                let g = grant::Grant::ClientCredentials { scopes: key };
                grant::request_token(&self.inner.http, &endpoints, &client, &g)
                    .await
                    .map_err(|e| grant_failure(name, &acct.provider, "client_credentials", e))
            }
            Grant::Password => {
                let rt_key = SecretKey::RefreshToken {
                    account: name.to_owned(),
                };
                let stored = self
                    .inner
                    .store
                    .get(&rt_key)
                    .await
                    .map_err(|e| err(ErrorKind::Store, e.to_string()))?;
                let Some(rt) = stored else {
                    let reason =
                        "the account's access token expired and the server gave no refresh token"
                            .to_owned();
                    return Err(self.needs_sign_in(name, slot, reason));
                };
                // Omit scope to keep the original grant; name it only to narrow.
                let default = scope_key(acct.default_scopes(prov));
                let scopes = (*key != default).then_some(key.as_slice());
                let g = grant::Grant::Refresh {
                    refresh_token: &rt,
                    scopes,
                };
                match grant::request_token(&self.inner.http, &endpoints, &client, &g).await {
                    Ok(resp) => {
                        if let Some(new_rt) = &resp.refresh_token {
                            if !new_rt.ct_eq(&rt) {
                                // Store the rotated refresh token before the new access token
                                // is released: the old one is already spent.
                                self.inner.store.set(&rt_key, new_rt).await.map_err(|e| {
                                    err(
                                        ErrorKind::Store,
                                        format!("cannot store the rotated refresh token: {e}"),
                                    )
                                })?;
                                tracing::info!(account = %name, "refresh token rotated");
                            }
                        }
                        Ok(resp)
                    }
                    Err(e) if e.is_invalid_grant() => {
                        if let Err(se) = self.inner.store.delete(&rt_key).await {
                            tracing::warn!(account = %name, error = %se, "cannot delete the refused refresh token");
                        }
                        {
                            let mut st = slot.lock();
                            st.has_refresh = Some(false);
                            st.tokens.clear();
                        }
                        let reason = format!("the server refused the refresh token ({e})");
                        Err(self.needs_sign_in(name, slot, reason))
                    }
                    Err(e) => Err(grant_failure(name, &acct.provider, "refresh_token", e)),
                }
            }
        }
    }

    fn needs_sign_in(&self, name: &str, slot: &Arc<Slot>, reason: String) -> BrokerError {
        {
            let mut st = slot.lock();
            st.sign_in_reason = Some(reason.clone());
            st.error = None;
        }
        self.emit(Event::SignInRequired {
            account: name.to_owned(),
            reason: reason.clone(),
        });
        self.emit(Event::AccountChanged {
            account: name.to_owned(),
            state: AccountState::NeedsSignIn,
        });
        err(
            ErrorKind::NeedsSignIn,
            format!("account {name:?} needs sign-in: {reason}; run `tokenbroker login {name}`"),
        )
    }

    /// Put a fresh token in the cache and schedule its refresh.
    fn cache(
        &self,
        name: &str,
        slot: &Arc<Slot>,
        key: ScopeKey,
        resp: TokenResponse,
        used: bool,
    ) -> TokenReply {
        let now = now_unix();
        let config = self.config();
        let jitter = rand::rng().random_range(0.0..1.0);
        let refresh_at = refresh_point(
            now,
            resp.expires_in,
            config.engine.refresh_at_fraction,
            jitter,
        );
        let scopes = resp.scopes.clone().unwrap_or_else(|| key.clone());
        let cached = Cached {
            token: resp.access_token,
            token_type: resp.token_type,
            scopes,
            issued_at: now,
            expires_at: now + resp.expires_in,
            refresh_at,
            used,
            refresh_started: false,
            serial: 0,
        };
        let reply = cached.reply();
        let serial = slot.insert(key.clone(), cached);
        if config.engine.proactive_refresh {
            let this = self.clone();
            let name = name.to_owned();
            let wait = refresh_at.saturating_sub(now);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(wait)).await;
                this.scheduled_refresh(name, key, serial);
            });
        }
        reply
    }

    /// At a token's refresh point: refresh it if callers used it, else let it lapse.
    fn scheduled_refresh(&self, name: String, key: ScopeKey, serial: u64) {
        let slot = self.slot(&name);
        let due = {
            let mut st = slot.lock();
            match st.tokens.get_mut(&key) {
                Some(t) if t.serial == serial && t.used && !t.refresh_started => {
                    t.refresh_started = true;
                    true
                }
                _ => false,
            }
        };
        if due {
            self.spawn_refresh(name, key, Some(serial));
        }
    }

    /// Refresh in the background, unless a refresh for this account is running already.
    fn spawn_refresh(&self, name: String, key: ScopeKey, _serial: Option<u64>) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok((_, acct, prov)) = this.account(&name) else {
                return;
            };
            let slot = this.slot(&name);
            let Ok(_flight) = slot.flight.try_lock() else {
                return;
            };
            match this.fetch(&name, &acct, &prov, &slot, key, true).await {
                Ok(_) => tracing::debug!(account = %name, "refreshed ahead of expiry"),
                Err(e) => {
                    // Let a later request try again.
                    tracing::warn!(account = %name, error = %e, "refresh ahead of expiry failed");
                }
            }
        });
    }

    // ---- sign-in ----

    pub async fn sign_in(
        &self,
        caller: &Caller,
        account: &str,
        password: SecretText,
    ) -> Result<AccountInfo, BrokerError> {
        let (_, acct, prov) = self.account(account)?;
        if acct.grant != Grant::Password {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "account {account:?} uses the client_credentials grant: it needs no sign-in"
                ),
            ));
        }
        let username = acct.username.clone().unwrap_or_default();
        let slot = self.slot(account);
        let _flight = slot.flight.lock().await;
        let (endpoints, secret) = self.client(&acct.provider, &prov).await?;
        let scopes = scope_key(acct.default_scopes(&prov));
        let result = {
            let client = ClientCredentials {
                client_id: &prov.client_id,
                method: prov.client_auth,
                secret: secret.as_ref(),
            };
            let g = grant::Grant::Password {
                username: &username,
                password: &password,
                scopes: &scopes,
            };
            grant::request_token(&self.inner.http, &endpoints, &client, &g).await
        };
        // The password is wiped here, whatever the outcome.
        drop(password);
        let resp = result.map_err(|e| match e.oauth_code() {
            Some("invalid_grant") => err(
                ErrorKind::InvalidCredentials,
                format!("the server rejected the credentials of user {username:?} for account {account:?} ({e})"),
            ),
            _ => grant_failure(account, &acct.provider, "password", e),
        })?;
        let rt_key = SecretKey::RefreshToken {
            account: account.to_owned(),
        };
        match &resp.refresh_token {
            Some(rt) => self.inner.store.set(&rt_key, rt).await,
            None => self.inner.store.delete(&rt_key).await,
        }
        .map_err(|e| {
            err(
                ErrorKind::Store,
                format!("cannot store the refresh token of account {account:?}: {e}"),
            )
        })?;
        let has_refresh = resp.refresh_token.is_some();
        {
            let mut st = slot.lock();
            st.tokens.clear();
            st.has_refresh = Some(has_refresh);
            st.sign_in_reason = None;
            st.error = None;
        }
        self.cache(account, &slot, scopes, resp, false);
        tracing::info!(
            target: "tokenbroker::audit",
            uid = caller.uid,
            pid = caller.pid,
            exe = %caller.exe_display(),
            account = %account,
            refresh_token = has_refresh,
            "signed in"
        );
        self.emit(Event::AccountChanged {
            account: account.to_owned(),
            state: AccountState::SignedIn,
        });
        drop(_flight);
        self.account_info(account)
    }

    /// Revoke at the server (best effort) and delete the stored and cached tokens.
    pub async fn sign_out(
        &self,
        caller: &Caller,
        account: &str,
    ) -> Result<SignOutReply, BrokerError> {
        let (_, acct, prov) = self.account(account)?;
        let slot = self.slot(account);
        let _flight = slot.flight.lock().await;
        let rt_key = SecretKey::RefreshToken {
            account: account.to_owned(),
        };
        let rt = if acct.grant == Grant::Password {
            self.inner
                .store
                .get(&rt_key)
                .await
                .map_err(|e| err(ErrorKind::Store, e.to_string()))?
        } else {
            None
        };
        let access: Vec<SecretText> = slot
            .lock()
            .tokens
            .values()
            .map(|t| t.token.clone())
            .collect();
        let mut warning = None;
        let mut revoked = false;
        match self.client(&acct.provider, &prov).await {
            Ok((endpoints, secret)) => {
                let client = ClientCredentials {
                    client_id: &prov.client_id,
                    method: prov.client_auth,
                    secret: secret.as_ref(),
                };
                let mut todo: Vec<(&SecretText, &str)> = Vec::new();
                if let Some(rt) = &rt {
                    todo.push((rt, "refresh_token"));
                }
                todo.extend(access.iter().map(|t| (t, "access_token")));
                for (token, hint) in todo {
                    match grant::revoke(&self.inner.http, &endpoints, &client, token, hint).await {
                        Ok(true) => revoked = true,
                        Ok(false) => {
                            warning = Some(format!(
                                "provider {:?} has no revocation endpoint: the tokens were deleted here but stay valid at the server until they expire",
                                acct.provider
                            ));
                            break;
                        }
                        Err(e) => {
                            warning =
                                Some(format!("the server did not confirm the revocation: {e}"));
                        }
                    }
                }
            }
            Err(e) => warning = Some(format!("could not revoke at the server: {}", e.message)),
        }
        if acct.grant == Grant::Password {
            self.inner.store.delete(&rt_key).await.map_err(|e| {
                err(
                    ErrorKind::Store,
                    format!("cannot delete the refresh token: {e}"),
                )
            })?;
        }
        let state = {
            let mut st = slot.lock();
            st.tokens.clear();
            st.has_refresh = Some(false);
            st.error = None;
            st.sign_in_reason = Some("signed out".into());
            st.state(acct.grant, now_unix())
        };
        tracing::info!(
            target: "tokenbroker::audit",
            uid = caller.uid,
            pid = caller.pid,
            exe = %caller.exe_display(),
            account = %account,
            revoked,
            "signed out"
        );
        self.emit(Event::AccountChanged {
            account: account.to_owned(),
            state,
        });
        Ok(SignOutReply { revoked, warning })
    }

    // ---- status ----

    pub fn account_info(&self, name: &str) -> Result<AccountInfo, BrokerError> {
        let (_, acct, prov) = self.account(name)?;
        let slot = self.slot(name);
        let st = slot.lock();
        let state = st.state(acct.grant, now_unix());
        let detail = match state {
            AccountState::Error => st.error.clone(),
            AccountState::NeedsSignIn => st.sign_in_reason.clone(),
            AccountState::SignedIn => None,
        };
        Ok(AccountInfo {
            name: name.to_owned(),
            provider: acct.provider.clone(),
            grant: acct.grant,
            username: acct.username.clone(),
            scopes: acct.default_scopes(&prov).to_vec(),
            state,
            expires_at: st.latest_expiry().filter(|e| *e > now_unix()),
            detail,
        })
    }

    pub fn list_accounts(&self) -> Vec<AccountInfo> {
        let config = self.config();
        config
            .accounts
            .keys()
            .filter_map(|n| self.account_info(n).ok())
            .collect()
    }

    pub fn status(&self) -> StatusReply {
        StatusReply {
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            uptime_secs: self.inner.started.elapsed().as_secs(),
            config_path: self.inner.config_path.display().to_string(),
            socket_path: lock(&self.inner.socket_path).clone(),
            accounts: self.list_accounts(),
        }
    }

    // ---- admin ----

    pub fn list_providers(&self) -> Vec<ProviderInfo> {
        let config = self.config();
        config
            .providers
            .iter()
            .map(|(name, p)| {
                let state = self.provider_state(name);
                ProviderInfo {
                    spec: p.to_spec(name),
                    has_client_secret: matches!(state.secret.get(), Some(Some(_))),
                }
            })
            .collect()
    }

    pub async fn add_provider(
        &self,
        caller: &Caller,
        params: AddProviderParams,
    ) -> Result<ProviderInfo, BrokerError> {
        let name = params.provider.name.clone();
        check_name("provider", &name).map_err(|m| err(ErrorKind::InvalidArgument, m))?;
        let pc = ProviderConfig::from_spec(&params.provider);
        pc.validate(&name)
            .map_err(|(_, m)| err(ErrorKind::InvalidArgument, m))?;
        if let Some(s) = &params.client_secret {
            if !pc.client_auth.needs_secret() {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    "a client secret was given, but the provider uses client_auth none",
                ));
            }
            if s.is_empty() || s.expose().len() > 4096 {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    "the client secret must be 1 to 4096 bytes",
                ));
            }
        }
        let _admin = self.inner.admin.lock().await;
        if self.config().providers.contains_key(&name) {
            return Err(err(
                ErrorKind::AlreadyExists,
                format!("provider {name:?} exists already: remove it first"),
            ));
        }
        // Check the provider now, so that a typo in the issuer fails here and not at sign-in.
        let fresh = Arc::new(ProviderState::default());
        if pc.issuer.is_some() {
            let ep = discover(&self.inner.http, &pc).await.map_err(|e| {
                err(
                    ErrorKind::NetworkError,
                    format!("provider {name:?}: discovery failed: {e}"),
                )
            })?;
            let _ = fresh.endpoints.set(ep);
        }
        let key = SecretKey::ClientSecret {
            provider: name.clone(),
        };
        if let Some(s) = &params.client_secret {
            self.inner
                .store
                .set(&key, s)
                .await
                .map_err(|e| err(ErrorKind::Store, e.to_string()))?;
        }
        let _ = fresh.secret.set(params.client_secret.clone());
        let committed = self.edit(Edit::Provider(name.clone(), pc.clone())).await;
        if let Err(e) = committed {
            if params.client_secret.is_some() {
                let _ = self.inner.store.delete(&key).await;
            }
            return Err(e);
        }
        lock(&self.inner.providers).insert(name.clone(), fresh);
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
        let config = self.config();
        let prov = config
            .providers
            .get(&p.provider)
            .ok_or_else(|| no_provider(&p.provider))?;
        if !prov.client_auth.needs_secret() {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "provider {:?} uses client_auth none: it has no secret",
                    p.provider
                ),
            ));
        }
        if p.client_secret.is_empty() || p.client_secret.expose().len() > 4096 {
            return Err(err(
                ErrorKind::InvalidArgument,
                "the client secret must be 1 to 4096 bytes",
            ));
        }
        let _admin = self.inner.admin.lock().await;
        let key = SecretKey::ClientSecret {
            provider: p.provider.clone(),
        };
        self.inner
            .store
            .set(&key, &p.client_secret)
            .await
            .map_err(|e| err(ErrorKind::Store, e.to_string()))?;
        let fresh = ProviderState::default();
        let _ = fresh.secret.set(Some(p.client_secret.clone()));
        if let Some(old) = lock(&self.inner.providers).get(&p.provider) {
            if let Some(ep) = old.endpoints.get() {
                let _ = fresh.endpoints.set(ep.clone());
            }
        }
        lock(&self.inner.providers).insert(p.provider.clone(), Arc::new(fresh));
        tracing::info!(target: "tokenbroker::audit", uid = caller.uid, provider = %p.provider, "client secret set");
        Ok(Done {})
    }

    pub async fn remove_provider(&self, caller: &Caller, name: &str) -> Result<Done, BrokerError> {
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
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "provider {name:?} is used by account(s) {}: remove them first",
                    users.join(", ")
                ),
            ));
        }
        self.edit(Edit::Remove("providers", name.to_owned()))
            .await?;
        let key = SecretKey::ClientSecret {
            provider: name.to_owned(),
        };
        if let Err(e) = self.inner.store.delete(&key).await {
            tracing::warn!(provider = %name, error = %e, "cannot delete the client secret");
        }
        lock(&self.inner.providers).remove(name);
        tracing::info!(target: "tokenbroker::audit", uid = caller.uid, provider = %name, "provider removed");
        Ok(Done {})
    }

    pub async fn add_account(
        &self,
        caller: &Caller,
        spec: AccountSpec,
    ) -> Result<AccountInfo, BrokerError> {
        check_name("account", &spec.name).map_err(|m| err(ErrorKind::InvalidArgument, m))?;
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
        ac.validate(&spec.name, prov)
            .map_err(|(_, m)| err(ErrorKind::InvalidArgument, m))?;
        self.edit(Edit::Account(spec.name.clone(), ac.clone()))
            .await?;
        // A new account starts clean, even if an old one of that name left a token behind.
        lock(&self.inner.slots).remove(&spec.name);
        if ac.grant == Grant::Password {
            let key = SecretKey::RefreshToken {
                account: spec.name.clone(),
            };
            if let Err(e) = self.inner.store.delete(&key).await {
                tracing::warn!(account = %spec.name, error = %e, "cannot clear an old refresh token");
            }
            self.slot(&spec.name).lock().has_refresh = Some(false);
        }
        tracing::info!(target: "tokenbroker::audit", uid = caller.uid, account = %spec.name, "account added");
        self.account_info(&spec.name)
    }

    pub async fn remove_account(&self, caller: &Caller, name: &str) -> Result<Done, BrokerError> {
        self.account(name)?;
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
        lock(&self.inner.slots).remove(name);
        tracing::info!(target: "tokenbroker::audit", uid = caller.uid, account = %name, "account removed");
        Ok(Done {})
    }

    /// Edit the config file and adopt the result. The caller holds the admin lock.
    async fn edit(&self, edit: Edit) -> Result<(), BrokerError> {
        let path = self.inner.config_path.clone();
        let new = tokio::task::spawn_blocking(move || {
            let mut ed = ConfigEditor::open(&path)?;
            match &edit {
                Edit::Provider(name, p) => ed.set("providers", name, p)?,
                Edit::Account(name, a) => ed.set("accounts", name, a)?,
                Edit::Remove(section, name) => ed.remove(section, name),
            }
            ed.commit()
        })
        .await
        .map_err(|e| err(ErrorKind::Internal, format!("config edit failed: {e}")))?
        .map_err(|e| e.to_broker())?;
        let http_changed = new.http != self.config().http;
        if http_changed {
            tracing::warn!("http settings changed on disk: they take effect at the next start");
        }
        self.replace_config(new);
        Ok(())
    }
}

/// One change to the config file.
enum Edit {
    Provider(String, ProviderConfig),
    Account(String, AccountConfig),
    Remove(&'static str, String),
}

fn no_provider(name: &str) -> BrokerError {
    err(
        ErrorKind::NoSuchProvider,
        format!(
            "no provider named {:?}: see `tokenbroker provider list`",
            crate::config::shorten(name)
        ),
    )
}

/// A failed grant, in words that say which account and what to do.
fn grant_failure(account: &str, provider: &str, grant: &str, e: GrantError) -> BrokerError {
    match &e {
        GrantError::Network(n) => err(
            ErrorKind::NetworkError,
            format!("cannot reach the authorization server of provider {provider:?} for account {account:?}: {n}"),
        ),
        GrantError::BadReply(m) => err(
            ErrorKind::ServerError,
            format!("the authorization server of provider {provider:?} failed the {grant} request for account {account:?}: {m}"),
        ),
        GrantError::OAuth { error, status, .. } => {
            let kind = match error.as_str() {
                "invalid_client" | "unauthorized_client" => ErrorKind::InvalidCredentials,
                "invalid_scope" => ErrorKind::InvalidArgument,
                _ if *status >= 500 => ErrorKind::ServerError,
                _ => ErrorKind::ServerError,
            };
            let hint = match error.as_str() {
                "invalid_client" => ": check the provider's client id and secret",
                "unauthorized_client" => ": the client is not allowed this grant at the server",
                "invalid_scope" => ": the server does not allow these scopes",
                _ => "",
            };
            err(
                kind,
                format!("the authorization server of provider {provider:?} refused the {grant} request for account {account:?}: {e}{hint}"),
            )
        }
    }
}
