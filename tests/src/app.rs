//! An "app": a real binary that is not one of the user's own tokenbroker tools (socat at a known
//! path, or a copy of it), speaking the socket protocol as any local program could.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Debian's socat.
pub const SOCAT: &str = "/usr/bin/socat";

/// `exe` (a socat) says Hello, then calls `method` with `params` (JSON text); returns its reply
/// (Null when there is none).
pub fn call(socket: &Path, exe: &Path, method: &str, params: &str) -> Value {
    let input = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"Hello\",\"params\":{{\"protocol\":\"1.0\"}}}}\n{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"{method}\",\"params\":{params}}}\n"
    );
    let mut child = Command::new(exe)
        .args(["-t", "10", "-"])
        .arg(format!("UNIX-CONNECT:{}", socket.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start socat");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = std::io::Write::write_all(&mut stdin, input.as_bytes());
    }
    let out = child.wait_with_output().expect("socat ran");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().nth(1).unwrap_or("null")).unwrap_or(Value::Null)
}
