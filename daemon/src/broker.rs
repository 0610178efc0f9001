//! The service core. Both transports decode a request, identify the caller, and call these
//! methods; no logic lives in a transport.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;
use tokenbroker_client::{
    AccountInfo, AccountSpec, AccountState, AddProviderParams, AppAccess, AppPolicy, AuditQuery,
    AuditRecord, BrokerError, ClientAuth, ConsentAnswer, ConsentRequest, Decision, Done, ErrorKind,
    GetTokenParams, Grant, IntrospectReply, PresetInfo, ProviderInfo, SecretText,
    SetClientSecretParams, SignOutReply, StatusReply, TokenReply, PROTOCOL_VERSION,
};

use crate::assertion::ClientKey;
use crate::audit::Audit;
use crate::caller::Caller;
use crate::config::{
    check_app_path, check_name, check_scope, lookup_group, resolve_user, shorten, AccountConfig,
    AppRule, Config, ConfigEditor, Layout, ProviderConfig,
};
use crate::engine::{
    now_unix, refresh_point, scope_key, Cached, Lookup, ScopeKey, Slot, MIN_REMAINING,
};
use crate::grant::{self, ClientCredentials, GrantError, TokenResponse};
use crate::http::Http;
use crate::policy::{self, Trusted, Verdict};
use crate::preset::Dialect;
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
    ConsentRequired(ConsentRequest),
}

/// Whom the daemon serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One user: every account is the user's; the socket and bus refuse other uids.
    User,
    /// Every local user: each account has an owner, the only uid that may use it; root and the
    /// admin group administer.
    System,
}

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

/// What the broker needs besides its config and store.
pub struct Options {
    pub mode: Mode,
    /// The append-only audit file; None logs decisions only.
    pub audit_path: Option<PathBuf>,
    /// The user's own tools, allowed any of the user's tokens.
    pub trusted: Trusted,
}

#[derive(Default)]
struct Consents {
    pending: Mutex<HashMap<u64, PendingConsent>>,
    next: AtomicU64,
    /// Connections that can put a consent request to a user, by that user's uid.
    agents: Mutex<HashMap<u32, usize>>,
}

struct PendingConsent {
    request: ConsentRequest,
    tx: tokio::sync::oneshot::Sender<ConsentAnswer>,
}

/// Counts a consent agent while it is connected.
pub struct AgentGuard {
    broker: Broker,
    uid: u32,
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let mut agents = lock(&self.broker.inner.consents.agents);
        if let Some(n) = agents.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                agents.remove(&self.uid);
            }
        }
    }
}

fn too_long(account: &str, life: u64, min_ttl: u64) -> BrokerError {
    err(
        ErrorKind::InvalidArgument,
        format!(
            "the server issues tokens for account {account:?} valid for about {life} s, less than the min_ttl of {min_ttl} s"
        ),
    )
}

#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    mode: Mode,
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
    audit: Audit,
    trusted: Trusted,
    consents: Consents,
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
    pub fn new(
        layout: Layout,
        config: Config,
        store: Store,
        options: Options,
    ) -> Result<Self, BrokerError> {
        let http = Http::new(&config.http).map_err(|e| err(ErrorKind::Internal, e.to_string()))?;
        let (events, _) = tokio::sync::broadcast::channel(256);
        Ok(Self {
            inner: Arc::new(Inner {
                layout,
                mode: options.mode,
                socket_path: Mutex::new(String::new()),
                config: RwLock::new(Arc::new(config)),
                admin: tokio::sync::Mutex::new(()),
                http,
                store,
                providers: Mutex::default(),
                slots: Mutex::default(),
                events,
                started: Instant::now(),
                audit: Audit::open(options.audit_path),
                trusted: options.trusted,
                consents: Consents::default(),
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
        self.load_states_of(&config, config.accounts.keys()).await;
    }

    async fn load_states_of<'a>(&self, config: &Config, names: impl Iterator<Item = &'a String>) {
        for name in names {
            let Some(acct) = config.accounts.get(name) else {
                continue;
            };
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

    /// Read the config files again (SIGHUP) and adopt them. Cached tokens stay for every
    /// account whose provider and settings did not change; an invalid config changes nothing.
    pub async fn reload(&self) -> Result<Reloaded, crate::error::Error> {
        let _admin = self.inner.admin.lock().await;
        let layout = self.inner.layout.clone();
        let new = tokio::task::spawn_blocking(move || layout.load())
            .await
            .map_err(|e| crate::error::Error::broker(ErrorKind::Internal, e.to_string()))??;
        let old = self.config();
        if new.http != old.http {
            tracing::warn!("http settings changed on disk: they take effect at the next start");
        }
        let mut summary = Reloaded::default();
        {
            let mut providers = lock(&self.inner.providers);
            for (name, p) in &old.providers {
                if new.providers.get(name) != Some(p) {
                    providers.remove(name);
                    summary.providers_changed += 1;
                }
            }
        }
        let same_account = |a: &AccountConfig, b: &AccountConfig| {
            let (mut a, mut b) = (a.clone(), b.clone());
            a.apps.clear();
            b.apps.clear();
            a == b
        };
        let mut added = Vec::new();
        {
            let mut slots = lock(&self.inner.slots);
            for (name, a) in &old.accounts {
                let kept = new.accounts.get(name).is_some_and(|n| {
                    same_account(a, n)
                        && new.providers.get(&a.provider) == old.providers.get(&a.provider)
                });
                if !kept {
                    slots.remove(name);
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
        }
        summary.providers = new.providers.len();
        summary.accounts = new.accounts.len();
        self.replace_config(new);
        let config = self.config();
        self.load_states_of(&config, added.iter()).await;
        for name in &added {
            if let Ok(info) = self.account_info(name) {
                self.emit(Event::AccountChanged {
                    account: name.clone(),
                    state: info.state,
                });
            }
        }
        Ok(summary)
    }

    fn account(
        &self,
        name: &str,
    ) -> Result<(Arc<Config>, AccountConfig, ProviderConfig), BrokerError> {
        check_name("account", name).map_err(|m| err(ErrorKind::InvalidArgument, m))?;
        let config = self.config();
        let acct = config
            .accounts
            .get(name)
            .cloned()
            .ok_or_else(|| no_account(name))?;
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
            .map_err(|e| discovery_failure(name, &e))
    }

    async fn client_secret(
        &self,
        name: &str,
        p: &ProviderConfig,
    ) -> Result<Option<SecretText>, BrokerError> {
        if !p.auth().needs_secret() {
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

    /// Everything a grant needs: endpoints, the client's credentials, the provider's dialect.
    async fn client(
        &self,
        p_name: &str,
        p: &ProviderConfig,
    ) -> Result<ClientMaterial, BrokerError> {
        let endpoints = self.endpoints(p_name, p).await?;
        let secret = self.client_secret(p_name, p).await?;
        let auth = p.auth();
        if auth.needs_secret() && secret.is_none() {
            return Err(err(
                ErrorKind::Config,
                format!(
                    "provider {p_name:?} uses {} but no client secret is stored: run `tokenbroker provider set-secret {p_name}`",
                    auth.as_str()
                ),
            ));
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

    /// A token for the caller, if the account's policy (or the user, asked) allows it. Every
    /// token handed out and every denial is audited.
    pub async fn get_token(
        &self,
        caller: &Caller,
        p: GetTokenParams,
    ) -> Result<TokenReply, BrokerError> {
        let account = p.account.clone();
        let asked = p.scopes.clone();
        match self.get_token_inner(caller, p).await {
            Ok((reply, rule)) => {
                self.inner
                    .audit
                    .record(caller, &account, &reply.scopes, Decision::Allow, &rule);
                Ok(reply)
            }
            Err(e) => {
                if e.kind == ErrorKind::Denied {
                    self.inner
                        .audit
                        .record(caller, &account, &asked, Decision::Deny, &e.message);
                }
                Err(e)
            }
        }
    }

    async fn get_token_inner(
        &self,
        caller: &Caller,
        p: GetTokenParams,
    ) -> Result<(TokenReply, String), BrokerError> {
        if p.min_ttl > MAX_MIN_TTL {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "min_ttl {} is more than the allowed {MAX_MIN_TTL} seconds",
                    p.min_ttl
                ),
            ));
        }
        let (config, acct, prov) = self.own_account(caller, &p.account)?;
        let requested = self.normalize_scopes(&acct, &prov, &p.scopes)?;
        let verdict = if self.inner.mode == Mode::System {
            // The owner's uid, checked above, is the whole identity (see require_trusted).
            Verdict::Allow {
                scopes: requested.clone(),
                rule: format!("the account's owner (uid {})", caller.uid),
            }
        } else {
            policy::decide(
                &self.inner.trusted,
                caller,
                &p.account,
                &acct,
                &prov,
                &requested,
                !p.scopes.is_empty(),
            )
        };
        let (key, rule) = match verdict {
            Verdict::Allow { scopes, rule } => (scopes, rule),
            Verdict::Deny(m) => return Err(err(ErrorKind::Denied, m)),
            Verdict::Ask { scopes } => {
                let rule = self.ask_consent(caller, &p.account, &scopes).await?;
                (scopes, rule)
            }
        };
        let min_ttl = u64::from(p.min_ttl);
        let slot = self.slot(&p.account);
        let proactive = config.engine.proactive_refresh;

        let reply = match slot.lookup(&key, min_ttl, now_unix()) {
            Lookup::Hit { reply, refresh_due } => {
                if refresh_due && proactive {
                    self.spawn_refresh(p.account.clone(), key.clone());
                }
                reply
            }
            Lookup::Miss => {
                // A min_ttl the server's tokens cannot meet would only burn a refresh.
                let known = slot.lock().last_lifetime;
                if let Some(life) = known.filter(|l| min_ttl + MIN_REMAINING > *l) {
                    return Err(too_long(&p.account, life, min_ttl));
                }
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
                            return Err(too_long(&p.account, left, min_ttl));
                        }
                        reply
                    }
                }
            }
        };
        Ok((reply, rule))
    }

    /// Hold the request until a consent agent answers for the user, or the time runs out.
    async fn ask_consent(
        &self,
        caller: &Caller,
        account: &str,
        scopes: &ScopeKey,
    ) -> Result<String, BrokerError> {
        let exe = policy::exe_key(caller).unwrap_or_default();
        let consents = &self.inner.consents;
        let has_agent = lock(&consents.agents)
            .get(&caller.uid)
            .is_some_and(|n| *n > 0);
        if !has_agent {
            return Err(err(
                ErrorKind::Denied,
                format!(
                    "{exe} has no policy for account {account:?} and no consent agent (the tray, or `tokenbroker consent watch`) is running to ask the user: allow it with `tokenbroker allow {account} --app {exe}{}`",
                    scopes.iter().map(|s| format!(" --scope {s}")).collect::<String>()
                ),
            ));
        }
        let timeout = self.config().policy.consent_timeout_secs;
        let id = consents.next.fetch_add(1, Ordering::SeqCst) + 1;
        let request = ConsentRequest {
            id,
            account: account.to_owned(),
            exe: exe.clone(),
            pid: caller.pid,
            uid: caller.uid,
            scopes: scopes.clone(),
            transport: caller.transport.to_owned(),
            expires_at: now_unix() + timeout,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&consents.pending).insert(
            id,
            PendingConsent {
                request: request.clone(),
                tx,
            },
        );
        tracing::info!(id, account = %account, exe = %exe, "asking the user for consent");
        self.emit(Event::ConsentRequired(request));
        let answer = tokio::time::timeout(Duration::from_secs(timeout), rx).await;
        lock(&consents.pending).remove(&id);
        match answer {
            Ok(Ok(ConsentAnswer::AllowOnce)) => Ok("allowed once by the user".into()),
            Ok(Ok(ConsentAnswer::AllowAlways)) => {
                self.write_app_rule(account, &exe, Some((AppAccess::Allow, scopes.clone())))
                    .await?;
                Ok("allowed always by the user".into())
            }
            Ok(Ok(ConsentAnswer::Deny)) => Err(err(
                ErrorKind::Denied,
                format!("the user denied {exe} access to account {account:?}"),
            )),
            Ok(Err(_)) | Err(_) => Err(err(
                ErrorKind::Denied,
                format!(
                    "nobody answered the consent request for {exe} on account {account:?} within {timeout} s"
                ),
            )),
        }
    }

    /// A consent agent's connection: counted, for its user, while it lives.
    pub fn consent_agent(&self, caller: &Caller) -> AgentGuard {
        *lock(&self.inner.consents.agents)
            .entry(caller.uid)
            .or_default() += 1;
        AgentGuard {
            broker: self.clone(),
            uid: caller.uid,
        }
    }

    pub fn list_consents(&self, caller: &Caller) -> Result<Vec<ConsentRequest>, BrokerError> {
        self.require_trusted(caller, "see consent requests")?;
        let mut v: Vec<ConsentRequest> = lock(&self.inner.consents.pending)
            .values()
            .filter(|p| p.request.uid == caller.uid)
            .map(|p| p.request.clone())
            .collect();
        v.sort_by_key(|r| r.id);
        Ok(v)
    }

    pub fn answer_consent(
        &self,
        caller: &Caller,
        id: u64,
        answer: ConsentAnswer,
    ) -> Result<Done, BrokerError> {
        self.require_trusted(caller, "answer consent requests")?;
        if answer == ConsentAnswer::AllowAlways
            && self.inner.mode == Mode::System
            && !self.is_admin(caller)
        {
            return Err(err(
                ErrorKind::Denied,
                "in system mode only admins set standing rules: answer allow-once, or ask an admin to run `tokenbroker --system allow ...`",
            ));
        }
        // Requests of other users' apps are not this caller's to see or answer.
        let pending = {
            let mut pending = lock(&self.inner.consents.pending);
            match pending.get(&id) {
                Some(p) if p.request.uid == caller.uid => pending.remove(&id),
                _ => None,
            }
        };
        let Some(p) = pending else {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("no pending consent request {id}: it was answered or timed out"),
            ));
        };
        tracing::info!(id, answer = ?answer, exe = %p.request.exe, account = %p.request.account, "consent answered");
        let _ = p.tx.send(answer);
        Ok(Done {})
    }

    /// Only the user's own tokenbroker tools may change policy, answer consent, or administer.
    ///
    /// System mode: the service runs as its own unprivileged user, and the kernel shows the
    /// executable of another user's process (`/proc/PID/exe`) only to that user or to a holder
    /// of CAP_SYS_PTRACE, which a hardened service must not have. So there the caller is the
    /// uid (and groups) the kernel reports, whatever program it runs: every process of a user
    /// acts for that user, and admin rights come from uid 0 or the admin group.
    pub fn require_trusted(&self, caller: &Caller, what: &str) -> Result<(), BrokerError> {
        if self.inner.mode == Mode::System {
            return Ok(());
        }
        let ok = policy::exe_key(caller)
            .map(|e| self.inner.trusted.contains(std::path::Path::new(&e)))
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(err(
                ErrorKind::Denied,
                format!(
                    "only the tokenbroker CLI or tray may {what}; {} may not",
                    caller.exe_display()
                ),
            ))
        }
    }

    /// System mode: root and members of the admin group administer. In user mode the user's
    /// own tools do (the socket and bus refuse every other uid).
    pub fn is_admin(&self, caller: &Caller) -> bool {
        match self.inner.mode {
            Mode::User => true,
            Mode::System => {
                caller.uid == 0
                    || lookup_group(&self.config().system.admin_group)
                        .is_some_and(|g| caller.in_group(g))
            }
        }
    }

    /// Per-app rules need the caller's executable, which only the user-mode daemon can see
    /// (see require_trusted).
    fn require_per_app_policy(&self) -> Result<(), BrokerError> {
        if self.inner.mode == Mode::System {
            return Err(err(
                ErrorKind::InvalidArgument,
                "per-app rules are for the user-mode daemon: the system service cannot see the executables of other users' processes, so it authorizes by user (each account's owner) alone",
            ));
        }
        Ok(())
    }

    /// The user's own tools, run by an admin.
    fn require_admin(&self, caller: &Caller, what: &str) -> Result<(), BrokerError> {
        self.require_trusted(caller, what)?;
        if self.is_admin(caller) {
            return Ok(());
        }
        Err(err(
            ErrorKind::Denied,
            format!(
                "only root and members of group {:?} may {what}",
                self.config().system.admin_group
            ),
        ))
    }

    /// Whether the caller owns the account: in system mode, the account's owner uid; in user
    /// mode, always (the transports admit the user only).
    fn owns(&self, caller: &Caller, acct: &AccountConfig) -> bool {
        match self.inner.mode {
            Mode::User => true,
            Mode::System => acct.owner_uid == Some(caller.uid),
        }
    }

    /// An account the caller may see: its own, or any for an admin.
    fn may_see(&self, caller: &Caller, acct: &AccountConfig) -> bool {
        self.owns(caller, acct) || self.sees_all(caller)
    }

    /// A system-mode admin sees every account. Listings ask this once, not per account: it
    /// looks the admin group up in the group database.
    fn sees_all(&self, caller: &Caller) -> bool {
        self.inner.mode == Mode::System && self.is_admin(caller)
    }

    /// The account, if the caller owns it. Another user's account is reported as missing, the
    /// same as one that does not exist, so that account names do not leak between users.
    fn own_account(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(Arc<Config>, AccountConfig, ProviderConfig), BrokerError> {
        let found = self.account(name)?;
        if self.owns(caller, &found.1) {
            Ok(found)
        } else {
            Err(no_account(name))
        }
    }

    /// The account, if the caller may see it (owner or admin).
    fn visible_account(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(Arc<Config>, AccountConfig, ProviderConfig), BrokerError> {
        let found = self.account(name)?;
        if self.may_see(caller, &found.1) {
            Ok(found)
        } else {
            Err(no_account(name))
        }
    }

    /// Whether an event is for this subscriber: events of accounts it may see; consent
    /// requests of its own apps only.
    pub fn event_is_for(&self, caller: &Caller, event: &Event) -> bool {
        if self.inner.mode == Mode::User {
            return true;
        }
        let account = match event {
            Event::AccountChanged { account, .. } | Event::SignInRequired { account, .. } => {
                account
            }
            Event::ConsentRequired(r) => return r.uid == caller.uid,
        };
        self.config()
            .accounts
            .get(account)
            .is_some_and(|a| self.may_see(caller, a))
    }

    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    // ---- policy ----

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
        check_app_path(&p.exe).map_err(|m| err(ErrorKind::InvalidArgument, m))?;
        for s in &p.scopes {
            check_scope(s).map_err(|m| err(ErrorKind::InvalidArgument, m))?;
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
    async fn write_app_rule(
        &self,
        account: &str,
        exe: &str,
        rule: Option<(AppAccess, ScopeKey)>,
    ) -> Result<(), BrokerError> {
        let _admin = self.inner.admin.lock().await;
        let (_, acct, _) = self.account(account)?;
        if rule.is_none() && !acct.apps.contains_key(exe) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("account {account:?} has no policy for {}", shorten(exe)),
            ));
        }
        let rule = rule.map(|(access, scopes)| AppRule { access, scopes });
        self.edit(Edit::AppRule(account.to_owned(), exe.to_owned(), rule))
            .await
    }

    pub fn read_audit(
        &self,
        caller: &Caller,
        q: &AuditQuery,
    ) -> Result<Vec<AuditRecord>, BrokerError> {
        self.require_trusted(caller, "read the audit log")?;
        let mut records = self.inner.audit.read(q).map_err(|e| {
            err(
                ErrorKind::Internal,
                format!("cannot read the audit log: {e}"),
            )
        })?;
        // Outside user mode, a user who is not an admin reads only the records of its own calls.
        if self.inner.mode == Mode::System && !self.is_admin(caller) {
            records.retain(|r| r.uid == caller.uid);
        }
        Ok(records)
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
        let material = self.client(&acct.provider, prov).await?;
        let (endpoints, client) = (&material.endpoints, material.credentials());
        match acct.grant {
            Grant::ClientCredentials => {
                let g = grant::Grant::ClientCredentials { scopes: key };
                grant::request_token(&self.inner.http, endpoints, &client, &g)
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
                    let reason = {
                        let st = slot.lock();
                        match (&st.sign_in_reason, st.tokens.is_empty()) {
                            (Some(r), _) => r.clone(),
                            (None, true) => "the account is not signed in".to_owned(),
                            (None, false) => {
                                "its access token expired and the server issues no refresh token"
                                    .to_owned()
                            }
                        }
                    };
                    return Err(self.needs_sign_in(name, slot, reason));
                };
                // Omit scope to keep the original grant; name it only to narrow.
                let default = scope_key(acct.default_scopes(prov));
                let scopes = (*key != default).then_some(key.as_slice());
                let g = grant::Grant::Refresh {
                    refresh_token: &rt,
                    scopes,
                };
                match grant::request_token(&self.inner.http, endpoints, &client, &g).await {
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
                                // Servers that rotate may revoke the access tokens issued with
                                // the old refresh token (DOT does): drop them from the cache.
                                slot.lock().tokens.clear();
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
        let resp_lifetime = resp.expires_in;
        let cached = Cached {
            token: resp.access_token,
            token_type: resp.token_type,
            scopes,
            expires_at: now + resp.expires_in,
            refresh_at,
            used,
            refresh_started: false,
            serial: 0,
        };
        let reply = cached.reply();
        slot.lock().last_lifetime = Some(resp_lifetime);
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
            self.spawn_refresh(name, key);
        }
    }

    /// Refresh in the background, unless a refresh for this account is running already. The new
    /// token starts unused: it is refreshed again only if callers use it.
    fn spawn_refresh(&self, name: String, key: ScopeKey) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok((_, acct, prov)) = this.account(&name) else {
                return;
            };
            let slot = this.slot(&name);
            let Ok(_flight) = slot.flight.try_lock() else {
                return;
            };
            match this.fetch(&name, &acct, &prov, &slot, key, false).await {
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
        // Otherwise an app could sign the account in to credentials of its own choosing.
        self.require_trusted(caller, "sign in")?;
        let (_, acct, prov) = self.own_account(caller, account)?;
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
        let material = self.client(&acct.provider, &prov).await?;
        let endpoints = &material.endpoints;
        let scopes = scope_key(acct.default_scopes(&prov));
        let result = {
            let client = material.credentials();
            let g = grant::Grant::Password {
                username: &username,
                password: &password,
                scopes: &scopes,
            };
            grant::request_token(&self.inner.http, endpoints, &client, &g).await
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
        // The owner, or an admin removing the account.
        let (_, acct, prov) = self.visible_account(caller, account)?;
        // The user's own tools, and apps the account's policy allows.
        let allowed_app = policy::exe_key(caller)
            .and_then(|e| acct.apps.get(&e).map(|r| r.access == AppAccess::Allow))
            .unwrap_or(false);
        if !allowed_app {
            self.require_trusted(
                caller,
                "sign out of an account whose policy does not allow it",
            )?;
        }
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
            Ok(material) => {
                let (endpoints, client) = (&material.endpoints, material.credentials());
                let mut todo: Vec<(&SecretText, &str)> = Vec::new();
                if let Some(rt) = &rt {
                    todo.push((rt, "refresh_token"));
                }
                todo.extend(access.iter().map(|t| (t, "access_token")));
                for (token, hint) in todo {
                    match grant::revoke(&self.inner.http, endpoints, &client, token, hint).await {
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

    // ---- introspection, presets ----

    /// RFC 7662 introspection of the account's current access token at its provider.
    pub async fn introspect(
        &self,
        caller: &Caller,
        account: &str,
    ) -> Result<IntrospectReply, BrokerError> {
        self.require_trusted(caller, "introspect tokens")?;
        let (_, acct, prov) = self.own_account(caller, account)?;
        let material = self.client(&acct.provider, &prov).await?;
        if material.endpoints.introspection.is_none() {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "provider {:?} has no introspection endpoint: set introspection_endpoint",
                    acct.provider
                ),
            ));
        }
        let token = self
            .get_token(
                caller,
                GetTokenParams {
                    account: account.to_owned(),
                    scopes: Vec::new(),
                    min_ttl: 0,
                },
            )
            .await?;
        grant::introspect(
            &self.inner.http,
            &material.endpoints,
            &material.credentials(),
            &token.access_token,
        )
        .await
        .map_err(|e| grant_failure(account, &acct.provider, "introspection", e))
    }

    pub fn list_presets() -> Vec<PresetInfo> {
        crate::preset::PRESETS
            .iter()
            .map(|p| PresetInfo {
                name: p.name.into(),
                description: p.description.into(),
                requires: p.requires.iter().map(|r| r.to_string()).collect(),
                client_auth: p.client_auth,
            })
            .collect()
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
            owner: acct.owner.clone(),
        })
    }

    /// The accounts the caller may see: in system mode its own (an admin's: all).
    pub fn list_accounts(&self, caller: &Caller) -> Vec<AccountInfo> {
        let config = self.config();
        let all = self.sees_all(caller);
        config
            .accounts
            .iter()
            .filter(|(_, a)| all || self.owns(caller, a))
            .filter_map(|(n, _)| self.account_info(n).ok())
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

    // ---- admin ----

    pub async fn list_providers(&self) -> Vec<ProviderInfo> {
        let config = self.config();
        let mut out = Vec::with_capacity(config.providers.len());
        for (name, p) in &config.providers {
            // Looks in the secret store once per provider, then remembers.
            let has_client_secret = matches!(self.client_secret(name, p).await, Ok(Some(_)));
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
        check_name("provider", &name).map_err(|m| err(ErrorKind::InvalidArgument, m))?;
        let pc = ProviderConfig::from_spec(&params.provider);
        pc.validate(&name)
            .map_err(|(_, m)| err(ErrorKind::InvalidArgument, m))?;
        if let Some(s) = &params.client_secret {
            if !pc.auth().needs_secret() {
                return Err(err(
                    ErrorKind::InvalidArgument,
                    "a client secret was given, but the provider's client authentication uses none",
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
        if pc.token_url().is_none() {
            let ep = discover(&self.inner.http, &pc)
                .await
                .map_err(|e| discovery_failure(&name, &e))?;
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
        let committed = self
            .edit(Edit::Provider(name.clone(), Box::new(pc.clone())))
            .await;
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
        self.require_admin(caller, "set client secrets")?;
        let config = self.config();
        let prov = config
            .providers
            .get(&p.provider)
            .ok_or_else(|| no_provider(&p.provider))?;
        if !prov.auth().needs_secret() {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "provider {:?} authenticates with {}: it has no client secret",
                    p.provider,
                    prov.auth().as_str()
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
        self.require_trusted(caller, "add accounts")?;
        check_name("account", &spec.name).map_err(|m| err(ErrorKind::InvalidArgument, m))?;
        let mut spec = spec;
        if self.inner.mode == Mode::System {
            // An account belongs to the caller unless an admin names another user.
            match &spec.owner {
                None => spec.owner = Some(caller.uid.to_string()),
                Some(o) => {
                    let uid = resolve_user(o).ok_or_else(|| {
                        err(
                            ErrorKind::InvalidArgument,
                            format!("owner {:?} is not a local user", shorten(o)),
                        )
                    })?;
                    if uid != caller.uid {
                        self.require_admin(caller, "add accounts for other users")?;
                    }
                }
            }
        } else if spec.owner.is_some() {
            return Err(err(
                ErrorKind::InvalidArgument,
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
        self.require_trusted(caller, "remove accounts")?;
        let (_, acct, _) = self.visible_account(caller, name)?;
        if !self.owns(caller, &acct) {
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
        lock(&self.inner.slots).remove(name);
        tracing::info!(target: "tokenbroker::audit", uid = caller.uid, account = %name, "account removed");
        Ok(Done {})
    }

    /// Edit the config file and adopt the result. The caller holds the admin lock. Entries of a
    /// drop-in are the config management's: they are changed in their file, not here.
    async fn edit(&self, edit: Edit) -> Result<(), BrokerError> {
        let (section, name) = match &edit {
            Edit::Provider(n, _) => ("providers", n.as_str()),
            Edit::Account(n, _) => ("accounts", n.as_str()),
            Edit::Remove(section, n) => (*section, n.as_str()),
            Edit::AppRule(account, _, _) => ("accounts", account.as_str()),
        };
        if let Some(file) = self.config().origin(section, name) {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "{} {name:?} is defined in {}: change that file and reload the daemon (systemctl reload tokenbrokerd)",
                    &section[..section.len() - 1],
                    file.display()
                ),
            ));
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

fn discovery_failure(provider: &str, e: &crate::provider::DiscoveryError) -> BrokerError {
    let kind = if e.is_network() {
        ErrorKind::NetworkError
    } else {
        ErrorKind::ServerError
    };
    err(
        kind,
        format!("provider {provider:?}: discovery failed: {e}"),
    )
}

/// What a request to a provider needs, resolved once per request.
struct ClientMaterial {
    endpoints: Endpoints,
    client_id: String,
    method: ClientAuth,
    secret: Option<SecretText>,
    key: Option<ClientKey>,
    dialect: Dialect,
}

impl ClientMaterial {
    fn credentials(&self) -> ClientCredentials<'_> {
        ClientCredentials {
            client_id: &self.client_id,
            method: self.method,
            secret: self.secret.as_ref(),
            key: self.key.as_ref(),
            dialect: &self.dialect,
        }
    }
}

/// One change to the config file.
enum Edit {
    Provider(String, Box<ProviderConfig>),
    Account(String, AccountConfig),
    Remove(&'static str, String),
    AppRule(String, String, Option<AppRule>),
}

fn no_account(name: &str) -> BrokerError {
    err(
        ErrorKind::NoSuchAccount,
        format!("no account named {name:?}: see `tokenbroker accounts`"),
    )
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
        GrantError::OAuth { error, .. } => {
            let kind = match error.as_str() {
                "invalid_client" | "unauthorized_client" => ErrorKind::InvalidCredentials,
                "invalid_scope" => ErrorKind::InvalidArgument,
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
