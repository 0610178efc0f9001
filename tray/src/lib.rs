//! tokenbroker-tray: the tray app's logic, kept apart from the GTK glue in `main.rs` so that
//! it is tested without a display.
//!
//! - [`model`]: the daemon link's state, the accounts, the overall state and the menu;
//! - [`icon`]: the icon of each state, drawn in code;
//! - [`assuan`] and [`pinentry`]: prompts through the system's pinentry;
//! - [`prompts`]: the words of the sign-in and consent prompts;
//! - [`link`]: the connection to the daemon (reconnecting), and the sign-in and consent flows.
//!
//! The tray is a client of the daemon like any other: it speaks the socket protocol through
//! `tokenbroker-client`, and sends the password over that socket only.

pub mod assuan;
pub mod icon;
pub mod link;
pub mod model;
pub mod pinentry;
pub mod prompts;
