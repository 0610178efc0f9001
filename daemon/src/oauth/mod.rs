//! OAuth 2.0 on the wire: the requests of every grant, revocation and introspection, client
//! authentication, strict reply parsing, discovery, vendor presets, and the HTTP client they
//! share. Nothing here knows about accounts, caches or callers: that is the token engine's and
//! the broker's.

pub mod assertion;
pub mod client_auth;
pub mod discovery;
pub mod grant;
pub mod http;
pub mod preset;
pub mod reply;
pub mod retry;
pub mod scrub;

pub use client_auth::ClientCredentials;
pub use discovery::Endpoints;
pub use grant::TokenRequest;
pub use http::Http;
pub use reply::TokenResponse;

#[cfg(test)]
mod tests;
