//! `tokenbroker --dbus ...`: the same commands over `io.tokenbroker.Broker1` on the session bus
//! (or the system bus with `--system`). Sign-in and admin stay on the socket: a password never
//! crosses a bus.

use tokenbroker_client::dbus::{
    account_from_entry, broker_error, sign_out_from_entry, token_from_entry, Broker1ProxyBlocking,
};
use tokenbroker_client::{AccountInfo, ClientError};

use crate::args::{AccountCmd, Command};
use crate::failure::Failure;
use crate::output;

fn proxy(system: bool) -> Result<Broker1ProxyBlocking<'static>, Failure> {
    let which = if system { "system" } else { "session" };
    let fail = |e: zbus::Error| {
        Failure::Client(ClientError::Protocol(format!(
            "cannot reach tokenbrokerd on the {which} bus: {e}"
        )))
    };
    let conn = if system {
        zbus::blocking::Connection::system()
    } else {
        zbus::blocking::Connection::session()
    }
    .map_err(fail)?;
    Broker1ProxyBlocking::new(&conn).map_err(fail)
}

fn call<T>(r: zbus::Result<T>) -> Result<T, Failure> {
    r.map_err(|e| Failure::Client(ClientError::Broker(broker_error(e))))
}

pub fn run(command: Command, system: bool) -> Result<(), Failure> {
    match command {
        Command::Token {
            account,
            scopes,
            min_ttl,
            json,
        } => {
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let t = call(proxy(system)?.get_token(&account, &scopes, min_ttl))?;
            output::token(&token_from_entry(t), json)
        }
        c @ (Command::Exec { .. } | Command::Env { .. }) => {
            super::exec::run(c, |account, scopes, min_ttl| {
                let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
                let t = call(proxy(system)?.get_token(account, &scopes, min_ttl))?;
                Ok(token_from_entry(t))
            })
        }
        Command::Accounts(j) | Command::Account(AccountCmd::List(j)) => {
            let accounts = call(proxy(system)?.list_accounts())?
                .into_iter()
                .map(account_from_entry)
                .collect::<Result<Vec<AccountInfo>, _>>()
                .map_err(|e| Failure::Client(ClientError::Broker(e)))?;
            output::accounts(&accounts, j.json);
            Ok(())
        }
        Command::Status(j) => {
            let (version, protocol, pid, uptime) = call(proxy(system)?.status())?;
            if j.json {
                println!(
                    "{}",
                    serde_json::json!({"daemon_version": version, "protocol": protocol, "pid": pid, "uptime_secs": uptime})
                );
                return Ok(());
            }
            println!("tokenbrokerd {version} (protocol {protocol}), pid {pid}, up {uptime} s, on D-Bus");
            Ok(())
        }
        Command::Logout { account } => {
            let r = call(proxy(system)?.sign_out(&account))?;
            output::signed_out(&account, &sign_out_from_entry(r));
            Ok(())
        }
        Command::Login { .. } => Err(Failure::Usage(
            "sign-in goes over the local socket only (a password never crosses D-Bus): run it without --dbus".into(),
        )),
        _ => Err(Failure::Usage(
            "only token, exec, env, accounts, status and logout work over D-Bus: run the others without --dbus".into(),
        )),
    }
}
