//! The socket's framing: newline-delimited lines of at most [`MAX_LINE`] bytes, read by a
//! buffered reader of our own that wipes every byte it has handed out and its whole buffer when
//! dropped. Request lines may hold a password, and a plain `BufReader` would leave copies in
//! buffers it frees; no kept crate offers a zeroizing line reader, so this one is written here.
//!
//! It also says who sent each line: on the socket (SO_PASSCRED) the kernel attaches the
//! sender's pid to every chunk of data and never joins chunks of different senders in one
//! read, so a line sent by another process than the one that connected (a child that inherited
//! the connection) is seen as such.

use std::future::Future;
use std::io;

use tokenbroker_client::MAX_LINE;
use zeroize::Zeroize;

/// Where a line reader's bytes come from.
pub trait Source {
    /// Read into `buf`: how many bytes, and the pid of the process that sent them, when the
    /// kernel says.
    fn read_chunk<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, Option<i32>)>> + Send + 'a;
}

/// Any byte stream, with no word on its senders (the unit tests read from slices).
pub struct Plain<R>(pub R);

impl<R: tokio::io::AsyncRead + Unpin + Send> Source for Plain<R> {
    async fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<(usize, Option<i32>)> {
        use tokio::io::AsyncReadExt;
        self.0.read(buf).await.map(|n| (n, None))
    }
}

/// The socket's read half, read with recvmsg so that every chunk comes with its sender's
/// credentials (SCM_CREDENTIALS).
#[cfg(target_os = "linux")]
pub struct Credited(pub tokio::net::unix::OwnedReadHalf);

#[cfg(target_os = "linux")]
impl Source for Credited {
    async fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<(usize, Option<i32>)> {
        loop {
            self.0.readable().await?;
            let stream: &tokio::net::UnixStream = self.0.as_ref();
            match stream.try_io(tokio::io::Interest::READABLE, || recv_credited(stream, buf)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn recv_credited(
    stream: &tokio::net::UnixStream,
    buf: &mut [u8],
) -> io::Result<(usize, Option<i32>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
    use std::os::fd::AsRawFd;
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(UnixCredentials);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut pid = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmCredentials(cred) = c {
            pid = Some(cred.pid());
        }
    }
    Ok((msg.bytes, pid))
}

/// Who sent one line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Senders {
    /// The pid of its first chunk's sender, when the kernel said.
    pub pid: Option<i32>,
    /// Its chunks came from more than one process.
    pub mixed: bool,
}

impl Senders {
    fn add(&mut self, pid: Option<i32>) {
        match (self.pid, pid) {
            (None, p) => self.pid = p,
            (Some(a), Some(b)) if a != b => self.mixed = true,
            _ => {}
        }
    }
}

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
    /// The sender of the bytes in `buf`.
    buf_sender: Option<i32>,
    /// The senders of the line being read.
    line: Senders,
}

impl<R: Source> LineReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; 8192],
            start: 0,
            end: 0,
            buf_sender: None,
            line: Senders::default(),
        }
    }

    /// Read one line (without its newline) of at most MAX_LINE bytes, newline included, and
    /// say who sent it. Cancel-safe: what was read stays in `out` and in the reader.
    pub async fn read_line(&mut self, out: &mut Vec<u8>) -> Result<Senders, LineError> {
        loop {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                let (n, sender) = self
                    .inner
                    .read_chunk(&mut self.buf)
                    .await
                    .map_err(LineError::Io)?;
                if n == 0 {
                    return Err(LineError::Eof);
                }
                self.end = n;
                self.buf_sender = sender;
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
            self.line.add(self.buf_sender);
            if done {
                return Ok(std::mem::take(&mut self.line));
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
        let mut r = LineReader::new(Plain(input));
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

    /// A source whose chunks come from the given senders.
    struct From(Vec<(&'static [u8], i32)>);

    impl Source for From {
        fn read_chunk<'a>(
            &'a mut self,
            buf: &'a mut [u8],
        ) -> impl Future<Output = io::Result<(usize, Option<i32>)>> + Send + 'a {
            let next = (!self.0.is_empty()).then(|| self.0.remove(0));
            async move {
                Ok(match next {
                    Some((bytes, pid)) => {
                        buf[..bytes.len()].copy_from_slice(bytes);
                        (bytes.len(), Some(pid))
                    }
                    None => (0, None),
                })
            }
        }
    }

    #[tokio::test]
    async fn each_line_says_who_sent_it() {
        let mut r = LineReader::new(From(vec![(b"one\ntw", 10), (b"o\n", 11), (b"three\n", 11)]));
        let mut line = Vec::new();
        let s = r.read_line(&mut line).await.ok().unwrap();
        assert_eq!((s.pid, s.mixed), (Some(10), false));
        line.clear();
        let s = r.read_line(&mut line).await.ok().unwrap();
        assert_eq!(line, b"two");
        assert_eq!(
            (s.pid, s.mixed),
            (Some(10), true),
            "written by two processes"
        );
        line.clear();
        let s = r.read_line(&mut line).await.ok().unwrap();
        assert_eq!((s.pid, s.mixed), (Some(11), false));
    }

    #[tokio::test]
    async fn line_reader_refuses_an_oversized_line() {
        let big = vec![b'a'; MAX_LINE + 10];
        let mut r = LineReader::new(Plain(&big[..]));
        let mut line = Vec::new();
        assert!(matches!(
            r.read_line(&mut line).await,
            Err(LineError::TooLong)
        ));
        // Exactly MAX_LINE bytes including the newline is allowed.
        let mut ok = vec![b'b'; MAX_LINE - 1];
        ok.push(b'\n');
        let mut r = LineReader::new(Plain(&ok[..]));
        line.clear();
        assert!(r.read_line(&mut line).await.is_ok());
        assert_eq!(line.len(), MAX_LINE - 1);
    }
}
