//! The daemon's one error type. Every variant says what failed and for which file, account or
//! provider, and carries its source where there is one; none holds a secret. The messages are
//! written here, in the `#[error]` attributes; [`Error::to_broker`] says what a client is told.
//!
//! What an authorization server answers (an OAuth error, a broken reply, no answer) is an error
//! of this type too, so that the token engine can act on it (`invalid_grant`, retryable or
//! not) before it is put into words for a caller.

use std::fmt;
use std::io;
use std::path::PathBuf;

use tokenbroker_client::{BrokerError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- config ----
    #[error("{path}:{line}: {message}")]
    ConfigInvalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: cannot read: {source}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: cannot read the folder: {source}")]
    ConfigReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: cannot edit: {source}")]
    ConfigUnparsable {
        path: PathBuf,
        #[source]
        source: toml_edit::TomlError,
    },
    #[error("{path}: cannot encode {what}: {source}")]
    ConfigEncode {
        path: PathBuf,
        what: String,
        #[source]
        source: toml_edit::ser::Error,
    },
    #[error("{path}: {key} is not a table in the file")]
    ConfigNotATable { path: PathBuf, key: String },
    #[error("cannot write {path}: {source}")]
    ConfigWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    // ---- what a client was already told ----
    #[error("{0}")]
    Broker(#[from] BrokerError),

    // ---- authorization servers ----
    /// The server answered with an OAuth error (RFC 6749 §5.2, or a vendor's shape of it).
    #[error("{error}{}{} (HTTP {status})", if description.is_some() { ": " } else { "" }, description.as_deref().unwrap_or(""))]
    OAuth {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// The server answered, but not with a valid reply; `message` says what came (never the
    /// body's content).
    #[error("{message}")]
    BadReply { status: u16, message: String },
    /// No answer within the timeouts. `sent`: the request may have reached the server. The HTTP
    /// stack's error chain is put into words where it happens, because its Display of some
    /// errors repeats the URL.
    #[error("{message}")]
    Network { message: String, sent: bool },
    #[error("the server's reply is larger than {} KiB", limit / 1024)]
    ReplyTooLarge { limit: usize },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("no client secret is stored for client {client_id:?}, which uses {method}: set one with `tokenbroker provider set-secret`")]
    NoClientSecret {
        client_id: String,
        method: &'static str,
    },
    #[error("private_key_jwt is configured without client_key")]
    NoClientKey,
    #[error("the client key {} {problem}", path.display())]
    ClientKey {
        path: PathBuf,
        problem: ClientKeyProblem,
    },
    #[error("cannot sign the client assertion: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// An endpoint, configured or discovered, fails the transport rule (`problem` says how).
    #[error("{problem}")]
    Endpoint { problem: String },
    #[error("the provider has no issuer to discover from")]
    NoIssuer,
    #[error("cannot fetch the metadata of issuer {issuer} from {url}: {source}")]
    DiscoveryFetch {
        issuer: String,
        url: String,
        #[source]
        source: Box<Error>,
    },
    #[error("the metadata document {url} answered HTTP {status}")]
    DiscoveryStatus { url: String, status: u16 },
    #[error("the metadata document {url} is not valid metadata: {source}")]
    DiscoveryInvalid {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the metadata document {url} names issuer {found:?}, not the configured {configured:?}"
    )]
    DiscoveryIssuer {
        url: String,
        found: String,
        configured: String,
    },
    #[error("the metadata document {url} has no token_endpoint")]
    DiscoveryNoToken { url: String },
    #[error("issuer {issuer} publishes no metadata: tried {}", tried.join(", "))]
    DiscoveryNone { issuer: String, tried: Vec<String> },

    // ---- secret stores ----
    #[error("secret store: the secret store task failed: {0}")]
    StoreTask(#[source] tokio::task::JoinError),
    #[error("secret store: {what}: {}", describe_keyring(source))]
    KeyringUnavailable {
        what: &'static str,
        #[source]
        source: keyring_core::Error,
    },
    #[error("secret store: cannot {op} {entry}: {}", describe_keyring(source))]
    Keyring {
        op: &'static str,
        entry: String,
        #[source]
        source: keyring_core::Error,
    },
    #[error("secret store: no secret store is supported on this platform")]
    NoKeyring,
    #[error("secret store: store key {}: {problem}", path.display())]
    StoreKey {
        path: PathBuf,
        problem: KeyFileProblem,
    },
    #[error("secret store: store folder {}: {problem}", path.display())]
    StoreFolder {
        path: PathBuf,
        problem: FolderProblem,
    },
    #[error("secret store: cannot read the {secret}: {} {problem}", path.display())]
    SealedFile {
        secret: String,
        path: PathBuf,
        problem: SealedProblem,
    },
    #[error("secret store: cannot {op} the {secret} {} {}: {source}", if *op == "read" { "from" } else if *op == "write" { "to" } else { "at" }, path.display())]
    SealedIo {
        op: &'static str,
        secret: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("secret store: deleted {}, but cannot sync its folder: {source}", path.display())]
    SealedSync {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("secret store: refusing to store {kind} under the name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'")]
    SealedName { kind: &'static str, name: String },
    #[error("secret store: the {secret} is too large to store ({len} bytes; at most {max})")]
    SealedTooLarge {
        secret: String,
        len: usize,
        max: usize,
    },
    #[error("secret store: cannot encrypt the {secret}")]
    SealedEncrypt { secret: String },
    #[error("secret store: the OS random number generator failed: {0}")]
    Random(#[source] rand::rand_core::OsError),

    // ---- the socket ----
    #[error("socket {}: {problem}", path.display())]
    Socket {
        path: PathBuf,
        problem: SocketProblem,
    },

    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What is wrong with a key file (the sealed store's key, a client's private key).
#[derive(Debug)]
pub enum KeyFileProblem {
    Open(io::Error),
    Read(io::Error),
    Create(io::Error),
    NotRegular {
        what: &'static str,
    },
    TooLarge {
        what: &'static str,
        len: u64,
    },
    WrongSize {
        what: &'static str,
        len: usize,
    },
    NotHex {
        what: &'static str,
    },
    OwnedBy {
        uid: u32,
        euid: u32,
    },
    /// Open to group or others: `mode`, and the file to chmod.
    OpenToOthers {
        mode: u32,
        path: PathBuf,
    },
    Vanished,
}

/// What is wrong with a client's private key file (private_key_jwt).
#[derive(Debug)]
pub enum ClientKeyProblem {
    Read(io::Error),
    NotRegular,
    ReadableByOthers { mode: u32, path: PathBuf },
    OthersUser,
    NotAKey,
}

impl fmt::Display for ClientKeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "cannot be read: {e}"),
            Self::NotRegular => f.write_str("is not a regular file"),
            Self::ReadableByOthers { mode, path } => write!(
                f,
                "is readable by others (mode {mode:o}): `chmod 600 {}`",
                path.display()
            ),
            Self::OthersUser => f.write_str("belongs to another user"),
            Self::NotAKey => f.write_str("is neither an RSA nor an EC P-256 private key in PEM"),
        }
    }
}

impl fmt::Display for KeyFileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORM: &str =
            "a store key is exactly 32 raw bytes or 64 hex digits (make one with `openssl rand -hex 32`)";
        match self {
            Self::Open(e) => write!(f, "cannot open it: {e}"),
            Self::Read(e) => write!(f, "cannot read it: {e}"),
            Self::Create(e) => write!(f, "cannot create it: {e}"),
            Self::NotRegular { what } => write!(f, "the {what} is not a regular file"),
            Self::TooLarge { what, len } => write!(f, "the {what} is too large ({len} bytes): {FORM}"),
            Self::WrongSize { what, len } => write!(f, "the {what} has the wrong size ({len} bytes): {FORM}"),
            Self::NotHex { what } => write!(
                f,
                "the {what} has 64 characters that are not all hex digits: a store key is 32 raw bytes or 64 hex digits (make one with `openssl rand -hex 32`)"
            ),
            Self::OwnedBy { uid, euid } => write!(
                f,
                "the key file is owned by uid {uid}, not by the daemon's user (uid {euid}): refusing it (chown it to the daemon's user)"
            ),
            Self::OpenToOthers { mode, path } => write!(
                f,
                "the key file has mode {mode:04o}, which lets group or others at it: refusing it (chmod 600 {})",
                path.display()
            ),
            Self::Vanished => f.write_str(
                "it appeared while being created, yet cannot be opened (a dangling symbolic link?)",
            ),
        }
    }
}

/// What is wrong with the sealed store's folder.
#[derive(Debug)]
pub enum FolderProblem {
    Create(io::Error),
    Read(io::Error),
    NotAFolder,
    OwnedBy { uid: u32, euid: u32 },
    Writable { mode: u32, path: PathBuf },
    Chmod(io::Error),
}

impl fmt::Display for FolderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create(e) => write!(f, "cannot create it: {e}"),
            Self::Read(e) => write!(f, "cannot read it: {e}"),
            Self::NotAFolder => f.write_str("it is not a folder"),
            Self::OwnedBy { uid, euid } => write!(
                f,
                "it is owned by uid {uid}, not by the daemon's user (uid {euid}): refusing it"
            ),
            Self::Writable { mode, path } => write!(
                f,
                "it has mode {mode:04o}, which lets group or others write it: refusing it (chmod 700 {})",
                path.display()
            ),
            Self::Chmod(e) => write!(f, "cannot set its mode to 0700: {e}"),
        }
    }
}

/// What is wrong with one sealed file.
#[derive(Debug)]
pub enum SealedProblem {
    Truncated { len: usize, expected: Option<usize> },
    NotAStoreFile,
    Version(String),
    ImpossibleLength,
    Trailing(usize),
    Undecryptable,
    NotUtf8,
}

impl fmt::Display for SealedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated {
                len,
                expected: None,
            } => write!(f, "is truncated ({len} bytes); store the secret again"),
            Self::Truncated {
                len,
                expected: Some(n),
            } => write!(
                f,
                "is truncated ({len} of {n} bytes); store the secret again"
            ),
            Self::NotAStoreFile => f.write_str("is not a tokenbroker store file"),
            Self::Version(v) => write!(
                f,
                "has format version {v}, which this tokenbroker cannot read (it reads version 1)"
            ),
            Self::ImpossibleLength => f.write_str(
                "is corrupted: its header gives an impossible length; store the secret again",
            ),
            Self::Trailing(n) => write!(
                f,
                "is corrupted: {n} bytes follow the sealed data; store the secret again"
            ),
            Self::Undecryptable => f.write_str(
                "cannot be decrypted with this key: corrupted, or sealed with another key",
            ),
            Self::NotUtf8 => f.write_str("holds a value that is not UTF-8"),
        }
    }
}

/// What is wrong with the socket's path.
#[derive(Debug)]
pub enum SocketProblem {
    NoFolder,
    CreateFolder(io::Error),
    InspectFolder(io::Error),
    FolderOwnedBy {
        folder: PathBuf,
        uid: u32,
    },
    MakePrivate(io::Error),
    NotASocket,
    InUse,
    RemoveStale(io::Error),
    Bind(io::Error),
    Chmod(io::Error),
    /// The service manager passed sockets (LISTEN_FDS) this daemon cannot serve.
    Inherited(String),
}

impl fmt::Display for SocketProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoFolder => f.write_str("the socket path has no folder"),
            Self::Inherited(what) => write!(f, "the socket passed by the service manager: {what}"),
            Self::CreateFolder(e) => write!(f, "cannot create its folder: {e}"),
            Self::InspectFolder(e) => write!(f, "cannot inspect its folder: {e}"),
            Self::FolderOwnedBy { folder, uid } => write!(
                f,
                "its folder {} belongs to uid {uid}, not to this user",
                folder.display()
            ),
            Self::MakePrivate(e) => write!(f, "cannot make its folder private: {e}"),
            Self::NotASocket => f.write_str(
                "a file that is not a socket is in the way: move it or choose another --socket",
            ),
            Self::InUse => f.write_str(
                "another tokenbrokerd is already serving it (stop it, or use --replace)",
            ),
            Self::RemoveStale(e) => write!(f, "cannot remove the stale socket: {e}"),
            Self::Bind(e) => write!(f, "cannot bind: {e}"),
            Self::Chmod(e) => write!(f, "cannot set its permissions: {e}"),
        }
    }
}

/// A keyring error in words. Variants that carry the secret's bytes (BadEncoding,
/// BadDataFormat) are described without them.
fn describe_keyring(e: &keyring_core::Error) -> String {
    use keyring_core::Error as K;
    match e {
        K::BadEncoding(_) => "the stored value is not UTF-8".into(),
        K::BadDataFormat(_, _) => "the stored value has an unexpected format".into(),
        K::NoEntry => "no such entry".into(),
        other => other.to_string(),
    }
}

impl Error {
    pub fn broker(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Broker(BrokerError::new(kind, message))
    }

    /// Whether the server refused a grant as `invalid_grant`.
    pub fn is_invalid_grant(&self) -> bool {
        self.oauth_code() == Some("invalid_grant")
    }

    /// The OAuth error code the server answered with, if it answered with one.
    pub fn oauth_code(&self) -> Option<&str> {
        match self {
            Error::OAuth { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the server could not be reached (rather than answering wrongly).
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            Error::Network { .. } | Error::ReplyTooLarge { .. } | Error::DiscoveryFetch { .. }
        )
    }

    /// Whether the same request may be sent again: the server failed (5xx), or the request
    /// cannot have reached it. A refresh the server carried out but whose reply was lost must
    /// not be sent again with the token it has just rotated.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Network { sent, .. } => !sent,
            Error::OAuth { status, .. } | Error::BadReply { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The secret store failed (rather than a server or the config).
    pub fn is_store(&self) -> bool {
        matches!(
            self,
            Error::StoreTask(_)
                | Error::KeyringUnavailable { .. }
                | Error::Keyring { .. }
                | Error::NoKeyring
                | Error::StoreKey { .. }
                | Error::StoreFolder { .. }
                | Error::SealedFile { .. }
                | Error::SealedIo { .. }
                | Error::SealedSync { .. }
                | Error::SealedName { .. }
                | Error::SealedTooLarge { .. }
                | Error::SealedEncrypt { .. }
                | Error::Random(_)
        )
    }

    /// What a client is told.
    pub fn to_broker(&self) -> BrokerError {
        let kind = match self {
            Error::Broker(b) => return b.clone(),
            Error::ConfigInvalid { .. }
            | Error::ConfigRead { .. }
            | Error::ConfigReadDir { .. }
            | Error::ConfigUnparsable { .. }
            | Error::ConfigEncode { .. }
            | Error::ConfigNotATable { .. }
            | Error::ConfigWrite { .. }
            | Error::NoClientSecret { .. }
            | Error::NoClientKey
            | Error::ClientKey { .. }
            | Error::Endpoint { .. }
            | Error::NoIssuer => ErrorKind::Config,
            e if e.is_store() => ErrorKind::Store,
            e if e.is_network() => ErrorKind::NetworkError,
            Error::OAuth { .. }
            | Error::BadReply { .. }
            | Error::DiscoveryStatus { .. }
            | Error::DiscoveryInvalid { .. }
            | Error::DiscoveryIssuer { .. }
            | Error::DiscoveryNoToken { .. }
            | Error::DiscoveryNone { .. } => ErrorKind::ServerError,
            _ => ErrorKind::Internal,
        };
        BrokerError::new(kind, self.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
