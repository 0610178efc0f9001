//! How a command fails, and the exit code of each way (docs/CLI.md, `--help`).

use tokenbroker_client::ClientError;

pub enum Failure {
    /// The daemon answered with an error, or could not be reached.
    Client(ClientError),
    /// The command line asks for something impossible.
    Usage(String),
    /// Anything else (a local failure).
    Other(String),
    /// The command that `tokenbroker exec` was to run could not be started: 127 when it was not
    /// found, 126 when it could not be executed, as a shell reports it.
    Exec(u8, String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

impl Failure {
    /// The process exit code: the broker's error kind where the daemon gave one.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Client(ClientError::Broker(b)) => b.kind.exit_code(),
            Failure::Client(_) => 6,
            Failure::Usage(_) => 2,
            Failure::Other(_) => 1,
            Failure::Exec(code, _) => *code,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Client(c) => write!(f, "{c}"),
            Failure::Usage(m) | Failure::Other(m) | Failure::Exec(_, m) => f.write_str(m),
        }
    }
}
