//! An in-process fake token endpoint, only for faults a real server will not produce on demand:
//! 500s, HTML bodies with status 200, truncated JSON, hangs. Stopped on Drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A valid token reply with a new refresh token each time, valid this many seconds.
    Good {
        expires_in: u64,
    },
    /// A valid token reply whose `expires_in` is this JSON text, as it is (`"1e30"`, `1.8e20`).
    Lifetime(&'static str),
    /// 400 `invalid_grant` whose `error_description` (and CyberArk-style `Message`) echo the
    /// request body, as a careless server does: a secret of the request comes back.
    Echo,
    Status500,
    Html200,
    TruncatedJson,
    /// Accept, read the request, and answer nothing for 5 s.
    Hang,
}

struct Shared {
    mode: Mutex<Mode>,
    requests: AtomicU64,
    issued: AtomicU64,
    stop: AtomicBool,
}

pub struct FakeServer {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(mode: Mode) -> std::io::Result<FakeServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            requests: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let s = s.clone();
                    std::thread::spawn(move || serve(conn, &s));
                }
            }
        });
        Ok(FakeServer {
            port,
            shared,
            accept: Some(accept),
        })
    }

    /// A config with provider `fake` (this server, client_secret_post) and a client_credentials
    /// account `robot` of it: the set-up many tests start from (the client secret is still to
    /// be set, with `tokenbroker provider set-secret fake`).
    pub fn robot_config(&self) -> String {
        format!(
            r#"version = 1

[providers.fake]
token_endpoint = "{}"
client_id = "fake-client"
client_auth = "client_secret_post"
allow_insecure_loopback = true

[accounts.robot]
provider = "fake"
grant = "client_credentials"
"#,
            self.token_endpoint()
        )
    }

    pub fn token_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The refresh token of the n-th good reply.
    pub fn refresh_token(n: u64) -> String {
        format!("fake-refresh-{n}")
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve(conn: TcpStream, s: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut len = 0usize;
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; len.min(1 << 20)];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    s.requests.fetch_add(1, Ordering::SeqCst);
    let mode = *s.mode.lock().unwrap();
    let (status, ct, text) = match mode {
        Mode::Good { expires_in } => {
            let n = s.issued.fetch_add(1, Ordering::SeqCst) + 1;
            (
                "200 OK",
                "application/json",
                format!(
                    r#"{{"access_token":"fake-access-{n}","token_type":"Bearer","expires_in":{expires_in},"refresh_token":"{}","scope":"read"}}"#,
                    FakeServer::refresh_token(n)
                ),
            )
        }
        Mode::Lifetime(expires_in) => {
            let n = s.issued.fetch_add(1, Ordering::SeqCst) + 1;
            (
                "200 OK",
                "application/json",
                format!(
                    r#"{{"access_token":"fake-access-{n}","token_type":"Bearer","expires_in":{expires_in},"refresh_token":"{}","scope":"read"}}"#,
                    FakeServer::refresh_token(n)
                ),
            )
        }
        Mode::Echo => {
            let echoed = String::from_utf8_lossy(&body).into_owned();
            let decoded: String = form_urlencoded::parse(echoed.as_bytes())
                .map(|(k, v)| format!("{k}={v} "))
                .collect();
            (
                "400 Bad Request",
                "application/json",
                serde_json::json!({
                    "error": "invalid_request",
                    "error_description": format!("cannot handle {echoed} ({decoded})"),
                })
                .to_string(),
            )
        }
        Mode::Status500 => (
            "500 Internal Server Error",
            "text/html",
            "<h1>Server Error</h1>".into(),
        ),
        Mode::Html200 => (
            "200 OK",
            "text/html",
            "<html><body>Please log in</body></html>".into(),
        ),
        Mode::TruncatedJson => (
            "200 OK",
            "application/json",
            r#"{"access_token":"fake-cut","expi"#.into(),
        ),
        Mode::Hang => {
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until && !s.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}
