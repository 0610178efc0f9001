//! Server text is data, not a channel: a server that echoes the request body in its error
//! description gets none of the request's secrets (refresh token, client secret) into an error,
//! the account's state or the log, and apps other than the user's own tools see no server text
//! at all.

use std::path::Path;

use tokenbroker_e2e::app::{self, SOCAT};
use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::fake::{FakeServer, Mode};
use tokenbroker_e2e::peers::SecretService;

const CLIENT_SECRET: &str = "fake-client-secret-7Hq2";

#[test]
fn an_echoing_server_leaks_no_secret_and_apps_see_none_of_its_words() {
    let fake = FakeServer::start(Mode::Good { expires_in: 3600 }).unwrap();
    let ss = SecretService::start().unwrap();
    let config = format!(
        r#"version = 1

[providers.fake]
token_endpoint = "{}"
client_id = "fake-client"
client_auth = "client_secret_post"
allow_insecure_loopback = true

[accounts.me]
provider = "fake"
grant = "password"
username = "user"
"#,
        fake.token_endpoint()
    );
    let mut d = Daemon::start(&ss, Some(&config)).unwrap();
    d.cli_ok(
        &["provider", "set-secret", "fake"],
        Some(&format!("{CLIENT_SECRET}\n")),
    );
    d.cli_ok(&["login", "me", "--password-stdin"], Some("pw-Secret-42\n"));
    let rt = FakeServer::refresh_token(1);
    assert_eq!(
        ss.lookup("tokenbroker", "refresh_token:me"),
        Some(rt.clone())
    );

    // A restart empties the cache: the next token needs a refresh, which the server echoes.
    fake.set_mode(Mode::Echo);
    d.restart().unwrap();
    let secrets = [rt.as_str(), CLIENT_SECRET, "fake-refresh", "pw-Secret-42"];
    let clean = |what: &str, text: &str| {
        for s in secrets {
            assert!(!text.contains(s), "{what} holds {s:?}: {text}");
        }
    };

    // The user's own CLI: the server's words, scrubbed.
    let out = d.cli(&["token", "me"], None);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("invalid_request"), "{err}");
    assert!(
        err.contains("cannot handle"),
        "the server's words reach the user: {err}"
    );
    assert!(err.contains("[redacted]"), "{err}");
    clean("the CLI's error", &err);
    let accounts = d.cli_ok(&["accounts", "--json"], None);
    assert!(accounts.contains("cannot handle"), "{accounts}");
    clean("the CLI's account list", &accounts);

    // An app: the daemon's words only, whatever it asks.
    let socat = Path::new(SOCAT);
    let listing = app::call(&d.socket, socat, "ListAccounts", "{}").to_string();
    let status = app::call(&d.socket, socat, "Status", "{}").to_string();
    d.cli_ok(&["allow", "me", "--app", SOCAT], None);
    let denied_server = app::call(&d.socket, socat, "GetToken", r#"{"account":"me"}"#).to_string();
    for (what, text) in [
        ("ListAccounts", &listing),
        ("Status", &status),
        ("GetToken", &denied_server),
    ] {
        clean(what, text);
        assert!(
            !text.contains("cannot handle"),
            "{what} carries server text: {text}"
        );
        assert!(
            !text.contains("grant_type"),
            "{what} carries server text: {text}"
        );
    }
    assert!(listing.contains("\"state\":\"error\""), "{listing}");
    assert!(
        denied_server
            .contains("refused the refresh_token request for account \\\"me\\\" (invalid_request)"),
        "{denied_server}"
    );

    // Nothing in the log either, and the good refresh token is untouched.
    clean("the daemon's log", &d.log());
    assert_eq!(ss.lookup("tokenbroker", "refresh_token:me"), Some(rt));
}
