//! The engine's words for callers: every message it puts in a [`BrokerError`].

use tokenbroker_client::{BrokerError, ErrorKind};

use super::Reason;
use crate::error::Error;

fn err(kind: ErrorKind, message: impl Into<String>) -> BrokerError {
    BrokerError::new(kind, message)
}

pub fn needs_sign_in(account: &str, reason: &Reason) -> BrokerError {
    let text = |reason: &str| {
        format!("account {account:?} needs sign-in: {reason}; run `tokenbroker login {account}`")
    };
    err(ErrorKind::NeedsSignIn, text(&reason.full)).with_text_for_apps(text(&reason.for_apps))
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
    let ours =
        format!("the server rejected the credentials of user {username:?} for account {account:?}");
    err(ErrorKind::InvalidCredentials, format!("{ours} ({e})")).with_text_for_apps(ours)
}

/// The OAuth error codes the RFCs define: only these are repeated to apps, from this list,
/// never as the server wrote them.
const KNOWN_CODES: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "server_error",
    "temporarily_unavailable",
];

/// A failed request to a provider, in words that say which account and what to do.
pub fn grant_failure(account: &str, provider: &str, grant: &str, e: Error) -> BrokerError {
    match e {
        Error::Broker(b) => b,
        e if e.is_network() => {
            let ours = format!(
                "cannot reach the authorization server of provider {provider:?} for account {account:?}"
            );
            err(ErrorKind::NetworkError, format!("{ours}: {e}")).with_text_for_apps(ours)
        }
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
            let ours = format!(
                "the authorization server of provider {provider:?} refused the {grant} request for account {account:?}"
            );
            let code = KNOWN_CODES
                .iter()
                .find(|c| *c == error)
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            err(kind, format!("{ours}: {e}{hint}")).with_text_for_apps(format!("{ours}{code}"))
        }
        e => {
            let ours = format!(
                "the authorization server of provider {provider:?} failed the {grant} request for account {account:?}"
            );
            err(ErrorKind::ServerError, format!("{ours}: {e}")).with_text_for_apps(ours)
        }
    }
}
