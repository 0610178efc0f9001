//! `tokenbroker account ...` and `accounts`.

use std::path::PathBuf;

use tokenbroker_client::{AccountSpec, Grant};

use super::connect;
use crate::args::AccountCmd;
use crate::failure::Failure;
use crate::output;

pub fn run(socket: &Option<PathBuf>, cmd: AccountCmd) -> Result<(), Failure> {
    match cmd {
        AccountCmd::Add {
            name,
            provider,
            username,
            client_credentials,
            scopes,
            owner,
        } => {
            let grant = if client_credentials {
                Grant::ClientCredentials
            } else {
                Grant::Password
            };
            let info = connect(socket)?.add_account(&AccountSpec {
                name,
                provider,
                grant,
                username,
                scopes,
                owner,
            })?;
            println!("added account {} ({})", info.name, info.state.as_str());
            if info.grant == Grant::Password {
                println!("sign in with: tokenbroker login {}", info.name);
            }
            Ok(())
        }
        AccountCmd::List(j) => list(socket, j.json),
        AccountCmd::Remove { name } => {
            connect(socket)?.remove_account(&name)?;
            println!("removed account {name}");
            Ok(())
        }
    }
}

pub fn list(socket: &Option<PathBuf>, json: bool) -> Result<(), Failure> {
    let accounts = connect(socket)?.list_accounts()?;
    output::accounts(&accounts, json);
    Ok(())
}
