//! The configuration file: providers and accounts, never a secret.
//!
//! TOML with a `version` key and unknown fields refused. Errors name the file and the line.
//! Edits made through the admin methods keep the file's comments and layout (toml_edit) and are
//! written atomically (temporary file, fsync, rename).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokenbroker_client::{AccountSpec, AppAccess, ClientAuth, Grant, ProviderSpec};

use crate::preset::{self, BodyEncoding, Dialect, Preset};
use url::Url;

use crate::error::{Error, Result};

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

/// One app's rule for an account, keyed by the absolute path of its executable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRule {
    pub access: AppAccess,
    /// The widest scopes the app may get; empty: the account's scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
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
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
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

impl ProviderConfig {
    pub fn from_spec(spec: &ProviderSpec) -> Self {
        Self {
            preset: spec.preset.clone().filter(|p| p != "generic"),
            base_url: spec.base_url.clone(),
            app_id: spec.app_id.clone(),
            realm: spec.realm.clone(),
            issuer: spec.issuer.clone(),
            token_endpoint: spec.token_endpoint.clone(),
            revocation_endpoint: spec.revocation_endpoint.clone(),
            introspection_endpoint: spec.introspection_endpoint.clone(),
            client_id: spec.client_id.clone(),
            client_auth: spec.client_auth,
            client_key: spec.client_key.clone(),
            client_key_id: spec.client_key_id.clone(),
            params: spec.params.clone(),
            body: None,
            username_field: None,
            scopes: spec.scopes.clone(),
            allow_insecure_loopback: spec.allow_insecure_loopback,
        }
    }

    /// The provider as the admin sees it, with the client authentication resolved.
    pub fn to_spec(&self, name: &str) -> ProviderSpec {
        ProviderSpec {
            name: name.to_owned(),
            preset: self.preset.clone(),
            base_url: self.base_url.clone(),
            app_id: self.app_id.clone(),
            realm: self.realm.clone(),
            issuer: self.issuer.clone(),
            token_endpoint: self.token_endpoint.clone(),
            revocation_endpoint: self.revocation_endpoint.clone(),
            introspection_endpoint: self.introspection_endpoint.clone(),
            client_id: self.client_id.clone(),
            client_auth: Some(self.auth()),
            client_key: self.client_key.clone(),
            client_key_id: self.client_key_id.clone(),
            params: self.params.clone(),
            scopes: self.scopes.clone(),
            allow_insecure_loopback: self.allow_insecure_loopback,
        }
    }

    pub fn preset(&self) -> &'static Preset {
        self.preset
            .as_deref()
            .and_then(preset::find)
            .unwrap_or_else(preset::generic)
    }

    /// How the client authenticates: configured, else the preset's.
    pub fn auth(&self) -> ClientAuth {
        self.client_auth.unwrap_or(self.preset().client_auth)
    }

    /// Everything about requests that varies by vendor.
    pub fn dialect(&self) -> Dialect {
        let p = self.preset();
        Dialect {
            body: self.body.unwrap_or(p.body),
            username_field: self
                .username_field
                .clone()
                .unwrap_or_else(|| p.username_field.to_owned()),
            form_charset: p.form_charset,
            extra_scopes: p.extra_scopes.iter().map(|s| s.to_string()).collect(),
            params: self.params.clone(),
            assertion_audience: p.assertion_audience.map(str::to_owned),
        }
    }

    fn render(&self, template: Option<&str>) -> Option<String> {
        let base = self.base_url.as_deref()?;
        template.map(|t| preset::render(t, base, self.app_id.as_deref(), self.realm.as_deref()))
    }

    /// The issuer to discover from: configured, or the preset's template.
    pub fn issuer_url(&self) -> Option<String> {
        self.issuer
            .clone()
            .or_else(|| self.render(self.preset().issuer))
    }

    /// The explicit token endpoint: configured, or the preset's template.
    pub fn token_url(&self) -> Option<String> {
        self.token_endpoint
            .clone()
            .or_else(|| self.render(self.preset().token))
    }

    pub fn revocation_url(&self) -> Option<String> {
        self.revocation_endpoint
            .clone()
            .or_else(|| self.render(self.preset().revocation))
    }

    pub fn introspection_url(&self) -> Option<String> {
        self.introspection_endpoint
            .clone()
            .or_else(|| self.render(self.preset().introspection))
    }

    /// Check one endpoint against the transport rule: https, or http to a loopback address when
    /// the provider allows it.
    pub fn check_url(&self, what: &str, raw: &str) -> std::result::Result<Url, String> {
        check_endpoint_url(what, raw, self.allow_insecure_loopback)
    }
}

impl AccountConfig {
    pub fn from_spec(spec: &AccountSpec) -> Self {
        Self {
            provider: spec.provider.clone(),
            grant: spec.grant,
            username: spec.username.clone(),
            scopes: spec.scopes.clone(),
            owner: spec.owner.clone(),
            owner_uid: spec.owner.as_deref().and_then(resolve_user),
            apps: BTreeMap::new(),
        }
    }
}

/// A local user, by name or numeric uid, to its uid; None when there is no such user.
pub fn resolve_user(user: &str) -> Option<u32> {
    if let Ok(uid) = user.parse::<u32>() {
        return Some(uid);
    }
    lookup_user(user).map(|(uid, _)| uid)
}

/// A user's uid and primary gid from the user database (NSS).
#[cfg(unix)]
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data that getpwnam_r fills in.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives pw's string pointers' use here.
    let r = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    (r == 0 && !out.is_null()).then_some((pw.pw_uid, pw.pw_gid))
}

#[cfg(not(unix))]
pub fn lookup_user(_name: &str) -> Option<(u32, u32)> {
    None
}

/// A group's gid from the group database (NSS); None when there is no such group.
#[cfg(unix)]
pub fn lookup_group(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Some(gid);
    }
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    // SAFETY: group is plain old data that getgrnam_r fills in.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call.
    let r = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut gr,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    (r == 0 && !out.is_null()).then_some(gr.gr_gid)
}

#[cfg(not(unix))]
pub fn lookup_group(_name: &str) -> Option<u32> {
    None
}

/// https, or http to a loopback address when `allow_insecure_loopback`.
pub fn check_endpoint_url(
    what: &str,
    raw: &str,
    allow_insecure_loopback: bool,
) -> std::result::Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{what} {raw:?} is not a valid URL: {e}"))?;
    if url.username() != "" || url.password().is_some() {
        return Err(format!("{what} must not carry credentials in the URL"));
    }
    if url.fragment().is_some() {
        return Err(format!("{what} {raw:?} must not have a fragment"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if !loopback {
                Err(format!(
                    "{what} {raw:?} uses plain http: only https is allowed, except to a loopback address"
                ))
            } else if !allow_insecure_loopback {
                Err(format!(
                    "{what} {raw:?} uses plain http to a loopback address: set allow_insecure_loopback = true on the provider to allow it"
                ))
            } else {
                Ok(url)
            }
        }
        other => Err(format!(
            "{what} {raw:?} has scheme {other:?}: only https is allowed"
        )),
    }
}

/// Names of providers and accounts: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
pub fn check_name(what: &str, name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} name {:?}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
            shorten(name)
        ))
    }
}

/// An app is named by the absolute path of its executable.
pub fn check_app_path(exe: &str) -> std::result::Result<(), String> {
    if exe.starts_with('/') && exe.len() <= 4096 && !exe.contains('\0') && !exe.ends_with('/') {
        Ok(())
    } else {
        Err(format!(
            "app {:?} must be the absolute path of an executable",
            shorten(exe)
        ))
    }
}

/// At most 64 characters of a caller-supplied string, for error messages.
pub fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// A scope token (RFC 6749 §3.3): printable ASCII without space, '"' or '\'.
pub fn check_scope(scope: &str) -> std::result::Result<(), String> {
    let ok = !scope.is_empty()
        && scope.len() <= 256
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid scope {:?}: a scope is 1 to 256 printable ASCII characters without spaces, quotes or backslashes",
            scope.chars().take(40).collect::<String>()
        ))
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

    /// Parse one file and check what it holds on its own; accounts are checked against their
    /// providers once all files are merged.
    fn parse_part(path: &Path, text: &str) -> Result<Config> {
        let at = |line: usize, message: String| Error::ConfigInvalid {
            path: path.to_owned(),
            line,
            message,
        };
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start)).unwrap_or(1);
            let mut message = e.message().trim().to_owned();
            let names_a_secret = ["client_secret", "password", "refresh_token", "access_token"]
                .iter()
                .any(|f| message.contains(&format!("unknown field `{f}`")));
            if names_a_secret {
                message.push_str(
                    "; secrets never go in the config: use `tokenbroker provider add --client-secret-stdin` and `tokenbroker login`",
                );
            }
            at(line, message)
        })?;
        let locate = SpanFinder::new(text);
        if config.version != CONFIG_VERSION {
            return Err(at(
                locate.line(&["version"]),
                format!(
                    "unsupported config version {}: this tokenbrokerd reads version {CONFIG_VERSION}",
                    config.version
                ),
            ));
        }
        if config.policy.consent_timeout_secs == 0 || config.policy.consent_timeout_secs > 3600 {
            return Err(at(
                locate.line(&["policy", "consent_timeout_secs"]),
                "policy.consent_timeout_secs must be 1 to 3600".into(),
            ));
        }
        let h = &config.http;
        if h.timeout_secs == 0
            || h.connect_timeout_secs == 0
            || h.timeout_secs > 600
            || h.connect_timeout_secs > 600
            || h.retries > 10
            || h.retry_backoff_ms > 60_000
        {
            return Err(at(
                locate.line(&["http"]),
                "http: timeouts must be 1 to 600 seconds, retries at most 10, retry_backoff_ms at most 60000".into(),
            ));
        }
        let f = config.engine.refresh_at_fraction;
        if !(0.1..=0.95).contains(&f) {
            return Err(at(
                locate.line(&["engine", "refresh_at_fraction"]),
                "engine.refresh_at_fraction must be between 0.1 and 0.95".into(),
            ));
        }
        for (name, p) in &config.providers {
            let key = |k: &str| locate.line(&["providers", name, k]);
            check_name("provider", name).map_err(|m| at(locate.line(&["providers", name]), m))?;
            p.validate(name).map_err(|(field, m)| at(key(field), m))?;
        }
        if config.system.admin_group.is_empty() || config.system.admin_group.len() > 64 {
            return Err(at(
                locate.line(&["system", "admin_group"]),
                "system.admin_group must be a group name of 1 to 64 characters".into(),
            ));
        }
        let mut config = config;
        for (name, a) in config.accounts.iter_mut() {
            check_name("account", name).map_err(|m| at(locate.line(&["accounts", name]), m))?;
            if let Some(owner) = &a.owner {
                a.owner_uid = resolve_user(owner);
                if a.owner_uid.is_none() {
                    return Err(at(
                        locate.line(&["accounts", name, "owner"]),
                        format!(
                            "account {name:?}: owner {:?} is not a local user",
                            shorten(owner)
                        ),
                    ));
                }
            }
        }
        Ok(config)
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

/// Where the config comes from: the main file, which admin edits write, and in system mode a
/// folder of drop-ins (`config.d/*.toml`, in name order) that are read but never written.
#[derive(Debug, Clone)]
pub struct Layout {
    pub main: PathBuf,
    pub dropins: Option<PathBuf>,
    /// System mode: every account must name its owner.
    pub require_owner: bool,
}

impl Layout {
    /// User mode: one file.
    pub fn user(main: &Path) -> Self {
        Self {
            main: main.to_owned(),
            dropins: None,
            require_owner: false,
        }
    }

    /// System mode: `main` and the `config.d` folder beside it.
    pub fn system(main: &Path) -> Self {
        let dropins = main.parent().map(|d| d.join("config.d"));
        Self {
            main: main.to_owned(),
            dropins,
            require_owner: true,
        }
    }

    /// Read every file; a missing main file is an empty one.
    pub fn load(&self) -> Result<Config> {
        match std::fs::read_to_string(&self.main) {
            Ok(text) => self.merge(Some(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.merge(None),
            Err(e) => Err(Error::ConfigFile {
                path: self.main.clone(),
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// The drop-in files, in name order (a missing folder holds none).
    pub fn dropin_files(&self) -> Result<Vec<PathBuf>> {
        let Some(dir) = &self.dropins else {
            return Ok(Vec::new());
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::ConfigFile {
                    path: dir.clone(),
                    message: format!("cannot read the folder: {e}"),
                })
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "toml")
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// The whole config, with `main_text` as the main file's content (None: no main file).
    pub fn merge(&self, main_text: Option<&str>) -> Result<Config> {
        let mut config = match main_text {
            Some(t) => Config::parse_part(&self.main, t)?,
            None => Config::empty(),
        };
        let mut texts: Vec<(PathBuf, String)> =
            vec![(self.main.clone(), main_text.unwrap_or_default().to_owned())];
        for file in self.dropin_files()? {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::ConfigFile {
                path: file.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let part = Config::parse_part(&file, &text)?;
            let locate = SpanFinder::new(&text);
            let at = |keys: &[&str], message: String| Error::ConfigInvalid {
                path: file.clone(),
                line: locate.line(keys),
                message,
            };
            for (section, default) in [
                ("http", part.http == HttpSettings::default()),
                ("engine", part.engine == EngineSettings::default()),
                ("policy", part.policy == PolicySettings::default()),
                ("system", part.system == SystemSettings::default()),
            ] {
                if !default {
                    return Err(at(
                        &[section],
                        format!(
                            "a drop-in holds providers and accounts only: [{section}] goes in {}",
                            self.main.display()
                        ),
                    ));
                }
            }
            let origin_of = |c: &Config, section: &str, name: &str| {
                c.origin(section, name)
                    .unwrap_or(&self.main)
                    .display()
                    .to_string()
            };
            for (name, p) in part.providers {
                if config.providers.contains_key(&name) {
                    return Err(at(
                        &["providers", &name],
                        format!(
                            "provider {name:?} is defined in {} already",
                            origin_of(&config, "providers", &name)
                        ),
                    ));
                }
                config
                    .origins
                    .insert(format!("providers.{name}"), file.clone());
                config.providers.insert(name, p);
            }
            for (name, a) in part.accounts {
                if config.accounts.contains_key(&name) {
                    return Err(at(
                        &["accounts", &name],
                        format!(
                            "account {name:?} is defined in {} already",
                            origin_of(&config, "accounts", &name)
                        ),
                    ));
                }
                config
                    .origins
                    .insert(format!("accounts.{name}"), file.clone());
                config.accounts.insert(name, a);
            }
            texts.push((file, text));
        }
        // Accounts against their providers, now that every file is in.
        for (name, a) in &config.accounts {
            let file = config.origin("accounts", name).unwrap_or(&self.main);
            let text = texts
                .iter()
                .find(|(p, _)| p == file)
                .map(|(_, t)| t.as_str())
                .unwrap_or_default();
            let locate = SpanFinder::new(text);
            let at = |k: &str, message: String| Error::ConfigInvalid {
                path: file.to_owned(),
                line: locate.line(&["accounts", name, k]),
                message,
            };
            let provider = config.providers.get(&a.provider).ok_or_else(|| {
                at(
                    "provider",
                    format!(
                        "account {name:?} names provider {:?}, which is not configured",
                        a.provider
                    ),
                )
            })?;
            a.validate(name, provider)
                .map_err(|(field, m)| at(field, m))?;
            if self.require_owner && !a.apps.is_empty() {
                return Err(at(
                    "apps",
                    format!(
                        "account {name:?}: per-app rules are for the user-mode daemon; the system service authorizes by owner alone"
                    ),
                ));
            }
            if self.require_owner && a.owner.is_none() {
                return Err(at(
                    "provider",
                    format!(
                        "account {name:?} has no owner: in system mode every account names the local user it belongs to (owner = \"USER\")"
                    ),
                ));
            }
        }
        Ok(config)
    }
}

impl ProviderConfig {
    /// Field-level checks; the error names the offending field.
    pub fn validate(&self, name: &str) -> std::result::Result<(), (&'static str, String)> {
        let preset = match self.preset.as_deref() {
            None => preset::generic(),
            Some(p) => preset::find(p).ok_or_else(|| {
                (
                    "preset",
                    format!(
                        "provider {name:?}: unknown preset {:?}: one of {}",
                        shorten(p),
                        preset::PRESETS
                            .iter()
                            .map(|p| p.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?,
        };
        if preset.name != "generic" {
            let base = self.base_url.as_deref().ok_or_else(|| {
                (
                    "preset",
                    format!("provider {name:?}: preset {} needs base_url", preset.name),
                )
            })?;
            self.check_url("base_url", base)
                .map_err(|m| ("base_url", format!("provider {name:?}: {m}")))?;
            for need in preset.requires {
                let have = match *need {
                    "app_id" => self.app_id.as_deref(),
                    _ => self.realm.as_deref(),
                };
                let ok = have.is_some_and(|v| {
                    !v.is_empty()
                        && v.len() <= 128
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                });
                if !ok {
                    return Err((
                        "preset",
                        format!("provider {name:?}: preset {} needs {need} (letters, digits, '.', '_', '-')", preset.name),
                    ));
                }
            }
            if let Some(r) = &self.realm {
                if !r
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                {
                    return Err((
                        "realm",
                        format!("provider {name:?}: invalid realm {:?}", shorten(r)),
                    ));
                }
            }
            if self.issuer.is_some() || self.token_endpoint.is_some() {
                return Err((
                    "preset",
                    format!("provider {name:?}: preset {} derives its endpoints from base_url: leave out issuer and token_endpoint", preset.name),
                ));
            }
            return self.validate_common(name);
        }
        if let (None, None, Some(base)) = (&self.issuer, &self.token_endpoint, &self.base_url) {
            // Generic with a base URL: the base URL is the issuer to discover from.
            self.check_url("base_url", base)
                .map_err(|m| ("base_url", format!("provider {name:?}: {m}")))?;
            return self.validate_common(name);
        }
        if self.base_url.is_some() {
            return Err((
                "base_url",
                format!("provider {name:?}: base_url goes with a preset, or alone as the issuer"),
            ));
        }
        match (&self.issuer, &self.token_endpoint) {
            (Some(_), Some(_)) => {
                return Err((
                    "token_endpoint",
                    format!(
                    "provider {name:?}: give either issuer (discovery) or token_endpoint, not both"
                ),
                ))
            }
            (None, None) => {
                return Err((
                    "client_id",
                    format!("provider {name:?}: needs issuer (for discovery) or token_endpoint"),
                ))
            }
            _ => {}
        }
        for (field, value) in [
            ("issuer", &self.issuer),
            ("token_endpoint", &self.token_endpoint),
            ("revocation_endpoint", &self.revocation_endpoint),
            ("introspection_endpoint", &self.introspection_endpoint),
        ] {
            if let Some(v) = value {
                self.check_url(field, v)
                    .map_err(|m| (field, format!("provider {name:?}: {m}")))?;
            }
        }
        self.validate_common(name)
    }

    fn validate_common(&self, name: &str) -> std::result::Result<(), (&'static str, String)> {
        for (field, value) in [
            ("revocation_endpoint", &self.revocation_endpoint),
            ("introspection_endpoint", &self.introspection_endpoint),
        ] {
            if let Some(v) = value {
                self.check_url(field, v)
                    .map_err(|m| (field, format!("provider {name:?}: {m}")))?;
            }
        }
        if self.client_id.trim().is_empty() || self.client_id.len() > 512 {
            return Err((
                "client_id",
                format!("provider {name:?}: client_id must be 1 to 512 characters"),
            ));
        }
        for s in &self.scopes {
            check_scope(s).map_err(|m| ("scopes", format!("provider {name:?}: {m}")))?;
        }
        match (self.auth(), &self.client_key) {
            (ClientAuth::PrivateKeyJwt, None) => {
                return Err((
                    "client_auth",
                    format!("provider {name:?}: private_key_jwt needs client_key, the path of the private key"),
                ))
            }
            (ClientAuth::PrivateKeyJwt, Some(k)) if !k.starts_with('/') => {
                return Err(("client_key", format!("provider {name:?}: client_key must be an absolute path")))
            }
            (ClientAuth::PrivateKeyJwt, _) => {}
            (_, Some(_)) => {
                return Err((
                    "client_key",
                    format!("provider {name:?}: client_key is only for client_auth = \"private_key_jwt\""),
                ))
            }
            _ => {}
        }
        if let Some(kid) = &self.client_key_id {
            if kid.is_empty() || kid.len() > 256 || kid.chars().any(char::is_control) {
                return Err((
                    "client_key_id",
                    format!("provider {name:?}: invalid client_key_id"),
                ));
            }
        }
        for (k, v) in &self.params {
            let ok_name = !k.is_empty()
                && k.len() <= 64
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok_name || preset::RESERVED_PARAMS.contains(&k.as_str()) {
                return Err((
                    "params",
                    format!("provider {name:?}: parameter {:?} is not allowed (a name of letters, digits, '_', '-', '.', not one the grant sets itself)", shorten(k)),
                ));
            }
            if v.len() > 1024 || v.chars().any(char::is_control) {
                return Err((
                    "params",
                    format!("provider {name:?}: parameter {k:?} has an invalid value"),
                ));
            }
        }
        if let Some(f) = &self.username_field {
            if f.is_empty()
                || f.len() > 64
                || !f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err((
                    "username_field",
                    format!("provider {name:?}: invalid username_field"),
                ));
            }
        }
        Ok(())
    }
}

impl AccountConfig {
    pub fn validate(
        &self,
        name: &str,
        provider: &ProviderConfig,
    ) -> std::result::Result<(), (&'static str, String)> {
        match (self.grant, &self.username) {
            (Grant::Password, None) => {
                return Err(("grant", format!("account {name:?}: the password grant needs a username")))
            }
            (Grant::Password, Some(u)) if u.is_empty() || u.len() > 512 => {
                return Err(("username", format!("account {name:?}: username must be 1 to 512 characters")))
            }
            (Grant::ClientCredentials, Some(_)) => {
                return Err((
                    "username",
                    format!("account {name:?}: a client_credentials account has no username"),
                ))
            }
            (Grant::ClientCredentials, None) if provider.auth() == ClientAuth::None => {
                return Err((
                    "grant",
                    format!(
                        "account {name:?}: client_credentials needs a confidential client, but provider {:?} uses client_auth = \"none\"",
                        self.provider
                    ),
                ))
            }
            _ => {}
        }
        for s in &self.scopes {
            check_scope(s).map_err(|m| ("scopes", format!("account {name:?}: {m}")))?;
        }
        for (exe, rule) in &self.apps {
            check_app_path(exe).map_err(|m| ("apps", format!("account {name:?}: {m}")))?;
            for s in &rule.scopes {
                check_scope(s)
                    .map_err(|m| ("apps", format!("account {name:?}, app {exe:?}: {m}")))?;
            }
        }
        Ok(())
    }

    /// The scopes a request with no explicit scopes gets: the account's, else the provider's.
    pub fn default_scopes<'a>(&'a self, provider: &'a ProviderConfig) -> &'a [String] {
        if self.scopes.is_empty() {
            &provider.scopes
        } else {
            &self.scopes
        }
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Finds the line of a key path in the original text, for errors found after parsing.
struct SpanFinder<'a> {
    text: &'a str,
    doc: Option<toml_edit::Document<&'a str>>,
}

impl<'a> SpanFinder<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            doc: toml_edit::Document::parse(text).ok(),
        }
    }

    /// The line of the deepest key of `path` that exists (1 if none).
    fn line(&self, path: &[&str]) -> usize {
        let Some(doc) = &self.doc else { return 1 };
        let mut item: &toml_edit::Item = doc.as_item();
        let mut best = 1;
        for key in path {
            let Some(table) = item.as_table_like() else {
                break;
            };
            let Some((k, next)) = table.get_key_value(key) else {
                break;
            };
            if let Some(span) = k.span().or_else(|| next.span()) {
                best = line_of_offset(self.text, span.start);
            }
            item = next;
        }
        best
    }
}

/// Edits to the config file that keep its comments and layout.
pub struct ConfigEditor {
    path: PathBuf,
    doc: toml_edit::DocumentMut,
}

impl ConfigEditor {
    pub fn open(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!(
                    "# tokenbroker configuration: see docs/CONFIG.md\nversion = {CONFIG_VERSION}\n"
                )
            }
            Err(e) => {
                return Err(Error::ConfigFile {
                    path: path.to_owned(),
                    message: format!("cannot read: {e}"),
                })
            }
        };
        let doc = text
            .parse::<toml_edit::DocumentMut>()
            .map_err(|e| Error::ConfigFile {
                path: path.to_owned(),
                message: format!("cannot edit: {e}"),
            })?;
        Ok(Self {
            path: path.to_owned(),
            doc,
        })
    }

    fn section(&mut self, key: &str) -> &mut toml_edit::Table {
        let item = self.doc.entry(key).or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        });
        if !item.is_table() {
            *item = toml_edit::Item::Table(toml_edit::Table::new());
        }
        // is_table() was just ensured
        match item.as_table_mut() {
            Some(t) => t,
            None => unreachable_table(),
        }
    }

    pub fn set<T: Serialize>(&mut self, section: &str, name: &str, value: &T) -> Result<()> {
        let table = toml_edit::ser::to_document(value)
            .map_err(|e| Error::ConfigFile {
                path: self.path.clone(),
                message: format!("cannot encode {section}.{name}: {e}"),
            })?
            .as_table()
            .clone();
        self.section(section)
            .insert(name, toml_edit::Item::Table(table));
        Ok(())
    }

    /// Set (Some) or remove (None) one app's rule, `accounts.ACCOUNT.apps."EXE"`, touching nothing
    /// else of the account's table, so its comments and layout stay.
    pub fn set_app_rule(&mut self, account: &str, exe: &str, rule: Option<&AppRule>) -> Result<()> {
        let path = self.path.clone();
        let fail = |message: String| Error::ConfigFile {
            path: path.clone(),
            message,
        };
        let acct = self
            .doc
            .get_mut("accounts")
            .and_then(|a| a.get_mut(account))
            .and_then(|t| t.as_table_like_mut())
            .ok_or_else(|| fail(format!("no account {account:?} in the file")))?;
        if acct.get("apps").is_none() {
            if rule.is_none() {
                return Ok(());
            }
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            acct.insert("apps", toml_edit::Item::Table(t));
        }
        let apps = acct
            .get_mut("apps")
            .and_then(|a| a.as_table_like_mut())
            .ok_or_else(|| fail(format!("accounts.{account}.apps is not a table")))?;
        match rule {
            Some(r) => {
                let table = toml_edit::ser::to_document(r)
                    .map_err(|e| fail(format!("cannot encode the rule: {e}")))?
                    .as_table()
                    .clone()
                    .into_inline_table();
                apps.insert(
                    exe,
                    toml_edit::Item::Value(toml_edit::Value::InlineTable(table)),
                );
            }
            None => {
                apps.remove(exe);
            }
        }
        Ok(())
    }

    pub fn remove(&mut self, section: &str, name: &str) {
        self.section(section).remove(name);
    }

    /// Validate the edited document as a whole (with the layout's drop-ins), then write it
    /// atomically. Returns the new config.
    pub fn commit(self, layout: &Layout) -> Result<Config> {
        let text = self.doc.to_string();
        let config = layout.merge(Some(&text))?;
        write_atomically(&self.path, text.as_bytes())?;
        Ok(config)
    }
}

#[allow(clippy::panic)]
fn unreachable_table() -> ! {
    // Only reachable if toml_edit changed what is_table() means.
    panic!("config section is not a table")
}

/// Write `bytes` to `path` through a temporary file in the same folder, fsync'd and renamed, so
/// that a crash leaves either the old or the new file. Keeps an existing file's permissions;
/// a new one is 0600.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |source| Error::ConfigWrite {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(err)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.toml.")
        .tempfile_in(dir)
        .map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0o600);
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode)).map_err(err)?;
    }
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Create `dir` (and parents) with mode 0700 where it does not exist yet.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
        assert!(after.contains("[accounts.alice.apps]\n\"/usr/bin/app\" = { access = \"allow\", scopes = [\"read\"] }"), "{after}");
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
            &ProviderConfig {
                token_endpoint: Some("https://x.example/token".into()),
                client_id: "c".into(),
                client_auth: Some(ClientAuth::None),
                ..Default::default()
            },
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
        let text = format!("{DROPIN_PROVIDER}[accounts.mail]\nprovider = \"fleet\"\ngrant = \"client_credentials\"\n");
        assert!(parse(&text).is_ok());
        let bad = format!("{text}owner = \"no-such-user-tb\"\n");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains(":9:") && e.contains("not a local user"), "{e}");
    }
}
