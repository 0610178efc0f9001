//! Where the daemon's socket is: the one place that spells these paths.

use std::path::PathBuf;

/// The environment variable that points clients (and the daemon) at another socket.
pub const SOCKET_ENV: &str = "TOKENBROKER_SOCKET";

/// The system service's socket (`RuntimeDirectory=tokenbroker` of its unit).
pub const SYSTEM_SOCKET: &str = "/run/tokenbroker/socket";

/// The user-mode daemon's socket: `$XDG_RUNTIME_DIR/tokenbroker/socket`. None when
/// `XDG_RUNTIME_DIR` is unset or empty.
pub fn user_socket_path() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("tokenbroker").join("socket"))
}

/// What a client connects to: `$TOKENBROKER_SOCKET`, else the user-mode socket.
pub fn client_socket_path() -> Option<PathBuf> {
    std::env::var_os(SOCKET_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(user_socket_path)
}
