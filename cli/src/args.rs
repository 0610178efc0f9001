//! The command line of `tokenbroker`, as clap definitions: used by the binary, and by the
//! packaging's generator of man pages and shell completions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokenbroker_client::ClientAuth;

/// The exit codes, shown in `--help` and kept in step with `ErrorKind::exit_code` by a test.
#[macro_export]
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
  8  no such account or provider
  9  rate limited: too many requests, try again shortly"
    };
}

/// The exit codes, as `--help` shows them.
pub const EXIT_HELP: &str = exit_help!();

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
  tokenbroker --system account add mail --provider corp --username alice --owner alice

", exit_help!())
)]
pub struct Cli {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/tokenbroker/socket]
    #[arg(long, global = true, env = "TOKENBROKER_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Talk to the daemon over the D-Bus session bus instead of the socket (token, exec, env,
    /// accounts, status and logout only: sign-in and admin stay on the socket)
    #[arg(long, global = true)]
    pub dbus: bool,
    /// Talk to the system service (tokenbrokerd --system) for every local user: its socket
    /// /run/tokenbroker/socket, or with --dbus the system bus
    #[arg(long, global = true, env = "TOKENBROKER_SYSTEM")]
    pub system: bool,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Run a command with an access token for ACCOUNT in its environment (never in its argv)
    #[command(
        after_help = "The command replaces tokenbroker (exec): its exit status and the signals sent to it are its own.\nExit status 127: the command was not found; 126: it could not be executed.\n\nExamples:\n  tokenbroker exec me -- sh -c 'curl -H \"Authorization: Bearer $ACCESS_TOKEN\" https://api.example.com/'\n  tokenbroker exec me --env GITHUB_TOKEN --scope repo -- gh repo list"
    )]
    Exec {
        #[command(flatten)]
        token: EnvToken,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// Print the shell line that sets an access token for ACCOUNT in an environment variable
    #[command(
        after_help = "Examples:\n  eval \"$(tokenbroker env me)\"\n  tokenbroker env me --env API_TOKEN --shell fish | source"
    )]
    Env {
        #[command(flatten)]
        token: EnvToken,
        /// The shell whose syntax to print
        #[arg(long, value_enum, default_value_t = Shell::Sh)]
        shell: Shell,
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
pub enum ConsentCmd {
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
pub enum AnswerArg {
    AllowOnce,
    AllowAlways,
    Deny,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuthArg {
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
pub enum ProviderCmd {
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
        /// Hand out tokens for fewer scopes than an account's by a refresh that names them: only
        /// for servers that keep a refresh token's scope (RFC 6749 §6); django-oauth-toolkit
        /// narrows the refresh token for good instead
        #[arg(long)]
        scoped_refresh: bool,
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
pub enum AccountCmd {
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
        /// With --system: the local user (name or uid) who owns the account and alone gets its
        /// tokens [default: you]. Adding an account for another user is for admins.
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
    },
    /// List accounts and their state
    List(JsonFlag),
    /// Sign out and remove an account
    Remove { name: String },
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

/// The shells whose assignment syntax `tokenbroker env` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// POSIX sh, bash, zsh: `export NAME='…'`
    Sh,
    /// fish: `set -gx NAME '…'`
    Fish,
}

/// What `exec` and `env` ask for, and where they put it.
#[derive(Debug, Args)]
pub struct EnvToken {
    pub account: String,
    /// A scope to request (repeat); default: the account's scopes
    #[arg(long = "scope", value_name = "S")]
    pub scopes: Vec<String>,
    /// The token must stay valid at least this many seconds
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub min_ttl: u32,
    /// The environment variable that holds the token
    #[arg(long = "env", default_value = "ACCESS_TOKEN", value_name = "NAME")]
    pub var: String,
}
