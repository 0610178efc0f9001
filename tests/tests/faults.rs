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
# The fake keeps a refresh token's scope: another scope set forces a refresh.
scoped_refresh = true

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

/// A server's absurd `expires_in` (beyond u64, a float, a string in exponent form) never wraps
/// into a token that expires in the past: it is believed for a year at most.
#[test]
fn absurd_lifetimes_are_capped_not_wrapped() {
    let fake = FakeServer::start(Mode::Lifetime("18446744073709551615")).unwrap();
    let ss = SecretService::start().unwrap();
    let config = format!(
        r#"version = 1

[providers.fake]
token_endpoint = "{}"
client_id = "fake-client"
client_auth = "client_secret_post"
allow_insecure_loopback = true

[accounts.robot]
provider = "fake"
grant = "client_credentials"
"#,
        fake.token_endpoint()
    );
    let mut d = Daemon::start(&ss, Some(&config)).unwrap();
    d.cli_ok(&["provider", "set-secret", "fake"], Some("fake-secret\n"));
    for (n, lifetime) in ["18446744073709551615", "1.8e20", "\"1e30\"", "1e400"]
        .into_iter()
        .enumerate()
    {
        fake.set_mode(Mode::Lifetime(lifetime));
        d.restart().unwrap();
        let out = d.cli(&["token", "robot", "--json"], None);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if lifetime == "1e400" {
            // Not even a float: a clear error, not a token.
            assert_eq!(out.status.code(), Some(5), "{lifetime}");
            continue;
        }
        assert!(
            out.status.success(),
            "{lifetime}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.log()
        );
        let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let at = t["expires_at"].as_u64().unwrap();
        assert!(at > now + 86_400, "{lifetime}: {at} is not in the future");
        assert!(
            at <= now + 366 * 86_400,
            "{lifetime}: {at} is more than a year away"
        );
        assert_eq!(t["access_token"], format!("fake-access-{}", n + 1));
    }
}
