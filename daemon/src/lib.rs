//! tokenbrokerd: a local OAuth2 credential broker. See ../shared/DESIGN.md and
//! docs/ARCHITECTURE.md for how these modules fit together.
pub mod audit;
pub mod broker;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod files;
pub mod fuzz;
pub mod harden;
pub mod ipc;
pub mod names;
pub mod oauth;
pub mod policy;
pub mod run;
pub mod store;
pub mod users;
