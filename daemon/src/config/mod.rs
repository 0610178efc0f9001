//! The configuration: providers and accounts, never a secret.
//!
//! TOML with a `version` key and unknown fields refused; errors name the file and the line.
//! This module is the schema; [`load`] reads and merges the files (user mode: one file; system
//! mode: the main file and `config.d/` drop-ins), [`validate`] holds the field rules, [`edit`]
//! changes the main file keeping its comments and layout, and [`provider`] derives a provider's
//! endpoints and request dialect from its settings and preset.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokenbroker_client::{AccountSpec, AppAccess, Grant, ProviderSettings};

use crate::error::Result;

pub mod edit;
pub mod load;
pub mod provider;
pub mod validate;

pub use crate::oauth::discovery::check_endpoint_url;
pub use edit::ConfigEditor;
pub use load::Layout;

/// The config version this daemon reads and writes.
pub const CONFIG_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    #[serde(default, skip_serializing_if = "HttpSettings::is_default")]
    pub http: HttpSettings,
    #[serde(default, skip_serializing_if = "EngineSettings::is_default")]
    pub engine: EngineSettings,
    #[serde(default, skip_serializing_if = "PolicySettings::is_default")]
    pub policy: PolicySettings,
    #[serde(default, skip_serializing_if = "SystemSettings::is_default")]
    pub system: SystemSettings,
    #[serde(default, skip_serializing_if = "AuditSettings::is_default")]
    pub audit: AuditSettings,
    #[serde(default, skip_serializing_if = "LimitSettings::is_default")]
    pub limits: LimitSettings,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountConfig>,
    /// Entries that came from a drop-in (`providers.NAME`, `accounts.NAME` -> its file): read,
    /// never written by the daemon.
    #[serde(skip)]
    pub origins: BTreeMap<String, PathBuf>,
}

/// System mode: who may administer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemSettings {
    /// Members of this group (besides root) may administer providers, accounts of other users,
    /// client secrets and app rules.
    pub admin_group: String,
}

impl Default for SystemSettings {
    fn default() -> Self {
        Self {
            admin_group: "tokenbroker-admin".into(),
        }
    }
}

impl SystemSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Timeouts and retries of every call to an authorization server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Seconds to establish a connection.
    pub connect_timeout_secs: u64,
    /// Seconds for a whole request, reply included.
    pub timeout_secs: u64,
    /// Extra attempts after a network error or a 5xx reply.
    pub retries: u32,
    /// Milliseconds before the first retry; doubled for each further one.
    pub retry_backoff_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 5,
            timeout_secs: 20,
            retries: 2,
            retry_backoff_ms: 250,
        }
    }
}

impl HttpSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn retry_policy(&self) -> crate::oauth::retry::RetryPolicy {
        crate::oauth::retry::RetryPolicy {
            retries: self.retries,
            backoff_ms: self.retry_backoff_ms,
        }
    }

    pub fn http_options(&self) -> crate::oauth::http::HttpOptions {
        crate::oauth::http::HttpOptions {
            connect_timeout: std::time::Duration::from_secs(self.connect_timeout_secs),
            timeout: std::time::Duration::from_secs(self.timeout_secs),
            retry: self.retry_policy(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Refresh a token that callers use at about this fraction of its life, so they do not wait.
    pub refresh_at_fraction: f64,
    /// Whether to refresh ahead of expiry at all.
    pub proactive_refresh: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            refresh_at_fraction: 0.75,
            proactive_refresh: true,
        }
    }
}

impl EngineSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// How apps that no policy names are handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// How long a token request waits for the user's consent before it is denied.
    pub consent_timeout_secs: u64,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            consent_timeout_secs: 60,
        }
    }
}

impl PolicySettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The audit file's size cap (read at start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The audit file is rotated when it would grow past this many bytes.
    pub max_file_bytes: u64,
    /// How many rotated files are kept (audit.jsonl.1 ...).
    pub keep_files: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        let d = crate::audit::Limits::default();
        Self {
            max_file_bytes: d.max_file_bytes,
            keep_files: d.keep_files,
        }
    }
}

impl AuditSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn limits(&self) -> crate::audit::Limits {
        crate::audit::Limits {
            max_file_bytes: self.max_file_bytes,
            keep_files: self.keep_files,
        }
    }
}

/// How much one app may ask and hold, for every caller that is not one of the user's own tools
/// (which are not limited): requests per second with a burst, socket connections, subscribed
/// connections. The connection limits are read at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    pub app_requests_per_second: u32,
    pub app_request_burst: u32,
    pub app_connections: u32,
    pub app_subscriptions: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            app_requests_per_second: 20,
            app_request_burst: 100,
            app_connections: 16,
            app_subscriptions: 4,
        }
    }
}

impl LimitSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// One app's rule for an account, keyed by the absolute path of its executable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRule {
    pub access: AppAccess,
    /// The widest scopes the app may get; empty: the account's scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// A provider's settings as the config holds them: the wire's [`ProviderSettings`] (one
/// definition of the fields), with the daemon's own methods (see [`provider`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderConfig(pub ProviderSettings);

impl Deref for ProviderConfig {
    type Target = ProviderSettings;
    fn deref(&self) -> &ProviderSettings {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub provider: String,
    pub grant: Grant,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// System mode: the local user who owns the account, by name or numeric uid. Only the
    /// owner gets its tokens; only the owner signs it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// `owner` resolved to a uid when the config was read.
    #[serde(skip)]
    pub owner_uid: Option<u32>,
    /// Per-app policy: executable path -> rule. Apps not named here are asked about.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apps: BTreeMap<String, AppRule>,
}

impl AccountConfig {
    pub fn from_spec(spec: &AccountSpec) -> Self {
        Self {
            provider: spec.provider.clone(),
            grant: spec.grant,
            username: spec.username.clone(),
            scopes: spec.scopes.clone(),
            owner: spec.owner.clone(),
            owner_uid: spec.owner.as_deref().and_then(crate::users::resolve_user),
            apps: BTreeMap::new(),
        }
    }
}

impl AccountConfig {
    /// The scopes a request with no explicit scopes gets: the account's, else the provider's.
    pub fn default_scopes<'a>(&'a self, provider: &'a ProviderConfig) -> &'a [String] {
        if self.scopes.is_empty() {
            &provider.scopes
        } else {
            &self.scopes
        }
    }
}

impl Config {
    pub fn empty() -> Self {
        Config {
            version: CONFIG_VERSION,
            ..Default::default()
        }
    }

    /// Parse and validate `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        Layout::user(path).merge(Some(text))
    }

    /// Read `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Config> {
        Layout::user(path).load()
    }

    /// The drop-in file an entry (`providers.NAME`, `accounts.NAME`) came from, if any.
    pub fn origin(&self, section: &str, name: &str) -> Option<&Path> {
        self.origins
            .get(&format!("{section}.{name}"))
            .map(PathBuf::as_path)
    }
}

/// The running config, shared by the broker and the parts it wires: replaced whole on every
/// edit and reload, so a reader holds one consistent snapshot.
#[derive(Clone, Default)]
pub struct Shared(Arc<RwLock<Arc<Config>>>);

impl Shared {
    pub fn new(c: Config) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(c))))
    }

    pub fn get(&self) -> Arc<Config> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, c: Config) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
    }
}

#[cfg(test)]
mod tests;
