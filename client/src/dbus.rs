//! The D-Bus face of the protocol: names, the error enum, and the proxy of
//! `io.tokenbroker.Broker1`. The methods mirror the socket's, minus sign-in: a password never
//! crosses a bus, because a bus can be monitored.

use crate::error::{BrokerError, ErrorKind};
use crate::secret::SecretText;
use crate::types::{AccountInfo, ConsentRequest, SignOutReply, StatusReply, TokenReply};

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

/// `SignOut()`'s reply: (revoked, warning or "").
pub type SignOutEntry = (bool, String);

/// `ConsentRequired`'s arguments: (request id, executable, pid or 0, account, scopes).
pub type ConsentEntry = (u64, String, i32, String, Vec<String>);

/// The bus's forms of the protocol's replies, both ways: the daemon encodes, clients decode,
/// with the same functions.
pub fn account_entry(a: &AccountInfo) -> AccountEntry {
    (
        a.name.clone(),
        a.provider.clone(),
        a.grant.as_str().to_owned(),
        a.state.as_str().to_owned(),
        a.expires_at.unwrap_or(0),
    )
}

/// An account from a `ListAccounts()` entry. The bus does not carry the username, scopes,
/// detail or owner: they are empty here.
pub fn account_from_entry(e: AccountEntry) -> Result<AccountInfo, BrokerError> {
    let (name, provider, grant, state, expires_at) = e;
    let bad = |m: String| BrokerError::new(ErrorKind::Protocol, m);
    Ok(AccountInfo {
        name,
        provider,
        grant: grant.parse().map_err(bad)?,
        username: None,
        scopes: Vec::new(),
        state: state.parse().map_err(bad)?,
        expires_at: (expires_at > 0).then_some(expires_at),
        detail: None,
        owner: None,
    })
}

pub fn token_entry(t: TokenReply) -> TokenEntry {
    (t.access_token, t.token_type, t.expires_at, t.scopes)
}

pub fn token_from_entry(e: TokenEntry) -> TokenReply {
    let (access_token, token_type, expires_at, scopes) = e;
    TokenReply {
        access_token,
        token_type,
        expires_at,
        scopes,
    }
}

pub fn sign_out_entry(r: SignOutReply) -> SignOutEntry {
    (r.revoked, r.warning.unwrap_or_default())
}

pub fn sign_out_from_entry(e: SignOutEntry) -> SignOutReply {
    let (revoked, warning) = e;
    SignOutReply {
        revoked,
        warning: (!warning.is_empty()).then_some(warning),
    }
}

pub fn status_entry(s: &StatusReply) -> StatusEntry {
    (
        s.daemon_version.clone(),
        s.protocol.to_string(),
        s.pid,
        s.uptime_secs,
    )
}

pub fn consent_entry(r: &ConsentRequest) -> ConsentEntry {
    (
        r.id,
        r.exe.clone(),
        r.pid.unwrap_or(0),
        r.account.clone(),
        r.scopes.clone(),
    )
}

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
    RateLimited(String),
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
            ErrorKind::RateLimited => DbusError::RateLimited(m),
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
    fn account_entries_round_trip() {
        use crate::types::{AccountState, Grant};
        let a = AccountInfo {
            name: "a".into(),
            provider: "p".into(),
            grant: Grant::ClientCredentials,
            username: None,
            scopes: Vec::new(),
            state: AccountState::NeedsSignIn,
            expires_at: Some(7),
            detail: None,
            owner: None,
        };
        let back = account_from_entry(account_entry(&a)).unwrap();
        assert_eq!(back.grant, a.grant);
        assert_eq!(back.state, a.state);
        assert_eq!(back.expires_at, Some(7));
        let bad = (
            "a".into(),
            "p".into(),
            "magic".into(),
            "signed_in".into(),
            0,
        );
        assert_eq!(
            account_from_entry(bad).unwrap_err().kind,
            ErrorKind::Protocol
        );
    }

    #[test]
    fn every_kind_has_a_dbus_name_that_maps_back() {
        for kind in ErrorKind::ALL {
            let e: DbusError = BrokerError::new(kind, "m").into();
            let name = zbus::DBusError::name(&e).to_string();
            assert_eq!(name, format!("{ERROR_PREFIX}.{}", kind.dbus_name()));
        }
    }
}
