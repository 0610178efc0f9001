//! tokenbroker: the command-line client of tokenbrokerd.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokenbroker::args::*;
use tokenbroker_client::{
    AccountInfo, AccountSpec, AddProviderParams, AppAccess, AppPolicy, AuditQuery, Client,
    ClientAuth, ClientError, ConsentAnswer, Decision, Grant, Notification, ProviderSpec,
    SecretText, SetClientSecretParams, SignInParams, SignOutReply, SubscribeParams, TokenReply,
};
use zeroize::Zeroize;

mod dbus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match &e {
                Failure::Client(c) => {
                    eprintln!("tokenbroker: {c}");
                    match c {
                        ClientError::Broker(b) => b.kind.exit_code(),
                        _ => 6,
                    }
                }
                Failure::Usage(m) => {
                    eprintln!("tokenbroker: {m}");
                    2
                }
                Failure::Other(m) => {
                    eprintln!("tokenbroker: {m}");
                    1
                }
            };
            ExitCode::from(code)
        }
    }
}

pub(crate) enum Failure {
    Client(ClientError),
    Usage(String),
    Other(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

fn connect(cli_socket: &Option<PathBuf>) -> Result<Client, Failure> {
    let path = match cli_socket {
        Some(p) => p.clone(),
        None => tokenbroker_client::default_socket_path()?,
    };
    Ok(Client::connect(&path, "tokenbroker-cli")?)
}

/// The system service's socket.
const SYSTEM_SOCKET: &str = "/run/tokenbroker/socket";

fn run(mut cli: Cli) -> Result<(), Failure> {
    if cli.dbus {
        return dbus::run(cli.command, cli.system);
    }
    if cli.system && cli.socket.is_none() {
        cli.socket = Some(PathBuf::from(SYSTEM_SOCKET));
    }
    match cli.command {
        Command::Provider(cmd) => provider(&cli.socket, cmd),
        Command::Account(AccountCmd::Add {
            name,
            provider,
            username,
            client_credentials,
            scopes,
            owner,
        }) => {
            let grant = if client_credentials {
                Grant::ClientCredentials
            } else {
                Grant::Password
            };
            let mut c = connect(&cli.socket)?;
            let info = c.add_account(&AccountSpec {
                name,
                provider,
                grant,
                username,
                scopes,
                owner,
            })?;
            println!("added account {} ({})", info.name, info.state.as_str());
            if info.grant == Grant::Password {
                println!("sign in with: tokenbroker login {}", info.name);
            }
            Ok(())
        }
        Command::Account(AccountCmd::List(j)) | Command::Accounts(j) => {
            let accounts = connect(&cli.socket)?.list_accounts()?;
            print_accounts(&accounts, j.json)
        }
        Command::Account(AccountCmd::Remove { name }) => {
            connect(&cli.socket)?.remove_account(&name)?;
            println!("removed account {name}");
            Ok(())
        }
        Command::Login {
            account,
            password_stdin,
        } => {
            let mut c = connect(&cli.socket)?;
            let password = if password_stdin {
                read_secret_line("password")?
            } else {
                prompt_secret(&format!("Password for account {account}: "))?
            };
            if password.is_empty() {
                return Err(Failure::Usage("empty password".into()));
            }
            let info = c.sign_in(&SignInParams {
                account: account.clone(),
                password,
            })?;
            println!("signed in to {} ({})", info.name, info.state.as_str());
            Ok(())
        }
        Command::Token {
            account,
            scopes,
            min_ttl,
            json,
        } => {
            let t = connect(&cli.socket)?.get_token(&account, &scopes, min_ttl)?;
            print_token(&t, json)
        }
        Command::Logout { account } => {
            let r = connect(&cli.socket)?.sign_out(&account)?;
            if let Some(w) = r.warning {
                eprintln!("tokenbroker: warning: {w}");
            }
            println!(
                "signed out of {account}{}",
                if r.revoked {
                    " (revoked at the server)"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Command::Allow {
            account,
            app,
            scopes,
        } => {
            let exe = app_path(&app)?;
            connect(&cli.socket)?.set_app_policy(&AppPolicy {
                account: account.clone(),
                exe: exe.clone(),
                access: AppAccess::Allow,
                scopes,
            })?;
            println!("allowed {exe} for account {account}");
            Ok(())
        }
        Command::Deny { account, app } => {
            let exe = app_path(&app)?;
            connect(&cli.socket)?.set_app_policy(&AppPolicy {
                account: account.clone(),
                exe: exe.clone(),
                access: AppAccess::Deny,
                scopes: Vec::new(),
            })?;
            println!("denied {exe} for account {account}");
            Ok(())
        }
        Command::Forget { account, app } => {
            // The app may be gone from disk already: an absolute path is taken as written.
            let exe = if app.is_absolute() {
                app.to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Failure::Usage(format!("--app {}: not UTF-8", app.display())))?
            } else {
                app_path(&app)?
            };
            connect(&cli.socket)?.remove_app_policy(&account, &exe)?;
            println!("forgot the rule for {exe} on account {account}");
            Ok(())
        }
        Command::Policy { account, json } => {
            let rules = connect(&cli.socket)?.get_policy(account.as_deref())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rules).unwrap_or_default()
                );
                return Ok(());
            }
            if rules.is_empty() {
                println!("no app rules: apps other than tokenbroker itself are asked about (or denied when no consent agent runs)");
            }
            for r in rules {
                let access = match r.access {
                    AppAccess::Allow => "allow",
                    AppAccess::Deny => "deny",
                };
                let scopes = if r.scopes.is_empty() {
                    "(account's scopes)".to_owned()
                } else {
                    r.scopes.join(" ")
                };
                println!("{}\t{}\t{}\t{}", r.account, access, r.exe, scopes);
            }
            Ok(())
        }
        Command::Consent(ConsentCmd::List(j)) => {
            let list = connect(&cli.socket)?.list_consents()?;
            if j.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
                return Ok(());
            }
            if list.is_empty() {
                println!("no requests waiting");
            }
            for r in list {
                println!(
                    "{}\t{}\tpid {}\taccount {}\tscopes {}",
                    r.id,
                    r.exe,
                    r.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                    r.account,
                    r.scopes.join(" ")
                );
            }
            Ok(())
        }
        Command::Consent(ConsentCmd::Answer { id, answer }) => {
            let answer = match answer {
                AnswerArg::AllowOnce => ConsentAnswer::AllowOnce,
                AnswerArg::AllowAlways => ConsentAnswer::AllowAlways,
                AnswerArg::Deny => ConsentAnswer::Deny,
            };
            connect(&cli.socket)?.answer_consent(id, answer)?;
            println!("answered request {id}");
            Ok(())
        }
        Command::Consent(ConsentCmd::Watch) => {
            let mut sub = connect(&cli.socket)?.subscribe(&SubscribeParams {
                consent_agent: true,
            })?;
            eprintln!("tokenbroker: waiting for consent requests; answer with `tokenbroker consent answer ID allow-once|allow-always|deny`");
            loop {
                if let Notification::ConsentRequired { request } = sub.next_event()? {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(
                        out,
                        "{}",
                        serde_json::to_string(&request).unwrap_or_default()
                    );
                    let _ = out.flush();
                }
            }
        }
        Command::Introspect { account, json } => {
            let r = connect(&cli.socket)?.introspect(&account)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                return Ok(());
            }
            println!("active: {}", r.active);
            if let Some(s) = &r.scope {
                println!("scope: {s}");
            }
            if let Some(e) = r.exp {
                println!("expires_at: {e}");
            }
            if let Some(u) = &r.username {
                println!("username: {u}");
            }
            Ok(())
        }
        Command::Audit { since, json } => {
            let since = match since {
                Some(t) => parse_since(&t).ok_or_else(|| {
                    Failure::Usage(format!(
                        "--since {t:?}: use unix seconds or an age like 90s, 15m, 2h, 7d"
                    ))
                })?,
                None => 0,
            };
            let records = connect(&cli.socket)?.read_audit(&AuditQuery { since, limit: 0 })?;
            if json {
                for r in &records {
                    println!("{}", serde_json::to_string(r).unwrap_or_default());
                }
                return Ok(());
            }
            for r in &records {
                let d = match r.decision {
                    Decision::Allow => "allow",
                    Decision::Deny => "deny",
                };
                println!(
                    "{}\t{d}\tuid {}\tpid {}\t{}\t{}\t[{}]\t{}\t{}",
                    r.time,
                    r.uid,
                    r.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                    r.exe,
                    r.account,
                    r.scopes.join(" "),
                    r.transport,
                    r.reason
                );
            }
            Ok(())
        }
        Command::Status(j) => {
            let s = connect(&cli.socket)?.status()?;
            if j.json {
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                return Ok(());
            }
            println!(
                "tokenbrokerd {} (protocol {}), pid {}, up {} s",
                s.daemon_version, s.protocol, s.pid, s.uptime_secs
            );
            println!("config: {}\nsocket: {}", s.config_path, s.socket_path);
            print_accounts(&s.accounts, false)
        }
    }
}

fn provider(socket: &Option<PathBuf>, cmd: ProviderCmd) -> Result<(), Failure> {
    match cmd {
        ProviderCmd::Add {
            name,
            preset,
            base_url,
            app_id,
            realm,
            issuer,
            token_endpoint,
            revocation_endpoint,
            introspection_endpoint,
            client_id,
            client_auth,
            client_key,
            client_key_id,
            params,
            client_secret_stdin,
            scopes,
            allow_insecure_loopback,
        } => {
            let client_auth = client_auth.map(ClientAuth::from);
            if client_secret_stdin && client_auth.is_some_and(|a| !a.needs_secret()) {
                return Err(Failure::Usage(
                    "--client-secret-stdin goes with --client-auth basic or post".into(),
                ));
            }
            let client_key = match client_key {
                Some(k) => Some(app_path(&k)?),
                None => None,
            };
            let client_secret = if client_secret_stdin {
                Some(read_secret_line("client secret")?)
            } else {
                None
            };
            let mut c = connect(socket)?;
            let info = c.add_provider(&AddProviderParams {
                provider: ProviderSpec {
                    name,
                    preset,
                    base_url,
                    app_id,
                    realm,
                    issuer,
                    token_endpoint,
                    revocation_endpoint,
                    introspection_endpoint,
                    client_id,
                    client_auth,
                    client_key,
                    client_key_id,
                    params: params.into_iter().collect(),
                    scopes,
                    allow_insecure_loopback,
                },
                client_secret,
            })?;
            println!("added provider {}", info.spec.name);
            let resolved = info.spec.client_auth.unwrap_or_default();
            if resolved.needs_secret() && !info.has_client_secret {
                eprintln!(
                    "tokenbroker: note: no client secret stored yet: `tokenbroker provider set-secret {}`",
                    info.spec.name
                );
            }
            Ok(())
        }
        ProviderCmd::Presets(j) => {
            let presets = connect(socket)?.list_presets()?;
            if j.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&presets).unwrap_or_default()
                );
                return Ok(());
            }
            for p in presets {
                let needs = if p.requires.is_empty() {
                    String::new()
                } else {
                    format!(" (needs --{})", p.requires.join(", --").replace('_', "-"))
                };
                println!("{}\t{}{needs}", p.name, p.description);
            }
            Ok(())
        }
        ProviderCmd::List(j) => {
            let list = connect(socket)?.list_providers()?;
            if j.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
                return Ok(());
            }
            if list.is_empty() {
                println!("no providers: add one with `tokenbroker provider add`");
            }
            for p in list {
                let s = &p.spec;
                let at = s
                    .issuer
                    .as_deref()
                    .or(s.token_endpoint.as_deref())
                    .unwrap_or("?");
                println!(
                    "{}\t{}\tclient {} ({}{})",
                    s.name,
                    at,
                    s.client_id,
                    s.client_auth.unwrap_or_default().as_str(),
                    if s.client_auth.unwrap_or_default().needs_secret() && !p.has_client_secret {
                        ", no secret"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        ProviderCmd::Remove { name } => {
            connect(socket)?.remove_provider(&name)?;
            println!("removed provider {name}");
            Ok(())
        }
        ProviderCmd::SetSecret { name } => {
            let mut c = connect(socket)?;
            let secret = if std::io::stdin().is_terminal() {
                prompt_secret(&format!("Client secret for provider {name}: "))?
            } else {
                read_secret_line("client secret")?
            };
            c.set_client_secret(&SetClientSecretParams {
                provider: name.clone(),
                client_secret: secret,
            })?;
            println!("stored the client secret of {name}");
            Ok(())
        }
    }
}

/// Only the token, or JSON with its type, expiry and scopes. The JSON text is wiped after use.
pub(crate) fn print_token(t: &TokenReply, json: bool) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let written = if json {
        // The reply type serializes exactly these fields; sized exactly and wiped after use.
        let mut line = tokenbroker_client::protocol::to_line(t)
            .map_err(|e| Failure::Other(format!("cannot encode the token: {e}")))?;
        let r = out.write_all(&line);
        line.zeroize();
        r
    } else {
        writeln!(out, "{}", t.access_token.expose())
    };
    written.map_err(|e| Failure::Other(e.to_string()))
}

pub(crate) fn print_signed_out(account: &str, r: &SignOutReply) {
    if let Some(w) = &r.warning {
        eprintln!("tokenbroker: warning: {w}");
    }
    println!(
        "signed out of {account}{}",
        if r.revoked {
            " (revoked at the server)"
        } else {
            ""
        }
    );
}

pub(crate) fn print_accounts(accounts: &[AccountInfo], json: bool) -> Result<(), Failure> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(accounts).unwrap_or_default()
        );
        return Ok(());
    }
    if accounts.is_empty() {
        println!("no accounts: add one with `tokenbroker account add`");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for a in accounts {
        let expiry = a
            .expires_at
            .map(|e| format!("token valid {} s more", e.saturating_sub(now)))
            .unwrap_or_else(|| "-".into());
        let who = match (a.grant, a.username.as_deref()) {
            (Grant::ClientCredentials, _) => "(client)",
            (_, Some(u)) => u,
            (_, None) => "-",
        };
        print!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            a.name,
            a.provider,
            who,
            a.grant.as_str(),
            a.state.as_str(),
            expiry
        );
        if let Some(o) = &a.owner {
            print!("\towner={o}");
        }
        match &a.detail {
            Some(d) => println!("\t{d}"),
            None => println!(),
        }
    }
    Ok(())
}

/// An app's absolute path: relative paths are made absolute; the file must exist.
fn app_path(p: &std::path::Path) -> Result<String, Failure> {
    let abs = std::fs::canonicalize(p)
        .map_err(|e| Failure::Usage(format!("--app {}: {e}", p.display())))?;
    abs.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::Usage(format!("--app {}: not UTF-8", p.display())))
}

/// Unix seconds, or an age like 90s, 15m, 2h, 7d before now.
fn parse_since(t: &str) -> Option<u64> {
    if let Ok(n) = t.parse::<u64>() {
        return Some(n);
    }
    let (num, unit) = t.split_at(t.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(now.saturating_sub(secs))
}

/// Read the first line of standard input as a secret, without its line ending.
fn read_secret_line(what: &str) -> Result<SecretText, Failure> {
    // Sized up front so that reading does not reallocate and leave copies behind.
    let mut line = String::with_capacity(8192);
    let read = std::io::stdin().lock().read_line(&mut line);
    if let Err(e) = read {
        line.zeroize();
        return Err(Failure::Other(format!(
            "cannot read the {what} from standard input: {e}"
        )));
    }
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    if line.is_empty() {
        return Err(Failure::Usage(format!("no {what} on standard input")));
    }
    Ok(SecretText::from(line))
}

/// Prompt on the terminal without echo.
fn prompt_secret(prompt: &str) -> Result<SecretText, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(
            "no terminal to ask for the secret on: pipe it in with --password-stdin (or --client-secret-stdin)".into(),
        ));
    }
    rpassword::prompt_password(prompt)
        .map(SecretText::from)
        .map_err(|e| Failure::Other(format!("cannot read from the terminal: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use tokenbroker_client::ErrorKind;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn provider_add_needs_issuer_or_token_endpoint() {
        assert!(
            Cli::try_parse_from(["tokenbroker", "provider", "add", "p", "--client-id", "c"])
                .is_err()
        );
        assert!(Cli::try_parse_from([
            "tokenbroker",
            "provider",
            "add",
            "p",
            "--client-id",
            "c",
            "--issuer",
            "https://x",
            "--token-endpoint",
            "https://y"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "tokenbroker",
            "provider",
            "add",
            "p",
            "--client-id",
            "c",
            "--issuer",
            "https://x"
        ])
        .is_ok());
    }

    #[test]
    fn account_add_needs_a_grant() {
        assert!(
            Cli::try_parse_from(["tokenbroker", "account", "add", "a", "--provider", "p"]).is_err()
        );
        assert!(Cli::try_parse_from([
            "tokenbroker",
            "account",
            "add",
            "a",
            "--provider",
            "p",
            "--client-credentials"
        ])
        .is_ok());
        assert!(Cli::try_parse_from([
            "tokenbroker",
            "account",
            "add",
            "a",
            "--provider",
            "p",
            "--client-credentials",
            "--username",
            "u"
        ])
        .is_err());
    }

    #[test]
    fn since_parses_times_and_ages() {
        assert_eq!(parse_since("1700000000"), Some(1_700_000_000));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let h = parse_since("2h").unwrap();
        assert!((now - 7200..=now - 7199).contains(&h), "{h} vs {now}");
        for bad in ["", "h", "2x", "-1h", "1.5h"] {
            assert_eq!(parse_since(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn exit_codes_in_help_match_the_client_crate() {
        for (kind, code) in [
            (ErrorKind::NeedsSignIn, 3),
            (ErrorKind::Denied, 4),
            (ErrorKind::ServerError, 5),
            (ErrorKind::InvalidCredentials, 7),
            (ErrorKind::NoSuchAccount, 8),
        ] {
            assert_eq!(kind.exit_code(), code);
            assert!(EXIT_HELP.contains(&format!("  {code}  ")), "{code}");
        }
    }
}
