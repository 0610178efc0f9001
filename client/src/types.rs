//! Request parameters and replies of every method. Field names are the wire names.

use serde::{Deserialize, Serialize};

use crate::protocol::Version;
use crate::secret::SecretText;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloParams {
    pub protocol: Version,
    /// A self-declared client name: recorded as a hint, never trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloReply {
    pub protocol: Version,
    pub daemon_version: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetTokenParams {
    pub account: String,
    /// Requested scopes; empty means the account's configured scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The token must stay valid at least this many seconds.
    #[serde(default)]
    pub min_ttl: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenReply {
    pub access_token: SecretText,
    pub token_type: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    Password,
    ClientCredentials,
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Password => "password",
            Grant::ClientCredentials => "client_credentials",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    SignedIn,
    NeedsSignIn,
    Error,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::SignedIn => "signed_in",
            AccountState::NeedsSignIn => "needs_sign_in",
            AccountState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountInfo {
    pub name: String,
    pub provider: String,
    pub grant: Grant,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub scopes: Vec<String>,
    pub state: AccountState,
    /// When the latest cached access token expires (unix seconds), if one is cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Why the account is in `error` or `needs_sign_in`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// System mode: the local user the account belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReply {
    pub daemon_version: String,
    pub protocol: Version,
    pub pid: u32,
    pub uptime_secs: u64,
    pub config_path: String,
    pub socket_path: String,
    pub accounts: Vec<AccountInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountParams {
    pub account: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameParams {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInParams {
    pub account: String,
    /// Only ever sent over the local socket, never over D-Bus.
    pub password: SecretText,
}

/// How the broker authenticates itself (the OAuth client) at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded client id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost,
    /// A JWT signed with the client's private key (RFC 7523): `client_assertion`.
    PrivateKeyJwt,
    /// A public client: only `client_id` in the body.
    None,
}

impl ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::ClientSecretBasic => "client_secret_basic",
            ClientAuth::ClientSecretPost => "client_secret_post",
            ClientAuth::PrivateKeyJwt => "private_key_jwt",
            ClientAuth::None => "none",
        }
    }

    /// Whether a client secret is needed (in the secret store).
    pub fn needs_secret(self) -> bool {
        matches!(
            self,
            ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost
        )
    }
}

/// A provider as the admin describes it. Exactly one of `issuer` and `token_endpoint`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    pub name: String,
    /// A vendor preset; none: generic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    pub client_id: String,
    /// None: the preset's method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub allow_insecure_loopback: bool,
}

/// A preset as `tokenbroker provider presets` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresetInfo {
    pub name: String,
    pub description: String,
    /// Settings it needs besides base_url and client_id: "app_id", "realm".
    pub requires: Vec<String>,
    pub client_auth: ClientAuth,
}

/// RFC 7662 introspection of an account's current access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntrospectReply {
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddProviderParams {
    pub provider: ProviderSpec,
    /// Stored in the secret store, never in the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretText>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetClientSecretParams {
    pub provider: String,
    pub client_secret: SecretText,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderInfo {
    #[serde(flatten)]
    pub spec: ProviderSpec,
    /// Whether a client secret is in the secret store (never the secret itself).
    pub has_client_secret: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    pub name: String,
    pub provider: String,
    pub grant: Grant,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// System mode: the local user (name or uid) the account belongs to; default: the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The empty reply of methods that only act.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Done {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignOutReply {
    /// Whether the server confirmed the revocation; the local tokens are deleted either way.
    pub revoked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// What an app may do with an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppAccess {
    Allow,
    Deny,
}

/// One app's policy for one account: its executable's absolute path, and the widest scopes it
/// may get (empty: the account's scopes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppPolicy {
    pub account: String,
    pub exe: String,
    pub access: AppAccess,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveAppPolicyParams {
    pub account: String,
    pub exe: String,
}

/// A token request held until the user answers (or the time runs out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRequest {
    pub id: u64,
    pub account: String,
    /// The requesting app's executable, as the kernel reports it.
    pub exe: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub uid: u32,
    pub scopes: Vec<String>,
    pub transport: String,
    /// Unix seconds after which the request is denied.
    pub expires_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentAnswer {
    AllowOnce,
    AllowAlways,
    Deny,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerConsentParams {
    pub id: u64,
    pub answer: ConsentAnswer,
}

/// Events a subscribed connection receives, as JSON-RPC notifications (no id) whose method is
/// the event's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "PascalCase")]
pub enum Notification {
    AccountChanged {
        account: String,
        state: AccountState,
    },
    SignInRequired {
        account: String,
        reason: String,
    },
    ConsentRequired {
        request: ConsentRequest,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// Also act as a consent agent: while this connection is open, unknown apps are asked about
    /// instead of denied at once.
    #[serde(default)]
    pub consent_agent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

/// One line of the audit log: who got (or was refused) what. Never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix seconds.
    pub time: u64,
    pub decision: Decision,
    pub uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub exe: String,
    pub account: String,
    pub scopes: Vec<String>,
    pub transport: String,
    /// Why: the policy rule, the consent answer, or the error.
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only records at or after this unix time.
    #[serde(default)]
    pub since: u64,
    /// At most this many of the newest records (0: a default of 1000).
    #[serde(default)]
    pub limit: u32,
}
