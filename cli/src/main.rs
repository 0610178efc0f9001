//! tokenbroker: the command-line client of tokenbrokerd.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokenbroker_client::{
    AccountInfo, AccountSpec, AddProviderParams, AppAccess, AppPolicy, AuditQuery, Client,
    ClientAuth, ClientError, ConsentAnswer, Decision, Grant, Notification, ProviderSpec,
    SecretText, SetClientSecretParams, SignInParams, SignOutReply, SubscribeParams, TokenReply,
};
use zeroize::Zeroize;

mod dbus;

/// The exit codes, shown in `--help` and kept in step with `ErrorKind::exit_code` by a test.
macro_rules! exit_help {
    () => {
        "Exit codes:
  0  success
  1  other failure (configuration, secret store, internal)
  2  usage error or invalid argument
  3  the account needs sign-in: run `tokenbroker login ACCOUNT`
  4  denied
  5  the authorization server failed or could not be reached
  6  the daemon is not running or broke the protocol
  7  the server rejected the credentials (wrong password, client secret)
  8  no such account or provider"
    };
}

#[cfg(test)]
const EXIT_HELP: &str = exit_help!();

#[derive(Debug, Parser)]
#[command(
    name = "tokenbroker",
    version,
    about = "Sign in once, and give apps short-lived OAuth2 access tokens",
    after_help = concat!("Examples:
  tokenbroker provider add corp --issuer https://id.example.com --client-id app --client-secret-stdin < secret.txt
  tokenbroker account add me --provider corp --username alice --scope read --scope write
  tokenbroker login me
  curl -H \"Authorization: Bearer $(tokenbroker token me)\" https://api.example.com/
  tokenbroker status --json

", exit_help!())
)]
struct Cli {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/tokenbroker/socket]
    #[arg(long, global = true, env = "TOKENBROKER_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Talk to the daemon over the D-Bus session bus instead of the socket (token, accounts,
    /// status and logout only: sign-in and admin stay on the socket)
    #[arg(long, global = true)]
    dbus: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage providers (authorization servers)
    #[command(subcommand)]
    Provider(ProviderCmd),
    /// Manage accounts
    #[command(subcommand)]
    Account(AccountCmd),
    /// List accounts and their state (same as `account list`)
    Accounts(JsonFlag),
    /// Sign in to a password-grant account: the password goes to the daemon and is wiped
    #[command(
        after_help = "Examples:\n  tokenbroker login me\n  printf '%s\\n' \"$PW\" | tokenbroker login me --password-stdin"
    )]
    Login {
        account: String,
        /// Read the password from the first line of standard input instead of the terminal
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print an access token for ACCOUNT (only the token, for scripts)
    #[command(
        after_help = "Examples:\n  tokenbroker token me\n  tokenbroker token me --scope read --min-ttl 300 --json"
    )]
    Token {
        account: String,
        /// A scope to request (repeat); default: the account's scopes
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
        /// The token must stay valid at least this many seconds
        #[arg(long, default_value_t = 0, value_name = "SECS")]
        min_ttl: u32,
        /// Print JSON with access_token, token_type, expires_at and scopes
        #[arg(long)]
        json: bool,
    },
    /// Sign out: revoke at the server and delete the stored tokens
    Logout { account: String },
    /// Show the daemon's state and every account's
    Status(JsonFlag),
    /// Allow an app (by the absolute path of its executable) to get ACCOUNT's tokens
    #[command(
        after_help = "Examples:\n  tokenbroker allow me --app /usr/bin/evolution --scope read\n  tokenbroker allow me --app /opt/tool/bin/tool          # the account's scopes"
    )]
    Allow {
        account: String,
        #[arg(long, value_name = "PATH")]
        app: PathBuf,
        /// The widest scope the app may get (repeat); default: the account's scopes
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
    },
    /// Deny an app ACCOUNT's tokens, without asking
    Deny {
        account: String,
        #[arg(long, value_name = "PATH")]
        app: PathBuf,
    },
    /// Forget an app's rule: it will be asked about again
    Forget {
        account: String,
        #[arg(long, value_name = "PATH")]
        app: PathBuf,
    },
    /// Show the per-app policy (of one account, or all)
    Policy {
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Answer apps' requests for tokens that no policy covers
    #[command(subcommand)]
    Consent(ConsentCmd),
    /// Ask the provider whether ACCOUNT's current access token is active (RFC 7662)
    Introspect {
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Show the audit log: every token handed out and every denial
    #[command(
        after_help = "Examples:\n  tokenbroker audit --since 1h\n  tokenbroker audit --json --since 1700000000"
    )]
    Audit {
        /// Only records since: unix seconds, or an age like 90s, 15m, 2h, 7d
        #[arg(long, value_name = "T")]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConsentCmd {
    /// Requests waiting for an answer
    List(JsonFlag),
    /// Answer a request: allow-once, allow-always (written to the policy) or deny
    Answer {
        id: u64,
        #[arg(value_enum)]
        answer: AnswerArg,
    },
    /// Act as a consent agent: print each request as a JSON line as it arrives (until Ctrl-C).
    /// While one runs, unknown apps wait for an answer instead of being denied at once.
    Watch,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum AnswerArg {
    AllowOnce,
    AllowAlways,
    Deny,
}

#[derive(Debug, Args)]
pub(crate) struct JsonFlag {
    /// Print JSON
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AuthArg {
    Basic,
    Post,
    #[value(name = "private_key_jwt")]
    PrivateKeyJwt,
    None,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

impl From<AuthArg> for ClientAuth {
    fn from(a: AuthArg) -> Self {
        match a {
            AuthArg::Basic => ClientAuth::ClientSecretBasic,
            AuthArg::Post => ClientAuth::ClientSecretPost,
            AuthArg::PrivateKeyJwt => ClientAuth::PrivateKeyJwt,
            AuthArg::None => ClientAuth::None,
        }
    }
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum ProviderCmd {
    /// Add a provider, by issuer (discovery) or by explicit endpoints
    #[command(
        after_help = "Examples:\n  tokenbroker provider add corp --issuer https://id.example.com/realms/corp --client-id app --client-secret-stdin < secret\n  tokenbroker provider add legacy --token-endpoint https://as.example.com/token --revocation-endpoint https://as.example.com/revoke --client-id app --client-auth post --client-secret-stdin < secret"
    )]
    Add {
        name: String,
        /// A vendor preset (see `provider presets`): endpoints and request details from --base-url
        #[arg(long, value_name = "P", requires = "base_url", conflicts_with_all = ["issuer", "token_endpoint"])]
        preset: Option<String>,
        /// The tenant or server root, with --preset
        #[arg(long, value_name = "URL", requires = "preset")]
        base_url: Option<String>,
        /// CyberArk: the OAuth2 custom application's id
        #[arg(long, value_name = "ID", requires = "preset")]
        app_id: Option<String>,
        /// ForgeRock sub-realm, or Keycloak realm
        #[arg(long, value_name = "NAME", requires = "preset")]
        realm: Option<String>,
        /// The issuer, for RFC 8414 / OpenID Connect discovery
        #[arg(
            long,
            conflicts_with = "token_endpoint",
            required_unless_present_any = ["token_endpoint", "preset"]
        )]
        issuer: Option<String>,
        /// The token endpoint, when the server publishes no metadata
        #[arg(long)]
        token_endpoint: Option<String>,
        /// The revocation endpoint (RFC 7009); with --issuer, used when the metadata names none
        #[arg(long)]
        revocation_endpoint: Option<String>,
        /// The introspection endpoint (RFC 7662)
        #[arg(long)]
        introspection_endpoint: Option<String>,
        #[arg(long)]
        client_id: String,
        /// How the broker authenticates to the token endpoint [default: the preset's; basic]
        #[arg(long, value_enum)]
        client_auth: Option<AuthArg>,
        /// private_key_jwt: the client's private key (PEM, RSA or EC P-256; mode 0600)
        #[arg(long, value_name = "PATH")]
        client_key: Option<PathBuf>,
        /// private_key_jwt: the key id (`kid`) the server knows the key by
        #[arg(long, value_name = "KID", requires = "client_key")]
        client_key_id: Option<String>,
        /// An extra token request parameter (repeat), e.g. --param auth_chain=ldapService
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Read the client secret from the first line of standard input
        #[arg(long)]
        client_secret_stdin: bool,
        /// A default scope (repeat)
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
        /// Allow plain http to a loopback address (for local test servers)
        #[arg(long)]
        allow_insecure_loopback: bool,
    },
    /// List providers
    List(JsonFlag),
    /// List the vendor presets
    Presets(JsonFlag),
    /// Remove a provider (its accounts first) and its client secret
    Remove { name: String },
    /// Set or replace a provider's client secret (read from standard input or the terminal)
    SetSecret { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCmd {
    /// Add an account: a user (password grant) or the client itself (client_credentials)
    #[command(
        after_help = "Examples:\n  tokenbroker account add me --provider corp --username alice --scope read\n  tokenbroker account add robot --provider corp --client-credentials --scope api"
    )]
    Add {
        name: String,
        #[arg(long)]
        provider: String,
        /// The user's name at the provider (password grant)
        #[arg(
            long,
            conflicts_with = "client_credentials",
            required_unless_present = "client_credentials"
        )]
        username: Option<String>,
        /// Use the client_credentials grant: no user, no sign-in
        #[arg(long)]
        client_credentials: bool,
        /// A scope (repeat); default: the provider's
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
    },
    /// List accounts and their state
    List(JsonFlag),
    /// Sign out and remove an account
    Remove { name: String },
}

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

fn run(cli: Cli) -> Result<(), Failure> {
    if cli.dbus {
        return dbus::run(cli.command);
    }
    match cli.command {
        Command::Provider(cmd) => provider(&cli.socket, cmd),
        Command::Account(AccountCmd::Add {
            name,
            provider,
            username,
            client_credentials,
            scopes,
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
