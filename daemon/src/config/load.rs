//! Reading the config: the main file, and in system mode the drop-ins of `config.d/` (read in
//! name order, never written). Every error names the file and the line.

use std::path::{Path, PathBuf};

use super::{
    AuditSettings, Config, EngineSettings, HttpSettings, LimitSettings, PolicySettings,
    SystemSettings, CONFIG_VERSION,
};
use crate::error::{Error, Result};

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
            Err(source) => Err(Error::ConfigRead {
                path: self.main.clone(),
                source,
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
            Err(source) => {
                return Err(Error::ConfigReadDir {
                    path: dir.clone(),
                    source,
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
            Some(t) => parse_part(&self.main, t)?,
            None => Config::empty(),
        };
        let mut texts: Vec<(PathBuf, String)> =
            vec![(self.main.clone(), main_text.unwrap_or_default().to_owned())];
        for file in self.dropin_files()? {
            let text = std::fs::read_to_string(&file).map_err(|source| Error::ConfigRead {
                path: file.clone(),
                source,
            })?;
            let part = parse_part(&file, &text)?;
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
                ("audit", part.audit == AuditSettings::default()),
                ("limits", part.limits == LimitSettings::default()),
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
        crate::names::check_name("provider", name)
            .map_err(|m| at(locate.line(&["providers", name]), m))?;
        p.validate(name).map_err(|(field, m)| at(key(field), m))?;
    }
    if config.audit.max_file_bytes < 4096 || config.audit.keep_files > 100 {
        return Err(at(
            locate.line(&["audit"]),
            "audit: max_file_bytes must be at least 4096, keep_files at most 100".into(),
        ));
    }
    let l = &config.limits;
    if l.app_requests_per_second == 0
        || l.app_request_burst == 0
        || l.app_connections == 0
        || l.app_connections > 200
        || l.app_subscriptions > l.app_connections
    {
        return Err(at(
            locate.line(&["limits"]),
            "limits: app_requests_per_second and app_request_burst must be at least 1, app_connections 1 to 200, app_subscriptions at most app_connections".into(),
        ));
    }
    if config.system.admin_group.is_empty() || config.system.admin_group.len() > 64 {
        return Err(at(
            locate.line(&["system", "admin_group"]),
            "system.admin_group must be a group name of 1 to 64 characters".into(),
        ));
    }
    let mut config = config;
    for (name, a) in config.accounts.iter_mut() {
        crate::names::check_name("account", name)
            .map_err(|m| at(locate.line(&["accounts", name]), m))?;
        if let Some(owner) = &a.owner {
            a.owner_uid = crate::users::resolve_user(owner);
            if a.owner_uid.is_none() {
                return Err(at(
                    locate.line(&["accounts", name, "owner"]),
                    format!(
                        "account {name:?}: owner {:?} is not a local user",
                        crate::names::shorten(owner)
                    ),
                ));
            }
        }
    }
    Ok(config)
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Finds the line of a key path in the original text, for errors found after parsing.
pub(super) struct SpanFinder<'a> {
    text: &'a str,
    doc: Option<toml_edit::Document<&'a str>>,
}

impl<'a> SpanFinder<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            text,
            doc: toml_edit::Document::parse(text).ok(),
        }
    }

    /// The line of the deepest key of `path` that exists (1 if none).
    pub(super) fn line(&self, path: &[&str]) -> usize {
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
