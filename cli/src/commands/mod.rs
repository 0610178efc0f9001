//! The commands: each module runs one group of them against the daemon. This module connects
//! and dispatches.

use std::path::PathBuf;

use tokenbroker_client::{Client, SYSTEM_SOCKET};

use crate::args::{Cli, Command};
use crate::failure::Failure;

mod account;
mod audit;
mod consent;
pub mod dbus;
mod exec;
mod policy;
mod provider;
mod session;

/// Connect to the daemon's socket: `--socket`, else `$TOKENBROKER_SOCKET`, else the user's.
pub fn connect(socket: &Option<PathBuf>) -> Result<Client, Failure> {
    let path = match socket {
        Some(p) => p.clone(),
        None => tokenbroker_client::default_socket_path()?,
    };
    Ok(Client::connect(&path, "tokenbroker-cli")?)
}

/// Run one command line.
pub fn run(mut cli: Cli) -> Result<(), Failure> {
    if cli.dbus {
        return dbus::run(cli.command, cli.system);
    }
    if cli.system && cli.socket.is_none() {
        cli.socket = Some(PathBuf::from(SYSTEM_SOCKET));
    }
    let socket = &cli.socket;
    match cli.command {
        Command::Provider(cmd) => provider::run(socket, cmd),
        Command::Account(cmd) => account::run(socket, cmd),
        Command::Accounts(j) => account::list(socket, j.json),
        Command::Login {
            account,
            password_stdin,
        } => session::login(socket, &account, password_stdin),
        Command::Token {
            account,
            scopes,
            min_ttl,
            json,
        } => session::token(socket, &account, &scopes, min_ttl, json),
        c @ (Command::Exec { .. } | Command::Env { .. }) => {
            exec::run(c, |account, scopes, min_ttl| {
                Ok(connect(socket)?.get_token(account, scopes, min_ttl)?)
            })
        }
        Command::Logout { account } => session::logout(socket, &account),
        Command::Status(j) => session::status(socket, j.json),
        Command::Introspect { account, json } => session::introspect(socket, &account, json),
        Command::Allow {
            account,
            app,
            scopes,
        } => policy::allow(socket, &account, &app, scopes),
        Command::Deny { account, app } => policy::deny(socket, &account, &app),
        Command::Forget { account, app } => policy::forget(socket, &account, &app),
        Command::Policy { account, json } => policy::show(socket, account.as_deref(), json),
        Command::Consent(cmd) => consent::run(socket, cmd),
        Command::Audit { since, json } => audit::show(socket, since.as_deref(), json),
    }
}
