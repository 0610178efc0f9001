//! The daemon's error type. Every variant says what failed and for which account, provider or
//! path; none holds a secret.

use std::path::PathBuf;

use tokenbroker_client::{BrokerError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}:{line}: {message}")]
    ConfigInvalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    ConfigFile { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    ConfigWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Broker(#[from] BrokerError),
    #[error("secret store: {0}")]
    Store(String),
    #[error("socket {path}: {message}")]
    Socket { path: PathBuf, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn broker(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Broker(BrokerError::new(kind, message))
    }

    /// What a client is told.
    pub fn to_broker(&self) -> BrokerError {
        match self {
            Error::Broker(b) => b.clone(),
            Error::ConfigInvalid { .. } | Error::ConfigFile { .. } | Error::ConfigWrite { .. } => {
                BrokerError::new(ErrorKind::Config, self.to_string())
            }
            Error::Store(_) => BrokerError::new(ErrorKind::Store, self.to_string()),
            Error::Socket { .. } | Error::Io(_) => {
                BrokerError::new(ErrorKind::Internal, self.to_string())
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
