//! The real peers work: a password grant against django-oauth-toolkit, and a secret
//! round trip through gnome-keyring on a private bus.

use serde_json::Value;
use tokenbroker_e2e::peers::*;

fn token_request(server: &AuthServer, auth: Option<String>, form: &[(&str, &str)]) -> Value {
    let mut req = server.http().post(server.token_endpoint()).form(form);
    if let Some(auth) = auth {
        req = req.header("Authorization", auth);
    }
    let resp = req.send().expect("token request");
    let status = resp.status();
    let body: Value = resp.json().expect("token response is JSON");
    assert!(
        status.is_success(),
        "token request failed: {status} {body}\n{}",
        server.stderr_tail()
    );
    body
}

#[test]
fn authserver_password_grant_and_introspection() {
    let mut server = AuthServer::start(AuthServerOptions {
        access_token_lifetime: Some(120),
        ..Default::default()
    })
    .expect("start authserver");
    assert!(server.issuer().ends_with("/o"));

    // RFC 8414 metadata at the path-appended well-known URL names this issuer.
    let meta: Value = server
        .http()
        .get(format!(
            "{}/.well-known/oauth-authorization-server/o",
            server.base_url()
        ))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("RFC 8414 metadata");
    assert_eq!(meta["issuer"], server.issuer().as_str());
    assert_eq!(meta["token_endpoint"], server.token_endpoint().as_str());
    assert_eq!(
        meta["revocation_endpoint"],
        server.revocation_endpoint().as_str()
    );
    assert_eq!(
        meta["introspection_endpoint"],
        server.introspection_endpoint().as_str()
    );

    server.reset_counters();
    // client_secret_basic, with a secret that needs the RFC 6749 §2.3.1 encoding.
    let basic = client_basic_auth(PASSWORD_CLIENT_ID, PASSWORD_CLIENT_SECRET);
    let tok = token_request(
        &server,
        Some(basic),
        &[
            ("grant_type", "password"),
            ("username", ALICE_USERNAME),
            ("password", ALICE_PASSWORD),
            ("scope", "read write"),
        ],
    );
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 120);
    assert_eq!(tok["scope"], "read write");
    let access = tok["access_token"].as_str().expect("access_token");
    assert!(tok["refresh_token"].is_string(), "{tok}");

    let info = server.introspect(access);
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["username"], ALICE_USERNAME);
    assert_eq!(info["client_id"], PASSWORD_CLIENT_ID);
    assert_eq!(info["scope"], "read write");
    assert!(info["exp"].as_u64().is_some(), "{info}");
    assert_eq!(server.introspect("not-a-token")["active"], false);

    // client_secret_post, bob's awkward password.
    let tok = token_request(
        &server,
        None,
        &[
            ("grant_type", "password"),
            ("client_id", PASSWORD_CLIENT_ID),
            ("client_secret", PASSWORD_CLIENT_SECRET),
            ("username", BOB_USERNAME),
            ("password", BOB_PASSWORD),
        ],
    );
    assert_eq!(tok["scope"], DEFAULT_SCOPE);

    // A wrong password is refused and counted by status.
    let resp = server
        .http()
        .post(server.token_endpoint())
        .header(
            "Authorization",
            client_basic_auth(PASSWORD_CLIENT_ID, PASSWORD_CLIENT_SECRET),
        )
        .form(&[
            ("grant_type", "password"),
            ("username", ALICE_USERNAME),
            ("password", "wrong"),
        ])
        .send()
        .expect("token request");
    assert_eq!(resp.status().as_u16(), 400);

    let counters = server.counters();
    assert_eq!(counters["token"]["password"], 3, "{counters}");
    assert_eq!(counters["token_status"]["200"], 2, "{counters}");
    assert_eq!(counters["token_status"]["400"], 1, "{counters}");
    assert_eq!(counters["revoke"], 0, "{counters}");

    // Revoking the refresh token is counted.
    let resp = server
        .http()
        .post(server.revocation_endpoint())
        .header(
            "Authorization",
            client_basic_auth(PASSWORD_CLIENT_ID, PASSWORD_CLIENT_SECRET),
        )
        .form(&[
            ("token", tok["refresh_token"].as_str().unwrap()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .expect("revoke request");
    assert!(resp.status().is_success());
    assert_eq!(server.counters()["revoke"], 1);
    assert_eq!(
        server.introspect(tok["access_token"].as_str().unwrap())["active"],
        false
    );

    server.reset_counters();
    assert_eq!(server.counters()["token"]["password"], 0);

    // After stop, the server is gone and the value still knows its URLs.
    server.stop();
    assert!(server.http().get(server.base_url()).send().is_err());
}

#[test]
fn secret_service_round_trip() {
    let ss = SecretService::start().expect("start secret service");
    let env = ss.env();
    for key in [
        "DBUS_SESSION_BUS_ADDRESS",
        "XDG_DATA_HOME",
        "XDG_RUNTIME_DIR",
    ] {
        assert!(env.iter().any(|(k, _)| k == key), "env lacks {key}");
    }
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(ss.runtime_dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    assert_eq!(ss.lookup("tokenbroker-smoke", "alice"), None);
    let secret = "s3cr&t=+%/: é\nsecond line";
    ss.store("tokenbroker-smoke", "alice", secret)
        .expect("store");
    assert_eq!(
        ss.lookup("tokenbroker-smoke", "alice").as_deref(),
        Some(secret)
    );
    assert_eq!(ss.lookup("tokenbroker-smoke", "bob"), None);

    // secret-tool run by hand with the same environment sees the same item.
    let out = std::process::Command::new("secret-tool")
        .args([
            "lookup",
            "service",
            "tokenbroker-smoke",
            "username",
            "alice",
        ])
        .envs(env)
        .output()
        .expect("run secret-tool");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), secret);

    let dump = ss.dump_all();
    assert!(
        dump.contains("attribute service = tokenbroker-smoke"),
        "{dump}"
    );
    assert!(dump.contains("attribute username = alice"), "{dump}");
    assert!(dump.contains("s3cr&t=+%/: é"), "{dump}");
    assert!(
        !dump.contains("tokenbroker-e2e-probe"),
        "readiness probe left behind:\n{dump}"
    );
}
