//! The engine's seam to the authorization server. The daemon fills it with the HTTP client
//! (`broker::providers::Providers`); the engine's tests fill it in process.

use std::future::Future;
use std::pin::Pin;

use tokenbroker_client::SecretText;

use super::Account;
use crate::error::Result;
use crate::oauth::{TokenRequest, TokenResponse};

/// A boxed future, as the trait's methods return (the trait is used as `dyn`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which token a revocation is about (RFC 7009 `token_type_hint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    RefreshToken,
    AccessToken,
}

impl TokenKind {
    pub fn hint(self) -> &'static str {
        match self {
            TokenKind::RefreshToken => "refresh_token",
            TokenKind::AccessToken => "access_token",
        }
    }
}

/// One request to the token or revocation endpoint of `account`'s provider: one attempt, no
/// retries (the engine retries). An error that is not the server's (the provider's settings,
/// discovery, a missing client secret) comes as [`crate::error::Error::Broker`], worded for the
/// caller already.
pub trait TokenEndpoint: Send + Sync + 'static {
    fn token<'a>(
        &'a self,
        account: &'a Account,
        request: &'a TokenRequest<'a>,
    ) -> BoxFuture<'a, Result<TokenResponse>>;

    /// Ok(false): the provider has no revocation endpoint.
    fn revoke<'a>(
        &'a self,
        account: &'a Account,
        token: &'a SecretText,
        kind: TokenKind,
    ) -> BoxFuture<'a, Result<bool>>;
}
