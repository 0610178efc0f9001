//! The socket's framing: newline-delimited lines of at most [`MAX_LINE`] bytes, read by a
//! buffered reader of our own that wipes every byte it has handed out and its whole buffer when
//! dropped. Request lines may hold a password, and a plain `BufReader` would leave copies in
//! buffers it frees; no kept crate offers a zeroizing line reader, so this one is written here.

use tokenbroker_client::MAX_LINE;
use zeroize::Zeroize;

pub enum LineError {
    Eof,
    TooLong,
    Io(std::io::Error),
}

/// A buffered line reader that wipes every byte it has handed out, and its whole buffer when
/// dropped: request lines may hold a password, and a plain `BufReader` would leave a copy in a
/// freed buffer.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: tokio::io::AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; 8192],
            start: 0,
            end: 0,
        }
    }

    /// Read one line (without its newline) of at most MAX_LINE bytes, newline included.
    pub async fn read_line(&mut self, out: &mut Vec<u8>) -> Result<(), LineError> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                let n = self
                    .inner
                    .read(&mut self.buf)
                    .await
                    .map_err(LineError::Io)?;
                if n == 0 {
                    return Err(LineError::Eof);
                }
                self.end = n;
            }
            let available = &self.buf[self.start..self.end];
            let (take, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (i, true),
                None => (available.len(), false),
            };
            if out.len() + take + usize::from(done) > MAX_LINE {
                return Err(LineError::TooLong);
            }
            if out.capacity() - out.len() < take {
                // Grow into a fresh buffer and wipe the old one.
                let mut bigger = Vec::with_capacity((out.len() + take).max(out.capacity() * 2));
                bigger.extend_from_slice(out);
                out.zeroize();
                *out = bigger;
            }
            out.extend_from_slice(&available[..take]);
            let used = take + usize::from(done);
            self.buf[self.start..self.start + used].zeroize();
            self.start += used;
            if done {
                return Ok(());
            }
        }
    }
}

impl<R> Drop for LineReader<R> {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn line_reader_splits_lines_and_wipes_what_it_consumed() {
        let input: &[u8] = b"{\"password\":\"hunter2\"}\nsecond\npartial";
        let mut r = LineReader::new(input);
        let mut line = Vec::new();
        assert!(r.read_line(&mut line).await.is_ok());
        assert_eq!(line, b"{\"password\":\"hunter2\"}");
        line.clear();
        assert!(r.read_line(&mut line).await.is_ok());
        assert_eq!(line, b"second");
        // Everything handed out is wiped from the reader's buffer; only unread bytes remain.
        assert!(!r.buf.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(&r.buf[r.start..r.end], b"partial");
        line.clear();
        assert!(matches!(r.read_line(&mut line).await, Err(LineError::Eof)));
    }

    #[tokio::test]
    async fn line_reader_refuses_an_oversized_line() {
        let big = vec![b'a'; MAX_LINE + 10];
        let mut r = LineReader::new(&big[..]);
        let mut line = Vec::new();
        assert!(matches!(
            r.read_line(&mut line).await,
            Err(LineError::TooLong)
        ));
        // Exactly MAX_LINE bytes including the newline is allowed.
        let mut ok = vec![b'b'; MAX_LINE - 1];
        ok.push(b'\n');
        let mut r = LineReader::new(&ok[..]);
        line.clear();
        assert!(r.read_line(&mut line).await.is_ok());
        assert_eq!(line.len(), MAX_LINE - 1);
    }
}
