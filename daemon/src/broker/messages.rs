//! The broker's words for callers: every message it puts in a [`BrokerError`] of its own.

use tokenbroker_client::{BrokerError, ClientAuth, ErrorKind};

use crate::error::Error;
use crate::names::shorten;

pub use crate::engine::messages::grant_failure;

pub fn err(kind: ErrorKind, message: impl Into<String>) -> BrokerError {
    BrokerError::new(kind, message)
}

pub fn invalid(message: impl Into<String>) -> BrokerError {
    err(ErrorKind::InvalidArgument, message)
}

pub fn denied(message: impl Into<String>) -> BrokerError {
    err(ErrorKind::Denied, message)
}

pub fn config(message: impl Into<String>) -> BrokerError {
    err(ErrorKind::Config, message)
}

pub fn internal(message: impl Into<String>) -> BrokerError {
    err(ErrorKind::Internal, message)
}

pub fn store(e: &Error) -> BrokerError {
    err(ErrorKind::Store, e.to_string())
}

pub fn no_account(name: &str) -> BrokerError {
    err(
        ErrorKind::NoSuchAccount,
        format!("no account named {name:?}: see `tokenbroker accounts`"),
    )
}

pub fn no_provider(name: &str) -> BrokerError {
    err(
        ErrorKind::NoSuchProvider,
        format!(
            "no provider named {:?}: see `tokenbroker provider list`",
            shorten(name)
        ),
    )
}

pub fn provider_gone(name: &str) -> BrokerError {
    config(format!("provider {name:?} is not configured"))
}

pub fn account_without_provider(account: &str, provider: &str) -> BrokerError {
    config(format!(
        "account {account:?} names provider {provider:?}, which is not configured"
    ))
}

pub fn no_client_secret(provider: &str, auth: ClientAuth) -> BrokerError {
    config(format!(
        "provider {provider:?} uses {} but no client secret is stored: run `tokenbroker provider set-secret {provider}`",
        auth.as_str()
    ))
}

pub fn discovery_failure(provider: &str, e: &Error) -> BrokerError {
    let kind = if e.is_network() {
        ErrorKind::NetworkError
    } else {
        ErrorKind::ServerError
    };
    err(
        kind,
        format!("provider {provider:?}: discovery failed: {e}"),
    )
}

pub fn not_trusted(what: &str, exe: &str) -> BrokerError {
    denied(format!(
        "only the tokenbroker CLI or tray may {what}; {exe} may not"
    ))
}

pub fn not_admin(what: &str, group: &str) -> BrokerError {
    denied(format!(
        "only root and members of group {group:?} may {what}"
    ))
}

pub fn other_user() -> BrokerError {
    denied("this tokenbrokerd serves only its own user")
}

pub fn per_app_rules_are_user_mode() -> BrokerError {
    invalid("per-app rules are for the user-mode daemon: the system service cannot see the executables of other users' processes, so it authorizes by user (each account's owner) alone")
}

pub fn bad_client_secret() -> BrokerError {
    invalid("the client secret must be 1 to 4096 bytes")
}

pub fn defined_in_dropin(section: &str, name: &str, file: &std::path::Path) -> BrokerError {
    invalid(format!(
        "{} {name:?} is defined in {}: change that file and reload the daemon (systemctl reload tokenbrokerd)",
        &section[..section.len() - 1],
        file.display()
    ))
}
