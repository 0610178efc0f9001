//! Reading secrets: from the terminal without echo, or the first line of standard input, into
//! zeroizing memory that is sized once so that reading never leaves a copy behind.

use std::io::{BufRead, IsTerminal};

use tokenbroker_client::SecretText;
use zeroize::Zeroize;

use crate::failure::Failure;

/// Read the first line of standard input as a secret, without its line ending.
pub fn secret_line(what: &str) -> Result<SecretText, Failure> {
    // Sized up front so that reading does not reallocate and leave copies behind.
    let mut line = String::with_capacity(8192);
    let read = std::io::stdin().lock().read_line(&mut line);
    if let Err(e) = read {
        line.zeroize();
        return Err(Failure::Other(format!(
            "cannot read the {what} from standard input: {e}"
        )));
    }
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    if line.is_empty() {
        return Err(Failure::Usage(format!("no {what} on standard input")));
    }
    Ok(SecretText::from(line))
}

/// Prompt on the terminal without echo.
pub fn prompt_secret(prompt: &str) -> Result<SecretText, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(
            "no terminal to ask for the secret on: pipe it in with --password-stdin (or --client-secret-stdin)".into(),
        ));
    }
    rpassword::prompt_password(prompt)
        .map(SecretText::from)
        .map_err(|e| Failure::Other(format!("cannot read from the terminal: {e}")))
}
