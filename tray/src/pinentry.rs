//! Prompts through the system's pinentry (the GnuPG prompt programs: pinentry-gnome3, -qt,
//! -gtk2, -curses, -tty): a password without echo, or a question with three buttons.
//!
//! The program is started for each prompt and spoken to over its stdin/stdout in Assuan. No
//! `SETKEYINFO` is sent, so no pinentry offers to keep the password in a keyring; the password
//! comes back as a [`SecretText`] and no copy of it stays in this process's buffers.

use std::ffi::OsString;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use tokenbroker_client::SecretText;
use zeroize::Zeroize;

use crate::assuan::{self, AssuanError, Conn};

/// The environment variable that names the pinentry program.
pub const PINENTRY_ENV: &str = "TOKENBROKER_PINENTRY";
/// The program used when nothing else is configured: Debian's alternative, which points at
/// the best one installed.
pub const DEFAULT_PINENTRY: &str = "pinentry";

#[derive(Debug, thiserror::Error)]
pub enum PinentryError {
    #[error("cannot start the prompt program {program:?}: {source} (set --pinentry or TOKENBROKER_PINENTRY to an installed pinentry)")]
    Spawn {
        program: OsString,
        #[source]
        source: std::io::Error,
    },
    #[error("the prompt timed out")]
    Timeout,
    #[error(transparent)]
    Assuan(#[from] AssuanError),
    #[error("the prompt program returned a password that is not UTF-8")]
    NotUtf8,
}

/// A password prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinPrompt {
    pub title: String,
    pub description: String,
    pub prompt: String,
    /// Shown above the entry after a failed attempt.
    pub error: Option<String>,
    pub ok: String,
    pub cancel: String,
    pub timeout_secs: Option<u64>,
}

/// A question with three answers: pinentry's OK, "not OK" and Cancel buttons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfirmPrompt {
    pub title: String,
    pub description: String,
    pub ok: String,
    pub not_ok: String,
    pub cancel: String,
    pub timeout_secs: Option<u64>,
}

/// Which button of a [`ConfirmPrompt`] was pressed. Closing the window is `Cancel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    Ok,
    NotOk,
    Cancel,
}

/// How to start the pinentry program.
#[derive(Debug, Clone)]
pub struct Pinentry {
    program: OsString,
}

impl Pinentry {
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
        }
    }

    pub fn program(&self) -> &OsString {
        &self.program
    }

    /// Ask for a password. None: the user cancelled.
    pub fn get_pin(&self, p: &PinPrompt) -> Result<Option<SecretText>, PinentryError> {
        let mut s = self.start()?;
        let mut cmds = vec![
            cmd("SETTITLE", &p.title),
            cmd("SETDESC", &p.description),
            cmd("SETPROMPT", &p.prompt),
            cmd("SETOK", &p.ok),
            cmd("SETCANCEL", &p.cancel),
        ];
        if let Some(e) = &p.error {
            cmds.push(cmd("SETERROR", e));
        }
        if let Some(t) = p.timeout_secs {
            cmds.push(format!("SETTIMEOUT {t}"));
        }
        for c in &cmds {
            s.conn()?.transact(c)?;
        }
        let data = match s.conn()?.transact_data("GETPIN") {
            Ok(d) => d,
            Err(e) if e.gpg_code() == Some(assuan::GPG_ERR_CANCELED) => return Ok(None),
            Err(e) if e.gpg_code() == Some(assuan::GPG_ERR_TIMEOUT) => {
                return Err(PinentryError::Timeout)
            }
            Err(e) => return Err(e.into()),
        };
        s.bye();
        // An exact-size copy, so that making the secret (a boxed str) does not reallocate and
        // leave an unwiped copy behind; `data` is wiped when it drops.
        let mut exact = Vec::with_capacity(data.len());
        exact.extend_from_slice(&data);
        drop(data);
        match String::from_utf8(exact) {
            Ok(text) => Ok(Some(SecretText::from(text))),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(PinentryError::NotUtf8)
            }
        }
    }

    /// Ask a question with three buttons.
    pub fn confirm(&self, p: &ConfirmPrompt) -> Result<Button, PinentryError> {
        let mut s = self.start()?;
        let mut cmds = vec![
            cmd("SETTITLE", &p.title),
            cmd("SETDESC", &p.description),
            cmd("SETOK", &p.ok),
            cmd("SETNOTOK", &p.not_ok),
            cmd("SETCANCEL", &p.cancel),
        ];
        if let Some(t) = p.timeout_secs {
            cmds.push(format!("SETTIMEOUT {t}"));
        }
        for c in &cmds {
            s.conn()?.transact(c)?;
        }
        let answer = match s.conn()?.transact("CONFIRM") {
            Ok(()) => Button::Ok,
            Err(e) if e.gpg_code() == Some(assuan::GPG_ERR_NOT_CONFIRMED) => Button::NotOk,
            Err(e) if e.gpg_code() == Some(assuan::GPG_ERR_CANCELED) => Button::Cancel,
            Err(e) if e.gpg_code() == Some(assuan::GPG_ERR_TIMEOUT) => {
                return Err(PinentryError::Timeout)
            }
            Err(e) => return Err(e.into()),
        };
        s.bye();
        Ok(answer)
    }

    /// Show a message with an OK button.
    pub fn message(&self, title: &str, description: &str) -> Result<(), PinentryError> {
        let mut s = self.start()?;
        s.conn()?.transact(&cmd("SETTITLE", title))?;
        s.conn()?.transact(&cmd("SETDESC", description))?;
        match s.conn()?.transact("MESSAGE") {
            Ok(()) => {}
            Err(e) if e.gpg_code() == Some(assuan::GPG_ERR_CANCELED) => {}
            Err(e) => return Err(e.into()),
        }
        s.bye();
        Ok(())
    }

    fn start(&self) -> Result<Session, PinentryError> {
        let spawn_err = |source| PinentryError::Spawn {
            program: self.program.clone(),
            source,
        };
        let mut child = Command::new(&self.program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(spawn_err)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(spawn_err(std::io::Error::other("no pipes")));
        };
        let mut session = Session { child, conn: None };
        session.conn = Some(Conn::open(stdout, stdin)?);
        // Tell a terminal pinentry where to draw; graphical ones read DISPLAY themselves.
        for opt in terminal_options() {
            // Unknown options are refused by some pinentries: that is fine.
            let _ = session.conn()?.transact(&opt);
        }
        Ok(session)
    }
}

fn cmd(name: &str, arg: &str) -> String {
    let arg = assuan::escape(arg, assuan::MAX_LINE - name.len() - 2);
    if arg.is_empty() {
        name.to_owned()
    } else {
        format!("{name} {arg}")
    }
}

/// `OPTION ttyname=` and `ttytype=` when the tray runs on a terminal (or `GPG_TTY` names one).
fn terminal_options() -> Vec<String> {
    let tty = std::env::var("GPG_TTY")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(stdin_tty);
    let Some(tty) = tty else {
        return Vec::new();
    };
    let mut v = vec![cmd("OPTION", &format!("ttyname={tty}"))];
    if let Ok(term) = std::env::var("TERM") {
        v.push(cmd("OPTION", &format!("ttytype={term}")));
    }
    v
}

#[cfg(unix)]
fn stdin_tty() -> Option<String> {
    nix::unistd::ttyname(std::io::stdin())
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

#[cfg(not(unix))]
fn stdin_tty() -> Option<String> {
    None
}

/// A running pinentry: killed and reaped when dropped.
struct Session {
    child: Child,
    conn: Option<Conn<ChildStdout, ChildStdin>>,
}

impl Session {
    fn conn(&mut self) -> Result<&mut Conn<ChildStdout, ChildStdin>, AssuanError> {
        self.conn.as_mut().ok_or(AssuanError::Closed)
    }

    fn bye(&mut self) {
        if let Some(c) = self.conn.take() {
            c.bye();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.bye();
        // A pinentry exits on BYE or when its stdin closes; give it a moment, then make sure.
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_escaped_and_bounded() {
        assert_eq!(cmd("SETDESC", "a\nb 100%"), "SETDESC a%0Ab 100%25");
        assert_eq!(cmd("SETERROR", ""), "SETERROR");
        assert!(cmd("SETDESC", &"x".repeat(5000)).len() < assuan::MAX_LINE);
    }

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let p = Pinentry::new("/nonexistent/pinentry-for-tests");
        let e = p.get_pin(&PinPrompt::default()).unwrap_err();
        assert!(matches!(e, PinentryError::Spawn { .. }), "{e}");
        assert!(e.to_string().contains("TOKENBROKER_PINENTRY"));
    }
}
