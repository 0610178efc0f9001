//! A broken server reply never replaces a good stored token, and says clearly what was wrong.

use tokenbroker_e2e::daemon::Daemon;
use tokenbroker_e2e::fake::{FakeServer, Mode};
use tokenbroker_e2e::peers::SecretService;

#[test]
fn broken_replies_leave_the_refresh_token_untouched() {
    let fake = FakeServer::start(Mode::Good { expires_in: 60 }).unwrap();
    let ss = SecretService::start().unwrap();
    let config = format!(
        r#"version = 1

[http]
connect_timeout_secs = 2
timeout_secs = 2
retries = 1
retry_backoff_ms = 50

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
    let d = Daemon::start(&ss, Some(&config)).unwrap();
    d.cli_ok(&["provider", "set-secret", "fake"], Some("fake-secret\n"));
    d.cli_ok(&["login", "me", "--password-stdin"], Some("pw\n"));
    let good_rt = FakeServer::refresh_token(1);
    assert_eq!(
        ss.lookup("tokenbroker", "refresh_token:me"),
        Some(good_rt.clone())
    );

    for (mode, expect, attempts) in [
        (Mode::Status500, "HTTP 500", 2),
        (Mode::Html200, "not JSON", 1),
        (Mode::TruncatedJson, "cut short", 1),
        // A request that may have reached the server is not sent again (it could have rotated
        // the refresh token); one that got no answer in time counts as such.
        (Mode::Hang, "timed out", 1),
    ] {
        fake.set_mode(mode);
        let before = fake.requests();
        // A scope set with no cached token forces a refresh.
        let out = d.cli(&["token", "me", "--scope", "other"], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{mode:?}: {err}");
        assert!(err.contains(expect), "{mode:?}: {err}");
        assert!(
            !err.contains("fake-cut"),
            "{mode:?}: the reply's token is not echoed"
        );
        assert_eq!(
            fake.requests() - before,
            attempts,
            "{mode:?}: bounded retries"
        );
        assert_eq!(
            ss.lookup("tokenbroker", "refresh_token:me").as_deref(),
            Some(good_rt.as_str()),
            "{mode:?} replaced the stored refresh token"
        );
        // The cached token is still served.
        assert_eq!(d.cli_ok(&["token", "me"], None).trim(), "fake-access-1");
    }

    // The server recovers: the untouched refresh token still works, and is rotated.
    fake.set_mode(Mode::Good { expires_in: 3600 });
    assert_eq!(
        d.cli_ok(&["token", "me", "--scope", "other"], None).trim(),
        "fake-access-2"
    );
    assert_eq!(
        ss.lookup("tokenbroker", "refresh_token:me"),
        Some(FakeServer::refresh_token(2))
    );
    let status: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["status", "--json"], None)).unwrap();
    assert_eq!(status["accounts"][0]["state"], "signed_in");
}
