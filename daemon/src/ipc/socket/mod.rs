//! The local socket: newline-delimited JSON-RPC 2.0. This module binds it and runs the
//! connections; [`framing`] reads lines, [`peer`] identifies the caller by the kernel, [`rpc`]
//! decodes requests and calls the broker.
//!
//! In user mode the socket lives in a 0700 folder and is itself 0600, so only the owner's
//! processes can reach it; each connection's caller is identified from its peer credentials and
//! admitted by [`Broker::admit`], which refuses any other uid. A connection whose credentials
//! cannot be read is refused.
//!
//! Robustness: a line is at most [`MAX_LINE`] bytes; a longer one, a line that is not a JSON-RPC
//! request, or a first request that is not `Hello`, gets a JSON-RPC error and closes that
//! connection only. A connection idle longer than the read timeout is closed. The number of
//! connections is capped; the one over the cap gets a `busy` error.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokenbroker_client::protocol::{codes, notification_line, RpcError};
use tokenbroker_client::{BrokerError, ErrorKind, MAX_LINE};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use zeroize::Zeroize;

mod admission;
pub mod framing;
mod peer;
pub mod rpc;

use crate::broker::Broker;
use crate::error::{Error, Result, SocketProblem};
use crate::files::create_private_dir;
use crate::users::current_uid;
use admission::{Admission, Ticket};
use framing::{LineError, LineReader};
use rpc::Session;

#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Connections in all.
    pub max_connections: usize,
    /// Of those, the ones only the user's own tools may take.
    pub reserved: usize,
    /// The most one app (uid and executable) may hold.
    pub per_app: usize,
    /// The most subscribed connections one app may hold.
    pub subscriptions_per_app: usize,
    /// How long a connection may wait between requests, and how long one request may take to
    /// arrive.
    pub read_timeout: Duration,
    /// How long a new connection may take to say Hello.
    pub hello_timeout: Duration,
    /// How long one reply may take to be written (a peer that does not read is dropped).
    pub write_timeout: Duration,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            max_connections: 256,
            reserved: 32,
            per_app: 16,
            subscriptions_per_app: 4,
            read_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
        }
    }
}

impl SocketOptions {
    /// The defaults, with the per-app limits of the config.
    pub fn from_limits(l: &crate::config::LimitSettings) -> Self {
        Self {
            per_app: l.app_connections as usize,
            subscriptions_per_app: l.app_subscriptions as usize,
            ..Self::default()
        }
    }
}

/// Bind the socket (0600). Its folder is created 0700 when missing; with `own_folder` (the
/// default `$XDG_RUNTIME_DIR/tokenbroker`) an existing folder must be ours and is made 0700,
/// otherwise (a folder named by `--socket`) it is left as it is. A live daemon on the same path
/// is an error; a stale socket is replaced; any other file there is an error.
///
/// `everyone` (system mode): the socket is 0666 and a missing folder is made 0755, so that every
/// local user reaches it; each request is then authorized by the peer's uid.
pub fn bind(path: &Path, own_folder: bool, everyone: bool) -> Result<UnixListener> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fail = |problem| Error::Socket {
        path: path.to_owned(),
        problem,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| fail(SocketProblem::NoFolder))?;
    if everyone && !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
            .map_err(|e| fail(SocketProblem::CreateFolder(e)))?;
    }
    create_private_dir(dir).map_err(|e| fail(SocketProblem::CreateFolder(e)))?;
    let meta = std::fs::metadata(dir).map_err(|e| fail(SocketProblem::InspectFolder(e)))?;
    if own_folder && meta.uid() != current_uid() {
        return Err(fail(SocketProblem::FolderOwnedBy {
            folder: dir.to_owned(),
            uid: meta.uid(),
        }));
    }
    if own_folder && meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(SocketProblem::MakePrivate(e)))?;
    }
    if let Ok(existing) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !existing.file_type().is_socket() {
            return Err(fail(SocketProblem::NotASocket));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(fail(SocketProblem::InUse));
        }
        std::fs::remove_file(path).map_err(|e| fail(SocketProblem::RemoveStale(e)))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(SocketProblem::Bind(e)))?;
    peer::pass_credentials(&listener).map_err(|e| fail(SocketProblem::Bind(e)))?;
    let mode = if everyone { 0o666 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail(SocketProblem::Chmod(e)))?;
    Ok(listener)
}

/// The listening socket the service manager passed (socket activation, `sd_listen_fds(3)`:
/// `LISTEN_FDS` and `LISTEN_PID`), with the path it is bound to; None when none was passed.
/// Exactly one is accepted, and only a listening Unix stream socket bound to a path. Its mode is
/// set as [`bind`] would (0600, or 0666 with `everyone`), whatever the unit said, and the
/// kernel's per-message credentials are turned on as for a socket bound here.
#[cfg(target_os = "linux")]
pub fn inherited(everyone: bool) -> Result<Option<(UnixListener, std::path::PathBuf)>> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::fs::PermissionsExt;
    let fail = |what: String| Error::Socket {
        path: std::path::PathBuf::from("LISTEN_FDS"),
        problem: SocketProblem::Inherited(what),
    };
    // listen_fds checks LISTEN_PID against this process: fds meant for another are not taken.
    let fds = sd_notify::listen_fds().map_err(|e| fail(e.to_string()))?;
    let fds: Vec<_> = fds.collect();
    let fd = match fds.as_slice() {
        [] => return Ok(None),
        [fd] => *fd,
        more => {
            return Err(fail(format!(
                "{} sockets, and tokenbrokerd serves one",
                more.len()
            )))
        }
    };
    // SAFETY: sd_listen_fds(3): the service manager passed this descriptor to this process
    // (LISTEN_PID is ours) for it to own; nothing else in the process refers to it, and it is
    // taken exactly once, here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    use nix::sys::socket::{getsockopt, sockopt, SockType};
    let is_stream = getsockopt(&owned, sockopt::SockType).is_ok_and(|t| t == SockType::Stream);
    let listening = getsockopt(&owned, sockopt::AcceptConn).unwrap_or(false);
    if !is_stream || !listening {
        return Err(fail(
            "not a listening stream socket (ListenStream= in the unit)".into(),
        ));
    }
    let std_listener = std::os::unix::net::UnixListener::from(owned);
    let path = std_listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.to_owned()))
        .ok_or_else(|| fail("not a Unix socket bound to a path".into()))?;
    let problem = |p: SocketProblem| Error::Socket {
        path: path.clone(),
        problem: p,
    };
    std_listener
        .set_nonblocking(true)
        .map_err(|e| problem(SocketProblem::Bind(e)))?;
    peer::pass_credentials(&std_listener).map_err(|e| problem(SocketProblem::Bind(e)))?;
    let mode = if everyone { 0o666 } else { 0o600 };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| problem(SocketProblem::Chmod(e)))?;
    let listener =
        UnixListener::from_std(std_listener).map_err(|e| problem(SocketProblem::Bind(e)))?;
    Ok(Some((listener, path)))
}

#[cfg(not(target_os = "linux"))]
pub fn inherited(_everyone: bool) -> Result<Option<(UnixListener, std::path::PathBuf)>> {
    Ok(None)
}

/// Serve until the task is dropped. Each connection is identified and given a slot (or refused)
/// here, at once, so that refused connections cost nothing.
pub async fn serve(listener: UnixListener, broker: Broker, opts: SocketOptions) {
    let admission = Admission::new(opts.clone());
    let opts = Arc::new(opts);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((caller, pidfd)) = peer::identify(&stream) else {
            tracing::warn!("refused a connection whose peer credentials cannot be read");
            refuse(
                &stream,
                &BrokerError::new(ErrorKind::Denied, "cannot identify the caller"),
            );
            continue;
        };
        if let Err(e) = broker.admit(&caller) {
            refuse(&stream, &e);
            continue;
        }
        let ticket = match admission.admit(&caller, broker.is_trusted(&caller)) {
            Ok(t) => t,
            Err(e) => {
                refuse(&stream, &e);
                continue;
            }
        };
        let (broker, opts) = (broker.clone(), opts.clone());
        tokio::spawn(async move {
            connection(stream, caller, pidfd, ticket, broker, &opts).await;
        });
    }
}

/// Answer a connection that is not served with an error, without waiting, and close it.
fn refuse(stream: &UnixStream, e: &BrokerError) {
    let line = rpc::error_line(serde_json::Value::Null, RpcError::from(e));
    let _ = stream.try_write(&line);
}

/// Write one line, within the write timeout: a peer that does not read loses its connection.
async fn send(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    line: &[u8],
    opts: &SocketOptions,
) -> bool {
    matches!(
        tokio::time::timeout(opts.write_timeout, write.write_all(line)).await,
        Ok(Ok(()))
    )
}

/// One connection: a request per line until it closes, is idle past the read timeout, breaks
/// the protocol, or does not read its replies. A subscribed connection also delivers the events
/// its caller may see, and waits as long as it likes.
async fn connection(
    stream: UnixStream,
    caller: crate::policy::Caller,
    pidfd: Option<std::os::fd::OwnedFd>,
    ticket: Ticket,
    broker: Broker,
    opts: &SocketOptions,
) {
    // Accepted sockets inherit SO_PASSCRED from the listener; set it anyway, in case.
    let _ = peer::pass_credentials(&stream);
    let mut session = Session {
        ticket,
        pidfd,
        caller,
        greeted: false,
        subscription: None,
    };
    let (read, mut write) = stream.into_split();
    #[cfg(target_os = "linux")]
    let mut reader = LineReader::new(framing::Credited(read));
    #[cfg(not(target_os = "linux"))]
    let mut reader = LineReader::new(framing::Plain(read));
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    loop {
        line.zeroize();
        line.clear();
        let wait = if session.greeted {
            opts.read_timeout
        } else {
            opts.hello_timeout
        };
        let read = match session.subscription.as_mut() {
            None => tokio::time::timeout(wait, reader.read_line(&mut line)).await,
            // read_line is cancel-safe: bytes already read stay in `line`.
            Some(sub) => loop {
                tokio::select! {
                    r = reader.read_line(&mut line) => break Ok(r),
                    ev = sub.events.recv() => match ev {
                        Ok(ev) if !broker.event_is_for(&session.caller, &ev) => {}
                        Ok(ev) => {
                            if !send(&mut write, &notification_line(&ev), opts).await {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "a subscriber fell behind");
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            break Ok(Err(LineError::Eof));
                        }
                    },
                }
            },
        };
        let outcome = match read {
            Err(_) => {
                tracing::debug!(
                    pid = session.caller.pid,
                    "connection idle past the read timeout"
                );
                break;
            }
            Ok(Err(LineError::Eof)) => break,
            Ok(Err(LineError::Io(e))) => {
                tracing::debug!(error = %e, "read failed");
                break;
            }
            Ok(Err(LineError::TooLong)) => Err(rpc::rpc_error(
                codes::INVALID_REQUEST,
                format!("request line longer than {MAX_LINE} bytes"),
            )),
            Ok(Ok(senders)) => match session.same_process(senders) {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::warn!(
                        target: "tokenbroker::audit",
                        decision = "deny",
                        uid = session.caller.uid,
                        pid = session.caller.pid,
                        exe = %session.caller.exe_display(),
                        "{}", e.message
                    );
                    Err(RpcError::from(&e))
                }
            },
        };
        let (mut reply, keep_open) = match outcome {
            Err(e) => (rpc::error_line(serde_json::Value::Null, e), false),
            Ok(()) => rpc::handle(&line, &broker, &mut session).await,
        };
        line.zeroize();
        let written = send(&mut write, &reply, opts).await;
        reply.zeroize();
        if !written || !keep_open {
            break;
        }
    }
    line.zeroize();
}
