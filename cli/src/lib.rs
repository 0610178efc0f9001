//! tokenbroker, the command-line client of tokenbrokerd. The binary (`src/main.rs`) parses and
//! calls [`run`]; [`args`] holds the clap definitions (also read by the packaging's generator of
//! man pages and completions), [`commands`] one module per group of commands, [`output`]
//! everything that is printed.

use std::process::ExitCode;

pub mod args;
pub mod commands;
pub mod failure;
mod input;
pub mod output;

pub use failure::Failure;

/// Run a parsed command line; the error, if any, is printed here, once.
pub fn run(cli: args::Cli) -> ExitCode {
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokenbroker: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
