//! A blocking client for the daemon's local socket.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroize;

use crate::error::{BrokerError, ErrorKind};
use crate::protocol::{methods, Request, Response};
use crate::types::*;
use crate::version::PROTOCOL_VERSION;

/// The longest reply line a client accepts.
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// `$TOKENBROKER_SOCKET`, else `$XDG_RUNTIME_DIR/tokenbroker/socket`.
pub fn default_socket_path() -> Result<PathBuf, ClientError> {
    crate::paths::client_socket_path().ok_or(ClientError::NoSocketPath)
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot find the daemon's socket: neither TOKENBROKER_SOCKET nor XDG_RUNTIME_DIR is set"
    )]
    NoSocketPath,
    #[error("the tokenbroker daemon is not running (no socket at {path}): start it with `systemctl --user start tokenbrokerd` or run `tokenbrokerd`")]
    NotRunning { path: PathBuf },
    #[error("cannot connect to the daemon at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lost the connection to the daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon broke the protocol: {0}")]
    Protocol(String),
    #[error("{0}")]
    Broker(#[from] BrokerError),
}

impl ClientError {
    /// The broker's error kind, where the daemon answered with one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Broker(e) => Some(e.kind),
            _ => None,
        }
    }
}

/// A connection to the daemon, handshaken.
pub struct Client {
    #[cfg(unix)]
    reader: BufReader<std::os::unix::net::UnixStream>,
    #[cfg(unix)]
    writer: std::os::unix::net::UnixStream,
    next_id: u64,
    pub server: HelloReply,
}

impl Client {
    /// Connect to the default socket.
    pub fn connect_default(client_name: &str) -> Result<Client, ClientError> {
        Self::connect(&default_socket_path()?, client_name)
    }

    /// Connect to `path` and perform the version handshake.
    #[cfg(unix)]
    pub fn connect(path: &Path, client_name: &str) -> Result<Client, ClientError> {
        use std::os::unix::net::UnixStream;
        let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning {
                    path: path.to_owned(),
                }
            }
            _ => ClientError::Connect {
                path: path.to_owned(),
                source,
            },
        })?;
        // Every call is bounded: token fetches include the daemon's own bounded HTTP retries.
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        let mut client = Client {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
            server: HelloReply {
                protocol: PROTOCOL_VERSION,
                daemon_version: String::new(),
            },
        };
        let hello: HelloReply = client.call(
            methods::HELLO,
            &HelloParams {
                protocol: PROTOCOL_VERSION,
                client: Some(client_name.to_owned()),
            },
        )?;
        if !hello.protocol.compatible_with(PROTOCOL_VERSION) {
            return Err(ClientError::Protocol(format!(
                "the daemon speaks protocol {} and this client {}: upgrade the older one",
                hello.protocol, PROTOCOL_VERSION
            )));
        }
        client.server = hello;
        Ok(client)
    }

    #[cfg(not(unix))]
    pub fn connect(_path: &Path, _client_name: &str) -> Result<Client, ClientError> {
        Err(ClientError::Protocol(
            "the local socket transport is not implemented on this platform yet".into(),
        ))
    }

    /// One request, one reply. The request line is wiped after it is written, and so is the
    /// reply line once parsed, because either may hold a secret.
    pub fn call<P: Serialize, R: DeserializeOwned>(
        &mut self,
        method: &str,
        params: &P,
    ) -> Result<R, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = crate::protocol::to_line(&Request {
            jsonrpc: "2.0",
            id,
            method,
            params,
        })
        .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        let written = self.write_all(&line);
        line.zeroize();
        if let Err(e) = written {
            // A daemon that refuses the connection (another user, busy) answers and closes
            // before reading: its reply is still there to read.
            let mut reply = Vec::with_capacity(256);
            if read_line_capped(&mut self.reader, &mut reply, MAX_REPLY).is_ok() {
                if let Ok(Response::<serde_json::Value> {
                    error: Some(err), ..
                }) = serde_json::from_slice(&reply)
                {
                    return Err(ClientError::Broker(err.into()));
                }
            }
            return Err(e);
        }

        let mut reply = Vec::with_capacity(256);
        let read = read_line_capped(&mut self.reader, &mut reply, MAX_REPLY);
        if let Err(e) = read {
            reply.zeroize();
            return Err(e);
        }
        let parsed: Result<Response<R>, _> = serde_json::from_slice(&reply);
        reply.zeroize();
        let resp = parsed.map_err(|e| ClientError::Protocol(format!("unparseable reply: {e}")))?;
        // A connection the daemon refuses (another user, busy) gets an error with a null id.
        if let (serde_json::Value::Null, Some(err)) = (&resp.id, &resp.error) {
            return Err(ClientError::Broker(err.clone().into()));
        }
        if resp.id.as_u64() != Some(id) {
            return Err(ClientError::Protocol(format!(
                "reply id {} does not match request id {id}",
                resp.id
            )));
        }
        match (resp.result, resp.error) {
            (_, Some(err)) => Err(ClientError::Broker(err.into())),
            (Some(r), None) => Ok(r),
            (None, None) => Err(ClientError::Protocol(
                "reply has neither result nor error".into(),
            )),
        }
    }

    #[cfg(unix)]
    fn write_all(&mut self, buf: &[u8]) -> Result<(), ClientError> {
        self.writer.write_all(buf)?;
        self.writer.flush()?;
        Ok(())
    }

    #[cfg(not(unix))]
    fn write_all(&mut self, _buf: &[u8]) -> Result<(), ClientError> {
        Err(ClientError::Protocol("unsupported platform".into()))
    }

    pub fn get_token(
        &mut self,
        account: &str,
        scopes: &[String],
        min_ttl: u32,
    ) -> Result<TokenReply, ClientError> {
        self.call(
            methods::GET_TOKEN,
            &GetTokenParams {
                account: account.to_owned(),
                scopes: scopes.to_vec(),
                min_ttl,
            },
        )
    }

    pub fn list_accounts(&mut self) -> Result<Vec<AccountInfo>, ClientError> {
        self.call(methods::LIST_ACCOUNTS, &serde_json::json!({}))
    }

    pub fn status(&mut self) -> Result<StatusReply, ClientError> {
        self.call(methods::STATUS, &serde_json::json!({}))
    }

    pub fn sign_in(&mut self, params: &SignInParams) -> Result<AccountInfo, ClientError> {
        self.call(methods::SIGN_IN, params)
    }

    pub fn sign_out(&mut self, account: &str) -> Result<SignOutReply, ClientError> {
        self.call(
            methods::SIGN_OUT,
            &AccountParams {
                account: account.to_owned(),
            },
        )
    }

    pub fn add_provider(
        &mut self,
        params: &AddProviderParams,
    ) -> Result<ProviderInfo, ClientError> {
        self.call(methods::ADD_PROVIDER, params)
    }

    pub fn list_providers(&mut self) -> Result<Vec<ProviderInfo>, ClientError> {
        self.call(methods::LIST_PROVIDERS, &serde_json::json!({}))
    }

    pub fn remove_provider(&mut self, name: &str) -> Result<Done, ClientError> {
        self.call(
            methods::REMOVE_PROVIDER,
            &NameParams {
                name: name.to_owned(),
            },
        )
    }

    pub fn set_client_secret(
        &mut self,
        params: &SetClientSecretParams,
    ) -> Result<Done, ClientError> {
        self.call(methods::SET_CLIENT_SECRET, params)
    }

    pub fn add_account(&mut self, spec: &AccountSpec) -> Result<AccountInfo, ClientError> {
        self.call(methods::ADD_ACCOUNT, spec)
    }

    pub fn remove_account(&mut self, name: &str) -> Result<Done, ClientError> {
        self.call(
            methods::REMOVE_ACCOUNT,
            &NameParams {
                name: name.to_owned(),
            },
        )
    }
}

impl Client {
    pub fn set_app_policy(&mut self, p: &AppPolicy) -> Result<Done, ClientError> {
        self.call(methods::SET_APP_POLICY, p)
    }

    pub fn remove_app_policy(&mut self, account: &str, exe: &str) -> Result<Done, ClientError> {
        self.call(
            methods::REMOVE_APP_POLICY,
            &RemoveAppPolicyParams {
                account: account.to_owned(),
                exe: exe.to_owned(),
            },
        )
    }

    pub fn get_policy(&mut self, account: Option<&str>) -> Result<Vec<AppPolicy>, ClientError> {
        self.call(
            methods::GET_POLICY,
            &PolicyQuery {
                account: account.map(str::to_owned),
            },
        )
    }

    pub fn list_consents(&mut self) -> Result<Vec<ConsentRequest>, ClientError> {
        self.call(methods::LIST_CONSENTS, &serde_json::json!({}))
    }

    pub fn answer_consent(&mut self, id: u64, answer: ConsentAnswer) -> Result<Done, ClientError> {
        self.call(methods::ANSWER_CONSENT, &AnswerConsentParams { id, answer })
    }

    pub fn introspect(&mut self, account: &str) -> Result<IntrospectReply, ClientError> {
        self.call(
            methods::INTROSPECT,
            &AccountParams {
                account: account.to_owned(),
            },
        )
    }

    pub fn list_presets(&mut self) -> Result<Vec<PresetInfo>, ClientError> {
        self.call(methods::LIST_PRESETS, &serde_json::json!({}))
    }

    pub fn read_audit(&mut self, q: &AuditQuery) -> Result<Vec<AuditRecord>, ClientError> {
        self.call(methods::READ_AUDIT, q)
    }

    /// Subscribe to events; the connection then only delivers notifications.
    #[cfg(unix)]
    pub fn subscribe(mut self, p: &SubscribeParams) -> Result<Subscription, ClientError> {
        let _: Done = self.call(methods::SUBSCRIBE, p)?;
        self.reader.get_ref().set_read_timeout(None)?;
        Ok(Subscription { client: self })
    }
}

/// A subscribed connection: a stream of [`Notification`]s.
pub struct Subscription {
    client: Client,
}

impl Subscription {
    /// The next event; blocks until one arrives or the daemon goes away.
    #[cfg(unix)]
    pub fn next_event(&mut self) -> Result<Notification, ClientError> {
        let mut line = Vec::with_capacity(512);
        read_line_capped(&mut self.client.reader, &mut line, MAX_REPLY)?;
        let ev: crate::protocol::Event<Notification> = serde_json::from_slice(&line)
            .map_err(|e| ClientError::Protocol(format!("unparseable event: {e}")))?;
        Ok(ev.params)
    }
}

/// Read one `\n`-terminated line of at most `cap` bytes (newline included) into `buf`, without
/// the newline. A longer line or EOF before the newline is an error.
fn read_line_capped<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> Result<(), ClientError> {
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            return Err(ClientError::Protocol(
                "the daemon closed the connection before replying".into(),
            ));
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() >= cap {
            return Err(ClientError::Protocol(format!(
                "reply longer than {cap} bytes"
            )));
        }
        buf.extend_from_slice(chunk);
        let used = done.unwrap_or(chunk.len());
        r.consume(used);
        if done.is_some() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_reader_reads_one_line() {
        let mut r = BufReader::with_capacity(4, &b"hello world\nnext\n"[..]);
        let mut buf = Vec::new();
        read_line_capped(&mut r, &mut buf, 100).unwrap();
        assert_eq!(buf, b"hello world");
        buf.clear();
        read_line_capped(&mut r, &mut buf, 100).unwrap();
        assert_eq!(buf, b"next");
    }

    #[test]
    fn capped_reader_refuses_long_lines_and_eof() {
        let mut r = BufReader::new(&b"0123456789\n"[..]);
        assert!(read_line_capped(&mut r, &mut Vec::new(), 5).is_err());
        let mut r = BufReader::new(&b"no newline"[..]);
        assert!(read_line_capped(&mut r, &mut Vec::new(), 100).is_err());
    }
}
