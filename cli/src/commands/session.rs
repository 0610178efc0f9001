//! Signing in and out, getting a token, status and introspection.

use std::path::PathBuf;

use tokenbroker_client::SignInParams;

use super::connect;
use crate::failure::Failure;
use crate::{input, output};

pub fn login(socket: &Option<PathBuf>, account: &str, password_stdin: bool) -> Result<(), Failure> {
    let mut c = connect(socket)?;
    let password = if password_stdin {
        input::secret_line("password")?
    } else {
        input::prompt_secret(&format!("Password for account {account}: "))?
    };
    if password.is_empty() {
        return Err(Failure::Usage("empty password".into()));
    }
    let info = c.sign_in(&SignInParams {
        account: account.to_owned(),
        password,
    })?;
    println!("signed in to {} ({})", info.name, info.state.as_str());
    Ok(())
}

pub fn token(
    socket: &Option<PathBuf>,
    account: &str,
    scopes: &[String],
    min_ttl: u32,
    json: bool,
) -> Result<(), Failure> {
    let t = connect(socket)?.get_token(account, scopes, min_ttl)?;
    output::token(&t, json)
}

pub fn logout(socket: &Option<PathBuf>, account: &str) -> Result<(), Failure> {
    let r = connect(socket)?.sign_out(account)?;
    output::signed_out(account, &r);
    Ok(())
}

pub fn status(socket: &Option<PathBuf>, json: bool) -> Result<(), Failure> {
    let s = connect(socket)?.status()?;
    if json {
        output::json(&s);
        return Ok(());
    }
    println!(
        "tokenbrokerd {} (protocol {}), pid {}, up {} s",
        s.daemon_version, s.protocol, s.pid, s.uptime_secs
    );
    println!("config: {}\nsocket: {}", s.config_path, s.socket_path);
    output::accounts(&s.accounts, false);
    Ok(())
}

pub fn introspect(socket: &Option<PathBuf>, account: &str, json: bool) -> Result<(), Failure> {
    let r = connect(socket)?.introspect(account)?;
    if json {
        output::json(&r);
        return Ok(());
    }
    println!("active: {}", r.active);
    if let Some(s) = &r.scope {
        println!("scope: {s}");
    }
    if let Some(e) = r.exp {
        println!("expires_at: {e}");
    }
    if let Some(u) = &r.username {
        println!("username: {u}");
    }
    Ok(())
}
