//! tokenbrokerd: a local OAuth2 credential broker. See ../shared/DESIGN.md and docs/.
pub mod assertion;
pub mod audit;
pub mod broker;
pub mod caller;
pub mod config;
pub mod engine;
pub mod error;
pub mod grant;
pub mod harden;
pub mod http;
pub mod ipc;
pub mod policy;
pub mod preset;
pub mod provider;
pub mod run;
pub mod sealed;
pub mod store;
