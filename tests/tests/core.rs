//! End to end, against real peers: django-oauth-toolkit, a private dbus-daemon with
//! gnome-keyring, and the built tokenbrokerd and tokenbroker binaries.

use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenbroker_e2e::daemon::{run_cli, tail, Daemon};
use tokenbroker_e2e::peers::*;

const SERVICE: &str = "tokenbroker";

struct Setup {
    server: AuthServer,
    ss: SecretService,
    daemon: Daemon,
}

fn setup(lifetime: u64) -> Setup {
    let server = AuthServer::start(AuthServerOptions {
        access_token_lifetime: Some(lifetime),
        ..Default::default()
    })
    .expect("start the authorization server");
    let ss = SecretService::start().expect("start the Secret Service");
    let daemon = Daemon::start(&ss, None).expect("start tokenbrokerd");
    Setup { server, ss, daemon }
}

/// provider `dot` (password client, Basic auth with an awkward secret) and account `me`.
fn add_password_account(s: &Setup, scopes: &[&str]) {
    s.daemon.add_dot_provider(&s.server, scopes);
    s.daemon.add_dot_account("me", ALICE_USERNAME);
}

fn login(s: &Setup, password: &str) -> std::process::Output {
    s.daemon.cli(
        &["login", "me", "--password-stdin"],
        Some(&format!("{password}\n")),
    )
}

fn token(s: &Setup, extra: &[&str]) -> String {
    let mut args = vec!["token", "me"];
    args.extend(extra);
    s.daemon.cli_ok(&args, None).trim().to_owned()
}

fn counter(s: &Setup, grant: &str) -> u64 {
    s.server.counters()["token"][grant].as_u64().unwrap_or(0)
}

fn stored_refresh_token(s: &Setup) -> Option<String> {
    s.ss.lookup(SERVICE, "refresh_token:me")
}

fn status_json(d: &Daemon) -> Value {
    serde_json::from_str(&d.cli_ok(&["status", "--json"], None)).expect("status json")
}

fn state_of(d: &Daemon, account: &str) -> String {
    let s = status_json(d);
    s["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["name"] == account)
        .map(|a| a["state"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

/// Every file under `dir`, as lossy text.
fn all_text_under(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            seen += 1;
            assert!(seen < 10_000, "too many files under {}", dir.display());
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    out
}

#[test]
fn password_account_lifecycle() {
    let mut s = setup(12);
    add_password_account(&s, &["read", "write"]);
    assert_eq!(state_of(&s.daemon, "me"), "needs_sign_in");

    // Sign in: one password grant, a refresh token in the keychain.
    let out = login(&s, ALICE_PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(counter(&s, "password"), 1);
    let rt1 = stored_refresh_token(&s).expect("refresh token stored after login");

    // A token, valid at the server, with the account's scopes.
    let at1 = token(&s, &[]);
    let info = s.server.introspect(&at1);
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["username"], ALICE_USERNAME);
    let mut scopes: Vec<&str> = info["scope"].as_str().unwrap().split(' ').collect();
    scopes.sort();
    assert_eq!(scopes, ["read", "write"]);
    // Served from the cache: no new grant.
    assert_eq!(token(&s, &[]), at1);
    assert_eq!(counter(&s, "refresh_token"), 0);

    // --json adds type, expiry and scopes.
    let j: Value =
        serde_json::from_str(&s.daemon.cli_ok(&["token", "me", "--json"], None)).unwrap();
    assert_eq!(j["access_token"], at1.as_str());
    assert_eq!(j["token_type"].as_str().unwrap().to_lowercase(), "bearer");
    assert!(j["expires_at"].as_u64().unwrap() > 0);

    // Past expiry: refreshed, the rotated refresh token stored, no password asked.
    sleep(Duration::from_secs(13));
    let at2 = token(&s, &[]);
    assert_ne!(at2, at1);
    assert_eq!(s.server.introspect(&at2)["active"], true);
    assert!(counter(&s, "refresh_token") >= 1);
    assert_eq!(counter(&s, "password"), 1, "no new password grant");
    let rt2 = stored_refresh_token(&s).expect("refresh token still stored");
    assert_ne!(rt2, rt1, "the rotated refresh token replaced the old one");

    // A restarted daemon gets tokens from the keychain without a new login.
    s.daemon.restart().expect("restart the daemon");
    assert_eq!(state_of(&s.daemon, "me"), "signed_in");
    let at3 = token(&s, &[]);
    assert_eq!(s.server.introspect(&at3)["active"], true);
    assert_eq!(counter(&s, "password"), 1);

    // A narrower scope than granted is refused before anything is asked: DOT would narrow the
    // account's refresh token for every later request (see narrower_requests_never_shrink...).
    let refreshes = counter(&s, "refresh_token");
    let out = s.daemon.cli(&["token", "me", "--scope", "read"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scoped_refresh"));
    assert_eq!(counter(&s, "refresh_token"), refreshes);

    // An excessive min_ttl is a clear error, not a token that breaks its promise.
    let out = s.daemon.cli(&["token", "me", "--min-ttl", "99999"], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Sign out: revoked at the server, the keychain entry gone, sign-in needed.
    let last_rt = stored_refresh_token(&s).expect("refresh token before logout");
    let out = s.daemon.cli_ok(&["logout", "me"], None);
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(s.server.introspect(&at3)["active"], false);
    assert_eq!(stored_refresh_token(&s), None);
    assert!(s.server.counters()["revoke"].as_u64().unwrap() >= 1);
    let out = s.daemon.cli(&["token", "me"], None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "needs sign-in: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokenbroker login me"));

    // No secret in any file the project wrote, nor in the daemon's log.
    let mut files = all_text_under(s.daemon.dir.path());
    files.push_str(&all_text_under(s.ss.runtime_dir()));
    files.push_str(&s.daemon.log());
    for (what, secret) in [
        ("password", ALICE_PASSWORD),
        ("client secret", PASSWORD_CLIENT_SECRET),
        ("refresh token 1", rt1.as_str()),
        ("refresh token 2", rt2.as_str()),
        ("last refresh token", last_rt.as_str()),
        ("access token 1", at1.as_str()),
        ("access token 2", at2.as_str()),
    ] {
        assert!(
            !files.contains(secret),
            "the {what} is on disk or in the log"
        );
    }
    // The audit lines are there, without tokens.
    assert!(s.daemon.wait_log("access token handed out"));
}

#[test]
fn client_credentials_account_needs_no_login() {
    let s = setup(300);
    let issuer = s.server.issuer();
    s.daemon.cli_ok(
        &[
            "provider",
            "add",
            "m2m",
            "--issuer",
            &issuer,
            "--client-id",
            CC_CLIENT_ID,
            "--client-auth",
            "post",
            "--client-secret-stdin",
            "--allow-insecure-loopback",
        ],
        Some(&format!("{CC_CLIENT_SECRET}\n")),
    );
    s.daemon.cli_ok(
        &[
            "account",
            "add",
            "robot",
            "--provider",
            "m2m",
            "--client-credentials",
            "--scope",
            "read",
        ],
        None,
    );
    assert_eq!(state_of(&s.daemon, "robot"), "signed_in");
    let at = s.daemon.cli_ok(&["token", "robot"], None).trim().to_owned();
    let info = s.server.introspect(&at);
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], CC_CLIENT_ID);
    assert_eq!(s.server.counters()["token"]["client_credentials"], 1);
    // Cached.
    assert_eq!(s.daemon.cli_ok(&["token", "robot"], None).trim(), at);
    assert_eq!(s.server.counters()["token"]["client_credentials"], 1);
    // The client secret lives in the keychain, not in the config.
    assert_eq!(
        s.ss.lookup(SERVICE, "client_secret:m2m").as_deref(),
        Some(CC_CLIENT_SECRET)
    );
    let config = std::fs::read_to_string(&s.daemon.config).unwrap();
    assert!(
        config.contains("[providers.m2m]") && !config.contains(CC_CLIENT_SECRET),
        "{config}"
    );
    let out = s
        .daemon
        .cli(&["login", "robot", "--password-stdin"], Some("x\n"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn wrong_password_is_rejected_clearly_and_stores_nothing() {
    let s = setup(300);
    add_password_account(&s, &["read"]);
    let out = login(&s, "not the password");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rejected the credentials") && err.contains("invalid_grant"),
        "{err}"
    );
    assert!(!err.contains("not the password"));
    assert_eq!(stored_refresh_token(&s), None);
    assert_eq!(state_of(&s.daemon, "me"), "needs_sign_in");
    assert!(!s.daemon.log().contains("not the password"));

    // A password with & = + % / : spaces and non-ASCII letters gets through intact.
    s.daemon.cli_ok(
        &[
            "account",
            "add",
            "bob",
            "--provider",
            "dot",
            "--username",
            BOB_USERNAME,
        ],
        None,
    );
    s.daemon.cli_ok(
        &["login", "bob", "--password-stdin"],
        Some(&format!("{BOB_PASSWORD}\n")),
    );
    let at = s.daemon.cli_ok(&["token", "bob"], None).trim().to_owned();
    assert_eq!(s.server.introspect(&at)["username"], BOB_USERNAME);
}

#[test]
fn cached_token_outlives_a_server_outage_until_it_expires() {
    let mut s = setup(12);
    add_password_account(&s, &["read"]);
    assert!(login(&s, ALICE_PASSWORD).status.success());
    let at = token(&s, &[]);
    let rt = stored_refresh_token(&s).unwrap();
    s.server.stop();
    let started = Instant::now();
    // Still served from the cache while it is valid.
    assert_eq!(token(&s, &[]), at);
    // Once it expires (the background refresh failing meanwhile): a clear network error.
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = s.daemon.cli(&["token", "me"], None);
        if !out.status.success() || Instant::now() > deadline {
            break out;
        }
        sleep(Duration::from_millis(500));
    };
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "served until close to expiry"
    );
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the authorization server"),
        "{err}"
    );
    // The stored refresh token is untouched.
    assert_eq!(stored_refresh_token(&s).as_deref(), Some(rt.as_str()));
    assert_eq!(state_of(&s.daemon, "me"), "error");
}

#[test]
fn fifty_concurrent_requests_make_one_refresh() {
    let s = setup(8);
    add_password_account(&s, &["read"]);
    assert!(login(&s, ALICE_PASSWORD).status.success());
    // The login's token was never handed out, so nothing refreshes it ahead of time.
    sleep(Duration::from_secs(9));
    s.server.reset_counters();
    let socket = s.daemon.socket.clone();
    let env = s.daemon.env().to_vec();
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (socket, env) = (socket.clone(), env.clone());
            std::thread::spawn(move || run_cli(&socket, &env, &["token", "me"], None))
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let tokens: std::collections::HashSet<String> = outs
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "all 50 got the same fresh token");
    assert_eq!(
        counter(&s, "refresh_token"),
        1,
        "exactly one refresh at the server"
    );
    assert_eq!(counter(&s, "password"), 0);
}

#[test]
fn daemon_log_and_errors_name_the_problem() {
    let s = setup(300);
    // Unknown account.
    let out = s.daemon.cli(&["token", "nobody"], None);
    assert_eq!(out.status.code(), Some(8));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account named"));
    // A plain-http issuer without the loopback opt-in.
    let issuer = s.server.issuer();
    let out = s.daemon.cli(
        &[
            "provider",
            "add",
            "p",
            "--issuer",
            &issuer,
            "--client-id",
            "x",
            "--client-auth",
            "none",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("allow_insecure_loopback"));
    // Discovery of a wrong issuer fails at `provider add`, not at sign-in.
    let bad = format!("{}/nope", s.server.base_url());
    let out = s.daemon.cli(
        &[
            "provider",
            "add",
            "p",
            "--issuer",
            &bad,
            "--client-id",
            "x",
            "--client-auth",
            "none",
            "--allow-insecure-loopback",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("discovery failed"),
        "{out:?}"
    );
    assert!(tail(&s.daemon.log(), 100_000).contains("serving"));
}

#[test]
fn public_client_with_explicit_endpoints() {
    let s = setup(300);
    let (token_ep, revoke_ep) = (s.server.token_endpoint(), s.server.revocation_endpoint());
    s.daemon.cli_ok(
        &[
            "provider",
            "add",
            "pub",
            "--token-endpoint",
            &token_ep,
            "--revocation-endpoint",
            &revoke_ep,
            "--client-id",
            PUBLIC_CLIENT_ID,
            "--client-auth",
            "none",
            "--allow-insecure-loopback",
            "--scope",
            "read",
        ],
        None,
    );
    let list: Value =
        serde_json::from_str(&s.daemon.cli_ok(&["provider", "list", "--json"], None)).unwrap();
    assert_eq!(list[0]["client_auth"], "none");
    assert_eq!(list[0]["token_endpoint"], token_ep.as_str());
    s.daemon.cli_ok(
        &[
            "account",
            "add",
            "me",
            "--provider",
            "pub",
            "--username",
            ALICE_USERNAME,
        ],
        None,
    );
    assert!(login(&s, ALICE_PASSWORD).status.success());
    let at = token(&s, &[]);
    let info = s.server.introspect(&at);
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], PUBLIC_CLIENT_ID);
    assert!(stored_refresh_token(&s).is_some());
    // Removing the account signs out first; the provider can go once no account uses it.
    let out = s.daemon.cli(&["provider", "remove", "pub"], None);
    assert_eq!(out.status.code(), Some(2), "in use: {out:?}");
    s.daemon.cli_ok(&["account", "remove", "me"], None);
    assert_eq!(stored_refresh_token(&s), None);
    assert_eq!(s.server.introspect(&at)["active"], false);
    s.daemon.cli_ok(&["provider", "remove", "pub"], None);
    let config = std::fs::read_to_string(&s.daemon.config).unwrap();
    assert!(
        !config.contains("[providers.pub]") && !config.contains("[accounts.me]"),
        "{config}"
    );
}

#[test]
fn generic_preset_with_a_base_url_discovers_from_it() {
    let s = setup(300);
    let base = s.server.issuer();
    s.daemon.cli_ok(
        &[
            "provider",
            "add",
            "dot",
            "--preset",
            "generic",
            "--base-url",
            &base,
            "--client-id",
            PASSWORD_CLIENT_ID,
            "--client-secret-stdin",
            "--allow-insecure-loopback",
            "--scope",
            "read",
        ],
        Some(&format!("{PASSWORD_CLIENT_SECRET}\n")),
    );
    s.daemon.add_dot_account("me", ALICE_USERNAME);
    s.daemon.login("me", ALICE_PASSWORD);
    let at = token(&s, &[]);
    assert_eq!(s.server.introspect(&at)["active"], true);
    let presets = s.daemon.cli_ok(&["provider", "presets"], None);
    for p in [
        "generic",
        "cyberark",
        "webmethods",
        "oracle",
        "forgerock",
        "keycloak",
    ] {
        assert!(
            presets.lines().any(|l| l.starts_with(p)),
            "{p} missing: {presets}"
        );
    }
}

/// One caller's request for fewer scopes never shrinks the account for the others. Against
/// django-oauth-toolkit, which ties a refreshed token to the scope of the refresh request (RFC
/// 6749 §6 says it must not): by default such a request is refused and the account keeps its
/// whole grant; a provider that claims to keep scopes (`--scoped-refresh`) but narrows is caught
/// at the next refresh for the whole grant, instead of handing out a narrowed token as the whole.
#[test]
fn narrower_requests_never_shrink_the_account() {
    let s = setup(300);
    add_password_account(&s, &["read", "write"]);
    assert!(login(&s, ALICE_PASSWORD).status.success());
    for scope in ["read", "write"] {
        let out = s.daemon.cli(&["token", "me", "--scope", scope], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("instead of its [read write]"), "{err}");
        assert!(err.contains("scoped_refresh"), "{err}");
    }
    let out = s.daemon.cli(&["token", "me", "--scope", "admin"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("[admin] is not among them"), "{err}");
    assert_eq!(
        counter(&s, "refresh_token"),
        0,
        "nothing was asked of the server"
    );
    // The whole grant, for everyone, after a refresh too.
    s.daemon.cli_ok(&["logout", "me"], None);
    assert!(login(&s, ALICE_PASSWORD).status.success());
    let mut scopes: Vec<String> = s.server.introspect(&token(&s, &[]))["scope"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect();
    scopes.sort();
    assert_eq!(scopes, ["read", "write"]);

    // A provider that says it keeps scopes, and does not: caught, not believed.
    let mut args = tokenbroker_e2e::daemon::dot_provider_args(&s.server, &["read", "write"]);
    args[2] = "dot-scoped".into();
    args.push("--scoped-refresh".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.daemon.cli_ok(
        &args,
        Some(&format!(
            "{}\n",
            tokenbroker_e2e::peers::PASSWORD_CLIENT_SECRET
        )),
    );
    s.daemon.cli_ok(
        &[
            "account",
            "add",
            "me2",
            "--provider",
            "dot-scoped",
            "--username",
            ALICE_USERNAME,
        ],
        None,
    );
    s.daemon.login("me2", ALICE_PASSWORD);
    let narrow = s.daemon.cli_ok(&["token", "me2", "--scope", "read"], None);
    assert_eq!(s.server.introspect(narrow.trim())["scope"], "read");
    // The rotation revoked the whole-grant token: the next one is a refresh for the whole grant,
    // and DOT answers it with `read` only.
    let out = s.daemon.cli(&["token", "me2"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("narrowed the grant of account \"me2\" from [read write] to [read]"),
        "{err}"
    );
    assert_eq!(state_of(&s.daemon, "me2"), "error");
    assert_eq!(
        state_of(&s.daemon, "me"),
        "signed_in",
        "the other account is untouched"
    );
}
