//! The OS keychain through keyring-core: Secret Service on Linux (tested), Keychain on macOS
//! and Credential Manager on Windows (built behind cfg, untested). Every entry has the service
//! name [`SERVICE`] and the secret's identity as its user name.

use std::sync::{Arc, Mutex};

use tokenbroker_client::SecretText;

use super::{Backend, SecretKey, SERVICE};
use crate::error::{Error, Result};

/// The OS keychain through keyring-core. The platform store is opened on first use (and again
/// after a failure), so the daemon starts even when the keychain is not up yet.
pub struct Keyring {
    opened: Mutex<bool>,
}

impl Keyring {
    pub fn new() -> Self {
        Self {
            opened: Mutex::new(false),
        }
    }

    fn ensure_open(&self) -> Result<()> {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if !*opened {
            keyring_core::set_default_store(platform_store()?);
            *opened = true;
        }
        Ok(())
    }

    fn entry(&self, key: &SecretKey) -> Result<keyring_core::Entry> {
        self.ensure_open()?;
        keyring_core::Entry::new(SERVICE, &key.user()).map_err(|e| store_error("open", key, e))
    }
}

impl Default for Keyring {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(target_os = "linux")]
fn platform_store() -> Result<Arc<keyring_core::CredentialStore>> {
    zbus_secret_service_keyring_store::Store::new()
        .map(|s| s as Arc<keyring_core::CredentialStore>)
        .map_err(|source| Error::KeyringUnavailable {
            what: "cannot reach the Secret Service (is gnome-keyring or another Secret Service running and unlocked?)",
            source,
        })
}

#[cfg(target_os = "macos")]
fn platform_store() -> Result<Arc<keyring_core::CredentialStore>> {
    apple_native_keyring_store::keychain::Store::new()
        .map(|s| s as Arc<keyring_core::CredentialStore>)
        .map_err(|source| Error::KeyringUnavailable {
            what: "cannot open the Keychain",
            source,
        })
}

#[cfg(windows)]
fn platform_store() -> Result<Arc<keyring_core::CredentialStore>> {
    windows_native_keyring_store::Store::new()
        .map(|s| s as Arc<keyring_core::CredentialStore>)
        .map_err(|source| Error::KeyringUnavailable {
            what: "cannot open the Credential Manager",
            source,
        })
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn platform_store() -> Result<Arc<keyring_core::CredentialStore>> {
    Err(Error::NoKeyring)
}

fn store_error(op: &'static str, key: &SecretKey, source: keyring_core::Error) -> Error {
    Error::Keyring {
        op,
        entry: key.user(),
        source,
    }
}

impl Backend for Keyring {
    fn get(&self, key: &SecretKey) -> Result<Option<SecretText>> {
        match self.entry(key)?.get_password() {
            Ok(s) => Ok(Some(SecretText::from(s))),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(store_error("read", key, e)),
        }
    }

    fn set(&self, key: &SecretKey, value: &SecretText) -> Result<()> {
        self.entry(key)?
            .set_password(value.expose())
            .map_err(|e| store_error("write", key, e))
    }

    fn delete(&self, key: &SecretKey) -> Result<()> {
        match self.entry(key)?.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(e) => Err(store_error("delete", key, e)),
        }
    }
}
