//! System mode end to end: `tokenbrokerd --system` started as its unit starts it (see
//! tokenbroker_e2e::system), a real authorization server (DOT), a private system bus with the
//! packaged policy, and real local users. Needs root.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use serde_json::Value;
use tokenbroker_e2e::daemon::dot_provider_args;
use tokenbroker_e2e::peers::*;
use tokenbroker_e2e::system::{local_group, local_user, root, SystemDaemon, User};

const CONFIG: &str = "version = 1\n\n[policy]\nconsent_timeout_secs = 3\n";

/// The authorization server and the two local users of these tests.
fn setup() -> (AuthServer, User, User) {
    let server = AuthServer::start(AuthServerOptions {
        access_token_lifetime: Some(300),
        ..Default::default()
    })
    .unwrap();
    (server, local_user("tbtest2"), local_user("tbtest3"))
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn token(d: &SystemDaemon, user: &User, account: &str) -> String {
    let out = d.cli_ok(user, &["token", account, "--json"], None);
    json(&out)["access_token"].as_str().unwrap().to_owned()
}

fn account_names(d: &SystemDaemon, user: &User) -> Vec<String> {
    let out = d.cli_ok(user, &["accounts", "--json"], None);
    json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

fn add_provider(d: &SystemDaemon, server: &AuthServer) {
    let args = dot_provider_args(server, &["read"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    d.cli_ok(&root(), &args, Some(&format!("{PASSWORD_CLIENT_SECRET}\n")));
}

fn add_account(d: &SystemDaemon, admin: &User, name: &str, username: &str, owner: &str) {
    d.cli_ok(
        admin,
        &[
            "account",
            "add",
            name,
            "--provider",
            "dot",
            "--username",
            username,
            "--owner",
            owner,
        ],
        None,
    );
}

fn login(d: &SystemDaemon, user: &User, account: &str, password: &str) {
    d.cli_ok(
        user,
        &["login", account, "--password-stdin"],
        Some(&format!("{password}\n")),
    );
}

/// Two users, each with an account; both see and use only their own, over the socket and the
/// system bus; admin operations are refused to them; the store is the service's alone.
#[test]
fn two_users_each_get_only_their_own_accounts() {
    let (server, u2, u3) = setup();
    let mut d = SystemDaemon::start(CONFIG, Some(&[7u8; 32])).unwrap();
    assert!(
        d.wait_notification("READY=1", Duration::from_secs(5)),
        "no READY=1 to systemd"
    );
    assert!(d.wait_log("store key from the systemd credential"));

    add_provider(&d, &server);
    add_account(&d, &root(), "mail2", ALICE_USERNAME, "tbtest2");
    add_account(&d, &root(), "mail3", BOB_USERNAME, "tbtest3");
    login(&d, &u2, "mail2", ALICE_PASSWORD);
    login(&d, &u3, "mail3", BOB_PASSWORD);

    // Each sees only its own account; root (an admin) sees both.
    assert_eq!(account_names(&d, &u2), ["mail2"]);
    assert_eq!(account_names(&d, &u3), ["mail3"]);
    assert_eq!(account_names(&d, &root()), ["mail2", "mail3"]);
    let t2 = token(&d, &u2, "mail2");
    assert_eq!(server.introspect(&t2)["username"], ALICE_USERNAME);
    let t3 = token(&d, &u3, "mail3");
    assert_eq!(server.introspect(&t3)["username"], BOB_USERNAME);

    // Another user's account does not exist for them: no token, no sign-in, no sign-out.
    for args in [
        vec!["token", "mail3"],
        vec!["logout", "mail3"],
        vec!["introspect", "mail3"],
    ] {
        let out = d.cli(&u2, &args, None);
        assert_eq!(out.status.code(), Some(8), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no account named \"mail3\""));
    }
    let out = d.cli(
        &u2,
        &["login", "mail3", "--password-stdin"],
        Some(&format!("{BOB_PASSWORD}\n")),
    );
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    // Root administers but gets no user's token.
    let out = d.cli(&root(), &["token", "mail2"], None);
    assert_eq!(out.status.code(), Some(8), "{out:?}");

    // Admin operations are refused to a plain user.
    let out = d.cli(
        &u2,
        &[
            "provider",
            "add",
            "x",
            "--issuer",
            "https://id.example.com",
            "--client-id",
            "c",
            "--client-auth",
            "none",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokenbroker-admin"));
    add_account_refused(&d, &u2);
    // Per-app rules are the user-mode daemon's: this one cannot see other users' executables.
    let out = d.cli(
        &root(),
        &["allow", "mail2", "--app", "/usr/bin/busctl"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("authorizes by user"));
    // ...but a user may add an account for itself.
    d.cli_ok(
        &u2,
        &[
            "account",
            "add",
            "own2",
            "--provider",
            "dot",
            "--username",
            ALICE_USERNAME,
        ],
        None,
    );
    assert_eq!(account_names(&d, &u2), ["mail2", "own2"]);
    d.cli_ok(&u2, &["account", "remove", "own2"], None);

    // A member of the admin group administers.
    let admin_gid = local_group("tokenbroker-admin");
    let mut u3_admin = u3.clone();
    u3_admin.groups = vec![admin_gid];
    add_account(&d, &u3_admin, "extra2", ALICE_USERNAME, "tbtest2");
    assert!(account_names(&d, &u2).contains(&"extra2".to_owned()));
    d.cli_ok(&u3_admin, &["account", "remove", "extra2"], None);

    // D-Bus on the system bus: tbtest2 gets mail2's token, not mail3's; tbtest3 gets
    // nothing of mail2.
    let out = d.busctl(&u2, "GetToken", &["sasu", "mail2", "0", "60"]);
    assert!(out.status.success(), "{out:?}\n{}", d.log());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&t2));
    let out = d.busctl(&u2, "GetToken", &["sasu", "mail3", "0", "60"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no account named"),
        "{out:?}"
    );
    let out = d.busctl(&u3, "GetToken", &["sasu", "mail2", "0", "60"]);
    assert!(!out.status.success(), "{out:?}");
    let out = d.busctl(&u3, "ListAccounts", &[]);
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("mail3") && !listed.contains("mail2"),
        "{listed}"
    );

    // The audit log: a plain user reads only its own calls.
    let out = d.cli_ok(&u3, &["audit", "--json"], None);
    assert!(!out.contains("mail2") && out.contains("mail3"), "{out}");

    // The store is the service's: other users cannot read its files, which hold no secret in
    // plain text; the logs hold none either.
    let refresh_tokens = server.refresh_tokens().unwrap();
    assert!(refresh_tokens.len() >= 2, "{refresh_tokens:?}");
    let mut secrets: Vec<&str> = vec![
        PASSWORD_CLIENT_SECRET,
        ALICE_PASSWORD,
        BOB_PASSWORD,
        &t2,
        &t3,
    ];
    secrets.extend(refresh_tokens.iter().map(String::as_str));
    let files = d.store_files().unwrap();
    assert!(files.len() >= 3, "{files:?}"); // two refresh tokens and the client secret
    for f in &files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
        let out = d
            .run_as(&u2, "/usr/bin/cat", &[f.to_str().unwrap()])
            .unwrap();
        assert!(!out.status.success(), "{} readable by tbtest2", f.display());
        let bytes = std::fs::read(f).unwrap();
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret in plain text",
                f.display()
            );
        }
    }
    let logs = d.log() + &std::fs::read_to_string(d.logs.join("audit.jsonl")).unwrap();
    for secret in &secrets {
        assert!(!logs.contains(secret), "a secret is in the logs");
    }

    // A restart: the refresh tokens come back from the encrypted store (signed_in, and a new
    // access token by refresh, no new sign-in).
    d.restart().unwrap();
    let out = d.cli_ok(&u2, &["accounts", "--json"], None);
    assert_eq!(json(&out)[0]["state"], "signed_in", "{out}");
    let t2b = token(&d, &u2, "mail2");
    assert_ne!(t2b, t2);
    assert_eq!(server.introspect(&t2b)["username"], ALICE_USERNAME);
}

fn add_account_refused(d: &SystemDaemon, u2: &User) {
    let out = d.cli(
        u2,
        &[
            "account",
            "add",
            "theirs",
            "--provider",
            "dot",
            "--username",
            BOB_USERNAME,
            "--owner",
            "tbtest3",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("for other users"));
}

/// A corrupted store file: a clear error that names it, for that account alone; the key file
/// (no credential) is made 0600 and reused across restarts.
#[test]
fn a_corrupted_store_file_harms_only_its_account() {
    let (server, u2, u3) = setup();
    let mut d = SystemDaemon::start(CONFIG, None).unwrap();
    assert!(d.wait_log("store key from the key file"));
    let key = d.state.join("store.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    add_provider(&d, &server);
    add_account(&d, &root(), "cal2", ALICE_USERNAME, "tbtest2");
    add_account(&d, &root(), "cal3", BOB_USERNAME, "tbtest3");
    login(&d, &u2, "cal2", ALICE_PASSWORD);
    login(&d, &u3, "cal3", BOB_PASSWORD);

    let victim = d
        .store_files()
        .unwrap()
        .into_iter()
        .find(|f| f.to_string_lossy().contains("cal3"))
        .expect("cal3's file");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();

    d.restart().unwrap();
    // cal3: error, naming the file; the token request says so too.
    let out = d.cli_ok(&u3, &["accounts", "--json"], None);
    let v = json(&out);
    assert_eq!(v[0]["state"], "error", "{out}");
    let detail = v[0]["detail"].as_str().unwrap();
    assert!(detail.contains(&*victim.to_string_lossy()), "{detail}");
    let out = d.cli(&u3, &["token", "cal3"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&*victim.to_string_lossy()), "{err}");
    // cal2 keeps working, with the same key file.
    let t = token(&d, &u2, "cal2");
    assert_eq!(server.introspect(&t)["username"], ALICE_USERNAME);
    // Signing in again replaces the broken file.
    login(&d, &u3, "cal3", BOB_PASSWORD);
    d.restart().unwrap();
    let t = token(&d, &u3, "cal3");
    assert_eq!(server.introspect(&t)["username"], BOB_USERNAME);
}

/// Fleet provisioning: a drop-in in config.d, validated by --check-config, adopted on SIGHUP
/// without dropping cached tokens; its entries are not editable through the CLI; a broken
/// drop-in changes nothing.
#[test]
fn drop_ins_reload_on_sighup_keeping_cached_tokens() {
    let (server, u2, _) = setup();
    let d = SystemDaemon::start(
        CONFIG,
        Some(b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"),
    )
    .unwrap();
    add_provider(&d, &server);
    add_account(&d, &root(), "web2", ALICE_USERNAME, "tbtest2");
    login(&d, &u2, "web2", ALICE_PASSWORD);
    let before = token(&d, &u2, "web2");
    while d.next_notification(Duration::from_millis(300)).is_some() {}

    let dropin = d.etc.join("config.d").join("50-fleet.toml");
    std::fs::write(
        &dropin,
        "version = 1\n\n[accounts.fleet2]\nprovider = \"dot\"\ngrant = \"password\"\nusername = \"alice\"\nowner = \"tbtest2\"\n",
    )
    .unwrap();
    let check = std::process::Command::new(tokenbroker_e2e::daemon::bin("tokenbrokerd"))
        .args(["--system", "--check-config", "--config"])
        .arg(d.etc.join("config.toml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    assert!(String::from_utf8_lossy(&check.stdout).contains("2 account(s), with 1 drop-in(s)"));

    d.signal(libc::SIGHUP);
    assert!(d.wait_notification("RELOADING=1", Duration::from_secs(5)));
    assert!(d.wait_notification("READY=1", Duration::from_secs(5)));
    assert!(d.wait_log("config reloaded"));
    assert_eq!(account_names(&d, &u2), ["fleet2", "web2"]);
    // The cached token survived the reload: the same one, no new request to the server.
    assert_eq!(token(&d, &u2, "web2"), before);
    // The drop-in's account is the config management's.
    let out = d.cli(&root(), &["account", "remove", "fleet2"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("50-fleet.toml"),
        "{out:?}"
    );
    login(&d, &u2, "fleet2", ALICE_PASSWORD);

    // A broken drop-in: --check-config names file and line; a reload keeps the running config.
    let broken = d.etc.join("config.d").join("60-broken.toml");
    std::fs::write(&broken, "version = 1\n[accounts.x]\nprovider = \"nope\"\ngrant = \"password\"\nusername = \"a\"\nowner = \"tbtest2\"\n").unwrap();
    let check = std::process::Command::new(tokenbroker_e2e::daemon::bin("tokenbrokerd"))
        .args(["--system", "--check-config", "--config"])
        .arg(d.etc.join("config.toml"))
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains("60-broken.toml:3:") && err.contains("\"nope\""),
        "{err}"
    );
    d.signal(libc::SIGHUP);
    assert!(d.wait_log("config reload failed"));
    assert_eq!(account_names(&d, &u2), ["fleet2", "web2"]);
    assert_eq!(token(&d, &u2, "web2"), before);
}
