//! `tokenbroker exec` and `tokenbroker env`: an access token in a program's environment, for
//! tools that read one from a variable (docs/INTEGRATIONS.md).
//!
//! `exec` replaces this process with the command (execvp): the command's exit status and the
//! signals sent to it are its own, with nothing in between to forward them, and the token is in
//! its environment only, never in an argv that `ps` shows. The token is requested by this
//! process, the user's own tool, before the exec.

use std::ffi::OsString;
use std::io::Write;

use tokenbroker_client::TokenReply;
use zeroize::Zeroize;

use crate::args::{Command, EnvToken, Shell};
use crate::failure::Failure;

/// `exec` or `env`, with the token from `get` (GetToken over the socket or the bus): the
/// variable's name is checked before anything is asked.
pub fn run(
    command: Command,
    get: impl FnOnce(&str, &[String], u32) -> Result<TokenReply, Failure>,
) -> Result<(), Failure> {
    // The variable's name first: nothing is asked for a command line that cannot be used.
    let fetch = |t: &EnvToken| {
        check_var(&t.var)?;
        get(&t.account, &t.scopes, t.min_ttl)
    };
    match command {
        Command::Exec { token, command } => Err(exec(&fetch(&token)?, &token.var, &command)),
        Command::Env { token, shell } => env(&fetch(&token)?, &token.var, shell),
        _ => Err(Failure::Other("not an exec or env command".into())),
    }
}

/// An environment variable's name, as POSIX shells accept one: a letter or `_`, then letters,
/// digits and `_`.
pub fn check_var(name: &str) -> Result<(), Failure> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Failure::Usage(format!(
            "{name:?} is not an environment variable name (letters, digits and _, not starting with a digit)"
        )))
    }
}

/// Run `command` with the token in `var`. Returns only if the command could not be started.
#[cfg(unix)]
pub fn exec(token: &TokenReply, var: &str, command: &[OsString]) -> Failure {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = command.split_first() else {
        return Failure::Usage("no command to run: give it after `--`".into());
    };
    let err = std::process::Command::new(program)
        .args(args)
        .env(var, token.access_token.expose())
        .exec();
    let what = program.to_string_lossy();
    match err.kind() {
        std::io::ErrorKind::NotFound => {
            Failure::Exec(127, format!("cannot run {what}: command not found"))
        }
        _ => Failure::Exec(126, format!("cannot run {what}: {err}")),
    }
}

#[cfg(not(unix))]
pub fn exec(token: &TokenReply, var: &str, command: &[OsString]) -> Failure {
    // Untested (docs/INTEGRATIONS.md): no exec(2); run the command as a child and pass its
    // exit status on.
    let Some((program, args)) = command.split_first() else {
        return Failure::Usage("no command to run: give it after `--`".into());
    };
    let what = program.to_string_lossy().into_owned();
    match std::process::Command::new(program)
        .args(args)
        .env(var, token.access_token.expose())
        .status()
    {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Failure::Exec(127, format!("cannot run {what}: command not found"))
        }
        Err(e) => Failure::Exec(126, format!("cannot run {what}: {e}")),
    }
}

/// The line that sets `var` to the token in `shell`'s syntax, single-quoted so that no
/// character of the token is interpreted.
pub fn assignment(shell: Shell, var: &str, token: &str) -> String {
    match shell {
        // In sh, nothing is special inside '…'; a ' ends it, so it is written '\''.
        Shell::Sh => format!("export {var}='{}'\n", token.replace('\'', r"'\''")),
        // In fish, \ and ' are special inside '…' and are escaped with \.
        Shell::Fish => format!(
            "set -gx {var} '{}'\n",
            token.replace('\\', r"\\").replace('\'', r"\'")
        ),
    }
}

/// Print the assignment; the line is wiped after it is written.
pub fn env(token: &TokenReply, var: &str, shell: Shell) -> Result<(), Failure> {
    let mut line = assignment(shell, var, token.access_token.expose());
    let r = std::io::stdout().lock().write_all(line.as_bytes());
    line.zeroize();
    r.map_err(|e| Failure::Other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_are_checked() {
        for ok in ["ACCESS_TOKEN", "_x", "a1"] {
            assert!(check_var(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É"] {
            assert!(check_var(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn assignments_quote_every_character() {
        assert_eq!(
            assignment(Shell::Sh, "T", "a'b$c\\d"),
            "export T='a'\\''b$c\\d'\n"
        );
        assert_eq!(
            assignment(Shell::Fish, "T", "a'b$c\\d"),
            "set -gx T 'a\\'b$c\\\\d'\n"
        );
    }
}
