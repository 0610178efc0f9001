//! `tokenbroker --dbus ...`: the same commands over `io.tokenbroker.Broker1` on the session bus.

use tokenbroker_client::dbus::{broker_error, Broker1ProxyBlocking};
use tokenbroker_client::{AccountInfo, AccountState, ClientError, Grant, SignOutReply, TokenReply};

use crate::{print_accounts, print_signed_out, print_token, Failure};
use tokenbroker::args::{AccountCmd, Command};

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

pub(crate) fn run(command: Command, system: bool) -> Result<(), Failure> {
    match command {
        Command::Token {
            account,
            scopes,
            min_ttl,
            json,
        } => {
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let (access_token, token_type, expires_at, scopes) =
                call(proxy(system)?.get_token(&account, &scopes, min_ttl))?;
            print_token(
                &TokenReply {
                    access_token,
                    token_type,
                    expires_at,
                    scopes,
                },
                json,
            )
        }
        Command::Accounts(j) | Command::Account(AccountCmd::List(j)) => {
            let accounts: Vec<AccountInfo> = call(proxy(system)?.list_accounts())?
                .into_iter()
                .map(|(name, provider, grant, state, expires_at)| AccountInfo {
                    name,
                    provider,
                    grant: if grant == "client_credentials" {
                        Grant::ClientCredentials
                    } else {
                        Grant::Password
                    },
                    username: None,
                    scopes: Vec::new(),
                    state: match state.as_str() {
                        "signed_in" => AccountState::SignedIn,
                        "needs_sign_in" => AccountState::NeedsSignIn,
                        _ => AccountState::Error,
                    },
                    expires_at: (expires_at > 0).then_some(expires_at),
                    detail: None,
                    owner: None,
                })
                .collect();
            print_accounts(&accounts, j.json)
        }
        Command::Status(j) => {
            let p = proxy(system)?;
            let (version, protocol, pid, uptime) = call(p.status())?;
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
            let (revoked, warning) = call(proxy(system)?.sign_out(&account))?;
            print_signed_out(
                &account,
                &SignOutReply {
                    revoked,
                    warning: (!warning.is_empty()).then_some(warning),
                },
            );
            Ok(())
        }
        Command::Login { .. } => Err(Failure::Usage(
            "sign-in goes over the local socket only (a password never crosses D-Bus): run it without --dbus".into(),
        )),
        _ => Err(Failure::Usage(
            "only token, accounts, status and logout work over D-Bus: run the others without --dbus".into(),
        )),
    }
}
