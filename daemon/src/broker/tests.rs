//! The service core in process: a broker on a temporary config, an in-memory secret store and
//! a token endpoint that hands out numbered tokens; callers are made up as the kernel would
//! report them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokenbroker_client::{
    AccountState, AppAccess, AppPolicy, AuditQuery, ConsentAnswer, Decision, ErrorKind,
    GetTokenParams, Notification, SecretText, SubscribeParams,
};

use super::*;
use crate::clock::SystemClock;
use crate::engine::{BoxFuture, TokenKind};
use crate::oauth::{TokenRequest, TokenResponse};
use crate::policy::Caller;
use crate::store::Memory;
use crate::users::current_uid;

const TOOL: &str = "/usr/bin/tokenbroker";
const APP: &str = "/usr/bin/mail-app";

/// Hands out `at-N` with a refresh token `rt-N`, counting requests.
#[derive(Default)]
struct Numbered {
    calls: AtomicUsize,
}

impl TokenEndpoint for Numbered {
    fn token<'a>(
        &'a self,
        _account: &'a engine::Account,
        request: &'a TokenRequest<'a>,
    ) -> BoxFuture<'a, crate::error::Result<TokenResponse>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(TokenResponse {
                access_token: SecretText::new(format!("at-{n}")),
                token_type: "Bearer".into(),
                expires_in: 3600,
                refresh_token: matches!(request, TokenRequest::Password { .. })
                    .then(|| SecretText::new(format!("rt-{n}"))),
                scopes: None,
            })
        })
    }

    fn revoke<'a>(
        &'a self,
        _account: &'a engine::Account,
        _token: &'a SecretText,
        _kind: TokenKind,
    ) -> BoxFuture<'a, crate::error::Result<bool>> {
        Box::pin(async { Ok(true) })
    }
}

const CONFIG: &str = r#"
version = 1

[policy]
consent_timeout_secs = 2

[providers.corp]
token_endpoint = "https://id.example/token"
client_id = "tb"
client_auth = "none"
scoped_refresh = true

[accounts.mail]
provider = "corp"
grant = "password"
username = "alice"
scopes = ["read", "write"]
"#;

struct Rig {
    broker: Broker,
    endpoint: Arc<Numbered>,
    _dir: tempfile::TempDir,
    config_path: PathBuf,
}

fn rig_in(mode: Mode, text: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, text).unwrap();
    let layout = match mode {
        Mode::User => Layout::user(&config_path),
        Mode::System => Layout::system(&config_path),
    };
    let config = layout.load().unwrap();
    let endpoint = Arc::new(Numbered::default());
    let broker = Broker::with_endpoint(
        layout,
        config,
        Store::new(Arc::new(Memory::default())),
        Options {
            mode,
            audit_path: Some(dir.path().join("audit.jsonl")),
            trusted: Trusted::new(vec![PathBuf::from(TOOL)]),
        },
        endpoint.clone(),
        Arc::new(SystemClock),
    )
    .unwrap();
    Rig {
        broker,
        endpoint,
        _dir: dir,
        config_path,
    }
}

fn rig() -> Rig {
    rig_in(Mode::User, CONFIG)
}

fn caller(uid: u32, exe: &str) -> Caller {
    Caller {
        uid,
        gid: uid,
        groups: Vec::new(),
        pid: Some(4242),
        exe: Some(PathBuf::from(exe)),
        foreign: None,
        transport: "socket",
        client_hint: None,
    }
}

fn me(exe: &str) -> Caller {
    caller(current_uid(), exe)
}

fn ask(account: &str, scopes: &[&str]) -> GetTokenParams {
    GetTokenParams {
        account: account.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        min_ttl: 0,
    }
}

async fn signed_in(r: &Rig) {
    r.broker
        .sign_in(&me(TOOL), "mail", SecretText::new("pw"))
        .await
        .unwrap();
}

/// Start a token request of `APP` and wait for its consent request on an agent's
/// subscription; returns the pending request and the request's task.
async fn consent_pending(
    r: &Rig,
) -> (
    u64,
    Subscription,
    tokio::task::JoinHandle<
        Result<tokenbroker_client::TokenReply, tokenbroker_client::BrokerError>,
    >,
) {
    let mut sub = r
        .broker
        .subscribe(
            &me(TOOL),
            &SubscribeParams {
                consent_agent: true,
            },
        )
        .unwrap();
    let task = {
        let broker = r.broker.clone();
        tokio::spawn(async move { broker.get_token(&me(APP), ask("mail", &["read"])).await })
    };
    let id = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Notification::ConsentRequired { request }) = sub.events.recv().await {
                assert_eq!(request.exe, APP);
                assert_eq!(request.scopes, ["read"]);
                return request.id;
            }
        }
    })
    .await
    .expect("a consent request");
    (id, sub, task)
}

#[tokio::test]
async fn the_users_own_tool_gets_any_scope_and_is_audited() {
    let r = rig();
    signed_in(&r).await;
    let t = r
        .broker
        .get_token(&me(TOOL), ask("mail", &[]))
        .await
        .unwrap();
    assert_eq!(
        t.access_token.expose(),
        "at-1",
        "the sign-in's token, cached"
    );
    let records = r
        .broker
        .read_audit(&me(TOOL), &AuditQuery::default())
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].decision, Decision::Allow);
    assert_eq!(records[0].exe, TOOL);
}

#[tokio::test]
async fn an_unknown_app_without_a_consent_agent_is_denied_with_the_fix() {
    let r = rig();
    signed_in(&r).await;
    let e = r
        .broker
        .get_token(&me(APP), ask("mail", &["read"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(
        e.message
            .contains("tokenbroker allow mail --app /usr/bin/mail-app --scope read"),
        "{}",
        e.message
    );
    let records = r
        .broker
        .read_audit(&me(TOOL), &AuditQuery::default())
        .unwrap();
    assert_eq!(records.last().unwrap().decision, Decision::Deny);
}

#[tokio::test]
async fn consent_allow_once_hands_out_one_token_and_writes_no_rule() {
    let r = rig();
    signed_in(&r).await;
    let (id, _sub, task) = consent_pending(&r).await;
    assert_eq!(r.broker.list_consents(&me(TOOL)).unwrap().len(), 1);
    r.broker
        .answer_consent(&me(TOOL), id, ConsentAnswer::AllowOnce)
        .unwrap();
    let t = task.await.unwrap().unwrap();
    assert_eq!(t.scopes, ["read"]);
    assert!(r.broker.get_policy(&me(TOOL), None).unwrap().is_empty());
    assert!(r.broker.list_consents(&me(TOOL)).unwrap().is_empty());
}

#[tokio::test]
async fn consent_allow_always_writes_a_rule_with_the_asked_scopes() {
    let r = rig();
    signed_in(&r).await;
    let (id, _sub, task) = consent_pending(&r).await;
    r.broker
        .answer_consent(&me(TOOL), id, ConsentAnswer::AllowAlways)
        .unwrap();
    task.await.unwrap().unwrap();
    let rules = r.broker.get_policy(&me(TOOL), Some("mail")).unwrap();
    assert_eq!(
        rules,
        [AppPolicy {
            account: "mail".into(),
            exe: APP.into(),
            access: AppAccess::Allow,
            scopes: vec!["read".into()],
        }]
    );
    assert!(std::fs::read_to_string(&r.config_path)
        .unwrap()
        .contains("/usr/bin/mail-app"));
    // The rule now decides, without asking.
    r.broker
        .get_token(&me(APP), ask("mail", &["read"]))
        .await
        .unwrap();
    let e = r
        .broker
        .get_token(&me(APP), ask("mail", &["write"]))
        .await
        .unwrap_err();
    assert!(
        e.message.contains("at most the scopes [read]"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn consent_deny_denies() {
    let r = rig();
    signed_in(&r).await;
    let (id, _sub, task) = consent_pending(&r).await;
    r.broker
        .answer_consent(&me(TOOL), id, ConsentAnswer::Deny)
        .unwrap();
    let e = task.await.unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(e.message.contains("the user denied"), "{}", e.message);
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_consent_request_is_denied_when_its_time_runs_out() {
    let r = rig();
    signed_in(&r).await;
    let (id, _sub, task) = consent_pending(&r).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let e = task.await.unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(e.message.contains("within 2 s"), "{}", e.message);
    let late = r
        .broker
        .answer_consent(&me(TOOL), id, ConsentAnswer::AllowOnce)
        .unwrap_err();
    assert!(late.message.contains("answered or timed out"));
}

#[tokio::test]
async fn only_the_users_own_tools_may_be_consent_agents_or_answer() {
    let r = rig();
    let e = r
        .broker
        .subscribe(
            &me(APP),
            &SubscribeParams {
                consent_agent: true,
            },
        )
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(r
        .broker
        .subscribe(
            &me(APP),
            &SubscribeParams {
                consent_agent: false
            }
        )
        .is_ok());
    let e = r
        .broker
        .answer_consent(&me(APP), 1, ConsentAnswer::AllowAlways)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
}

#[tokio::test]
async fn user_mode_serves_only_its_own_uid() {
    let r = rig();
    assert!(r.broker.admit(&me(APP)).is_ok());
    let other = caller(current_uid().wrapping_add(1), TOOL);
    let e = r.broker.admit(&other).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(e.message.contains("serves only its own user"));
}

#[tokio::test]
async fn apps_may_not_sign_in_administer_or_read_the_audit() {
    let r = rig();
    let app = me(APP);
    let e = r
        .broker
        .sign_in(&app, "mail", SecretText::new("pw"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(e
        .message
        .contains("only the tokenbroker CLI or tray may sign in"));
    assert!(r.broker.read_audit(&app, &AuditQuery::default()).is_err());
    assert!(r.broker.remove_account(&app, "mail").await.is_err());
    let e = r
        .broker
        .set_app_policy(
            &app,
            AppPolicy {
                account: "mail".into(),
                exe: APP.into(),
                access: AppAccess::Allow,
                scopes: vec![],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert_eq!(r.endpoint.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_replaced_executable_is_never_matched() {
    let r = rig();
    signed_in(&r).await;
    let mut c = me(TOOL);
    c.exe = Some(PathBuf::from(format!("{TOOL} (deleted)")));
    let e = r.broker.get_token(&c, ask("mail", &[])).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(
        e.message.contains("replaced since it started"),
        "{}",
        e.message
    );
}

const SYSTEM: &str = r#"
version = 1

[providers.corp]
token_endpoint = "https://id.example/token"
client_id = "tb"
client_auth = "none"

[accounts.mail]
provider = "corp"
grant = "password"
username = "alice"
owner = "4001"
"#;

#[tokio::test]
async fn system_mode_other_users_accounts_do_not_exist_for_them() {
    let r = rig_in(Mode::System, SYSTEM);
    let owner = caller(4001, "/usr/bin/anything");
    let stranger = caller(4002, TOOL);
    assert!(
        r.broker.admit(&stranger).is_ok(),
        "system mode serves everyone"
    );
    r.broker
        .sign_in(&owner, "mail", SecretText::new("pw"))
        .await
        .unwrap();
    r.broker.get_token(&owner, ask("mail", &[])).await.unwrap();
    let e = r
        .broker
        .get_token(&stranger, ask("mail", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoSuchAccount);
    let e = r
        .broker
        .get_token(&stranger, ask("nope", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::NoSuchAccount,
        "the same answer as for a missing one"
    );
    assert!(r.broker.list_accounts(&stranger).is_empty());
    assert_eq!(r.broker.list_accounts(&owner).len(), 1);
}

#[tokio::test]
async fn system_mode_root_administers_and_sees_every_account() {
    let r = rig_in(Mode::System, SYSTEM);
    let root = caller(0, "/usr/sbin/whatever");
    assert!(r.broker.is_admin(&root));
    assert_eq!(r.broker.list_accounts(&root).len(), 1);
    assert!(!r.broker.is_admin(&caller(4001, TOOL)));
    let e = r
        .broker
        .set_app_policy(
            &root,
            AppPolicy {
                account: "mail".into(),
                exe: APP.into(),
                access: AppAccess::Allow,
                scopes: vec![],
            },
        )
        .await
        .unwrap_err();
    assert!(e
        .message
        .contains("per-app rules are for the user-mode daemon"));
    // Root administers, but does not get users' tokens.
    let e = r
        .broker
        .get_token(&root, ask("mail", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoSuchAccount);
}

#[tokio::test]
async fn a_policy_rule_decides_and_no_scopes_means_the_widest_allowed() {
    let r = rig();
    signed_in(&r).await;
    r.broker
        .set_app_policy(
            &me(TOOL),
            AppPolicy {
                account: "mail".into(),
                exe: APP.into(),
                access: AppAccess::Allow,
                scopes: vec!["read".into()],
            },
        )
        .await
        .unwrap();
    let t = r
        .broker
        .get_token(&me(APP), ask("mail", &[]))
        .await
        .unwrap();
    assert_eq!(t.scopes, ["read"]);
    r.broker
        .remove_app_policy(&me(TOOL), "mail", APP)
        .await
        .unwrap();
    assert!(r
        .broker
        .get_token(&me(APP), ask("mail", &[]))
        .await
        .is_err());
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_is_asked() {
    let r = rig();
    let mut p = ask("mail", &[]);
    p.min_ttl = 100_000;
    assert_eq!(
        r.broker.get_token(&me(TOOL), p).await.unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    let e = r
        .broker
        .get_token(&me(TOOL), ask("mail", &["has space"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    let e = r
        .broker
        .get_token(&me(TOOL), ask("../x", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert_eq!(r.endpoint.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn sign_out_then_the_account_needs_sign_in() {
    let r = rig();
    signed_in(&r).await;
    let out = r.broker.sign_out(&me(TOOL), "mail").await.unwrap();
    assert!(out.revoked);
    let info = r.broker.account_info("mail", true).unwrap();
    assert_eq!(info.state, AccountState::NeedsSignIn);
    let e = r
        .broker
        .get_token(&me(TOOL), ask("mail", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NeedsSignIn);
}

#[tokio::test]
async fn a_reload_keeps_the_tokens_of_unchanged_accounts_and_resets_changed_ones() {
    let r = rig();
    signed_in(&r).await;
    let text = CONFIG.replace(
        "[accounts.mail]",
        "[accounts.other]\nprovider = \"corp\"\ngrant = \"client_credentials\"\n\n[accounts.mail]",
    );
    let text = text.replace(
        "client_auth = \"none\"",
        "client_auth = \"client_secret_post\"",
    );
    // An unchanged provider first: the account keeps its token.
    std::fs::write(
        &r.config_path,
        CONFIG.to_string()
            + "\n[accounts.extra]\nprovider = \"corp\"\ngrant = \"password\"\nusername = \"bob\"\n",
    )
    .unwrap();
    let summary = r.broker.reload().await.unwrap();
    assert_eq!((summary.accounts, summary.accounts_reset), (2, 0));
    r.broker
        .get_token(&me(TOOL), ask("mail", &[]))
        .await
        .unwrap();
    assert_eq!(
        r.endpoint.calls.load(Ordering::SeqCst),
        1,
        "still the sign-in's token"
    );
    // A changed provider resets its accounts.
    std::fs::write(&r.config_path, &text).unwrap();
    let summary = r.broker.reload().await.unwrap();
    assert_eq!(summary.providers_changed, 1);
    assert!(summary.accounts_reset >= 1);
    assert_eq!(
        r.broker.account_info("mail", true).unwrap().expires_at,
        None,
        "its cached tokens are gone"
    );
    // An invalid config changes nothing.
    std::fs::write(
        &r.config_path,
        "version = 1\n[accounts.x]\nprovider = \"missing\"\n",
    )
    .unwrap();
    assert!(r.broker.reload().await.is_err());
    assert!(r.broker.config().accounts.contains_key("mail"));
}
