//! The secret store: refresh tokens and client secrets, in the OS keychain through keyring-core
//! (Secret Service on Linux, Keychain on macOS, Credential Manager on Windows).
//!
//! keyring's API blocks, so every call runs on tokio's blocking pool, never on a runtime worker.
//! Values come back as [`SecretText`] straight from the store's `String`, without a copy.

use std::sync::{Arc, Mutex};

use tokenbroker_client::SecretText;

use crate::error::{Error, Result};

/// The keychain service name of every entry.
pub const SERVICE: &str = "tokenbroker";

/// What is stored, and under which keychain user name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretKey {
    RefreshToken { account: String },
    ClientSecret { provider: String },
}

impl SecretKey {
    pub fn user(&self) -> String {
        match self {
            SecretKey::RefreshToken { account } => format!("refresh_token:{account}"),
            SecretKey::ClientSecret { provider } => format!("client_secret:{provider}"),
        }
    }
}

/// A blocking secret store backend.
pub trait Backend: Send + Sync + 'static {
    fn get(&self, key: &SecretKey) -> Result<Option<SecretText>>;
    fn set(&self, key: &SecretKey, value: &SecretText) -> Result<()>;
    /// Deleting what is not there is not an error.
    fn delete(&self, key: &SecretKey) -> Result<()>;
}

/// The async face of a backend.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    pub async fn get(&self, key: &SecretKey) -> Result<Option<SecretText>> {
        let (b, k) = (self.backend.clone(), key.clone());
        join(tokio::task::spawn_blocking(move || b.get(&k)).await)
    }

    pub async fn set(&self, key: &SecretKey, value: &SecretText) -> Result<()> {
        let (b, k, v) = (self.backend.clone(), key.clone(), value.clone());
        join(tokio::task::spawn_blocking(move || b.set(&k, &v)).await)
    }

    pub async fn delete(&self, key: &SecretKey) -> Result<()> {
        let (b, k) = (self.backend.clone(), key.clone());
        join(tokio::task::spawn_blocking(move || b.delete(&k)).await)
    }
}

fn join<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    r.map_err(|e| Error::Store(format!("the secret store task failed: {e}")))?
}

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
        let mut opened = self
            .opened
            .lock()
            .map_err(|_| Error::Store("lock poisoned".into()))?;
        if !*opened {
            keyring_core::set_default_store(platform_store()?);
            *opened = true;
        }
        Ok(())
    }

    fn entry(&self, key: &SecretKey) -> Result<keyring_core::Entry> {
        self.ensure_open()?;
        keyring_core::Entry::new(SERVICE, &key.user()).map_err(|e| store_error("open", key, &e))
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
        .map_err(|e| {
            Error::Store(format!(
                "cannot reach the Secret Service (is gnome-keyring or another Secret Service running and unlocked?): {}",
                describe(&e)
            ))
        })
}

#[cfg(target_os = "macos")]
fn platform_store() -> Result<Arc<keyring_core::CredentialStore>> {
    apple_native_keyring_store::keychain::Store::new()
        .map(|s| s as Arc<keyring_core::CredentialStore>)
        .map_err(|e| Error::Store(format!("cannot open the Keychain: {}", describe(&e))))
}

#[cfg(windows)]
fn platform_store() -> Result<Arc<keyring_core::CredentialStore>> {
    windows_native_keyring_store::Store::new()
        .map(|s| s as Arc<keyring_core::CredentialStore>)
        .map_err(|e| {
            Error::Store(format!(
                "cannot open the Credential Manager: {}",
                describe(&e)
            ))
        })
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn platform_store() -> Result<Arc<keyring_core::CredentialStore>> {
    Err(Error::Store(
        "no secret store is supported on this platform".into(),
    ))
}

/// A keyring error in words. Variants that carry the secret's bytes (BadEncoding,
/// BadDataFormat) are described without them.
fn describe(e: &keyring_core::Error) -> String {
    use keyring_core::Error as K;
    match e {
        K::BadEncoding(_) => "the stored value is not UTF-8".into(),
        K::BadDataFormat(_, _) => "the stored value has an unexpected format".into(),
        K::NoEntry => "no such entry".into(),
        other => other.to_string(),
    }
}

fn store_error(what: &str, key: &SecretKey, e: &keyring_core::Error) -> Error {
    Error::Store(format!("cannot {what} {}: {}", key.user(), describe(e)))
}

impl Backend for Keyring {
    fn get(&self, key: &SecretKey) -> Result<Option<SecretText>> {
        match self.entry(key)?.get_password() {
            Ok(s) => Ok(Some(SecretText::from(s))),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(store_error("read", key, &e)),
        }
    }

    fn set(&self, key: &SecretKey, value: &SecretText) -> Result<()> {
        self.entry(key)?
            .set_password(value.expose())
            .map_err(|e| store_error("write", key, &e))
    }

    fn delete(&self, key: &SecretKey) -> Result<()> {
        match self.entry(key)?.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(e) => Err(store_error("delete", key, &e)),
        }
    }
}

/// An in-memory backend for the daemon's own unit tests.
#[cfg(test)]
#[derive(Default)]
pub struct Memory {
    pub map: Mutex<std::collections::HashMap<SecretKey, SecretText>>,
    pub fail: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl Memory {
    fn check(&self) -> Result<()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Store("injected failure".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
impl Backend for Memory {
    fn get(&self, key: &SecretKey) -> Result<Option<SecretText>> {
        self.check()?;
        Ok(self.map.lock().unwrap().get(key).cloned())
    }
    fn set(&self, key: &SecretKey, value: &SecretText) -> Result<()> {
        self.check()?;
        self.map.lock().unwrap().insert(key.clone(), value.clone());
        Ok(())
    }
    fn delete(&self, key: &SecretKey) -> Result<()> {
        self.check()?;
        self.map.lock().unwrap().remove(key);
        Ok(())
    }
}
