//! Request parameters and replies of every method. Field names are the wire names.

use serde::{Deserialize, Serialize};

use crate::secret::SecretText;
use crate::version::Version;

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
    pub const ALL: [Grant; 2] = [Grant::Password, Grant::ClientCredentials];

    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Password => "password",
            Grant::ClientCredentials => "client_credentials",
        }
    }
}

impl std::str::FromStr for Grant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Grant::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| format!("unknown grant {:?}", s.chars().take(40).collect::<String>()))
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
    pub const ALL: [AccountState; 3] = [
        AccountState::SignedIn,
        AccountState::NeedsSignIn,
        AccountState::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::SignedIn => "signed_in",
            AccountState::NeedsSignIn => "needs_sign_in",
            AccountState::Error => "error",
        }
    }
}

impl std::str::FromStr for AccountState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AccountState::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown account state {:?}",
                    s.chars().take(40).collect::<String>()
                )
            })
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

/// How a token request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// application/x-www-form-urlencoded (RFC 6749).
    #[default]
    Form,
    /// A JSON object of strings (CyberArk Identity).
    Json,
}

/// A provider's settings, as the admin gives them: the same fields in the config file
/// (`[providers.NAME]`) and on the wire (in [`ProviderSpec`], beside the name). Exactly one of
/// `issuer` and `token_endpoint`, or a preset's `base_url`. Never a secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// A vendor preset (see `tokenbroker provider presets`); none: generic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The tenant or server root that a preset's endpoints are derived from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// CyberArk: the OAuth2 custom application's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// ForgeRock (sub-realm) and Keycloak: the realm.
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
    /// None: the preset's method (client_secret_basic for generic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// private_key_jwt: the private key (PEM, RSA or EC P-256), a file readable by its owner only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// private_key_jwt: the `kid` of the assertion's header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_id: Option<String>,
    /// Extra parameters of every token request, e.g. ForgeRock's auth_chain.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, String>,
    /// Override the preset's body encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyEncoding>,
    /// Override the preset's name of the username field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_field: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_loopback: bool,
    /// Narrower tokens by a refresh that names fewer scopes: only for servers that keep a
    /// refresh token's scope as RFC 6749 §6 requires (django-oauth-toolkit does not). Off: a
    /// refresh always keeps the account's whole grant, and a request for other scopes than
    /// the account's is refused (docs/PROVIDERS.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scoped_refresh: bool,
}

/// A provider on the wire: its name and its settings, in one JSON object (`{"name": ..,
/// "client_id": .., ...}`). Unknown fields are refused, as in the config file. `scopes` and
/// `allow_insecure_loopback` are always written, so that clients can rely on them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderSpec {
    pub name: String,
    pub settings: ProviderSettings,
}

impl Serialize for ProviderSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut map = match serde_json::to_value(&self.settings).map_err(S::Error::custom)? {
            serde_json::Value::Object(m) => m,
            _ => return Err(S::Error::custom("provider settings are not an object")),
        };
        map.insert("name".into(), self.name.clone().into());
        map.entry("scopes")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        map.entry("allow_insecure_loopback")
            .or_insert(serde_json::Value::Bool(false));
        map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ProviderSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let name = match map.remove("name") {
            Some(serde_json::Value::String(n)) => n,
            Some(_) => return Err(D::Error::custom("invalid type: `name` must be a string")),
            None => return Err(D::Error::missing_field("name")),
        };
        let settings = ProviderSettings::deserialize(serde_json::Value::Object(map))
            .map_err(D::Error::custom)?;
        Ok(ProviderSpec { name, settings })
    }
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

impl Notification {
    /// The event's name: the method of its JSON-RPC notification and the D-Bus signal's name.
    pub fn name(&self) -> &'static str {
        match self {
            Notification::AccountChanged { .. } => "AccountChanged",
            Notification::SignInRequired { .. } => "SignInRequired",
            Notification::ConsentRequired { .. } => "ConsentRequired",
        }
    }

    /// The account the event is about.
    pub fn account(&self) -> &str {
        match self {
            Notification::AccountChanged { account, .. }
            | Notification::SignInRequired { account, .. } => account,
            Notification::ConsentRequired { request } => &request.account,
        }
    }
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
    /// A run of identical denials: how many more there were after the first (written when
    /// the run ended; 0 and left out for a single record).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeated: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_spec_is_one_flat_object() {
        let spec = ProviderSpec {
            name: "corp".into(),
            settings: ProviderSettings {
                issuer: Some("https://id.example".into()),
                client_id: "c".into(),
                ..Default::default()
            },
        };
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["name"], "corp");
        assert_eq!(v["client_id"], "c");
        assert_eq!(v["scopes"], serde_json::json!([]));
        assert_eq!(v["allow_insecure_loopback"], false);
        let back: ProviderSpec = serde_json::from_value(v).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn provider_spec_refuses_unknown_fields_and_needs_a_name() {
        let e = serde_json::from_str::<ProviderSpec>(r#"{"name":"p","client_id":"c","colour":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = serde_json::from_str::<ProviderSpec>(r#"{"client_id":"c"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `name`"), "{e}");
    }

    #[test]
    fn provider_info_flattens_the_spec() {
        let line = r#"{"name":"p","client_id":"c","scopes":["a"],"allow_insecure_loopback":true,"has_client_secret":true}"#;
        let info: ProviderInfo = serde_json::from_str(line).unwrap();
        assert!(info.has_client_secret);
        assert_eq!(info.spec.settings.scopes, ["a"]);
        assert!(info.spec.settings.allow_insecure_loopback);
    }

    #[test]
    fn names_parse_back() {
        for g in Grant::ALL {
            assert_eq!(g.as_str().parse::<Grant>().unwrap(), g);
        }
        for a in AccountState::ALL {
            assert_eq!(a.as_str().parse::<AccountState>().unwrap(), a);
        }
        assert!("nope".parse::<Grant>().is_err());
    }
}
