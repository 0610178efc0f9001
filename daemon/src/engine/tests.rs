//! The token engine in process: a scripted token endpoint, an in-memory secret store, and a
//! clock that follows tokio's (paused where a test needs time to pass).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenbroker_client::{AccountState, ErrorKind, Grant, Notification, SecretText};

use super::*;
use crate::clock::Clock;
use crate::error::Error;
use crate::oauth::retry::RetryPolicy;
use crate::oauth::{TokenRequest, TokenResponse};
use crate::store::{Backend, Memory, SecretKey, Store};

/// Unix time that advances with tokio's clock, so that paused time moves both.
struct TokioClock {
    start_unix: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start_unix: 1_700_000_000,
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> u64 {
        self.start_unix + self.start.elapsed().as_secs()
    }
}

/// What one token request gets.
enum Step {
    Token {
        access: String,
        refresh: Option<String>,
        expires_in: u64,
        scopes: Option<Vec<String>>,
    },
    Fail(Error),
}

fn token(access: &str, refresh: Option<&str>, expires_in: u64) -> Step {
    Step::Token {
        access: access.into(),
        refresh: refresh.map(Into::into),
        expires_in,
        scopes: None,
    }
}

/// A token for which the server says which scopes it granted.
fn granted(access: &str, refresh: &str, scopes: &[&str]) -> Step {
    Step::Token {
        access: access.into(),
        refresh: Some(refresh.into()),
        expires_in: 3600,
        scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
    }
}

fn oauth(status: u16, error: &str) -> Step {
    Step::Fail(Error::OAuth {
        status,
        error: error.into(),
        description: None,
    })
}

/// One token request as the fake saw it: account, grant, scopes named.
type Asked = (String, &'static str, Option<Vec<String>>);

/// A token endpoint that answers from a script (and, once it runs out, with fresh tokens
/// `at-N` of an hour), counts its calls, records what was asked, and can hang the requests of
/// chosen accounts until released.
#[derive(Default)]
struct Fake {
    calls: AtomicUsize,
    script: Mutex<VecDeque<Step>>,
    asked: Mutex<Vec<Asked>>,
    revoked: Mutex<Vec<(String, TokenKind)>>,
    hang: Mutex<HashSet<String>>,
    release: tokio::sync::Notify,
    delay: Mutex<Option<Duration>>,
}

impl Fake {
    fn new(script: Vec<Step>) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script.into()),
            ..Default::default()
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl TokenEndpoint for Fake {
    fn token<'a>(
        &'a self,
        account: &'a Account,
        request: &'a TokenRequest<'a>,
    ) -> BoxFuture<'a, crate::error::Result<TokenResponse>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let scopes = match request {
                TokenRequest::Password { scopes, .. }
                | TokenRequest::ClientCredentials { scopes } => Some(scopes.to_vec()),
                TokenRequest::Refresh { scopes, .. } => scopes.map(<[String]>::to_vec),
            };
            self.asked
                .lock()
                .unwrap()
                .push((account.name.clone(), request.name(), scopes));
            let delay = *self.delay.lock().unwrap();
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            if self.hang.lock().unwrap().contains(&account.name) {
                self.release.notified().await;
            }
            let step = self.script.lock().unwrap().pop_front();
            match step.unwrap_or_else(|| token(&format!("at-{n}"), None, 3600)) {
                Step::Token {
                    access,
                    refresh,
                    expires_in,
                    scopes,
                } => Ok(TokenResponse {
                    access_token: SecretText::new(access),
                    token_type: "Bearer".into(),
                    expires_in,
                    refresh_token: refresh.map(SecretText::new),
                    scopes,
                }),
                Step::Fail(e) => Err(e),
            }
        })
    }

    fn revoke<'a>(
        &'a self,
        account: &'a Account,
        _token: &'a SecretText,
        kind: TokenKind,
    ) -> BoxFuture<'a, crate::error::Result<bool>> {
        Box::pin(async move {
            self.revoked
                .lock()
                .unwrap()
                .push((account.name.clone(), kind));
            Ok(true)
        })
    }
}

fn settings() -> Settings {
    Settings {
        refresh_at_fraction: 0.75,
        proactive_refresh: false,
        retry: RetryPolicy {
            retries: 2,
            backoff_ms: 1,
        },
    }
}

struct Rig {
    engine: Engine,
    fake: Arc<Fake>,
    memory: Arc<Memory>,
    events: tokio::sync::broadcast::Receiver<Notification>,
}

fn rig_with(fake: Arc<Fake>, memory: Arc<Memory>, settings: Settings) -> Rig {
    let (tx, events) = tokio::sync::broadcast::channel(64);
    let engine = Engine::new(
        fake.clone(),
        Store::new(memory.clone()),
        tx,
        settings,
        TokioClock::new(),
    );
    Rig {
        engine,
        fake,
        memory,
        events,
    }
}

fn rig(script: Vec<Step>) -> Rig {
    rig_with(Fake::new(script), Arc::new(Memory::default()), settings())
}

fn user(name: &str) -> Account {
    Account {
        name: name.into(),
        provider: "p".into(),
        grant: Grant::Password,
        username: Some("alice".into()),
        default_scopes: vec!["read".into(), "write".into()],
        scoped_refresh: false,
    }
}

fn machine(name: &str) -> Account {
    Account {
        name: name.into(),
        provider: "p".into(),
        grant: Grant::ClientCredentials,
        username: None,
        default_scopes: vec!["api".into()],
        scoped_refresh: false,
    }
}

fn rt_of(memory: &Memory, account: &str) -> Option<String> {
    memory
        .map
        .lock()
        .unwrap()
        .get(&SecretKey::RefreshToken {
            account: account.into(),
        })
        .map(|s| s.expose().to_owned())
}

fn put_rt(memory: &Memory, account: &str, rt: &str) {
    memory.map.lock().unwrap().insert(
        SecretKey::RefreshToken {
            account: account.into(),
        },
        SecretText::new(rt),
    );
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<Notification>) -> Vec<Notification> {
    let mut out = Vec::new();
    while let Ok(n) = rx.try_recv() {
        out.push(n);
    }
    out
}

fn key(s: &[&str]) -> ScopeKey {
    scope_key(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

#[tokio::test]
async fn a_cached_token_is_handed_out_without_a_request() {
    let r = rig(vec![]);
    let a = machine("robot");
    let first = r.engine.token(&a, key(&["api"]), 0).await.unwrap();
    let second = r.engine.token(&a, key(&["api"]), 60).await.unwrap();
    assert_eq!(r.fake.calls(), 1);
    assert!(first.access_token.ct_eq(&second.access_token));
    assert_eq!(
        first.scopes,
        ["api"],
        "the requested scopes when the server names none"
    );
}

#[tokio::test]
async fn each_scope_set_has_its_own_cached_token() {
    let r = rig(vec![]);
    let a = machine("robot");
    let api = r.engine.token(&a, key(&["api"]), 0).await.unwrap();
    let other = r.engine.token(&a, key(&["api", "admin"]), 0).await.unwrap();
    assert_eq!(r.fake.calls(), 2);
    assert!(!api.access_token.ct_eq(&other.access_token));
    r.engine.token(&a, key(&["admin", "api"]), 0).await.unwrap();
    assert_eq!(r.fake.calls(), 2, "scope order does not matter");
}

#[tokio::test(start_paused = true)]
async fn a_token_with_less_than_min_ttl_left_is_replaced() {
    let r = rig(vec![token("short", None, 120), token("fresh", None, 3600)]);
    let a = machine("robot");
    let t = r.engine.token(&a, key(&["api"]), 0).await.unwrap();
    assert_eq!(t.access_token.expose(), "short");
    tokio::time::advance(Duration::from_secs(30)).await;
    let t = r.engine.token(&a, key(&["api"]), 60).await.unwrap();
    assert_eq!(
        t.access_token.expose(),
        "short",
        "90 s left is enough for 60"
    );
    let t = r.engine.token(&a, key(&["api"]), 100).await;
    // The server's tokens last 120 s: 100 s plus the 5 s floor fits, so it fetches.
    assert_eq!(t.unwrap().access_token.expose(), "fresh");
    assert_eq!(r.fake.calls(), 2);
}

#[tokio::test]
async fn a_min_ttl_the_server_cannot_meet_is_refused_without_a_request() {
    let r = rig(vec![token("short", None, 60)]);
    let a = machine("robot");
    r.engine.token(&a, key(&["api"]), 0).await.unwrap();
    let e = r.engine.token(&a, key(&["api"]), 300).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("valid for about 60 s"), "{}", e.message);
    assert_eq!(r.fake.calls(), 1, "no request to learn what is known");
}

#[tokio::test]
async fn a_hundred_concurrent_callers_on_an_expired_token_make_one_fetch() {
    let r = rig(vec![]);
    *r.fake.delay.lock().unwrap() = Some(Duration::from_millis(50));
    let a = machine("robot");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (engine, a) = (r.engine.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            engine.token(&a, key(&["api"]), 0).await
        }));
    }
    let mut tokens = HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().unwrap().access_token.expose().to_owned());
    }
    assert_eq!(r.fake.calls(), 1);
    assert_eq!(tokens.len(), 1, "every caller got the one token");
}

#[tokio::test]
async fn a_hanging_refresh_of_one_account_does_not_delay_another() {
    let r = rig(vec![]);
    r.fake.hang.lock().unwrap().insert("stuck".into());
    let stuck = {
        let engine = r.engine.clone();
        tokio::spawn(async move { engine.token(&machine("stuck"), key(&["api"]), 0).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let other = tokio::time::timeout(
        Duration::from_secs(2),
        r.engine.token(&machine("free"), key(&["api"]), 0),
    )
    .await
    .expect("the other account waited for the stuck one");
    assert!(other.is_ok());
    assert!(!stuck.is_finished());
    r.fake.release.notify_waiters();
    assert!(stuck.await.unwrap().is_ok());
}

/// A store whose writes wait until the test opens the gate, and report when they start.
struct GatedStore {
    inner: Memory,
    started: std::sync::mpsc::SyncSender<()>,
    gate: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Backend for GatedStore {
    fn get(&self, key: &SecretKey) -> crate::error::Result<Option<SecretText>> {
        self.inner.get(key)
    }
    fn set(&self, key: &SecretKey, value: &SecretText) -> crate::error::Result<()> {
        let _ = self.started.send(());
        let _ = self
            .gate
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        self.inner.set(key, value)
    }
    fn delete(&self, key: &SecretKey) -> crate::error::Result<()> {
        self.inner.delete(key)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_is_stored_before_the_access_token_is_released() {
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel(4);
    let (gate_tx, gate_rx) = std::sync::mpsc::sync_channel(4);
    let inner = Memory::default();
    put_rt(&inner, "alice", "rt-1");
    let store = Arc::new(GatedStore {
        inner,
        started: started_tx,
        gate: Mutex::new(gate_rx),
    });
    let fake = Fake::new(vec![token("at-new", Some("rt-2"), 3600)]);
    let (tx, _rx) = tokio::sync::broadcast::channel(16);
    let engine = Engine::new(
        fake.clone(),
        Store::new(store.clone()),
        tx,
        settings(),
        TokioClock::new(),
    );
    let request = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .token(&user("alice"), key(&["read", "write"]), 0)
                .await
        })
    };
    tokio::task::spawn_blocking(move || started_rx.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the rotated refresh token was written");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !request.is_finished(),
        "the access token was released before the rotated refresh token was stored"
    );
    gate_tx.send(()).unwrap();
    let t = request.await.unwrap().unwrap();
    assert_eq!(t.access_token.expose(), "at-new");
    assert_eq!(
        store
            .inner
            .map
            .lock()
            .unwrap()
            .get(&SecretKey::RefreshToken {
                account: "alice".into()
            })
            .map(|s| s.expose().to_owned())
            .as_deref(),
        Some("rt-2")
    );
}

#[tokio::test]
async fn when_the_rotated_token_cannot_be_stored_no_token_is_released_and_the_old_one_stays() {
    let memory = Arc::new(Memory::default());
    put_rt(&memory, "alice", "rt-1");
    memory.fail_writes.store(true, Ordering::SeqCst);
    let r = rig_with(
        Fake::new(vec![token("at-new", Some("rt-2"), 3600)]),
        memory,
        settings(),
    );
    let e = r
        .engine
        .token(&user("alice"), key(&["read", "write"]), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Store);
    assert!(e.message.contains("rotated refresh token"), "{}", e.message);
    assert_eq!(rt_of(&r.memory, "alice").as_deref(), Some("rt-1"));
    assert_eq!(r.engine.status(&user("alice")).state, AccountState::Error);
    // Nothing was cached: the next request asks the server again.
    r.memory.fail_writes.store(false, Ordering::SeqCst);
    r.engine
        .token(&user("alice"), key(&["read", "write"]), 0)
        .await
        .unwrap();
    assert_eq!(r.fake.calls(), 2);
}

#[tokio::test]
async fn invalid_grant_moves_the_account_to_needs_sign_in_and_says_so() {
    let mut r = rig(vec![oauth(400, "invalid_grant")]);
    put_rt(&r.memory, "alice", "rt-1");
    let e = r
        .engine
        .token(&user("alice"), key(&["read", "write"]), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NeedsSignIn);
    assert!(
        e.message.contains("tokenbroker login alice"),
        "{}",
        e.message
    );
    assert_eq!(
        rt_of(&r.memory, "alice"),
        None,
        "the refused token is deleted"
    );
    let status = r.engine.status(&user("alice"));
    assert_eq!(status.state, AccountState::NeedsSignIn);
    let detail = status.detail.unwrap();
    assert!(detail.full.contains("refused the refresh token"));
    assert!(detail.full.contains("invalid_grant"), "{detail:?}");
    assert_eq!(
        detail.for_apps,
        "the server refused the refresh token (invalid_grant)"
    );
    let events = drain(&mut r.events);
    assert!(
        events.iter().any(|n| matches!(
            n,
            Notification::SignInRequired { account, reason }
                if account == "alice" && !reason.contains("HTTP 400")
        )),
        "the event, which any subscriber sees, has no server text: {events:?}"
    );
    assert!(events.iter().any(|n| matches!(
        n,
        Notification::AccountChanged { account, state: AccountState::NeedsSignIn } if account == "alice"
    )));
}

#[tokio::test]
async fn server_failures_are_retried_a_bounded_number_of_times() {
    let r = rig((0..10)
        .map(|_| {
            Step::Fail(Error::BadReply {
                status: 503,
                message: "the server answered HTTP 503".into(),
            })
        })
        .collect());
    let e = r
        .engine
        .token(&machine("robot"), key(&["api"]), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ServerError);
    assert_eq!(r.fake.calls(), 3, "one attempt and two retries");
    assert_eq!(
        r.engine.status(&machine("robot")).state,
        AccountState::Error
    );
}

#[tokio::test]
async fn a_request_that_may_have_reached_the_server_is_not_sent_again() {
    let r = rig(vec![Step::Fail(Error::Network {
        message: "broke off while sending its reply".into(),
        sent: true,
    })]);
    put_rt(&r.memory, "alice", "rt-1");
    let e = r
        .engine
        .token(&user("alice"), key(&["read", "write"]), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NetworkError);
    assert_eq!(r.fake.calls(), 1, "a spent refresh token is never replayed");
    assert_eq!(rt_of(&r.memory, "alice").as_deref(), Some("rt-1"));
}

#[tokio::test]
async fn connect_failures_are_retried_and_recovery_is_announced() {
    let refused = || {
        Step::Fail(Error::Network {
            message: "could not connect".into(),
            sent: false,
        })
    };
    let mut r = rig(vec![
        refused(),
        refused(),
        refused(),
        refused(),
        token("ok", None, 3600),
    ]);
    let a = machine("robot");
    assert!(r.engine.token(&a, key(&["api"]), 0).await.is_err());
    assert_eq!(r.fake.calls(), 3);
    assert_eq!(r.engine.status(&a).state, AccountState::Error);
    let t = r.engine.token(&a, key(&["api"]), 0).await.unwrap();
    assert_eq!(t.access_token.expose(), "ok");
    assert_eq!(r.fake.calls(), 5);
    assert_eq!(r.engine.status(&a).state, AccountState::SignedIn);
    let events = drain(&mut r.events);
    assert!(events.iter().any(|n| matches!(
        n,
        Notification::AccountChanged {
            state: AccountState::SignedIn,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn a_used_token_is_refreshed_ahead_of_expiry_at_about_three_quarters() {
    let mut s = settings();
    s.proactive_refresh = true;
    let r = rig_with(
        Fake::new(vec![token("first", None, 100), token("second", None, 100)]),
        Arc::new(Memory::default()),
        s,
    );
    let a = machine("robot");
    r.engine.token(&a, key(&["api"]), 0).await.unwrap();
    tokio::time::sleep(Duration::from_secs(69)).await;
    assert_eq!(r.fake.calls(), 1, "not before 70 % of its life");
    tokio::time::sleep(Duration::from_secs(7)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(r.fake.calls(), 2, "refreshed by 76 % of its life");
    let t = r.engine.token(&a, key(&["api"]), 0).await.unwrap();
    assert_eq!(
        t.access_token.expose(),
        "second",
        "callers get the new one without waiting"
    );
    assert_eq!(r.fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unused_token_is_left_to_lapse() {
    let mut s = settings();
    s.proactive_refresh = true;
    let r = rig_with(
        Fake::new(vec![token("at", Some("rt"), 100)]),
        Arc::new(Memory::default()),
        s,
    );
    r.engine
        .sign_in(&user("alice"), SecretText::new("pw"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(200)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(r.fake.calls(), 1, "nobody used the sign-in's token");
}

#[tokio::test]
async fn sign_in_stores_the_refresh_token_and_caches_the_first_access_token() {
    let mut r = rig(vec![token("at-1", Some("rt-1"), 3600)]);
    let a = user("alice");
    assert!(r.engine.sign_in(&a, SecretText::new("pw")).await.unwrap());
    assert_eq!(rt_of(&r.memory, "alice").as_deref(), Some("rt-1"));
    let t = r
        .engine
        .token(&a, key(&["read", "write"]), 0)
        .await
        .unwrap();
    assert_eq!(t.access_token.expose(), "at-1");
    assert_eq!(r.fake.calls(), 1);
    let asked = r.fake.asked.lock().unwrap().clone();
    assert_eq!(asked[0].1, "password");
    assert_eq!(
        asked[0].2.as_deref(),
        Some(&["read".to_string(), "write".to_string()][..])
    );
    assert!(
        drain(&mut r.events).contains(&Notification::AccountChanged {
            account: "alice".into(),
            state: AccountState::SignedIn
        })
    );
}

#[tokio::test]
async fn a_wrong_password_is_invalid_credentials_and_stores_nothing() {
    let r = rig(vec![oauth(400, "invalid_grant")]);
    let e = r
        .engine
        .sign_in(&user("alice"), SecretText::new("wrong"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidCredentials);
    assert!(e.message.contains("user \"alice\""), "{}", e.message);
    assert!(!e.message.contains("wrong"));
    assert_eq!(rt_of(&r.memory, "alice"), None);
}

#[tokio::test]
async fn without_a_refresh_token_the_account_needs_sign_in() {
    let r = rig(vec![]);
    let e = r
        .engine
        .token(&user("alice"), key(&["read", "write"]), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NeedsSignIn);
    assert!(e.message.contains("not signed in"), "{}", e.message);
    assert_eq!(r.fake.calls(), 0);
}

#[tokio::test]
async fn sign_out_revokes_both_tokens_and_deletes_them() {
    let r = rig(vec![token("at-1", Some("rt-1"), 3600)]);
    let a = user("alice");
    r.engine.sign_in(&a, SecretText::new("pw")).await.unwrap();
    let out = r.engine.sign_out(&a).await.unwrap();
    assert!(out.revoked);
    assert_eq!(out.warning, None);
    let revoked = r.fake.revoked.lock().unwrap().clone();
    assert_eq!(
        revoked,
        [
            ("alice".to_string(), TokenKind::RefreshToken),
            ("alice".to_string(), TokenKind::AccessToken)
        ]
    );
    assert_eq!(rt_of(&r.memory, "alice"), None);
    let status = r.engine.status(&a);
    assert_eq!(status.state, AccountState::NeedsSignIn);
    assert_eq!(status.detail, Some(Reason::ours("signed out")));
    assert_eq!(status.expires_at, None);
}

#[tokio::test]
async fn a_narrower_refresh_names_its_scopes_and_the_default_one_does_not() {
    let r = rig(vec![]);
    put_rt(&r.memory, "alice", "rt-1");
    let mut a = user("alice");
    a.scoped_refresh = true;
    r.engine
        .token(&a, key(&["read", "write"]), 0)
        .await
        .unwrap();
    r.engine.token(&a, key(&["read"]), 0).await.unwrap();
    let asked = r.fake.asked.lock().unwrap().clone();
    assert_eq!(asked[0].2, None, "the default grant omits scope");
    assert_eq!(asked[1].2, Some(vec!["read".to_string()]));
}

#[tokio::test]
async fn the_state_comes_from_the_store_at_start() {
    let r = rig(vec![]);
    put_rt(&r.memory, "alice", "rt-1");
    assert_eq!(
        r.engine.status(&user("alice")).state,
        AccountState::NeedsSignIn
    );
    r.engine.load_state(&user("alice")).await;
    assert_eq!(
        r.engine.status(&user("alice")).state,
        AccountState::SignedIn
    );
    r.memory.fail.store(true, Ordering::SeqCst);
    r.engine.load_state(&user("bob")).await;
    let bob = r.engine.status(&user("bob"));
    assert_eq!(bob.state, AccountState::Error);
    assert!(bob.detail.unwrap().full.contains("secret store"));
}

#[tokio::test]
async fn a_new_account_starts_clean() {
    let r = rig(vec![]);
    put_rt(&r.memory, "alice", "left-behind");
    r.engine
        .token(&machine("alice"), key(&["api"]), 0)
        .await
        .unwrap();
    r.engine.start_clean(&user("alice")).await;
    assert_eq!(rt_of(&r.memory, "alice"), None);
    let status = r.engine.status(&user("alice"));
    assert_eq!(status.state, AccountState::NeedsSignIn);
    assert_eq!(status.expires_at, None, "the old account's tokens are gone");
}

#[tokio::test]
async fn an_absurd_lifetime_is_believed_for_a_year_at_most() {
    let r = rig(vec![token("forever", None, u64::MAX)]);
    let t = r
        .engine
        .token(&machine("robot"), key(&["api"]), 0)
        .await
        .unwrap();
    let now = TokioClock::new().now();
    assert!(t.expires_at > now, "not in the past: {}", t.expires_at);
    assert!(
        t.expires_at <= now + crate::oauth::reply::MAX_EXPIRES_IN + 1,
        "{}",
        t.expires_at
    );
    // A min_ttl of a day is met by it without asking again.
    r.engine
        .token(&machine("robot"), key(&["api"]), 86_400)
        .await
        .unwrap();
    assert_eq!(r.fake.calls(), 1);
}

#[tokio::test]
async fn a_servers_words_reach_the_users_tools_only() {
    let r = rig(vec![Step::Fail(Error::OAuth {
        status: 400,
        error: "invalid_client".into(),
        description: Some("client tb-9f8e7d6c5b4a39281706 is locked by the ops team".into()),
    })]);
    let e = r
        .engine
        .token(&machine("robot"), key(&["api"]), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidCredentials);
    assert!(
        e.message.contains("locked by the ops team"),
        "{}",
        e.message
    );
    let app = e.clone().for_app();
    assert!(!app.message.contains("locked"), "{}", app.message);
    assert!(
        app.message.contains("(invalid_client)"),
        "a defined code, in our words"
    );
    assert!(app.message.contains("\"robot\""));
}

#[tokio::test]
async fn fewer_scopes_are_refused_where_the_provider_may_narrow_the_refresh_token() {
    let r = rig(vec![]);
    put_rt(&r.memory, "alice", "rt-1");
    r.engine.load_state(&user("alice")).await;
    let e = r
        .engine
        .token(&user("alice"), key(&["read"]), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("scoped_refresh"), "{}", e.message);
    assert!(e.message.contains("[read write]"), "{}", e.message);
    assert_eq!(r.fake.calls(), 0, "nothing asked of the server");
    assert_eq!(
        r.engine.status(&user("alice")).state,
        AccountState::SignedIn
    );
    // The whole grant is still there for everyone.
    r.engine
        .token(&user("alice"), key(&["read", "write"]), 0)
        .await
        .unwrap();
    assert_eq!(r.fake.asked.lock().unwrap()[0].2, None);
}

#[tokio::test]
async fn a_scope_outside_the_sign_in_is_refused_with_the_reason() {
    let mut a = user("alice");
    a.scoped_refresh = true;
    let r = rig(vec![]);
    put_rt(&r.memory, "alice", "rt-1");
    let e = r
        .engine
        .token(&a, key(&["read", "admin"]), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(
        e.message.contains("[admin] is not among them"),
        "{}",
        e.message
    );
    assert!(e.message.contains("only keep or narrow"), "{}", e.message);
    assert_eq!(r.fake.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_narrowed_the_grant_is_reported_not_believed() {
    let mut a = user("alice");
    a.scoped_refresh = true;
    // Sign-in grants both; the narrower refresh narrows the server's refresh token (as
    // django-oauth-toolkit does); the next refresh for the whole grant gets only `read`.
    let r = rig(vec![
        granted("at-1", "rt-1", &["read", "write"]),
        granted("at-2", "rt-2", &["read"]),
        granted("at-3", "rt-3", &["read"]),
    ]);
    r.engine.sign_in(&a, SecretText::new("pw")).await.unwrap();
    r.engine.token(&a, key(&["read"]), 0).await.unwrap();
    // The sign-in's token for the whole grant expires; its refresh tells.
    tokio::time::sleep(Duration::from_secs(3601)).await;
    let e = r
        .engine
        .token(&a, key(&["read", "write"]), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ServerError);
    assert!(e.message.contains("narrowed the grant"), "{}", e.message);
    assert!(
        e.message.contains("from [read write] to [read]"),
        "{}",
        e.message
    );
    assert_eq!(r.engine.status(&a).state, AccountState::Error);
}
