//! The local socket: newline-delimited JSON-RPC 2.0.
//!
//! Threat model of the check below: in user mode the socket lives in a 0700 folder and is itself
//! 0600, so only the owner's processes can reach it; the kernel's peer credentials (SO_PEERCRED)
//! are read on every connection anyway and any other uid is refused, so that a mistake in the
//! folder's permissions (or a root-created socket) does not open the broker to other users. A
//! connection whose credentials cannot be read is refused. The pid is resolved to an executable
//! for the audit log (and, with the policy work, for authorization).
//!
//! Robustness: a line is at most [`MAX_LINE`] bytes; a longer one, a line that is not a JSON-RPC
//! request, or a first request that is not `Hello`, gets a JSON-RPC error and closes that
//! connection only. A connection idle longer than the read timeout is closed. The number of
//! connections is capped; the one over the cap gets a `busy` error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokenbroker_client::protocol::{codes, methods, RawRequest, Response, RpcError, RpcErrorData};
use tokenbroker_client::types::*;
use tokenbroker_client::{BrokerError, ErrorKind, MAX_LINE, PROTOCOL_VERSION};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use zeroize::Zeroize;

use crate::broker::{AgentGuard, Broker, Event, Mode};
use crate::caller::{current_uid, exe_of, Caller};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct SocketOptions {
    pub max_connections: usize,
    /// How long a connection may wait between requests, and how long one request may take to
    /// arrive.
    pub read_timeout: Duration,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            max_connections: 128,
            read_timeout: Duration::from_secs(30),
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
    let fail = |message: String| Error::Socket {
        path: path.to_owned(),
        message,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| fail("the socket path has no folder".into()))?;
    if everyone && !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
            .map_err(|e| fail(format!("cannot create its folder: {e}")))?;
    }
    crate::config::create_private_dir(dir)
        .map_err(|e| fail(format!("cannot create its folder: {e}")))?;
    let meta =
        std::fs::metadata(dir).map_err(|e| fail(format!("cannot inspect its folder: {e}")))?;
    if own_folder && meta.uid() != current_uid() {
        return Err(fail(format!(
            "its folder {} belongs to uid {}, not to this user",
            dir.display(),
            meta.uid()
        )));
    }
    if own_folder && meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(format!("cannot make its folder private: {e}")))?;
    }
    if let Ok(existing) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !existing.file_type().is_socket() {
            return Err(fail(
                "a file that is not a socket is in the way: move it or choose another --socket"
                    .into(),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(fail(
                "another tokenbrokerd is already serving it (stop it, or use --replace)".into(),
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| fail(format!("cannot remove the stale socket: {e}")))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(format!("cannot bind: {e}")))?;
    let mode = if everyone { 0o666 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail(format!("cannot set its permissions: {e}")))?;
    Ok(listener)
}

/// Serve until the task is dropped.
pub async fn serve(listener: UnixListener, broker: Broker, opts: SocketOptions) {
    let slots = Arc::new(Semaphore::new(opts.max_connections));
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(
                stream,
                BrokerError::new(
                    ErrorKind::Busy,
                    "the daemon is at its connection limit: try again shortly",
                ),
            ));
            continue;
        };
        let (broker, opts) = (broker.clone(), opts.clone());
        tokio::spawn(async move {
            connection(stream, broker, &opts).await;
            drop(permit);
        });
    }
}

async fn refuse(mut stream: UnixStream, e: BrokerError) {
    let line = error_line(serde_json::Value::Null, RpcError::from(&e));
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&line)).await;
}

/// Identify the peer by the kernel. None when its credentials cannot be read.
///
/// The executable is read through the peer's pidfd (SO_PEERPIDFD, Linux 6.5+) where the kernel
/// offers one: the pidfd pins the process that connected, so a pid reused after it exited cannot
/// pass for it. Older kernels: through the pid from SO_PEERCRED.
fn identify(stream: &UnixStream) -> Option<Caller> {
    let cred = stream.peer_cred().ok()?;
    let (pid, exe) = match peer_pidfd_exe(stream) {
        Some(Some((pid, exe))) => (Some(pid), Some(exe)),
        // The pidfd says the caller is gone: its pid may already be another process's.
        Some(None) => (cred.pid(), None),
        None => (cred.pid(), cred.pid().and_then(exe_of)),
    };
    Some(Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        groups: peer_groups(stream),
        pid,
        exe,
        transport: "socket",
        client_hint: None,
    })
}

/// The peer's supplementary groups at connect time (SO_PEERGROUPS); empty when unavailable.
#[cfg(target_os = "linux")]
fn peer_groups(stream: &UnixStream) -> Vec<u32> {
    use std::os::fd::AsRawFd;
    const GID: usize = std::mem::size_of::<libc::gid_t>();
    // 64 groups fit most users; on ERANGE the kernel says how many bytes it needs (at most
    // NGROUPS_MAX, 65536 groups).
    let mut want = 64 * GID;
    for _ in 0..2 {
        let mut groups = vec![0 as libc::gid_t; want / GID];
        let mut len = want as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `groups`, and says how many.
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r == 0 {
            groups.truncate(len as usize / GID);
            return groups;
        }
        let erange = std::io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE);
        if !erange || len as usize <= want || len as usize > 65_536 * GID {
            break;
        }
        want = len as usize;
    }
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
fn peer_groups(_stream: &UnixStream) -> Vec<u32> {
    Vec::new()
}

/// None: the kernel offers no pidfd. Some(None): it does, and the process is gone.
#[cfg(target_os = "linux")]
fn peer_pidfd_exe(stream: &UnixStream) -> Option<Option<(i32, std::path::PathBuf)>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const SO_PEERPIDFD: libc::c_int = 77;
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `fd`.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 || fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this new descriptor; we own it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Some(crate::caller::exe_of_pidfd(std::os::fd::AsFd::as_fd(
        &owned,
    )))
}

#[cfg(not(target_os = "linux"))]
fn peer_pidfd_exe(_stream: &UnixStream) -> Option<Option<(i32, std::path::PathBuf)>> {
    None
}

async fn connection(stream: UnixStream, broker: Broker, opts: &SocketOptions) {
    let Some(mut caller) = identify(&stream) else {
        tracing::warn!("refused a connection whose peer credentials cannot be read");
        return refuse(
            stream,
            BrokerError::new(ErrorKind::Denied, "cannot identify the caller"),
        )
        .await;
    };
    if broker.mode() == Mode::User && caller.uid != current_uid() {
        tracing::warn!(
            target: "tokenbroker::audit",
            decision = "deny",
            uid = caller.uid,
            pid = caller.pid,
            exe = %caller.exe_display(),
            "refused a connection from another user"
        );
        return refuse(
            stream,
            BrokerError::new(
                ErrorKind::Denied,
                "this tokenbrokerd serves only its own user",
            ),
        )
        .await;
    }
    let (read, mut write) = stream.into_split();
    let mut reader = LineReader::new(read);
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut greeted = false;
    let mut subscribe: Option<SubscribeParams> = None;
    let mut events: Option<tokio::sync::broadcast::Receiver<Event>> = None;
    let mut _agent: Option<AgentGuard> = None;
    loop {
        line.zeroize();
        line.clear();
        let read = match events.as_mut() {
            None => tokio::time::timeout(opts.read_timeout, reader.read_line(&mut line)).await,
            // A subscribed connection waits as long as it likes, and gets events meanwhile.
            // read_line is cancel-safe: bytes already read stay in `line`.
            Some(rx) => loop {
                tokio::select! {
                    r = reader.read_line(&mut line) => break Ok(r),
                    ev = rx.recv() => match ev {
                        Ok(ev) if !broker.event_is_for(&caller, &ev) => {}
                        Ok(ev) => {
                            if write.write_all(&notification_line(&ev)).await.is_err() {
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
                tracing::debug!(pid = caller.pid, "connection idle past the read timeout");
                break;
            }
            Ok(Err(LineError::Eof)) => break,
            Ok(Err(LineError::Io(e))) => {
                tracing::debug!(error = %e, "read failed");
                break;
            }
            Ok(Err(LineError::TooLong)) => Err(rpc_error(
                codes::INVALID_REQUEST,
                format!("request line longer than {MAX_LINE} bytes"),
            )),
            Ok(Ok(())) => Ok(()),
        };
        let (reply, keep_open) = match outcome {
            Err(e) => (error_line(serde_json::Value::Null, e), false),
            Ok(()) => handle(&line, &broker, &mut caller, &mut greeted, &mut subscribe).await,
        };
        line.zeroize();
        if events.is_none() {
            if let Some(sub) = &subscribe {
                events = Some(broker.subscribe());
                if sub.consent_agent {
                    _agent = Some(broker.consent_agent(&caller));
                }
            }
        }
        let mut reply = reply;
        let written = write.write_all(&reply).await;
        reply.zeroize();
        if written.is_err() || !keep_open {
            break;
        }
    }
    line.zeroize();
}

/// An event as a JSON-RPC notification line.
fn notification_line(ev: &Event) -> Vec<u8> {
    let n = match ev.clone() {
        Event::AccountChanged { account, state } => Notification::AccountChanged { account, state },
        Event::SignInRequired { account, reason } => {
            Notification::SignInRequired { account, reason }
        }
        Event::ConsentRequired(request) => Notification::ConsentRequired { request },
    };
    let method = match &n {
        Notification::AccountChanged { .. } => "AccountChanged",
        Notification::SignInRequired { .. } => "SignInRequired",
        Notification::ConsentRequired { .. } => "ConsentRequired",
    };
    let mut v = serde_json::to_vec(&tokenbroker_client::protocol::Event {
        jsonrpc: "2.0".into(),
        method: method.into(),
        params: n,
    })
    .unwrap_or_default();
    v.push(b'\n');
    v
}

enum LineError {
    Eof,
    TooLong,
    Io(std::io::Error),
}

/// A buffered line reader that wipes every byte it has handed out, and its whole buffer when
/// dropped: request lines may hold a password, and a plain `BufReader` would leave a copy in a
/// freed buffer.
struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: tokio::io::AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; 8192],
            start: 0,
            end: 0,
        }
    }

    /// Read one line (without its newline) of at most MAX_LINE bytes, newline included.
    async fn read_line(&mut self, out: &mut Vec<u8>) -> Result<(), LineError> {
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

fn rpc_error(code: i64, message: impl Into<String>) -> RpcError {
    let kind = ErrorKind::from_rpc_code(code);
    RpcError {
        code,
        message: message.into(),
        data: Some(RpcErrorData { kind }),
    }
}

fn error_line(id: serde_json::Value, error: RpcError) -> Vec<u8> {
    let resp: Response<()> = Response {
        jsonrpc: "2.0".into(),
        id,
        result: None,
        error: Some(error),
    };
    let mut v = serde_json::to_vec(&resp).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    v
}

fn result_line<R: Serialize>(id: serde_json::Value, result: R) -> Vec<u8> {
    let resp = Response {
        jsonrpc: "2.0".into(),
        id: id.clone(),
        result: Some(result),
        error: None,
    };
    // Exactly sized: a reply may hold an access token, and is wiped after it is written.
    match tokenbroker_client::protocol::to_line(&resp) {
        Ok(v) => v,
        Err(e) => error_line(
            id,
            rpc_error(
                codes::INTERNAL_ERROR,
                format!("cannot encode the reply: {e}"),
            ),
        ),
    }
}

fn params<P: DeserializeOwned>(raw: Option<&serde_json::value::RawValue>) -> Result<P, RpcError> {
    let text = raw.map(|r| r.get()).unwrap_or("{}");
    if !text.trim_start().starts_with('{') {
        return Err(rpc_error(
            codes::INVALID_PARAMS,
            "params must be an object (by-name parameters)",
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        // serde's message names the field, never a value of ours.
        rpc_error(codes::INVALID_PARAMS, format!("invalid params: {e}"))
    })
}

/// Handle one request line. Returns the reply line and whether to keep the connection open.
async fn handle(
    line: &[u8],
    broker: &Broker,
    caller: &mut Caller,
    greeted: &mut bool,
    subscribe: &mut Option<SubscribeParams>,
) -> (Vec<u8>, bool) {
    let req: RawRequest = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            let code = if e.is_data() {
                codes::INVALID_REQUEST
            } else {
                codes::PARSE_ERROR
            };
            return (
                error_line(
                    serde_json::Value::Null,
                    rpc_error(code, format!("malformed request: {e}")),
                ),
                false,
            );
        }
    };
    let id = match &req.id {
        Some(id @ (serde_json::Value::Number(_) | serde_json::Value::String(_))) => id.clone(),
        _ => {
            return (
                error_line(
                    serde_json::Value::Null,
                    rpc_error(
                        codes::INVALID_REQUEST,
                        "a request needs a number or string id",
                    ),
                ),
                false,
            )
        }
    };
    if req.jsonrpc != "2.0" {
        return (
            error_line(
                id,
                rpc_error(codes::INVALID_REQUEST, "jsonrpc must be \"2.0\""),
            ),
            false,
        );
    }
    if !*greeted && req.method != methods::HELLO {
        return (
            error_line(
                id,
                rpc_error(codes::INVALID_REQUEST, "the first request must be Hello"),
            ),
            false,
        );
    }
    match dispatch(&req.method, req.params, broker, caller, greeted, subscribe).await {
        Ok(reply) => (reply(id), true),
        Err(Failure::Rpc(e)) => (error_line(id, e), true),
        Err(Failure::Broker(e)) => (error_line(id, RpcError::from(&e)), true),
        Err(Failure::Close(e)) => (error_line(id, e), false),
    }
}

enum Failure {
    Rpc(RpcError),
    Broker(BrokerError),
    /// Reply, then close the connection.
    Close(RpcError),
}

impl From<RpcError> for Failure {
    fn from(e: RpcError) -> Self {
        Failure::Rpc(e)
    }
}

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Self {
        Failure::Broker(e)
    }
}

type Reply = Box<dyn FnOnce(serde_json::Value) -> Vec<u8> + Send>;

fn ok<R: Serialize + Send + 'static>(r: R) -> std::result::Result<Reply, Failure> {
    Ok(Box::new(move |id| result_line(id, r)))
}

async fn dispatch(
    method: &str,
    raw: Option<&serde_json::value::RawValue>,
    broker: &Broker,
    caller: &mut Caller,
    greeted: &mut bool,
    subscribe: &mut Option<SubscribeParams>,
) -> std::result::Result<Reply, Failure> {
    match method {
        methods::HELLO => {
            let p: HelloParams = params(raw).map_err(Failure::Close)?;
            if !p.protocol.compatible_with(PROTOCOL_VERSION) {
                return Err(Failure::Close(RpcError::from(&BrokerError::new(
                    ErrorKind::Protocol,
                    format!(
                        "this daemon speaks protocol {PROTOCOL_VERSION}, the client {}: upgrade the older one",
                        p.protocol
                    ),
                ))));
            }
            caller.client_hint = p
                .client
                .map(|c| c.chars().filter(|c| !c.is_control()).take(64).collect());
            *greeted = true;
            ok(HelloReply {
                protocol: PROTOCOL_VERSION,
                daemon_version: env!("CARGO_PKG_VERSION").into(),
            })
        }
        methods::GET_TOKEN => ok(broker.get_token(caller, params(raw)?).await?),
        methods::LIST_ACCOUNTS => ok(broker.list_accounts(caller)),
        methods::STATUS => ok(broker.status(caller)),
        methods::SIGN_IN => {
            let p: SignInParams = params(raw)?;
            ok(broker.sign_in(caller, &p.account, p.password).await?)
        }
        methods::SIGN_OUT => {
            let p: AccountParams = params(raw)?;
            ok(broker.sign_out(caller, &p.account).await?)
        }
        methods::ADD_PROVIDER => ok(broker.add_provider(caller, params(raw)?).await?),
        methods::LIST_PROVIDERS => ok(broker.list_providers().await),
        methods::SET_APP_POLICY => ok(broker.set_app_policy(caller, params(raw)?).await?),
        methods::REMOVE_APP_POLICY => {
            let p: RemoveAppPolicyParams = params(raw)?;
            ok(broker.remove_app_policy(caller, &p.account, &p.exe).await?)
        }
        methods::GET_POLICY => {
            let p: PolicyQuery = params(raw)?;
            ok(broker.get_policy(caller, p.account.as_deref())?)
        }
        methods::LIST_CONSENTS => ok(broker.list_consents(caller)?),
        methods::INTROSPECT => {
            let p: AccountParams = params(raw)?;
            ok(broker.introspect(caller, &p.account).await?)
        }
        methods::LIST_PRESETS => ok(Broker::list_presets()),
        methods::ANSWER_CONSENT => {
            let p: AnswerConsentParams = params(raw)?;
            ok(broker.answer_consent(caller, p.id, p.answer)?)
        }
        methods::READ_AUDIT => {
            let p: AuditQuery = params(raw)?;
            ok(broker.read_audit(caller, &p)?)
        }
        methods::SUBSCRIBE => {
            let p: SubscribeParams = params(raw)?;
            if p.consent_agent {
                broker.require_trusted(caller, "act as a consent agent")?;
            }
            *subscribe = Some(p);
            ok(Done {})
        }
        methods::REMOVE_PROVIDER => {
            let p: NameParams = params(raw)?;
            ok(broker.remove_provider(caller, &p.name).await?)
        }
        methods::SET_CLIENT_SECRET => ok(broker.set_client_secret(caller, params(raw)?).await?),
        methods::ADD_ACCOUNT => ok(broker.add_account(caller, params(raw)?).await?),
        methods::REMOVE_ACCOUNT => {
            let p: NameParams = params(raw)?;
            ok(broker.remove_account(caller, &p.name).await?)
        }
        other => Err(Failure::Rpc(rpc_error(
            codes::METHOD_NOT_FOUND,
            format!("no method {:?}", other.chars().take(64).collect::<String>()),
        ))),
    }
}

/// The default socket path: `$XDG_RUNTIME_DIR/tokenbroker/socket`.
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("tokenbroker").join("socket"))
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
