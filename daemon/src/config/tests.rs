#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::names::{check_name, check_scope};
use tokenbroker_client::{ClientAuth, ProviderSettings};

const GOOD: &str = r#"
version = 1

[providers.dot]
issuer = "http://127.0.0.1:8000/o"
client_id = "tb"
client_auth = "client_secret_post"
allow_insecure_loopback = true

[providers.corp]
token_endpoint = "https://id.example.com/oauth2/token"
revocation_endpoint = "https://id.example.com/oauth2/revoke"
client_id = "app"
scopes = ["openid", "email"]

[accounts.alice]
provider = "dot"
grant = "password"
username = "alice"
scopes = ["read", "write"]

[accounts.robot]
provider = "corp"
grant = "client_credentials"
"#;

fn parse(text: &str) -> Result<Config> {
    Config::parse(Path::new("config.toml"), text)
}

fn err_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn parses_a_good_config() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.providers.len(), 2);
    assert_eq!(c.accounts["alice"].grant, Grant::Password);
    assert_eq!(c.providers["dot"].auth(), ClientAuth::ClientSecretPost);
    assert_eq!(c.providers["corp"].auth(), ClientAuth::ClientSecretBasic);
    let robot = &c.accounts["robot"];
    assert_eq!(
        robot.default_scopes(&c.providers["corp"]),
        ["openid", "email"]
    );
}

#[test]
fn unknown_field_is_refused_with_its_line() {
    let text = GOOD.replace(
        "client_id = \"app\"",
        "client_id = \"app\"\ncolour = \"blue\"",
    );
    let e = err_of(&text);
    assert!(e.starts_with("config.toml:14:"), "{e}");
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn a_secret_in_the_config_is_refused_with_advice() {
    let text = GOOD.replace(
        "client_id = \"tb\"",
        "client_id = \"tb\"\nclient_secret = \"s3cret\"",
    );
    let e = err_of(&text);
    assert!(e.starts_with("config.toml:7:"), "{e}");
    assert!(e.contains("--client-secret-stdin"), "{e}");
    assert!(
        !e.contains("s3cret"),
        "the error must not echo the secret: {e}"
    );
}

#[test]
fn semantic_errors_name_the_line() {
    let text = GOOD.replace("provider = \"corp\"", "provider = \"nope\"");
    let e = err_of(&text);
    assert!(e.starts_with("config.toml:23:"), "{e}");
    assert!(e.contains("\"nope\""), "{e}");

    let e = err_of(&GOOD.replace("allow_insecure_loopback = true\n", ""));
    assert!(e.starts_with("config.toml:5:"), "{e}");
    assert!(e.contains("allow_insecure_loopback"), "{e}");

    let e = err_of(&GOOD.replace("version = 1", "version = 2"));
    assert!(e.starts_with("config.toml:2:"), "{e}");
}

#[test]
fn syntax_errors_name_the_line() {
    let e = err_of("version = 1\n\n[providers.x\n");
    assert!(e.starts_with("config.toml:3:"), "{e}");
}

#[test]
fn url_rules() {
    assert!(check_endpoint_url("t", "https://a.example/x", false).is_ok());
    assert!(check_endpoint_url("t", "http://a.example/x", true).is_err());
    assert!(check_endpoint_url("t", "http://127.0.0.1:9/x", false).is_err());
    assert!(check_endpoint_url("t", "http://127.0.0.1:9/x", true).is_ok());
    assert!(check_endpoint_url("t", "http://[::1]:9/x", true).is_ok());
    assert!(check_endpoint_url("t", "http://localhost/x", true).is_ok());
    assert!(check_endpoint_url("t", "http://127.0.0.1.evil.example/x", true).is_err());
    assert!(check_endpoint_url("t", "ftp://a.example/x", true).is_err());
    assert!(check_endpoint_url("t", "https://u:p@a.example/x", true).is_err());
}

#[test]
fn names_and_scopes() {
    assert!(check_name("account", "alice.work-1_x").is_ok());
    for bad in ["", "-x", ".x", "a b", "a/b", &"x".repeat(65)] {
        assert!(check_name("account", bad).is_err(), "{bad:?}");
    }
    assert!(check_scope("read:all").is_ok());
    for bad in ["", "a b", "a\"b", "a\\b", "ü"] {
        assert!(check_scope(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn account_rules() {
    let e = err_of(&GOOD.replace("username = \"alice\"\n", ""));
    assert!(e.contains("needs a username"), "{e}");
    let e = err_of(&GOOD.replace(
        "grant = \"client_credentials\"",
        "grant = \"client_credentials\"\nusername = \"x\"",
    ));
    assert!(e.contains("no username"), "{e}");
}

#[test]
fn editor_keeps_comments_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("# my comment\n{GOOD}")).unwrap();
    let mut ed = ConfigEditor::open(&path).unwrap();
    ed.set(
        "accounts",
        "bob",
        &AccountConfig {
            provider: "dot".into(),
            grant: Grant::Password,
            username: Some("bob".into()),
            scopes: vec![],
            owner: None,
            owner_uid: None,
            apps: BTreeMap::new(),
        },
    )
    .unwrap();
    let c = ed.commit(&Layout::user(&path)).unwrap();
    assert_eq!(c.accounts["bob"].username.as_deref(), Some("bob"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# my comment\n"), "{text}");
    assert_eq!(Config::load(&path).unwrap(), c);

    // An edit that breaks the config is refused and the file is unchanged.
    let mut ed = ConfigEditor::open(&path).unwrap();
    ed.remove("providers", "dot");
    assert!(ed.commit(&Layout::user(&path)).is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn app_rules_are_edited_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = GOOD.replace(
        "[accounts.alice]",
        "# Alice's work account\n[accounts.alice]",
    );
    std::fs::write(&path, &text).unwrap();
    let mut ed = ConfigEditor::open(&path).unwrap();
    let rule = AppRule {
        access: AppAccess::Allow,
        scopes: vec!["read".into()],
    };
    ed.set_app_rule("alice", "/usr/bin/app", Some(&rule))
        .unwrap();
    let c = ed.commit(&Layout::user(&path)).unwrap();
    assert_eq!(c.accounts["alice"].apps["/usr/bin/app"], rule);
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(
        after.contains("# Alice's work account\n[accounts.alice]"),
        "{after}"
    );
    assert!(
        after.contains(
            "[accounts.alice.apps]\n\"/usr/bin/app\" = { access = \"allow\", scopes = [\"read\"] }"
        ),
        "{after}"
    );
    let mut ed = ConfigEditor::open(&path).unwrap();
    ed.set_app_rule("alice", "/usr/bin/app", None).unwrap();
    assert!(ed.commit(&Layout::user(&path)).unwrap().accounts["alice"]
        .apps
        .is_empty());
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("# Alice's work account"));
}

#[test]
fn editor_creates_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/config.toml");
    let mut ed = ConfigEditor::open(&path).unwrap();
    ed.set(
        "providers",
        "p",
        &ProviderConfig(ProviderSettings {
            token_endpoint: Some("https://x.example/token".into()),
            client_id: "c".into(),
            client_auth: Some(ClientAuth::None),
            ..Default::default()
        }),
    )
    .unwrap();
    let c = ed.commit(&Layout::user(&path)).unwrap();
    assert_eq!(c.providers["p"].auth(), ClientAuth::None);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

fn system_dir(main: &str, dropins: &[(&str, &str)]) -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, main).unwrap();
    std::fs::create_dir(dir.path().join("config.d")).unwrap();
    for (name, text) in dropins {
        std::fs::write(dir.path().join("config.d").join(name), text).unwrap();
    }
    let layout = Layout::system(&path);
    (dir, layout)
}

const DROPIN_PROVIDER: &str = r#"
version = 1
[providers.fleet]
token_endpoint = "https://id.example.com/token"
client_id = "fleet"
"#;

#[test]
fn drop_ins_merge_in_name_order_and_are_remembered() {
    let acct = "version = 1\n[accounts.mail]\nprovider = \"fleet\"\ngrant = \"password\"\nusername = \"alice\"\nowner = \"0\"\n";
    let (_d, layout) = system_dir(
        "version = 1\n",
        &[
            ("10-provider.toml", DROPIN_PROVIDER),
            ("20-mail.toml", acct),
            ("notes.txt", "x"),
        ],
    );
    let c = layout.load().unwrap();
    assert!(c.providers.contains_key("fleet"));
    assert_eq!(c.accounts["mail"].owner_uid, Some(0));
    assert!(c
        .origin("accounts", "mail")
        .unwrap()
        .ends_with("20-mail.toml"));
    assert!(c
        .origin("providers", "fleet")
        .unwrap()
        .ends_with("10-provider.toml"));
    // An account of the main file may use a drop-in's provider; an edit keeps that valid.
    let mut ed = ConfigEditor::open(&layout.main).unwrap();
    ed.set(
        "accounts",
        "own",
        &AccountConfig {
            provider: "fleet".into(),
            grant: Grant::ClientCredentials,
            username: None,
            scopes: vec![],
            owner: Some("0".into()),
            owner_uid: None,
            apps: BTreeMap::new(),
        },
    )
    .unwrap();
    let c = ed.commit(&layout).unwrap();
    assert!(c.origin("accounts", "own").is_none());
    assert_eq!(c.accounts.len(), 2);
}

#[test]
fn drop_in_conflicts_and_settings_are_refused_with_the_file() {
    let (_d, layout) = system_dir(DROPIN_PROVIDER, &[("a.toml", DROPIN_PROVIDER)]);
    let e = layout.load().unwrap_err().to_string();
    assert!(
        e.contains("a.toml:3:") && e.contains("defined in") && e.contains("config.toml"),
        "{e}"
    );
    let (_d, layout) = system_dir(
        "version = 1\n",
        &[("a.toml", "version = 1\n[http]\ntimeout_secs = 3\n")],
    );
    let e = layout.load().unwrap_err().to_string();
    assert!(
        e.contains("a.toml:2:") && e.contains("[http] goes in"),
        "{e}"
    );
}

#[test]
fn system_mode_accounts_need_a_real_owner() {
    let no_owner =
        "version = 1\n[accounts.mail]\nprovider = \"fleet\"\ngrant = \"client_credentials\"\n";
    let (_d, layout) = system_dir(DROPIN_PROVIDER, &[("m.toml", no_owner)]);
    let e = layout.load().unwrap_err().to_string();
    assert!(e.contains("m.toml:3:") && e.contains("has no owner"), "{e}");
    // User mode does not ask for one.
    let text = format!(
        "{DROPIN_PROVIDER}[accounts.mail]\nprovider = \"fleet\"\ngrant = \"client_credentials\"\n"
    );
    assert!(parse(&text).is_ok());
    let bad = format!("{text}owner = \"no-such-user-tb\"\n");
    let e = parse(&bad).unwrap_err().to_string();
    assert!(e.contains(":9:") && e.contains("not a local user"), "{e}");
}
