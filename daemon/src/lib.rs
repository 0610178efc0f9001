//! tokenbrokerd: a local OAuth2 credential broker. See ../shared/DESIGN.md and docs/.
pub mod config;
pub mod error;
