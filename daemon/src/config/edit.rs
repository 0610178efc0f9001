//! Edits of the main config file by the admin methods: comments and layout stay (toml_edit),
//! the result is validated as a whole (with the drop-ins) before it is written, and it is
//! written atomically.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{AppRule, Config, Layout, CONFIG_VERSION};
use crate::error::{Error, Result};

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
            Err(source) => {
                return Err(Error::ConfigRead {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::from_text(path, &text)
    }

    /// An editor of `text`, as if read from `path`.
    pub fn from_text(path: &Path, text: &str) -> Result<Self> {
        let doc =
            text.parse::<toml_edit::DocumentMut>()
                .map_err(|source| Error::ConfigUnparsable {
                    path: path.to_owned(),
                    source,
                })?;
        Ok(Self {
            path: path.to_owned(),
            doc,
        })
    }

    /// The edited text.
    pub fn text(&self) -> String {
        self.doc.to_string()
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
            .map_err(|source| Error::ConfigEncode {
                path: self.path.clone(),
                what: format!("{section}.{name}"),
                source,
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
        let not_table = |key: String| Error::ConfigNotATable {
            path: path.clone(),
            key,
        };
        let acct = self
            .doc
            .get_mut("accounts")
            .and_then(|a| a.get_mut(account))
            .and_then(|t| t.as_table_like_mut())
            .ok_or_else(|| not_table(format!("accounts.{account}")))?;
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
            .ok_or_else(|| not_table(format!("accounts.{account}.apps")))?;
        match rule {
            Some(r) => {
                let table = toml_edit::ser::to_document(r)
                    .map_err(|source| Error::ConfigEncode {
                        path: path.clone(),
                        what: format!("accounts.{account}.apps"),
                        source,
                    })?
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
        write(&self.path, text.as_bytes())?;
        Ok(config)
    }
}

#[allow(clippy::panic)]
fn unreachable_table() -> ! {
    // Only reachable if toml_edit changed what is_table() means.
    panic!("config section is not a table")
}

/// Write the config file atomically, into a private folder made when missing. An existing
/// file keeps its mode; a new one is 0600.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |source| Error::ConfigWrite {
        path: path.to_owned(),
        source,
    };
    crate::files::create_private_dir(crate::files::parent_of(path)).map_err(err)?;
    let how = crate::files::Atomic {
        temp_prefix: ".config.toml.",
        temp_suffix: ".tmp",
        mode: None,
    };
    crate::files::write_atomically(path, bytes, &how).map_err(err)
}
