//! The secret store: refresh tokens and client secrets, behind one [`Backend`] trait with two
//! implementations: the OS keychain ([`keyring`], user mode) and the encrypted files of system
//! mode ([`sealed`]). Tests fill it with [`Memory`].
//!
//! Backends block, so every call runs on tokio's blocking pool, never on a runtime worker.
//! Values come back as [`SecretText`] straight from the store's `String`, without a copy.

pub mod keyring;
#[cfg(unix)]
pub mod sealed;

pub use self::keyring::Keyring;

use std::sync::Arc;
#[cfg(test)]
use std::sync::Mutex;

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
    r.map_err(Error::StoreTask)?
}

/// An in-memory backend for the daemon's own unit tests. `fail` makes every call fail;
/// `fail_writes` makes only `set` fail (a store that reads but cannot write).
#[cfg(test)]
#[derive(Default)]
pub struct Memory {
    pub map: Mutex<std::collections::HashMap<SecretKey, SecretText>>,
    pub fail: std::sync::atomic::AtomicBool,
    pub fail_writes: std::sync::atomic::AtomicBool,
    /// Every `set`, in order: which secret was written (for ordering checks).
    pub writes: Mutex<Vec<SecretKey>>,
}

#[cfg(test)]
impl Memory {
    fn check(&self) -> Result<()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(injected("use"));
        }
        Ok(())
    }
}

#[cfg(test)]
fn injected(op: &'static str) -> Error {
    Error::Keyring {
        op,
        entry: "the test store".into(),
        source: keyring_core::Error::NoStorageAccess("injected failure".into()),
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
        if self.fail_writes.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(injected("write"));
        }
        self.map.lock().unwrap().insert(key.clone(), value.clone());
        self.writes.lock().unwrap().push(key.clone());
        Ok(())
    }
    fn delete(&self, key: &SecretKey) -> Result<()> {
        self.check()?;
        self.map.lock().unwrap().remove(key);
        Ok(())
    }
}
