//! The broker's error kinds, shared by every transport and by the CLI's exit codes.

use serde::{Deserialize, Serialize};

/// What went wrong, as a caller can act on it. The same kinds travel on the socket (as
/// `error.data.kind` and a JSON-RPC code) and on D-Bus (as `io.tokenbroker.Error.<Kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No account of that name is configured.
    NoSuchAccount,
    /// No provider of that name is configured.
    NoSuchProvider,
    /// The account has no usable credentials: sign in (again).
    NeedsSignIn,
    /// The caller is not allowed to do this.
    Denied,
    /// A request parameter is missing, malformed or out of range.
    InvalidArgument,
    /// The authorization server rejected the user's or the client's credentials.
    InvalidCredentials,
    /// The authorization server failed or answered something that is not a valid reply.
    ServerError,
    /// The authorization server could not be reached in time.
    NetworkError,
    /// A provider or account of that name exists already.
    AlreadyExists,
    /// The configuration is invalid or could not be written.
    Config,
    /// The secret store (keychain) failed.
    Store,
    /// The daemon is at its connection limit or shutting down.
    Busy,
    /// The peers speak incompatible protocol versions, or a frame broke the protocol.
    Protocol,
    /// A bug or an unexpected local failure.
    Internal,
    /// The caller asked too often: try again after the time the message names.
    RateLimited,
}

impl ErrorKind {
    /// Every kind, in the order of their JSON-RPC codes (new kinds go at the end).
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::NoSuchAccount,
        ErrorKind::NoSuchProvider,
        ErrorKind::NeedsSignIn,
        ErrorKind::Denied,
        ErrorKind::InvalidArgument,
        ErrorKind::InvalidCredentials,
        ErrorKind::ServerError,
        ErrorKind::NetworkError,
        ErrorKind::AlreadyExists,
        ErrorKind::Config,
        ErrorKind::Store,
        ErrorKind::Busy,
        ErrorKind::Protocol,
        ErrorKind::Internal,
        ErrorKind::RateLimited,
    ];

    /// The CLI's exit code for this kind (docs/CLI exit codes).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::InvalidArgument | ErrorKind::AlreadyExists => 2,
            ErrorKind::NeedsSignIn => 3,
            ErrorKind::Denied => 4,
            ErrorKind::ServerError | ErrorKind::NetworkError => 5,
            ErrorKind::Busy | ErrorKind::Protocol => 6,
            ErrorKind::InvalidCredentials => 7,
            ErrorKind::NoSuchAccount | ErrorKind::NoSuchProvider => 8,
            ErrorKind::Config | ErrorKind::Store | ErrorKind::Internal => 1,
            ErrorKind::RateLimited => 9,
        }
    }

    /// The D-Bus error name suffix, e.g. `NeedsSignIn`.
    pub fn dbus_name(self) -> &'static str {
        match self {
            ErrorKind::NoSuchAccount => "NoSuchAccount",
            ErrorKind::NoSuchProvider => "NoSuchProvider",
            ErrorKind::NeedsSignIn => "NotSignedIn",
            ErrorKind::Denied => "Denied",
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::InvalidCredentials => "InvalidCredentials",
            ErrorKind::ServerError => "ServerError",
            ErrorKind::NetworkError => "NetworkError",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::Config => "Config",
            ErrorKind::Store => "Store",
            ErrorKind::Busy => "Busy",
            ErrorKind::Protocol => "Protocol",
            ErrorKind::Internal => "Internal",
            ErrorKind::RateLimited => "RateLimited",
        }
    }
}

/// An error the broker reports: a kind and a message a person can act on. Messages never hold
/// a secret.
///
/// A message may hold what an authorization server said (scrubbed of every secret of the
/// request). The daemon tells that only to the user's own tools: `for_apps`, when set, is the
/// same error in the daemon's own words alone, for every other caller. It never travels: on the
/// wire there is only the message the caller is given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BrokerError {
    pub kind: ErrorKind,
    pub message: String,
    pub for_apps: Option<String>,
}

impl BrokerError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            for_apps: None,
        }
    }

    /// The text other apps are given instead of `message`, which holds a server's words.
    pub fn with_text_for_apps(mut self, text: impl Into<String>) -> Self {
        self.for_apps = Some(text.into());
        self
    }

    /// The error as an app that is not one of the user's own tools is told it.
    pub fn for_app(self) -> Self {
        match self.for_apps {
            Some(text) => Self::new(self.kind, text),
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_are_told_only_the_daemons_words() {
        let e = BrokerError::new(
            ErrorKind::ServerError,
            "refused: invalid_grant: the server's words",
        )
        .with_text_for_apps("refused");
        assert_eq!(e.clone().for_app().message, "refused");
        assert_eq!(e.for_app().for_apps, None);
        let plain = BrokerError::new(ErrorKind::Denied, "ours");
        assert_eq!(plain.clone().for_app(), plain);
    }

    #[test]
    fn exit_codes_match_the_documented_table() {
        assert_eq!(ErrorKind::NeedsSignIn.exit_code(), 3);
        assert_eq!(ErrorKind::Denied.exit_code(), 4);
        assert_eq!(ErrorKind::ServerError.exit_code(), 5);
        assert_eq!(ErrorKind::NetworkError.exit_code(), 5);
        assert_eq!(ErrorKind::InvalidCredentials.exit_code(), 7);
    }
}
