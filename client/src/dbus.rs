//! The D-Bus face of the protocol: names, the error enum, and the proxy of
//! `io.tokenbroker.Broker1`. The methods mirror the socket's, minus sign-in: a password never
//! crosses a bus, because a bus can be monitored.

use crate::error::{BrokerError, ErrorKind};
use crate::secret::SecretText;

pub const BUS_NAME: &str = "io.tokenbroker.Broker1";
pub const OBJECT_PATH: &str = "/io/tokenbroker/Broker1";
pub const INTERFACE: &str = "io.tokenbroker.Broker1";
pub const ERROR_PREFIX: &str = "io.tokenbroker.Error";

/// `ListAccounts()` entries: (name, provider, grant, state, expires_at). `expires_at` is 0 when
/// no access token is cached.
pub type AccountEntry = (String, String, String, String, u64);

/// `GetToken()`'s reply: (access_token, token_type, expires_at_unix, scopes).
pub type TokenEntry = (SecretText, String, u64, Vec<String>);

/// `Status()`'s reply: (daemon_version, protocol, pid, uptime_secs).
pub type StatusEntry = (String, String, u32, u64);

/// Errors as D-Bus error names: `io.tokenbroker.Error.<Variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "io.tokenbroker.Error")]
pub enum DbusError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NoSuchAccount(String),
    NoSuchProvider(String),
    NotSignedIn(String),
    Denied(String),
    InvalidArgument(String),
    InvalidCredentials(String),
    ServerError(String),
    NetworkError(String),
    AlreadyExists(String),
    Config(String),
    Store(String),
    Busy(String),
    Protocol(String),
    Internal(String),
}

impl From<BrokerError> for DbusError {
    fn from(e: BrokerError) -> Self {
        let m = e.message;
        match e.kind {
            ErrorKind::NoSuchAccount => DbusError::NoSuchAccount(m),
            ErrorKind::NoSuchProvider => DbusError::NoSuchProvider(m),
            ErrorKind::NeedsSignIn => DbusError::NotSignedIn(m),
            ErrorKind::Denied => DbusError::Denied(m),
            ErrorKind::InvalidArgument => DbusError::InvalidArgument(m),
            ErrorKind::InvalidCredentials => DbusError::InvalidCredentials(m),
            ErrorKind::ServerError => DbusError::ServerError(m),
            ErrorKind::NetworkError => DbusError::NetworkError(m),
            ErrorKind::AlreadyExists => DbusError::AlreadyExists(m),
            ErrorKind::Config => DbusError::Config(m),
            ErrorKind::Store => DbusError::Store(m),
            ErrorKind::Busy => DbusError::Busy(m),
            ErrorKind::Protocol => DbusError::Protocol(m),
            ErrorKind::Internal => DbusError::Internal(m),
        }
    }
}

/// A failed proxy call as the broker's error: `io.tokenbroker.Error.*` by name, the bus's own
/// errors (wrong signature, no such service) as protocol or argument errors.
pub fn broker_error(e: zbus::Error) -> BrokerError {
    if let zbus::Error::MethodError(name, desc, _) = &e {
        let message = desc.clone().unwrap_or_default();
        if let Some(suffix) = name
            .as_str()
            .strip_prefix(ERROR_PREFIX)
            .and_then(|s| s.strip_prefix('.'))
        {
            let kind = ErrorKind::ALL
                .into_iter()
                .find(|k| k.dbus_name() == suffix)
                .unwrap_or(ErrorKind::Internal);
            return BrokerError::new(kind, message);
        }
        let kind = match name.as_str() {
            "org.freedesktop.DBus.Error.InvalidArgs" => ErrorKind::InvalidArgument,
            "org.freedesktop.DBus.Error.AccessDenied" => ErrorKind::Denied,
            _ => ErrorKind::Protocol,
        };
        return BrokerError::new(kind, format!("{name}: {message}"));
    }
    BrokerError::new(ErrorKind::Protocol, format!("D-Bus: {e}"))
}

impl zbus::zvariant::Type for SecretText {
    const SIGNATURE: &'static zbus::zvariant::Signature = &zbus::zvariant::Signature::Str;
}

#[zbus::proxy(
    interface = "io.tokenbroker.Broker1",
    default_service = "io.tokenbroker.Broker1",
    default_path = "/io/tokenbroker/Broker1",
    gen_blocking = true
)]
pub trait Broker1 {
    /// An access token with at least `min_ttl` seconds left.
    fn get_token(&self, account: &str, scopes: &[&str], min_ttl: u32) -> zbus::Result<TokenEntry>;
    fn list_accounts(&self) -> zbus::Result<Vec<AccountEntry>>;
    /// Revoke at the server and delete the stored tokens: (revoked, warning).
    fn sign_out(&self, account: &str) -> zbus::Result<(bool, String)>;
    fn status(&self) -> zbus::Result<StatusEntry>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(signal)]
    fn account_changed(&self, account: String, state: String) -> zbus::Result<()>;
    #[zbus(signal)]
    fn sign_in_required(&self, account: String, reason: String) -> zbus::Result<()>;
    #[zbus(signal)]
    fn consent_required(
        &self,
        id: u64,
        exe: String,
        pid: i32,
        account: String,
        scopes: Vec<String>,
    ) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_dbus_name_that_maps_back() {
        for kind in ErrorKind::ALL {
            let e: DbusError = BrokerError::new(kind, "m").into();
            let name = zbus::DBusError::name(&e).to_string();
            assert_eq!(name, format!("{ERROR_PREFIX}.{}", kind.dbus_name()));
        }
    }
}
