//! The client side of the Assuan protocol, as far as pinentry needs it: one command line, then
//! data (`D`), status (`S`) and comment (`#`) lines until `OK` or `ERR`.
//!
//! Lines are read one byte at a time straight from the pipe into a zeroizing buffer of fixed
//! capacity: no reader buffer keeps a copy of a `D` line that holds a password.

use std::io::{Read, Write};

use zeroize::{Zeroize, Zeroizing};

/// The longest line Assuan allows, newline included.
pub const MAX_LINE: usize = 1000;

/// libgpg-error codes (the low 16 bits of an `ERR` code) that pinentry answers with.
pub const GPG_ERR_TIMEOUT: u32 = 62;
pub const GPG_ERR_CANCELED: u32 = 99;
pub const GPG_ERR_NOT_CONFIRMED: u32 = 114;

#[derive(Debug, thiserror::Error)]
pub enum AssuanError {
    #[error("the prompt program closed the connection")]
    Closed,
    #[error("cannot talk to the prompt program: {0}")]
    Io(#[from] std::io::Error),
    #[error("the prompt program broke the protocol: {0}")]
    Protocol(String),
    #[error("the prompt program answered ERR {code}: {message}")]
    Err { code: u32, message: String },
}

impl AssuanError {
    /// The libgpg-error code without its source, for an `ERR` answer.
    pub fn gpg_code(&self) -> Option<u32> {
        match self {
            AssuanError::Err { code, .. } => Some(code & 0xffff),
            _ => None,
        }
    }
}

/// Percent-escape a command parameter: `%`, CR, LF and every other control character, so
/// that the line stays one line and the server decodes exactly `s`. The result is cut (at a
/// character boundary, marked with "…") so that it fits in `max` bytes.
pub fn escape(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let piece = if c == '%' || (c as u32) < 0x20 || c == '\u{7f}' {
            format!("%{:02X}", c as u32)
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > max.saturating_sub('…'.len_utf8()) {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// Decode `%XX` escapes of a `D` line into `out` (which the caller zeroizes). An invalid
/// escape is an error, not guessed at.
pub fn unescape_into(data: &[u8], out: &mut Vec<u8>) -> Result<(), AssuanError> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'%' {
            let (Some(h), Some(l)) = (
                data.get(i + 1).copied().and_then(hex),
                data.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(AssuanError::Protocol(
                    "a bad %-escape in a data line".into(),
                ));
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    Ok(())
}

/// One Assuan connection over a reader and a writer (a child's stdout and stdin).
pub struct Conn<R: Read, W: Write> {
    reader: R,
    writer: W,
}

impl<R: Read, W: Write> Conn<R, W> {
    /// Take over a fresh connection: the server greets with `OK`.
    pub fn open(reader: R, writer: W) -> Result<Self, AssuanError> {
        let mut conn = Conn { reader, writer };
        conn.finish(None)?;
        Ok(conn)
    }

    /// Send `command` (already escaped) and wait for its `OK`. Data lines are refused: use
    /// [`Conn::transact_data`] for commands that return data.
    pub fn transact(&mut self, command: &str) -> Result<(), AssuanError> {
        self.send(command)?;
        self.finish(None)
    }

    /// Send `command` and collect its decoded data lines into a zeroizing buffer.
    pub fn transact_data(&mut self, command: &str) -> Result<Zeroizing<Vec<u8>>, AssuanError> {
        self.send(command)?;
        // Capacity fixed up front so that pushing never reallocates (and leaves a copy behind).
        let mut data = Zeroizing::new(Vec::with_capacity(MAX_LINE * 4));
        self.finish(Some(&mut data))?;
        Ok(data)
    }

    fn send(&mut self, command: &str) -> Result<(), AssuanError> {
        if command.len() + 1 > MAX_LINE || command.contains(['\n', '\r']) {
            return Err(AssuanError::Protocol(
                "a command line too long or not escaped".into(),
            ));
        }
        let mut line = Vec::with_capacity(command.len() + 1);
        line.extend_from_slice(command.as_bytes());
        line.push(b'\n');
        let r = self
            .writer
            .write_all(&line)
            .and_then(|()| self.writer.flush());
        line.zeroize();
        r.map_err(AssuanError::from)
    }

    /// Read lines until `OK` or `ERR`.
    fn finish(&mut self, mut data: Option<&mut Vec<u8>>) -> Result<(), AssuanError> {
        let mut line = Zeroizing::new(Vec::with_capacity(MAX_LINE));
        // A server may send any number of status and comment lines; a bound keeps a broken
        // one from holding the tray forever.
        for _ in 0..10_000 {
            line.clear();
            self.read_line(&mut line)?;
            let l: &[u8] = &line;
            if l == b"OK" || l.starts_with(b"OK ") {
                return Ok(());
            }
            if l == b"ERR" || l.starts_with(b"ERR ") {
                let rest = String::from_utf8_lossy(l.get(4..).unwrap_or_default()).into_owned();
                let (code, message) = rest.split_once(' ').unwrap_or((rest.as_str(), ""));
                return Err(AssuanError::Err {
                    code: code.parse().unwrap_or(0),
                    message: message.to_owned(),
                });
            }
            if l.starts_with(b"D ") {
                let Some(out) = data.as_deref_mut() else {
                    return Err(AssuanError::Protocol("unexpected data".into()));
                };
                if out.len() + l.len() > out.capacity() {
                    return Err(AssuanError::Protocol("too much data".into()));
                }
                unescape_into(&l[2..], out)?;
                continue;
            }
            if l.starts_with(b"S ") || l == b"S" || l.starts_with(b"#") || l.is_empty() {
                continue;
            }
            if l.starts_with(b"INQUIRE") {
                // Nothing of ours is ever inquired: cancel it.
                self.send("CAN")?;
                continue;
            }
            return Err(AssuanError::Protocol(format!(
                "unexpected line {:?}",
                String::from_utf8_lossy(&l[..l.len().min(40)])
            )));
        }
        Err(AssuanError::Protocol("no end of the reply".into()))
    }

    /// One line without its newline, at most [`MAX_LINE`] bytes.
    fn read_line(&mut self, line: &mut Vec<u8>) -> Result<(), AssuanError> {
        let mut byte = [0u8; 1];
        loop {
            match self.reader.read(&mut byte) {
                Ok(0) => return Err(AssuanError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            if byte[0] == b'\n' {
                byte.zeroize();
                return Ok(());
            }
            if line.len() + 1 >= MAX_LINE {
                byte.zeroize();
                return Err(AssuanError::Protocol(
                    "a line longer than 1000 bytes".into(),
                ));
            }
            line.push(byte[0]);
        }
    }

    /// Say goodbye; errors do not matter any more.
    pub fn bye(mut self) {
        let _ = self.send("BYE");
    }
}

/// The fuzz target's entry (fuzz/): a pinentry's lines, however malformed, as the tray reads
/// them: the greeting, then the replies of a command that returns data. Never a panic.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let mut out = Vec::new();
    if let Ok(mut conn) = Conn::open(data, &mut out) {
        for _ in 0..4 {
            if conn.transact_data("GETPIN").is_err() {
                break;
            }
        }
    }
    let mut decoded = Vec::new();
    let _ = unescape_into(data, &mut decoded);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_percent_and_line_breaks() {
        assert_eq!(escape("a%b\nc\rd", 100), "a%25b%0Ac%0Dd");
        assert_eq!(escape("tab\there", 100), "tab%09here");
        assert_eq!(escape("ünï “q”", 100), "ünï “q”");
    }

    #[test]
    fn escape_cuts_long_text_at_a_boundary() {
        let s = "é".repeat(600);
        let e = escape(&s, 100);
        assert!(e.len() <= 100, "{}", e.len());
        assert!(e.ends_with('…'));
        // Never in the middle of an escape sequence.
        let e = escape(&"%".repeat(50), 20);
        assert!(e.len() <= 20);
        assert!(e.trim_end_matches('…').len() % 3 == 0, "{e}");
    }

    #[test]
    fn unescape_decodes_and_refuses_bad_escapes() {
        let mut out = Vec::new();
        unescape_into(b"p%25ss%0Aw%c3%BCrd", &mut out).unwrap();
        assert_eq!(out, "p%ss\nwürd".as_bytes());
        assert!(unescape_into(b"bad%2", &mut Vec::new()).is_err());
        assert!(unescape_into(b"bad%zz", &mut Vec::new()).is_err());
    }

    fn conn(server: &str) -> Conn<&[u8], Vec<u8>> {
        Conn::open(server.as_bytes(), Vec::new()).unwrap()
    }

    #[test]
    fn reads_data_status_and_errors() {
        let mut c = conn("OK Pleased to meet you\n# comment\nS PASSWORD_FROM_CACHE\nD hun%25ter\nD 2\nOK\nERR 83886179 Operation cancelled <Pinentry>\n");
        let data = c.transact_data("GETPIN").unwrap();
        assert_eq!(&data[..], b"hun%ter2");
        let e = c.transact("CONFIRM").unwrap_err();
        assert_eq!(e.gpg_code(), Some(GPG_ERR_CANCELED));
        assert_eq!(c.writer, b"GETPIN\nCONFIRM\n");
        assert!(matches!(c.transact("X"), Err(AssuanError::Closed)));
    }

    #[test]
    fn refuses_unescaped_commands_and_long_lines() {
        let mut c = conn("OK\n");
        assert!(c.transact("SETDESC a\nb").is_err());
        let long = format!("OK\nD {}\nOK\n", "x".repeat(1200));
        let mut c = conn(&long);
        assert!(matches!(
            c.transact_data("GETPIN"),
            Err(AssuanError::Protocol(_))
        ));
    }

    #[test]
    fn greeting_must_be_ok() {
        assert!(Conn::open(&b"ERR 1 no\n"[..], Vec::new()).is_err());
        assert!(Conn::open(&b""[..], Vec::new()).is_err());
    }
}
