//! Provider presets against strict vendor emulators (tests/src/emulators.rs): CyberArk Identity,
//! webMethods Integration Server, Oracle IDCS, ForgeRock AM, Keycloak. Each test checks the exact
//! request shape the vendor documents and the broker's handling of the vendor's refusals.
//!
//! The first tests drive the emulators directly over HTTP, independent of the daemon, so that a
//! failure below says whether the emulator or the broker is wrong.

use std::process::Output;
use std::thread::sleep;
use std::time::Duration;

use reqwest::blocking::Client as Http;
use serde_json::{json, Value};
use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::emulators::*;
use tokenbroker_e2e::peers::SecretService;

// ---------------------------------------------------------------------------------------------
// Helpers

fn http() -> Http {
    Http::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

const FORM: &str = "application/x-www-form-urlencoded";
const ORACLE_FORM: &str = "application/x-www-form-urlencoded;charset=UTF-8";

/// POST a body with this content type (and optional Authorization); status and JSON reply.
fn post(url: &str, ct: &str, auth: Option<&str>, body: String) -> (u16, Value) {
    let mut rb = http().post(url).header("Content-Type", ct).body(body);
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    let r = rb.send().expect("POST to the emulator");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

fn basic(id: &str, secret: &str) -> String {
    basic_header(id, secret)
}

struct Env {
    d: Daemon,
    ss: SecretService,
    emu: Emulator,
}

/// Config for tests with short-lived tokens: no proactive refresh, so that which token is current
/// depends only on what the test asks for.
const NO_PROACTIVE: &str = "version = 1\n\n[engine]\nproactive_refresh = false\n";

fn env(emu: Emulator, config: Option<&str>) -> Env {
    let ss = SecretService::start().expect("start the Secret Service");
    let d = Daemon::start(&ss, config).expect("start tokenbrokerd");
    Env { d, ss, emu }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn secret_line(secret: &str) -> String {
    format!("{secret}\n")
}

/// `provider add NAME --preset P --base-url <emulator> ... --allow-insecure-loopback`, the secret on
/// stdin when given.
fn provider_add(e: &Env, name: &str, preset: &str, extra: &[&str], secret: Option<&str>) {
    let base = e.emu.base_url();
    let mut args = vec![
        "provider",
        "add",
        name,
        "--preset",
        preset,
        "--base-url",
        &base,
        "--allow-insecure-loopback",
    ];
    args.extend_from_slice(extra);
    let stdin = secret.map(secret_line);
    if stdin.is_some() {
        args.push("--client-secret-stdin");
    }
    e.d.cli_ok(&args, stdin.as_deref());
}

fn account_add(e: &Env, name: &str, provider: &str, user: Option<&str>, scopes: &[&str]) {
    let mut args = vec!["account", "add", name, "--provider", provider];
    match user {
        Some(u) => args.extend(["--username", u]),
        None => args.push("--client-credentials"),
    }
    for s in scopes {
        args.extend(["--scope", s]);
    }
    e.d.cli_ok(&args, None);
}

fn login(e: &Env, account: &str, password: &str) -> Output {
    e.d.cli(
        &["login", account, "--password-stdin"],
        Some(&secret_line(password)),
    )
}

fn login_ok(e: &Env, account: &str, password: &str) {
    let out = login(e, account, password);
    assert!(
        out.status.success(),
        "login {account}: {}\n--- daemon log ---\n{}",
        stderr(&out),
        tokenbroker_e2e::daemon::tail(&e.d.log(), 4000)
    );
}

fn token(e: &Env, account: &str) -> String {
    e.d.cli_ok(&["token", account], None).trim().to_owned()
}

fn state_of(d: &Daemon, account: &str) -> String {
    let s: Value =
        serde_json::from_str(&d.cli_ok(&["status", "--json"], None)).expect("status json");
    s["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["name"] == account)
        .map(|a| a["state"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

fn scopes_of(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .split(' ')
        .filter(|x| !x.is_empty())
        .map(Into::into)
        .collect();
    v.sort();
    v
}

/// The client authentication a request carried: ("basic"|"post"|"jwt"|"none", id, secret or
/// assertion).
fn client_auth_of(r: &Recorded) -> (&'static str, String, String) {
    if let Some((id, secret)) = r.basic_credentials() {
        return ("basic", id, secret);
    }
    if let Some(a) = r.param("client_assertion") {
        return ("jwt", r.param("client_id").unwrap_or_default(), a);
    }
    if let Some(s) = r.param("client_secret") {
        return ("post", r.param("client_id").unwrap_or_default(), s);
    }
    (
        "none",
        r.param("client_id").unwrap_or_default(),
        String::new(),
    )
}

/// The content type, lowercase, without spaces.
fn norm_ct(r: &Recorded) -> String {
    r.content_type()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// A JWT client assertion as the daemon sent it: header alg and kid, claims checked against the
/// client id and audience, exp within a few minutes.
fn check_assertion(r: &Recorded, alg: &str, kid: &str, client_id: &str, aud: &str) -> String {
    assert_eq!(
        r.param("client_assertion_type").as_deref(),
        Some(JWT_BEARER)
    );
    assert!(
        r.header("authorization").is_none(),
        "no Basic with an assertion"
    );
    assert!(r.param("client_secret").is_none());
    let jwt = r.param("client_assertion").expect("client_assertion");
    let h = jwt_header(&jwt).expect("assertion header");
    assert_eq!(h["alg"], alg, "{h}");
    assert_eq!(h["kid"], kid, "{h}");
    let c = jwt_claims(&jwt).expect("assertion claims");
    assert_eq!(c["iss"], client_id, "{c}");
    assert_eq!(c["sub"], client_id, "{c}");
    let aud_ok = c["aud"] == aud
        || c["aud"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == aud));
    assert!(aud_ok, "aud {} is not {aud}", c["aud"]);
    let exp = c["exp"].as_u64().expect("exp");
    let t = now();
    assert!(
        exp > t.saturating_sub(30),
        "assertion exp {exp} is in the past (now {t})"
    );
    assert!(
        exp <= t + 600,
        "assertion exp {exp} is more than a few minutes away (now {t})"
    );
    c["jti"].as_str().expect("jti").to_owned()
}

// ---------------------------------------------------------------------------------------------
// The emulators alone

#[test]
fn emulator_basic_credentials_follow_rfc6749() {
    let h = basic(CLIENT_ID, CLIENT_SECRET);
    assert_eq!(
        decode_basic(&h).unwrap(),
        (CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())
    );
    // Without the form-urlencoding step, '+' reads as a space and '%/' is a bad escape.
    use base64::Engine as _;
    let raw = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    assert_ne!(
        decode_basic(&raw).ok(),
        Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned()))
    );
    assert_eq!(form_decode_component("a%20b+c").unwrap(), "a b c");
    assert!(form_decode_component("%zz").is_err());
}

#[test]
fn emulator_cyberark() {
    let emu = Emulator::with_lifetime(Vendor::CyberArk, 60);
    let url = emu.token_url();
    assert_eq!(
        url,
        format!("{}/oauth2/token/{CYBERARK_APP_ID}", emu.base_url())
    );
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let good = json!({"grant_type": "password", "user_name": SPECIAL_USER,
                      "password": SPECIAL_PASSWORD, "scope": "read"});

    // The documented request: Basic, JSON, user_name.
    let (st, v) = post(&url, "application/json", Some(&auth), good.to_string());
    assert_eq!(st, 200, "{v}");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4, "{v}");
    for k in ["access_token", "expires_in", "scope", "token_type"] {
        assert!(keys.contains(&k), "{v}");
    }
    assert!(
        v.get("refresh_token").is_none(),
        "CyberArk never gives a refresh token"
    );
    assert_eq!(v["expires_in"], 60);
    assert_eq!(v["scope"], "read");
    let at = v["access_token"].as_str().unwrap();
    assert_eq!(emu.token_info(at)["active"], true);
    assert_eq!(emu.token_info(at)["username"], SPECIAL_USER);
    // Default lifetime is the documented 18000 s.
    let emu2 = Emulator::start(Vendor::CyberArk, Options::fixtures(Vendor::CyberArk));
    let (st, v) = post(
        &emu2.token_url(),
        "application/json",
        Some(&auth),
        good.to_string(),
    );
    assert_eq!((st, v["expires_in"].as_u64()), (200, Some(18000)));

    // "username" instead of "user_name": refused, naming user_name, in CyberArk's error shape.
    let wrong = json!({"grant_type": "password", "username": USER, "password": USER_PASSWORD});
    let (st, v) = post(&url, "application/json", Some(&auth), wrong.to_string());
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["success"], false);
    assert_eq!(v["ErrorCode"], "invalid_request");
    assert!(v["Message"].as_str().unwrap().contains("user_name"), "{v}");

    // No Basic: 401 invalid_client.
    let (st, v) = post(&url, "application/json", None, good.to_string());
    assert_eq!(
        (st, v["ErrorCode"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    // Wrong secret.
    let (st, _) = post(
        &url,
        "application/json",
        Some(&basic(CLIENT_ID, "nope")),
        good.to_string(),
    );
    assert_eq!(st, 401);
    // A form body.
    let (st, v) = post(
        &url,
        FORM,
        Some(&auth),
        form(&[
            ("grant_type", "password"),
            ("user_name", USER),
            ("password", USER_PASSWORD),
        ]),
    );
    assert_eq!(
        (st, v["ErrorCode"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    // A JSON array.
    let (st, _) = post(&url, "application/json", Some(&auth), "[]".into());
    assert_eq!(st, 400);
    // Another app id: 404.
    let (st, _) = post(
        &format!("{}/oauth2/token/other_app", emu.base_url()),
        "application/json",
        Some(&auth),
        good.to_string(),
    );
    assert_eq!(st, 404);
    // Unknown scope.
    let mut bad_scope = good.clone();
    bad_scope["scope"] = json!("read admin");
    let (st, v) = post(&url, "application/json", Some(&auth), bad_scope.to_string());
    assert_eq!(
        (st, v["ErrorCode"].as_str()),
        (400, Some("invalid_scope")),
        "{v}"
    );
    // Wrong password.
    let mut bad_pw = good.clone();
    bad_pw["password"] = json!("wrong");
    let (st, v) = post(&url, "application/json", Some(&auth), bad_pw.to_string());
    assert_eq!(
        (st, v["ErrorCode"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    // No refresh grant, no revocation or introspection endpoints.
    let (st, v) = post(
        &url,
        "application/json",
        Some(&auth),
        json!({"grant_type": "refresh_token", "refresh_token": "x"}).to_string(),
    );
    assert_eq!(
        (st, v["ErrorCode"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    assert!(emu.revoke_path().is_none() && emu.introspect_path().is_none());

    // client_credentials for the M2M client only.
    let m2m = basic(M2M_CLIENT_ID, M2M_CLIENT_SECRET);
    let cc = json!({"grant_type": "client_credentials", "scope": "write"}).to_string();
    let (st, v) = post(&url, "application/json", Some(&m2m), cc.clone());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["scope"], "write");
    assert!(v.get("refresh_token").is_none());
    let (st, v) = post(&url, "application/json", Some(&auth), cc);
    assert_eq!(
        (st, v["ErrorCode"].as_str()),
        (400, Some("unauthorized_client"))
    );

    // Everything was recorded.
    assert_eq!(emu.requests().len(), 12);
    assert_eq!(emu.grant_requests("client_credentials").len(), 2);
}

#[test]
fn emulator_webmethods() {
    let emu = Emulator::with_lifetime(Vendor::WebMethods, 60);
    let url = emu.token_url();
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let pw = form(&[
        ("grant_type", "password"),
        ("username", SPECIAL_USER),
        ("password", SPECIAL_PASSWORD),
        ("scope", "read"),
    ]);
    let (st, v) = post(&url, FORM, Some(&auth), pw.clone());
    assert_eq!(st, 200, "{v}");
    let (at1, rt1) = (
        v["access_token"].as_str().unwrap().to_owned(),
        v["refresh_token"].as_str().unwrap().to_owned(),
    );
    // Client credentials in the body work too; both at once do not.
    let body_auth = form(&[
        ("grant_type", "password"),
        ("username", USER),
        ("password", USER_PASSWORD),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ]);
    let (st, v) = post(&url, FORM, None, body_auth.clone());
    assert_eq!(st, 200, "{v}");
    assert_eq!(scopes_of(v["scope"].as_str().unwrap()), ["read", "write"]);
    let (st, v) = post(&url, FORM, Some(&auth), body_auth);
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_request")));
    // JSON is refused.
    let (st, v) = post(
        &url,
        "application/json",
        Some(&auth),
        json!({"grant_type": "password", "username": USER, "password": USER_PASSWORD}).to_string(),
    );
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    // A public client may not use the password grant.
    let (st, v) = post(
        &url,
        FORM,
        None,
        form(&[
            ("grant_type", "password"),
            ("username", USER),
            ("password", USER_PASSWORD),
            ("client_id", PUBLIC_CLIENT_ID),
        ]),
    );
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("unauthorized_client")),
        "{v}"
    );
    // No client authentication at all.
    let (st, v) = post(&url, FORM, None, pw.clone());
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    // A scope beyond the client's.
    let (st, v) = post(
        &url,
        FORM,
        Some(&auth),
        form(&[
            ("grant_type", "password"),
            ("username", USER),
            ("password", USER_PASSWORD),
            ("scope", "admin"),
        ]),
    );
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_scope")),
        "{v}"
    );

    // Refresh rotates: the old refresh token is spent.
    let refresh = |rt: &str| {
        post(
            &url,
            FORM,
            Some(&auth),
            form(&[("grant_type", "refresh_token"), ("refresh_token", rt)]),
        )
    };
    let (st, v) = refresh(&rt1);
    assert_eq!(st, 200, "{v}");
    let rt2 = v["refresh_token"].as_str().unwrap().to_owned();
    let at2 = v["access_token"].as_str().unwrap().to_owned();
    assert_ne!(rt2, rt1);
    let (st, v) = refresh(&rt1);
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));

    // Introspection with client auth; revocation of an access token takes its refresh token.
    let intro = emu.introspect_url().unwrap();
    let (st, v) = post(&intro, FORM, Some(&auth), form(&[("token", &at2)]));
    assert_eq!(st, 200);
    assert_eq!(v["active"], true);
    assert_eq!(v["username"], SPECIAL_USER);
    assert_eq!(v["client_id"], CLIENT_ID);
    assert_eq!(v["scope"], "read");
    assert!(v["exp"].as_u64().unwrap() > now());
    let (st, _) = post(&intro, FORM, None, form(&[("token", &at2)]));
    assert_eq!(st, 401);
    let (st, _) = post(
        &emu.revoke_url().unwrap(),
        FORM,
        Some(&auth),
        form(&[("token", &at2)]),
    );
    assert_eq!(st, 200);
    let (_, v) = post(&intro, FORM, Some(&auth), form(&[("token", &at2)]));
    assert_eq!(v, json!({"active": false}));
    assert_eq!(
        emu.token_info(&rt2)["active"],
        false,
        "the related refresh token is revoked"
    );
    assert_eq!(
        emu.token_info(&at1)["active"],
        true,
        "unrelated tokens stay"
    );

    // client_credentials: no refresh token.
    let (st, v) = post(
        &url,
        FORM,
        Some(&basic(M2M_CLIENT_ID, M2M_CLIENT_SECRET)),
        form(&[("grant_type", "client_credentials"), ("scope", "write")]),
    );
    assert_eq!(st, 200, "{v}");
    assert!(v.get("refresh_token").is_none());

    // A client not configured for refresh tokens gets none.
    let mut opts = Options::fixtures(Vendor::WebMethods);
    opts.clients[0].refresh_tokens = false;
    let emu = Emulator::start(Vendor::WebMethods, opts);
    let (st, v) = post(&emu.token_url(), FORM, Some(&auth), pw);
    assert_eq!(st, 200, "{v}");
    assert!(v.get("refresh_token").is_none(), "{v}");
}

#[test]
fn emulator_oracle_assertions() {
    let key = TestKey::rsa("tb-kid-1");
    let emu = Emulator::start(
        Vendor::Oracle,
        Options::fixtures(Vendor::Oracle)
            .lifetime(60)
            .with_jwt_client(&key),
    );
    let url = emu.token_url();
    let with = |assertion: &str, scope: &str| {
        form(&[
            ("grant_type", "password"),
            ("username", USER),
            ("password", USER_PASSWORD),
            ("client_id", JWT_CLIENT_ID),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
            ("scope", scope),
        ])
    };
    let a = key.assertion(JWT_CLIENT_ID, ORACLE_ASSERTION_AUDIENCE, 300);
    let (st, v) = post(&url, ORACLE_FORM, None, with(&a, "read offline_access"));
    assert_eq!(st, 200, "{v}");
    assert!(
        v["refresh_token"].is_string(),
        "offline_access gives a refresh token"
    );
    // Replay of the same assertion.
    let (st, v) = post(&url, ORACLE_FORM, None, with(&a, "read"));
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    assert!(
        v["error_description"].as_str().unwrap().contains("replay"),
        "{v}"
    );
    // Expired.
    let a = key.assertion(JWT_CLIENT_ID, ORACLE_ASSERTION_AUDIENCE, -10);
    let (st, v) = post(&url, ORACLE_FORM, None, with(&a, "read"));
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    assert!(
        v["error_description"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    // Too far away.
    let a = key.assertion(JWT_CLIENT_ID, ORACLE_ASSERTION_AUDIENCE, 7200);
    let (st, _) = post(&url, ORACLE_FORM, None, with(&a, "read"));
    assert_eq!(st, 401);
    // Wrong audience (the token endpoint URL is not what Oracle wants).
    let a = key.assertion(JWT_CLIENT_ID, &url, 300);
    let (st, v) = post(&url, ORACLE_FORM, None, with(&a, "read"));
    assert_eq!(st, 401, "{v}");
    // Wrong kid, no kid.
    let claims = |jti: &str| {
        json!({"iss": JWT_CLIENT_ID, "sub": JWT_CLIENT_ID, "aud": ORACLE_ASSERTION_AUDIENCE,
               "exp": now() + 300, "jti": jti})
    };
    let (st, _) = post(
        &url,
        ORACLE_FORM,
        None,
        with(&key.sign(Some("other"), &claims("j1")), "read"),
    );
    assert_eq!(st, 401);
    let (st, _) = post(
        &url,
        ORACLE_FORM,
        None,
        with(&key.sign(None, &claims("j2")), "read"),
    );
    assert_eq!(st, 401);
    // Signed by another key.
    let other = TestKey::rsa("tb-kid-1");
    let (st, v) = post(
        &url,
        ORACLE_FORM,
        None,
        with(&other.sign(Some("tb-kid-1"), &claims("j3")), "read"),
    );
    assert_eq!(st, 401, "{v}");
    // iat is optional.
    let (st, v) = post(
        &url,
        ORACLE_FORM,
        None,
        with(&key.sign(Some("tb-kid-1"), &claims("j4")), "read"),
    );
    assert_eq!(st, 200, "{v}");
    assert!(
        v.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
    // Unknown scope.
    let a = key.assertion(JWT_CLIENT_ID, ORACLE_ASSERTION_AUDIENCE, 300);
    let (st, v) = post(&url, ORACLE_FORM, None, with(&a, "read bogus"));
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_scope")),
        "{v}"
    );

    // The content type must say charset=UTF-8 (a space and any case are fine).
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let pw = form(&[
        ("grant_type", "password"),
        ("username", SPECIAL_USER),
        ("password", SPECIAL_PASSWORD),
        ("scope", "urn:opc:idm:__myscopes__"),
    ]);
    let (st, v) = post(&url, FORM, Some(&auth), pw.clone());
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let (st, v) = post(
        &url,
        "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        Some(&auth),
        pw.clone(),
    );
    assert_eq!(st, 200, "{v}");
    // client_secret in the body is not documented: refused.
    let (st, _) = post(
        &url,
        ORACLE_FORM,
        None,
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", M2M_CLIENT_ID),
            ("client_secret", M2M_CLIENT_SECRET),
            ("scope", "read"),
        ]),
    );
    assert_eq!(st, 401);
    let (st, v) = post(
        &url,
        ORACLE_FORM,
        Some(&basic(M2M_CLIENT_ID, M2M_CLIENT_SECRET)),
        form(&[("grant_type", "client_credentials"), ("scope", "read")]),
    );
    assert_eq!(st, 200, "{v}");
}

#[test]
fn emulator_forgerock() {
    let key = TestKey::ec_p256("fr-kid");
    let mut opts = Options::fixtures(Vendor::ForgeRock)
        .lifetime(60)
        .with_jwt_client(&key);
    opts.auth_chain = Some("ldapService".into());
    let emu = Emulator::start(Vendor::ForgeRock, opts);
    let url = emu.token_url();
    assert!(
        url.ends_with("/oauth2/realms/root/realms/customers/access_token"),
        "{url}"
    );
    let pw = |extra: &[(&str, &str)]| {
        let mut p = vec![
            ("grant_type", "password"),
            ("username", USER),
            ("password", USER_PASSWORD),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ];
        p.extend_from_slice(extra);
        form(&p)
    };
    // Without or with another auth chain.
    let (st, v) = post(&url, FORM, None, pw(&[]));
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .contains("authentication chain"));
    let (st, _) = post(&url, FORM, None, pw(&[("auth_chain", "other")]));
    assert_eq!(st, 400);
    // Default scopes when none is asked for; a refresh token.
    let (st, v) = post(&url, FORM, None, pw(&[("auth_chain", "ldapService")]));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["scope"], "read");
    let rt = v["refresh_token"].as_str().unwrap().to_owned();
    // Another realm's path, and the top-level realm.
    let (st, v) = post(
        &format!(
            "{}/oauth2/realms/root/realms/other/access_token",
            emu.base_url()
        ),
        FORM,
        None,
        pw(&[("auth_chain", "ldapService")]),
    );
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_client")),
        "{v}"
    );
    let (st, _) = post(
        &format!("{}/oauth2/access_token", emu.base_url()),
        FORM,
        None,
        pw(&[]),
    );
    assert_eq!(st, 400);
    // ES256 assertion, aud = the token endpoint.
    let with = |a: &str| {
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", a),
        ])
    };
    let (st, v) = post(
        &url,
        FORM,
        None,
        with(&key.assertion(JWT_CLIENT_ID, &url, 120)),
    );
    // The refresh token belongs to CLIENT_ID, not the JWT client.
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (st, v) = post(
        &url,
        FORM,
        None,
        form(&[
            ("grant_type", "password"),
            ("username", USER),
            ("password", USER_PASSWORD),
            ("auth_chain", "ldapService"),
            ("scope", "write"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &key.assertion(JWT_CLIENT_ID, &url, 120)),
        ]),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["scope"], "write");
    let rt_jwt = v["refresh_token"].as_str().unwrap().to_owned();
    let (st, v) = post(
        &url,
        FORM,
        None,
        with(&key.assertion(JWT_CLIENT_ID, ORACLE_ASSERTION_AUDIENCE, 120)),
    );
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid_client")),
        "wrong aud: {v}"
    );
    let (st, v) = post(
        &url,
        FORM,
        None,
        with(&key.assertion(JWT_CLIENT_ID, &url, -5)),
    );
    assert!(
        v["error_description"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    assert_eq!(st, 401);
    // Revocation at the realm's path, by the post-authenticated client.
    let (st, _) = post(
        &emu.revoke_url().unwrap(),
        FORM,
        None,
        form(&[
            ("token", &rt),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ]),
    );
    assert_eq!(st, 200);
    assert_eq!(emu.token_info(&rt)["active"], false);
    assert_eq!(emu.token_info(&rt_jwt)["active"], true);
    assert!(emu
        .revoke_url()
        .unwrap()
        .ends_with("/oauth2/realms/root/realms/customers/token/revoke"));
}

#[test]
fn emulator_keycloak() {
    let emu = Emulator::with_lifetime(Vendor::Keycloak, 60);
    // A chunked request body is read whole.
    {
        use std::io::{Read as _, Write as _};
        let body = form(&[
            ("grant_type", "password"),
            ("username", SPECIAL_USER),
            ("password", SPECIAL_PASSWORD),
        ]);
        let (first, rest) = body.split_at(10);
        let mut c = std::net::TcpStream::connect(("127.0.0.1", emu.port())).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            c,
            "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: {FORM}\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{rest}\r\n0\r\n\r\n",
            emu.token_path(),
            basic(CLIENT_ID, CLIENT_SECRET),
            first.len(),
            rest.len()
        )
        .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
        assert_eq!(emu.requests()[0].body_text(), body);
    }
    let disc = http()
        .get(format!("{}/.well-known/openid-configuration", emu.issuer()))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(disc["issuer"], emu.issuer());
    assert_eq!(disc["token_endpoint"], emu.token_url());
    assert_eq!(disc["revocation_endpoint"], emu.revoke_url().unwrap());
    let (st, v) = post(
        &emu.token_url(),
        FORM,
        Some(&basic(CLIENT_ID, CLIENT_SECRET)),
        form(&[
            ("grant_type", "password"),
            ("username", USER),
            ("password", USER_PASSWORD),
            ("scope", "read"),
        ]),
    );
    assert_eq!(st, 200, "{v}");
    let rt = v["refresh_token"].as_str().unwrap();
    let (st, v) = post(
        &emu.token_url(),
        FORM,
        None,
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ]),
    );
    assert_eq!(st, 200, "{v}");
    assert_ne!(v["refresh_token"].as_str().unwrap(), rt);
    let (st, _) = post(
        &format!(
            "{}/realms/other/protocol/openid-connect/token",
            emu.base_url()
        ),
        FORM,
        None,
        String::new(),
    );
    assert_eq!(st, 404);
}

// ---------------------------------------------------------------------------------------------
// The broker against the emulators

#[test]
fn provider_presets_are_listed() {
    let e = env(Emulator::with_lifetime(Vendor::Keycloak, 60), None);
    let out = e.d.cli_ok(&["provider", "presets"], None);
    for p in [
        "generic",
        "cyberark",
        "webmethods",
        "oracle",
        "forgerock",
        "keycloak",
    ] {
        assert!(out.contains(p), "{p} missing from:\n{out}");
    }
}

/// CyberArk: JSON body with user_name, Basic client auth with an awkward secret, an awkward
/// password in the JSON body; no refresh token, so the account needs sign-in again once the access
/// token expires, and the password is never sent again.
#[test]
fn cyberark_special_characters_in_json_body_no_refresh_token() {
    let e = env(
        Emulator::with_lifetime(Vendor::CyberArk, 10),
        Some(NO_PROACTIVE),
    );
    provider_add(
        &e,
        "ca",
        "cyberark",
        &[
            "--app-id",
            CYBERARK_APP_ID,
            "--client-id",
            CLIENT_ID,
            "--scope",
            "read",
        ],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "me", "ca", Some(SPECIAL_USER), &[]);
    login_ok(&e, "me", SPECIAL_PASSWORD);

    let reqs = e.emu.token_requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/oauth2/token/{CYBERARK_APP_ID}"));
    assert_eq!(r.media_type().as_deref(), Some("application/json"));
    let body = r.json().expect("a JSON body");
    assert_eq!(body["grant_type"], "password");
    assert_eq!(body["user_name"], SPECIAL_USER);
    assert_eq!(
        body["password"], SPECIAL_PASSWORD,
        "the password survives JSON encoding"
    );
    assert_eq!(body["scope"], "read");
    for absent in ["username", "client_id", "client_secret"] {
        assert!(body.get(absent).is_none(), "{absent} in {body}");
    }
    assert_eq!(
        client_auth_of(r),
        ("basic", CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned()),
        "Basic with the secret encoded as RFC 6749 §2.3.1 says"
    );

    let at = token(&e, "me");
    assert_eq!(e.emu.token_info(&at)["active"], true);
    assert_eq!(e.emu.token_info(&at)["username"], SPECIAL_USER);
    assert_eq!(state_of(&e.d, "me"), "signed_in");
    assert_eq!(e.ss.lookup("tokenbroker", "refresh_token:me"), None);

    // Past expiry: sign-in needed, and no request at all (nothing to refresh with).
    sleep(Duration::from_secs(11));
    let out = e.d.cli(&["token", "me"], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).to_lowercase().contains("sign"),
        "{}",
        stderr(&out)
    );
    assert_eq!(state_of(&e.d, "me"), "needs_sign_in");
    assert_eq!(
        e.emu.grant_requests("password").len(),
        1,
        "the password is never resent"
    );
    assert_eq!(e.emu.requests().len(), 1, "{:#?}", e.emu.requests());

    // Logout: CyberArk documents no revocation, so nothing is sent.
    e.d.cli_ok(&["logout", "me"], None);
    assert_eq!(e.emu.requests().len(), 1);
}

#[test]
fn cyberark_client_credentials() {
    let e = env(Emulator::with_lifetime(Vendor::CyberArk, 3600), None);
    provider_add(
        &e,
        "ca-m2m",
        "cyberark",
        &["--app-id", CYBERARK_APP_ID, "--client-id", M2M_CLIENT_ID],
        Some(M2M_CLIENT_SECRET),
    );
    account_add(&e, "svc", "ca-m2m", None, &["write"]);
    let at = token(&e, "svc");
    assert_eq!(e.emu.token_info(&at)["active"], true);
    let reqs = e.emu.token_requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.media_type().as_deref(), Some("application/json"));
    let body = r.json().unwrap();
    assert_eq!(
        body,
        json!({"grant_type": "client_credentials", "scope": "write"})
    );
    assert_eq!(
        client_auth_of(r),
        (
            "basic",
            M2M_CLIENT_ID.to_owned(),
            M2M_CLIENT_SECRET.to_owned()
        )
    );
    // Cached.
    assert_eq!(token(&e, "svc"), at);
    // CyberArk documents no introspection: a clear local refusal, nothing sent.
    let out = e.d.cli(&["introspect", "svc"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("introspection"), "{}", stderr(&out));
    assert_eq!(e.emu.requests().len(), 1);
}

/// The vendor's refusals, with CyberArk's own error body shape, reach the user with code and
/// description.
#[test]
fn cyberark_refusals_are_clear() {
    let emu = Emulator::with_lifetime(Vendor::CyberArk, 3600);
    // A generic provider that sends JSON but the standard field name "username", and one without
    // client authentication.
    let config = format!(
        r#"version = 1

[providers.gen]
token_endpoint = "{url}"
client_id = "{CLIENT_ID}"
client_auth = "client_secret_basic"
body = "json"
allow_insecure_loopback = true

[providers.noauth]
token_endpoint = "{url}"
client_id = "{CLIENT_ID}"
client_auth = "none"
body = "json"
username_field = "user_name"
allow_insecure_loopback = true

[accounts.gen]
provider = "gen"
grant = "password"
username = "{USER}"

[accounts.noauth]
provider = "noauth"
grant = "password"
username = "{USER}"
"#,
        url = emu.token_url()
    );
    let e = env(emu, Some(&config));
    e.d.cli_ok(
        &["provider", "set-secret", "gen"],
        Some(&secret_line(CLIENT_SECRET)),
    );

    let out = login(&e, "gen", USER_PASSWORD);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("invalid_request"), "the error code: {err}");
    assert!(
        err.contains("user_name"),
        "the description names user_name: {err}"
    );
    assert!(err.contains("(HTTP 400)"), "{err}");
    let r = e.emu.token_requests().pop().unwrap();
    assert_eq!(
        r.json().unwrap()["username"],
        USER,
        "generic sends username"
    );

    // Missing client authentication: 401 invalid_client, credentials rejected.
    let out = login(&e, "noauth", USER_PASSWORD);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("invalid_client"), "{err}");
    assert!(err.contains("Basic"), "the description: {err}");
    assert!(err.contains("(HTTP 401)"), "{err}");
    assert!(e
        .emu
        .token_requests()
        .pop()
        .unwrap()
        .header("authorization")
        .is_none());

    // Through the preset: a wrong password (exit 7) and an unknown scope (exit 2).
    provider_add(
        &e,
        "ca",
        "cyberark",
        &["--app-id", CYBERARK_APP_ID, "--client-id", CLIENT_ID],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "me", "ca", Some(USER), &["read"]);
    let out = login(&e, "me", "not the password");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("invalid_grant"), "{err}");
    assert!(
        err.contains("user name or password is wrong"),
        "the description: {err}"
    );
    assert_eq!(state_of(&e.d, "me"), "needs_sign_in");

    account_add(&e, "wide", "ca", Some(USER), &["admin"]);
    let out = login(&e, "wide", USER_PASSWORD);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid_scope"), "{err}");
    assert!(err.contains("unknown scope: admin"), "{err}");

    // A wrong app id: the tenant answers 404.
    provider_add(
        &e,
        "ca-wrong",
        "cyberark",
        &["--app-id", "no_such_app", "--client-id", CLIENT_ID],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "lost", "ca-wrong", Some(USER), &[]);
    let out = login(&e, "lost", USER_PASSWORD);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
}

/// webMethods: form body, client auth, refresh with rotation, introspection, revocation.
#[test]
fn webmethods_password_refresh_introspect_revoke() {
    let e = env(
        Emulator::with_lifetime(Vendor::WebMethods, 10),
        Some(NO_PROACTIVE),
    );
    provider_add(
        &e,
        "wm",
        "webmethods",
        &[
            "--client-id",
            CLIENT_ID,
            "--scope",
            "read",
            "--scope",
            "write",
        ],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "me", "wm", Some(USER), &[]);
    login_ok(&e, "me", USER_PASSWORD);
    let reqs = e.emu.token_requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/invoke/pub.oauth/getToken");
    assert_eq!(r.media_type().as_deref(), Some(FORM));
    assert_eq!(r.param("grant_type").as_deref(), Some("password"));
    assert_eq!(r.param("username").as_deref(), Some(USER));
    assert_eq!(r.param("password").as_deref(), Some(USER_PASSWORD));
    assert_eq!(
        scopes_of(&r.param("scope").unwrap_or_default()),
        ["read", "write"]
    );
    let (how, id, secret) = client_auth_of(r);
    assert!(how == "basic" || how == "post", "{how}");
    assert_eq!((id.as_str(), secret.as_str()), (CLIENT_ID, CLIENT_SECRET));
    let rt1 =
        e.ss.lookup("tokenbroker", "refresh_token:me")
            .expect("refresh token stored");

    let at1 = token(&e, "me");
    let info: Value =
        serde_json::from_str(&e.d.cli_ok(&["introspect", "me", "--json"], None)).unwrap();
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(
        scopes_of(info["scope"].as_str().unwrap()),
        ["read", "write"]
    );
    assert!(info["exp"].as_u64().unwrap() > now() - 5);
    let intro = e
        .emu
        .requests()
        .into_iter()
        .filter(|r| r.path == "/invoke/pub.oauth/introspectToken")
        .collect::<Vec<_>>();
    assert_eq!(intro.len(), 1);
    assert_eq!(intro[0].param("token").as_deref(), Some(at1.as_str()));

    // Past expiry: refreshed with the stored refresh token, which is rotated.
    sleep(Duration::from_secs(11));
    let at2 = token(&e, "me");
    assert_ne!(at2, at1);
    assert_eq!(e.emu.token_info(&at2)["active"], true);
    let refreshes = e.emu.grant_requests("refresh_token");
    assert!(!refreshes.is_empty());
    assert_eq!(
        refreshes[0].param("refresh_token").as_deref(),
        Some(rt1.as_str())
    );
    assert_eq!(e.emu.grant_requests("password").len(), 1);
    let rt2 = e.ss.lookup("tokenbroker", "refresh_token:me").unwrap();
    assert_ne!(rt2, rt1, "rotated");
    assert_eq!(e.emu.token_info(&rt2)["active"], true);
    assert_eq!(e.emu.token_info(&rt1)["active"], false);

    // Logout revokes at the server.
    e.d.cli_ok(&["logout", "me"], None);
    let rev = e.emu.revoke_requests();
    assert!(
        rev.iter()
            .any(|r| r.param("token").as_deref() == Some(rt2.as_str())),
        "the stored refresh token is revoked: {rev:#?}"
    );
    for r in &rev {
        assert_eq!(r.media_type().as_deref(), Some(FORM));
        let (_, id, secret) = client_auth_of(r);
        assert_eq!((id.as_str(), secret.as_str()), (CLIENT_ID, CLIENT_SECRET));
    }
    assert_eq!(e.emu.token_info(&rt2)["active"], false);
    assert_eq!(e.emu.token_info(&at2)["active"], false);
    // Introspection now: inactive, or no token to ask about.
    let out = e.d.cli(&["introspect", "me", "--json"], None);
    if out.status.success() {
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["active"], false, "{info}");
    } else {
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    }
    assert_eq!(e.ss.lookup("tokenbroker", "refresh_token:me"), None);
}

#[test]
fn webmethods_client_credentials_and_refusals() {
    let e = env(Emulator::with_lifetime(Vendor::WebMethods, 3600), None);
    provider_add(
        &e,
        "wm-m2m",
        "webmethods",
        &["--client-id", M2M_CLIENT_ID],
        Some(M2M_CLIENT_SECRET),
    );
    account_add(&e, "svc", "wm-m2m", None, &["read"]);
    let at = token(&e, "svc");
    assert_eq!(e.emu.token_info(&at)["active"], true);
    let r = e.emu.token_requests().pop().unwrap();
    assert_eq!(r.media_type().as_deref(), Some(FORM));
    assert_eq!(r.param("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(r.param("scope").as_deref(), Some("read"));
    assert!(r.param("username").is_none() && r.param("password").is_none());
    let (_, id, secret) = client_auth_of(&r);
    assert_eq!(
        (id.as_str(), secret.as_str()),
        (M2M_CLIENT_ID, M2M_CLIENT_SECRET)
    );

    // Introspection: active; then, once the server revoked the token the daemon still caches,
    // inactive.
    let introspect = || -> Value {
        serde_json::from_str(&e.d.cli_ok(&["introspect", "svc", "--json"], None)).unwrap()
    };
    let info = introspect();
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["scope"], "read");
    assert!(info["exp"].as_u64().unwrap() > now());
    let (st, _) = post(
        &e.emu.revoke_url().unwrap(),
        FORM,
        Some(&basic(M2M_CLIENT_ID, M2M_CLIENT_SECRET)),
        form(&[("token", &at)]),
    );
    assert_eq!(st, 200);
    let info = introspect();
    assert_eq!(info["active"], false, "{info}");
    let last = e.emu.requests().pop().unwrap();
    assert_eq!(last.path, "/invoke/pub.oauth/introspectToken");
    assert_eq!(last.param("token").as_deref(), Some(at.as_str()));

    // A scope the client may not have: invalid_scope, exit 2, the standard error body shown.
    provider_add(
        &e,
        "wm",
        "webmethods",
        &["--client-id", CLIENT_ID],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "me", "wm", Some(USER), &["admin"]);
    let out = login(&e, "me", USER_PASSWORD);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid_scope"), "{err}");
    assert!(
        err.contains("scope admin is not allowed for client tb-client"),
        "{err}"
    );
    assert!(err.contains("400"), "{err}");

    // A public client may not use the password grant.
    provider_add(
        &e,
        "wm-pub",
        "webmethods",
        &["--client-id", PUBLIC_CLIENT_ID, "--client-auth", "none"],
        None,
    );
    account_add(&e, "pub", "wm-pub", Some(USER), &[]);
    let out = login(&e, "pub", USER_PASSWORD);
    let err = stderr(&out);
    assert!(matches!(out.status.code(), Some(2) | Some(7)), "{err}");
    assert!(err.contains("unauthorized_client"), "{err}");

    // A wrong password.
    account_add(&e, "me2", "wm", Some(USER), &[]);
    let out = login(&e, "me2", "wrong");
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid_grant"));
}

/// Special characters in a form body and in form-encoded client credentials (client_secret_post).
#[test]
fn special_characters_in_form_body() {
    let e = env(Emulator::with_lifetime(Vendor::WebMethods, 3600), None);
    provider_add(
        &e,
        "wm",
        "webmethods",
        &["--client-id", CLIENT_ID, "--client-auth", "post"],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "me", "wm", Some(SPECIAL_USER), &["read"]);
    login_ok(&e, "me", SPECIAL_PASSWORD);
    let r = e.emu.token_requests().pop().unwrap();
    assert!(r.header("authorization").is_none());
    let pairs = r.form();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("password"), Some(SPECIAL_PASSWORD));
    assert_eq!(get("client_secret"), Some(CLIENT_SECRET));
    assert_eq!(get("client_id"), Some(CLIENT_ID));
    // Every field once, and nothing of the secrets left unencoded in the raw body.
    let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "repeated fields: {names:?}");
    let raw = r.body_text();
    assert!(
        !raw.contains("p&ss") && !raw.contains("s3cr&t") && !raw.contains(' '),
        "{raw}"
    );
    assert_eq!(e.emu.token_info(&token(&e, "me"))["username"], SPECIAL_USER);
}

/// Special characters in Basic credentials and a form body, with Oracle's content type.
#[test]
fn special_characters_in_basic_credentials() {
    let e = env(Emulator::with_lifetime(Vendor::Oracle, 3600), None);
    provider_add(
        &e,
        "or",
        "oracle",
        &[
            "--client-id",
            CLIENT_ID,
            "--client-auth",
            "basic",
            "--scope",
            "urn:opc:idm:__myscopes__",
        ],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "me", "or", Some(SPECIAL_USER), &[]);
    login_ok(&e, "me", SPECIAL_PASSWORD);
    let r = e.emu.token_requests().pop().unwrap();
    assert_eq!(r.path, "/oauth2/v1/token");
    assert_eq!(
        norm_ct(&r),
        "application/x-www-form-urlencoded;charset=utf-8"
    );
    assert_eq!(
        client_auth_of(&r),
        ("basic", CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())
    );
    assert!(r.param("client_secret").is_none());
    assert_eq!(r.param("password").as_deref(), Some(SPECIAL_PASSWORD));
    let scope = scopes_of(&r.param("scope").unwrap_or_default());
    assert!(
        scope.contains(&"urn:opc:idm:__myscopes__".to_owned()),
        "{scope:?}"
    );
    assert!(
        scope.contains(&"offline_access".to_owned()),
        "offline_access for a refresh token: {scope:?}"
    );
    assert!(e.ss.lookup("tokenbroker", "refresh_token:me").is_some());
    assert_eq!(e.emu.token_info(&token(&e, "me"))["active"], true);
    let info: Value =
        serde_json::from_str(&e.d.cli_ok(&["introspect", "me", "--json"], None)).unwrap();
    assert_eq!(info["active"], true, "{info}");
    let r = e.emu.requests().pop().unwrap();
    assert_eq!(r.path, "/oauth2/v1/introspect");
    assert_eq!(
        client_auth_of(&r),
        ("basic", CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())
    );
}

/// Oracle with private_key_jwt (RS256): the documented request, refresh, revocation.
#[test]
fn oracle_private_key_jwt_lifecycle() {
    let key = TestKey::rsa("tb-oracle-kid");
    let emu = Emulator::start(
        Vendor::Oracle,
        Options::fixtures(Vendor::Oracle)
            .lifetime(10)
            .with_jwt_client(&key),
    );
    let e = env(emu, Some(NO_PROACTIVE));
    let key_path = key.private_key_path.display().to_string();
    provider_add(
        &e,
        "or",
        "oracle",
        &[
            "--client-id",
            JWT_CLIENT_ID,
            "--client-auth",
            "private_key_jwt",
            "--client-key",
            &key_path,
            "--client-key-id",
            &key.kid,
            "--scope",
            "read",
        ],
        None,
    );
    account_add(&e, "me", "or", Some(USER), &[]);
    login_ok(&e, "me", USER_PASSWORD);
    let r = e.emu.token_requests().pop().unwrap();
    assert_eq!(r.path, "/oauth2/v1/token");
    assert_eq!(
        norm_ct(&r),
        "application/x-www-form-urlencoded;charset=utf-8"
    );
    assert_eq!(r.param("grant_type").as_deref(), Some("password"));
    assert_eq!(r.param("client_id").as_deref(), Some(JWT_CLIENT_ID));
    let jti1 = check_assertion(
        &r,
        "RS256",
        &key.kid,
        JWT_CLIENT_ID,
        ORACLE_ASSERTION_AUDIENCE,
    );
    assert_eq!(
        scopes_of(&r.param("scope").unwrap()),
        ["offline_access", "read"]
    );

    let at1 = token(&e, "me");
    assert_eq!(e.emu.token_info(&at1)["active"], true);
    sleep(Duration::from_secs(11));
    let at2 = token(&e, "me");
    assert_ne!(at1, at2);
    let refreshes = e.emu.grant_requests("refresh_token");
    assert!(!refreshes.is_empty(), "{:#?}", e.emu.requests());
    let jti2 = check_assertion(
        &refreshes[0],
        "RS256",
        &key.kid,
        JWT_CLIENT_ID,
        ORACLE_ASSERTION_AUDIENCE,
    );
    assert_ne!(jti1, jti2, "a new jti per assertion");
    assert_eq!(
        norm_ct(&refreshes[0]),
        "application/x-www-form-urlencoded;charset=utf-8"
    );
    assert_eq!(e.emu.grant_requests("password").len(), 1);

    // Logout: revoked, with an assertion.
    e.d.cli_ok(&["logout", "me"], None);
    let rev = e.emu.revoke_requests();
    assert!(!rev.is_empty());
    assert_eq!(rev[0].path, "/oauth2/v1/revoke");
    check_assertion(
        &rev[0],
        "RS256",
        &key.kid,
        JWT_CLIENT_ID,
        ORACLE_ASSERTION_AUDIENCE,
    );
    assert_eq!(e.emu.token_info(&at2)["active"], false);

    // The emulator refuses an expired assertion (the daemon cannot be made to send one).
    let (st, v) = post(
        &e.emu.token_url(),
        ORACLE_FORM,
        None,
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", JWT_CLIENT_ID),
            ("client_assertion_type", JWT_BEARER),
            (
                "client_assertion",
                &key.assertion(JWT_CLIENT_ID, ORACLE_ASSERTION_AUDIENCE, -60),
            ),
            ("scope", "read"),
        ]),
    );
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_client")));
    assert!(v["error_description"].as_str().unwrap().contains("expired"));
}

#[test]
fn oracle_client_credentials_and_unknown_scope() {
    let e = env(Emulator::with_lifetime(Vendor::Oracle, 3600), None);
    provider_add(
        &e,
        "or-m2m",
        "oracle",
        &["--client-id", M2M_CLIENT_ID],
        Some(M2M_CLIENT_SECRET),
    );
    account_add(&e, "svc", "or-m2m", None, &["urn:opc:idm:__myscopes__"]);
    let at = token(&e, "svc");
    assert_eq!(e.emu.token_info(&at)["active"], true);
    let r = e.emu.token_requests().pop().unwrap();
    assert_eq!(
        norm_ct(&r),
        "application/x-www-form-urlencoded;charset=utf-8"
    );
    assert_eq!(r.param("grant_type").as_deref(), Some("client_credentials"));
    let scope = scopes_of(&r.param("scope").unwrap_or_default());
    assert!(
        scope.contains(&"urn:opc:idm:__myscopes__".to_owned()),
        "{scope:?}"
    );
    assert_eq!(
        client_auth_of(&r),
        (
            "basic",
            M2M_CLIENT_ID.to_owned(),
            M2M_CLIENT_SECRET.to_owned()
        )
    );

    provider_add(
        &e,
        "or",
        "oracle",
        &["--client-id", CLIENT_ID],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "me", "or", Some(USER), &["read", "bogus"]);
    let out = login(&e, "me", USER_PASSWORD);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid_scope") && err.contains("unknown scope: bogus"),
        "{err}"
    );
}

/// ForgeRock, sub-realm, private_key_jwt with ES256, a required authentication chain.
#[test]
fn forgerock_es256_subrealm_auth_chain() {
    let key = TestKey::ec_p256("tb-fr-kid");
    let mut opts = Options::fixtures(Vendor::ForgeRock)
        .lifetime(10)
        .with_jwt_client(&key);
    opts.auth_chain = Some("ldapService".into());
    let e = env(Emulator::start(Vendor::ForgeRock, opts), Some(NO_PROACTIVE));
    let key_path = key.private_key_path.display().to_string();
    provider_add(
        &e,
        "fr",
        "forgerock",
        &[
            "--realm",
            "customers",
            "--client-id",
            JWT_CLIENT_ID,
            "--client-auth",
            "private_key_jwt",
            "--client-key",
            &key_path,
            "--client-key-id",
            &key.kid,
            "--param",
            "auth_chain=ldapService",
        ],
        None,
    );
    account_add(&e, "me", "fr", Some(USER), &[]);
    login_ok(&e, "me", USER_PASSWORD);
    let r = e.emu.token_requests().pop().unwrap();
    assert_eq!(r.path, "/oauth2/realms/root/realms/customers/access_token");
    assert_eq!(r.media_type().as_deref(), Some(FORM));
    assert_eq!(r.param("auth_chain").as_deref(), Some("ldapService"));
    assert_eq!(r.param("username").as_deref(), Some(USER));
    let token_url = e.emu.token_url();
    let jti1 = check_assertion(&r, "ES256", &key.kid, JWT_CLIENT_ID, &token_url);

    let at1 = token(&e, "me");
    assert_eq!(
        e.emu.token_info(&at1)["scope"],
        "read",
        "the client's default scopes"
    );
    sleep(Duration::from_secs(11));
    let at2 = token(&e, "me");
    assert_ne!(at1, at2);
    let refreshes = e.emu.grant_requests("refresh_token");
    assert!(!refreshes.is_empty());
    assert_ne!(
        check_assertion(&refreshes[0], "ES256", &key.kid, JWT_CLIENT_ID, &token_url),
        jti1
    );

    e.d.cli_ok(&["logout", "me"], None);
    let rev = e.emu.revoke_requests();
    assert!(!rev.is_empty(), "{:#?}", e.emu.requests());
    assert_eq!(
        rev[0].path,
        "/oauth2/realms/root/realms/customers/token/revoke"
    );
    assert_eq!(e.emu.token_info(&at2)["active"], false);
}

/// ForgeRock with client_secret_post (its default), and its refusals: no auth chain, another realm.
#[test]
fn forgerock_post_auth_and_refusals() {
    let mut opts = Options::fixtures(Vendor::ForgeRock).lifetime(3600);
    opts.auth_chain = Some("ldapService".into());
    let e = env(Emulator::start(Vendor::ForgeRock, opts), None);
    // No auth_chain parameter: the chain fails.
    provider_add(
        &e,
        "fr-nochain",
        "forgerock",
        &["--realm", "customers", "--client-id", CLIENT_ID],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "a", "fr-nochain", Some(USER), &[]);
    let out = login(&e, "a", USER_PASSWORD);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(
        err.contains("invalid_grant") && err.contains("authentication chain"),
        "{err}"
    );
    let r = e.emu.token_requests().pop().unwrap();
    assert_eq!(
        client_auth_of(&r),
        ("post", CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned()),
        "ForgeRock's documented default: client_id and client_secret form parameters"
    );
    assert!(r.header("authorization").is_none());

    // With the chain.
    provider_add(
        &e,
        "fr",
        "forgerock",
        &[
            "--realm",
            "customers",
            "--client-id",
            CLIENT_ID,
            "--param",
            "auth_chain=ldapService",
        ],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "me", "fr", Some(SPECIAL_USER), &["write"]);
    login_ok(&e, "me", SPECIAL_PASSWORD);
    let r = e.emu.token_requests().pop().unwrap();
    assert_eq!(r.param("password").as_deref(), Some(SPECIAL_PASSWORD));
    assert_eq!(r.param("scope").as_deref(), Some("write"));
    assert_eq!(e.emu.token_info(&token(&e, "me"))["scope"], "write");
    let info: Value =
        serde_json::from_str(&e.d.cli_ok(&["introspect", "me", "--json"], None)).unwrap();
    assert_eq!(
        (&info["active"], &info["scope"]),
        (&json!(true), &json!("write")),
        "{info}"
    );
    assert_eq!(
        e.emu.requests().pop().unwrap().path,
        "/oauth2/realms/root/realms/customers/introspect"
    );

    // Another realm.
    provider_add(
        &e,
        "fr-other",
        "forgerock",
        &[
            "--realm",
            "other",
            "--client-id",
            CLIENT_ID,
            "--param",
            "auth_chain=ldapService",
        ],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "b", "fr-other", Some(USER), &[]);
    let out = login(&e, "b", USER_PASSWORD);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("invalid_client"), "{err}");
    assert_eq!(
        e.emu.requests().last().unwrap().path,
        "/oauth2/realms/root/realms/other/access_token"
    );

    // The top-level realm: no --realm, the root paths.
    let mut opts = Options::fixtures(Vendor::ForgeRock);
    opts.realm = None;
    let root = Emulator::start(Vendor::ForgeRock, opts);
    let base = root.base_url();
    e.d.cli_ok(
        &[
            "provider",
            "add",
            "fr-root",
            "--preset",
            "forgerock",
            "--base-url",
            &base,
            "--client-id",
            CLIENT_ID,
            "--client-secret-stdin",
            "--allow-insecure-loopback",
        ],
        Some(&secret_line(CLIENT_SECRET)),
    );
    account_add(&e, "c", "fr-root", Some(USER), &[]);
    login_ok(&e, "c", USER_PASSWORD);
    let at = token(&e, "c");
    assert_eq!(root.token_requests()[0].path, "/oauth2/access_token");
    e.d.cli_ok(&["logout", "c"], None);
    let rev = root.revoke_requests();
    assert!(!rev.is_empty(), "{:#?}", root.requests());
    assert_eq!(rev[0].path, "/oauth2/token/revoke");
    assert_eq!(root.token_info(&at)["active"], false);
}

/// Keycloak: discovery from base_url/realms/REALM, refresh, revocation.
#[test]
fn keycloak_discovery_refresh_revoke() {
    let e = env(
        Emulator::with_lifetime(Vendor::Keycloak, 10),
        Some(NO_PROACTIVE),
    );
    provider_add(
        &e,
        "kc",
        "keycloak",
        &["--realm", "tokenbroker", "--client-id", CLIENT_ID],
        Some(CLIENT_SECRET),
    );
    account_add(&e, "me", "kc", Some(USER), &["read"]);
    login_ok(&e, "me", USER_PASSWORD);
    assert!(
        e.emu.requests().iter().any(|r| r.method == "GET"
            && r.path == "/realms/tokenbroker/.well-known/openid-configuration"),
        "{:#?}",
        e.emu.requests()
    );
    let r = e.emu.token_requests().pop().unwrap();
    assert_eq!(r.path, "/realms/tokenbroker/protocol/openid-connect/token");
    assert_eq!(r.media_type().as_deref(), Some(FORM));
    let (how, id, secret) = client_auth_of(&r);
    assert!(how == "basic" || how == "post", "{how}");
    assert_eq!((id.as_str(), secret.as_str()), (CLIENT_ID, CLIENT_SECRET));
    let at1 = token(&e, "me");
    sleep(Duration::from_secs(11));
    let at2 = token(&e, "me");
    assert_ne!(at1, at2);
    assert!(!e.emu.grant_requests("refresh_token").is_empty());
    e.d.cli_ok(&["logout", "me"], None);
    assert!(!e.emu.revoke_requests().is_empty());
    assert_eq!(e.emu.token_info(&at2)["active"], false);
}

/// A provider written to config.toml (the CLI's equivalent), private_key_jwt with ES256 and
/// params; and a key file that others can read is refused before anything is sent.
#[test]
fn forgerock_from_config_file_and_key_permissions() {
    use std::os::unix::fs::PermissionsExt as _;
    let key = TestKey::ec_p256("tb-cfg-kid");
    let mut opts = Options::fixtures(Vendor::ForgeRock)
        .lifetime(3600)
        .with_jwt_client(&key);
    opts.auth_chain = Some("ldapService".into());
    let emu = Emulator::start(Vendor::ForgeRock, opts);
    let config = format!(
        r#"version = 1

[providers.fr]
preset = "forgerock"
base_url = "{base}"
realm = "customers"
client_id = "{JWT_CLIENT_ID}"
client_auth = "private_key_jwt"
client_key = "{path}"
client_key_id = "{kid}"
params = {{ auth_chain = "ldapService" }}
scopes = ["write"]
allow_insecure_loopback = true

[accounts.me]
provider = "fr"
grant = "password"
username = "{SPECIAL_USER}"
"#,
        base = emu.base_url(),
        path = key.private_key_path.display(),
        kid = key.kid,
    );
    let e = env(emu, Some(&config));
    login_ok(&e, "me", SPECIAL_PASSWORD);
    let r = e.emu.token_requests().pop().unwrap();
    assert_eq!(r.path, "/oauth2/realms/root/realms/customers/access_token");
    assert_eq!(r.param("scope").as_deref(), Some("write"));
    assert_eq!(r.param("auth_chain").as_deref(), Some("ldapService"));
    assert_eq!(r.param("password").as_deref(), Some(SPECIAL_PASSWORD));
    check_assertion(&r, "ES256", &key.kid, JWT_CLIENT_ID, &e.emu.token_url());
    assert_eq!(e.emu.token_info(&token(&e, "me"))["scope"], "write");

    // The same key, readable by others.
    let loose = e.d.dir.path().join("loose-key.pem");
    std::fs::write(&loose, &key.private_pem).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = loose.display().to_string();
    let before = e.emu.requests().len();
    let base = e.emu.base_url();
    let add = e.d.cli(
        &[
            "provider",
            "add",
            "fr-loose",
            "--preset",
            "forgerock",
            "--base-url",
            &base,
            "--realm",
            "customers",
            "--client-id",
            JWT_CLIENT_ID,
            "--client-auth",
            "private_key_jwt",
            "--client-key",
            &loose,
            "--client-key-id",
            &key.kid,
            "--param",
            "auth_chain=ldapService",
            "--allow-insecure-loopback",
        ],
        None,
    );
    let err = if add.status.success() {
        account_add(&e, "loose", "fr-loose", Some(USER), &[]);
        let out = login(&e, "loose", USER_PASSWORD);
        assert!(!out.status.success(), "a world-readable key was used");
        stderr(&out)
    } else {
        stderr(&add)
    };
    assert!(err.contains("readable by others"), "{err}");
    assert_eq!(
        e.emu.requests().len(),
        before,
        "nothing sent with a loose key"
    );
}
