//! The tray's link to the daemon, and the sign-in and consent flows.
//!
//! Three threads, none of them the GTK one:
//! - **events**: connects, subscribes as a consent agent, and reads notifications; when the
//!   daemon is not there (yet, or any more) it tries again every 2 s at most, for ever.
//! - **jobs**: quick requests (list accounts, sign out, read the audit log), and a refresh of
//!   the account list every [`POLL`] so that expiry times stay current.
//! - **prompts**: one pinentry at a time, sign-in and consent prompts in the order they came.
//!
//! Every request opens its own short connection (the daemon closes idle ones), so that a
//! daemon restart never leaves a stale connection behind. The UI gets a fresh [`Model`] over a
//! channel after every change.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokenbroker_client::{
    AccountState, AuditQuery, Client, ClientError, ConsentRequest, ErrorKind, Grant, Notification,
    SignInParams, SubscribeParams,
};

use crate::model::{audit_text, Action, Link, Model};
use crate::pinentry::{Pinentry, PinentryError};
use crate::prompts;

/// The name the tray gives itself in `Hello` (a hint only: the daemon trusts the kernel).
pub const CLIENT_NAME: &str = "tokenbroker-tray";
/// How often the account list is read again without an event.
pub const POLL: Duration = Duration::from_secs(30);
/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// After the user cancels a sign-in prompt that the daemon asked for, the same account is not
/// prompted for by itself again for this long (the menu still offers it).
pub const QUIET_AFTER_CANCEL: Duration = Duration::from_secs(600);
/// Password attempts per prompt before giving up.
const ATTEMPTS: usize = 3;

/// What the UI is told.
#[derive(Debug, Clone)]
pub enum ToUi {
    Model(Model),
    /// The audit log, as text, for a window.
    Audit(String),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub socket: PathBuf,
    pub pinentry: Pinentry,
}

enum Job {
    Refresh,
    SignOut(String),
    Audit,
}

enum Prompt {
    SignIn {
        account: String,
        reason: Option<String>,
        /// Asked for by the daemon (SignInRequired), not by the user from the menu.
        auto: bool,
    },
    Consent(ConsentRequest),
}

/// The running link; cheap to share.
#[derive(Clone)]
pub struct Backend {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    model: Mutex<Model>,
    ui: Mutex<Sender<ToUi>>,
    jobs: Mutex<Sender<Job>>,
    prompts: Mutex<Sender<Prompt>>,
    /// Accounts with a sign-in prompt queued or showing.
    signing_in: Mutex<HashSet<String>>,
    /// Consent requests queued or showing.
    consenting: Mutex<HashSet<u64>>,
    cancelled: Mutex<HashMap<String, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Backend {
    /// Start the threads; models go to `ui`.
    pub fn start(settings: Settings, ui: Sender<ToUi>) -> Backend {
        let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
        let (prompts_tx, prompts_rx) = std::sync::mpsc::channel();
        let b = Backend {
            inner: Arc::new(Inner {
                settings,
                model: Mutex::new(Model::default()),
                ui: Mutex::new(ui),
                jobs: Mutex::new(jobs_tx),
                prompts: Mutex::new(prompts_tx),
                signing_in: Mutex::new(HashSet::new()),
                consenting: Mutex::new(HashSet::new()),
                cancelled: Mutex::new(HashMap::new()),
            }),
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
                tracing::error!(error = %e, thread = name, "cannot start a thread");
            }
        };
        let e = b.clone();
        spawn("events", Box::new(move || e.events_loop()));
        let j = b.clone();
        spawn("jobs", Box::new(move || j.jobs_loop(jobs_rx)));
        let p = b.clone();
        spawn("prompts", Box::new(move || p.prompts_loop(prompts_rx)));
        b.publish();
        b
    }

    /// A menu item was chosen (Quit is the UI's own).
    pub fn act(&self, action: Action) {
        match action {
            Action::SignIn(account) => self.ask_sign_in(account, None, false),
            Action::SignOut(account) => self.job(Job::SignOut(account)),
            Action::ShowAudit => self.job(Job::Audit),
            Action::Quit => {}
        }
    }

    pub fn model(&self) -> Model {
        lock(&self.inner.model).clone()
    }

    fn connect(&self) -> Result<Client, ClientError> {
        Client::connect(&self.inner.settings.socket, CLIENT_NAME)
    }

    fn publish(&self) {
        let m = self.model();
        let _ = lock(&self.inner.ui).send(ToUi::Model(m));
    }

    fn update(&self, f: impl FnOnce(&mut Model)) {
        let changed = {
            let mut m = lock(&self.inner.model);
            let before = m.clone();
            f(&mut m);
            *m != before
        };
        if changed {
            self.publish();
        }
    }

    fn job(&self, j: Job) {
        let _ = lock(&self.inner.jobs).send(j);
    }

    fn ask_sign_in(&self, account: String, reason: Option<String>, auto: bool) {
        if auto {
            if let Some(t) = lock(&self.inner.cancelled).get(&account) {
                if t.elapsed() < QUIET_AFTER_CANCEL {
                    tracing::info!(account = %account, "sign-in required; not prompting again so soon after a cancel");
                    return;
                }
            }
        }
        if !lock(&self.inner.signing_in).insert(account.clone()) {
            return;
        }
        let _ = lock(&self.inner.prompts).send(Prompt::SignIn {
            account,
            reason,
            auto,
        });
    }

    fn ask_consent(&self, r: ConsentRequest) {
        if !lock(&self.inner.consenting).insert(r.id) {
            return;
        }
        let _ = lock(&self.inner.prompts).send(Prompt::Consent(r));
    }

    // ----- events -----

    fn events_loop(&self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.subscribe() {
                Ok((version, mut sub)) => {
                    backoff = Duration::from_millis(100);
                    tracing::info!(daemon_version = %version, "connected to the daemon");
                    self.update(|m| {
                        m.link = Link::Connected {
                            daemon_version: version,
                        }
                    });
                    self.refresh();
                    self.pick_up_pending_consents();
                    loop {
                        match sub.next_event() {
                            Ok(n) => self.on_event(n),
                            Err(e) => {
                                tracing::warn!(error = %e, "lost the daemon; reconnecting");
                                self.update(|m| m.link = Link::Offline(Some(e.to_string())));
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    // "Not running" is what the icon says already; other failures are news.
                    let why = match &e {
                        ClientError::NotRunning { .. } => None,
                        other => Some(other.to_string()),
                    };
                    self.update(|m| m.link = Link::Offline(why));
                }
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn subscribe(&self) -> Result<(String, tokenbroker_client::client::Subscription), ClientError> {
        let c = self.connect()?;
        let version = c.server.daemon_version.clone();
        let sub = c.subscribe(&SubscribeParams {
            consent_agent: true,
        })?;
        Ok((version, sub))
    }

    fn on_event(&self, n: Notification) {
        match n {
            Notification::AccountChanged { account, state } => {
                tracing::info!(account = %account, state = state.as_str(), "account changed");
                self.update(|m| {
                    if let Some(a) = m.accounts.iter_mut().find(|a| a.name == account) {
                        a.state = state;
                    }
                });
                self.job(Job::Refresh);
            }
            Notification::SignInRequired { account, reason } => {
                tracing::info!(account = %account, reason = %reason, "sign-in required");
                self.ask_sign_in(account, Some(reason), true);
            }
            Notification::ConsentRequired { request } => {
                tracing::info!(id = request.id, account = %request.account, exe = %request.exe, "consent requested");
                self.ask_consent(request);
            }
        }
    }

    /// Requests that were waiting before this connection (another agent was connected).
    fn pick_up_pending_consents(&self) {
        match self.connect().and_then(|mut c| c.list_consents()) {
            Ok(list) => list.into_iter().for_each(|r| self.ask_consent(r)),
            Err(e) => tracing::warn!(error = %e, "cannot list pending consent requests"),
        }
    }

    // ----- jobs -----

    fn jobs_loop(&self, rx: Receiver<Job>) {
        loop {
            match rx.recv_timeout(POLL) {
                Ok(Job::Refresh) => self.refresh(),
                Ok(Job::SignOut(account)) => self.sign_out(&account),
                Ok(Job::Audit) => self.show_audit(),
                Err(RecvTimeoutError::Timeout) => {
                    if matches!(self.model().link, Link::Connected { .. }) {
                        self.refresh();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn refresh(&self) {
        match self.connect().and_then(|mut c| c.list_accounts()) {
            Ok(accounts) => self.update(|m| m.accounts = accounts),
            Err(e) => tracing::warn!(error = %e, "cannot list the accounts"),
        }
    }

    fn sign_out(&self, account: &str) {
        match self.connect().and_then(|mut c| c.sign_out(account)) {
            Ok(r) => {
                tracing::info!(account = %account, revoked = r.revoked, "signed out");
                if let Some(w) = r.warning {
                    tracing::warn!(account = %account, warning = %w, "sign-out");
                }
            }
            Err(e) => {
                tracing::warn!(account = %account, error = %e, "cannot sign out");
                self.tell("tokenbroker: sign-out failed", &e.to_string());
            }
        }
        self.refresh();
    }

    fn show_audit(&self) {
        let q = AuditQuery {
            since: 0,
            limit: 500,
        };
        let text = match self.connect().and_then(|mut c| c.read_audit(&q)) {
            Ok(records) => audit_text(&records),
            Err(e) => format!("Cannot read the audit log: {e}\n"),
        };
        let _ = lock(&self.inner.ui).send(ToUi::Audit(text));
    }

    /// A message through pinentry, from a thread of its own so that it holds nothing up.
    fn tell(&self, title: &str, text: &str) {
        let (p, title, text) = (
            self.inner.settings.pinentry.clone(),
            title.to_owned(),
            prompts::shown_lines(text),
        );
        std::thread::spawn(move || {
            if let Err(e) = p.message(&title, &text) {
                tracing::warn!(error = %e, "cannot show a message");
            }
        });
    }

    // ----- prompts -----

    fn prompts_loop(&self, rx: Receiver<Prompt>) {
        while let Ok(p) = rx.recv() {
            match p {
                Prompt::SignIn {
                    account,
                    reason,
                    auto,
                } => {
                    self.sign_in_flow(&account, reason.as_deref(), auto);
                    lock(&self.inner.signing_in).remove(&account);
                }
                Prompt::Consent(r) => {
                    let id = r.id;
                    self.consent_flow(&r);
                    lock(&self.inner.consenting).remove(&id);
                }
            }
        }
    }

    fn sign_in_flow(&self, account: &str, reason: Option<&str>, auto: bool) {
        let info = match self.connect().and_then(|mut c| c.list_accounts()) {
            Ok(list) => {
                self.update(|m| m.accounts = list.clone());
                list.into_iter().find(|a| a.name == account)
            }
            Err(e) => {
                tracing::warn!(account = %account, error = %e, "cannot start a sign-in");
                return;
            }
        };
        let Some(info) = info else {
            tracing::warn!(account = %account, "no such account any more");
            return;
        };
        if info.grant != Grant::Password {
            return;
        }
        if auto && info.state == AccountState::SignedIn {
            // Signed in meanwhile (by the CLI, or an earlier prompt).
            return;
        }
        let mut error: Option<String> = None;
        for _ in 0..ATTEMPTS {
            let prompt = prompts::sign_in(&info, reason, error.as_deref());
            let password = match self.inner.settings.pinentry.get_pin(&prompt) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    tracing::info!(account = %account, "sign-in cancelled");
                    self.quiet(account, auto);
                    return;
                }
                Err(PinentryError::Timeout) => {
                    tracing::info!(account = %account, "the sign-in prompt timed out");
                    self.quiet(account, auto);
                    return;
                }
                Err(e) => {
                    tracing::error!(account = %account, error = %e, "cannot prompt for the password");
                    return;
                }
            };
            if password.is_empty() {
                error = Some("The password was empty.".to_owned());
                continue;
            }
            let params = SignInParams {
                account: account.to_owned(),
                password,
            };
            let result = self.connect().and_then(|mut c| c.sign_in(&params));
            // The password is wiped here, as soon as it has been sent.
            drop(params);
            match result {
                Ok(a) => {
                    tracing::info!(account = %account, "signed in");
                    lock(&self.inner.cancelled).remove(account);
                    self.update(|m| {
                        if let Some(x) = m.accounts.iter_mut().find(|x| x.name == a.name) {
                            *x = a;
                        }
                    });
                    return;
                }
                Err(e) if e.kind() == Some(ErrorKind::InvalidCredentials) => {
                    tracing::info!(account = %account, "the server rejected the password");
                    error = Some(format!("The server rejected the sign-in: {e}"));
                }
                Err(e) => {
                    tracing::warn!(account = %account, error = %e, "sign-in failed");
                    self.tell("tokenbroker: sign-in failed", &e.to_string());
                    self.quiet(account, auto);
                    return;
                }
            }
        }
        tracing::info!(account = %account, "no sign-in after {ATTEMPTS} attempts");
        self.quiet(account, auto);
    }

    /// After a daemon-asked prompt that got no password, stop asking by itself for a while:
    /// every token request of an app for that account raises another `SignInRequired`.
    fn quiet(&self, account: &str, auto: bool) {
        if auto {
            lock(&self.inner.cancelled).insert(account.to_owned(), Instant::now());
        }
    }

    fn consent_flow(&self, r: &ConsentRequest) {
        let now = now_unix();
        if r.expires_at <= now {
            tracing::info!(
                id = r.id,
                "consent request expired before it could be shown"
            );
            return;
        }
        let prompt = prompts::consent(r, now);
        let button = match self.inner.settings.pinentry.confirm(&prompt) {
            Ok(b) => b,
            Err(e) => {
                // No answer: the daemon denies the request when its time is up.
                tracing::warn!(id = r.id, error = %e, "no answer to the consent request");
                return;
            }
        };
        let answer = prompts::consent_answer(button);
        match self
            .connect()
            .and_then(|mut c| c.answer_consent(r.id, answer))
        {
            Ok(_) => tracing::info!(id = r.id, answer = ?answer, "consent answered"),
            Err(e) => tracing::warn!(id = r.id, error = %e, "cannot answer the consent request"),
        }
    }
}
