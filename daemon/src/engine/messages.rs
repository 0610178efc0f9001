//! The engine's words for callers: every message it puts in a [`BrokerError`].

use tokenbroker_client::{BrokerError, ErrorKind};

use crate::error::Error;

fn err(kind: ErrorKind, message: impl Into<String>) -> BrokerError {
    BrokerError::new(kind, message)
}

pub fn needs_sign_in(account: &str, reason: &str) -> BrokerError {
    err(
        ErrorKind::NeedsSignIn,
        format!("account {account:?} needs sign-in: {reason}; run `tokenbroker login {account}`"),
    )
}

pub fn too_long(account: &str, life: u64, min_ttl: u64) -> BrokerError {
    err(
        ErrorKind::InvalidArgument,
        format!(
            "the server issues tokens for account {account:?} valid for about {life} s, less than the min_ttl of {min_ttl} s"
        ),
    )
}

pub fn store_failed(what: &str, e: &Error) -> BrokerError {
    if what.is_empty() {
        err(ErrorKind::Store, e.to_string())
    } else {
        err(ErrorKind::Store, format!("{what}: {e}"))
    }
}

pub fn wrong_credentials(username: &str, account: &str, e: &Error) -> BrokerError {
    err(
        ErrorKind::InvalidCredentials,
        format!("the server rejected the credentials of user {username:?} for account {account:?} ({e})"),
    )
}

/// A failed request to a provider, in words that say which account and what to do.
pub fn grant_failure(account: &str, provider: &str, grant: &str, e: Error) -> BrokerError {
    match e {
        Error::Broker(b) => b,
        e if e.is_network() => err(
            ErrorKind::NetworkError,
            format!("cannot reach the authorization server of provider {provider:?} for account {account:?}: {e}"),
        ),
        Error::OAuth { ref error, .. } => {
            let (kind, hint) = match error.as_str() {
                "invalid_client" => (
                    ErrorKind::InvalidCredentials,
                    ": check the provider's client id and secret",
                ),
                "unauthorized_client" => (
                    ErrorKind::InvalidCredentials,
                    ": the client is not allowed this grant at the server",
                ),
                "invalid_scope" => (
                    ErrorKind::InvalidArgument,
                    ": the server does not allow these scopes",
                ),
                _ => (ErrorKind::ServerError, ""),
            };
            err(
                kind,
                format!("the authorization server of provider {provider:?} refused the {grant} request for account {account:?}: {e}{hint}"),
            )
        }
        e => err(
            ErrorKind::ServerError,
            format!("the authorization server of provider {provider:?} failed the {grant} request for account {account:?}: {e}"),
        ),
    }
}
