//! tokenbroker: the command-line client of tokenbrokerd.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tokenbroker::run(tokenbroker::args::Cli::parse())
}
