//! tokenbroker, the command-line client of tokenbrokerd. The binary is `src/main.rs`; the
//! library holds its clap definitions, for man pages and completions.

pub mod args;
