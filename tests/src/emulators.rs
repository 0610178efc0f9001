//! Strict in-process emulators of the token endpoints of the vendors that tokenbroker has presets
//! for: CyberArk Identity, webMethods Integration Server, Oracle IDCS / OCI IAM, ForgeRock AM, and
//! a Keycloak-style OIDC server. Each implements only what its vendor documents
//! (/work/shared/vendor-docs), refuses what the vendor refuses, and records every request it gets.
//!
//! One plain HTTP/1.1 server on 127.0.0.1:0 per emulator (the request parsing of `fake.rs`,
//! generalized: Content-Length and chunked bodies; one request per connection), stopped on Drop. Every connection has read and
//! write timeouts; every loop is bounded.
//!
//! Common behaviour: random access and refresh tokens in an in-memory table (introspection and
//! revocation where the vendor has them); a configurable access token lifetime; errors as
//! `{"error", "error_description"}` with status 400 (401 for client authentication failures),
//! except CyberArk, whose error body is assumed to be `{"success":false,"Message","ErrorCode"}`
//! (its documentation shows no error body). Basic client credentials are decoded as RFC 6749
//! §2.3.1 says: base64 of form-urlencoded id ":" form-urlencoded secret.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A user with a plain password.
pub const USER: &str = "alice";
pub const USER_PASSWORD: &str = "correct horse battery staple";
/// A user whose password has every character that breaks a careless encoder.
pub const SPECIAL_USER: &str = "bob";
pub const SPECIAL_PASSWORD: &str = "p&ss=w+rd%20/:x ünï";
/// Confidential client for the password and refresh_token grants.
pub const CLIENT_ID: &str = "tb-client";
pub const CLIENT_SECRET: &str = "s3cr&t=+%/: é";
/// Confidential client for the client_credentials grant.
pub const M2M_CLIENT_ID: &str = "tb-m2m";
pub const M2M_CLIENT_SECRET: &str = "m2m s3cr&t=+%/: é";
/// A public client (no secret).
pub const PUBLIC_CLIENT_ID: &str = "tb-public";
/// A client that authenticates with a JWT assertion (private_key_jwt); its key is registered by
/// the test that generates it ([`Options::with_jwt_client`]).
pub const JWT_CLIENT_ID: &str = "tb-jwt";
/// CyberArk: the OAuth2 custom application id.
pub const CYBERARK_APP_ID: &str = "tokenbroker_app";
/// Oracle: the audience its documentation gives for client assertions.
pub const ORACLE_ASSERTION_AUDIENCE: &str = "https://identity.oraclecloud.com/";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

const REFRESH_LIFETIME: u64 = 30 * 24 * 3600;
const MAX_BODY: usize = 1 << 20;
const MAX_HEADER_LINES: usize = 100;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_token(prefix: &str) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::rng(), 32)
    )
}

// ---------------------------------------------------------------------------------------------
// Recorded requests

/// One request as the emulator received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Names as sent; look them up with [`Recorded::header`].
    pub headers: Vec<(String, String)>,
    /// The raw body (de-chunked).
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The media type of Content-Type, lowercase, without parameters.
    pub fn media_type(&self) -> Option<String> {
        self.content_type().map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded as application/x-www-form-urlencoded.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A body parameter: from the JSON object when the body is JSON, else from the form.
    pub fn param(&self, name: &str) -> Option<String> {
        if self.media_type().as_deref() == Some("application/json") {
            return self.json().and_then(|v| match v.get(name) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
                None => None,
            });
        }
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The names of the body's parameters, sorted.
    pub fn param_names(&self) -> Vec<String> {
        let mut names: Vec<String> = if self.media_type().as_deref() == Some("application/json") {
            self.json()
                .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
                .unwrap_or_default()
        } else {
            self.form().into_iter().map(|(k, _)| k).collect()
        };
        names.sort();
        names
    }

    /// Client id and secret of an `Authorization: Basic` header, decoded as RFC 6749 §2.3.1 says.
    pub fn basic_credentials(&self) -> Option<(String, String)> {
        decode_basic(self.header("authorization")?).ok()
    }
}

/// Decode `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
pub fn decode_basic(header: &str) -> Result<(String, String), String> {
    let (scheme, rest) = header
        .trim()
        .split_once(' ')
        .ok_or("malformed Authorization header")?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(format!("authorization scheme {scheme} is not Basic"));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| "Basic credentials are not base64".to_string())?;
    let raw = String::from_utf8(raw).map_err(|_| "Basic credentials are not UTF-8".to_string())?;
    let (id, secret) = raw.split_once(':').ok_or("Basic credentials have no ':'")?;
    Ok((form_decode_component(id)?, form_decode_component(secret)?))
}

/// Decode one application/x-www-form-urlencoded component: '+' is a space, %XX a byte, and the
/// result must be UTF-8. A '%' not followed by two hex digits is an error.
pub fn form_decode_component(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-escape in {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "credentials are not UTF-8 after decoding".to_string())
}

/// `Basic ...` for a client, encoded as RFC 6749 §2.3.1 says.
pub fn basic_header(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

// ---------------------------------------------------------------------------------------------
// The HTTP server

/// A reply to send.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: vec![
                ("Cache-Control".into(), "no-store".into()),
                ("Pragma".into(), "no-cache".into()),
            ],
            body: v.to_string(),
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            headers: vec![],
            body: String::new(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        _ => "Error",
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Recorded>>>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    fn start(handler: Handler) -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), log.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let (h, l) = (handler.clone(), l.clone());
                    std::thread::spawn(move || serve_connection(conn, &h, &l));
                }
            }
        });
        Ok(Server {
            port,
            stop,
            log,
            accept: Some(accept),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Serve one request on a connection (5 s read and write timeouts) and close it: a server that
/// closes idle keep-alive connections would race the client's connection pool.
fn serve_connection(conn: TcpStream, handler: &Handler, log: &Mutex<Vec<Recorded>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut conn = conn;
    let Some(req) = read_request(&mut reader) else {
        return;
    };
    log.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(reply.body.as_bytes());
    let _ = conn.flush();
}

/// One request.
fn read_request(reader: &mut impl BufRead) -> Option<Recorded> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target, None),
    };
    let mut headers = Vec::new();
    for _ in 0..MAX_HEADER_LINES {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let chunked = get("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    let mut body = Vec::new();
    if chunked {
        for _ in 0..10_000 {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers, up to the empty line.
                for _ in 0..MAX_HEADER_LINES {
                    let mut t = String::new();
                    if reader.read_line(&mut t).ok()? == 0 || t == "\r\n" || t == "\n" {
                        break;
                    }
                }
                break;
            }
            if body.len() + size > MAX_BODY {
                return None;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).ok()?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).ok()?;
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        if len > MAX_BODY {
            return None;
        }
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(Recorded {
        method,
        path,
        query,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// Keys for JWT client assertions

/// A key pair generated at test time with the openssl CLI (PKCS#8 private key, SPKI public key),
/// the private key in a 0600 file in a 0700 temporary folder.
pub struct TestKey {
    _dir: tempfile::TempDir,
    pub private_key_path: PathBuf,
    pub private_pem: String,
    pub public_pem: String,
    pub kid: String,
    pub alg: Algorithm,
}

impl TestKey {
    /// RSA 2048, for RS256.
    pub fn rsa(kid: &str) -> TestKey {
        TestKey::generate(
            kid,
            Algorithm::RS256,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        )
    }

    /// EC P-256, for ES256.
    pub fn ec_p256(kid: &str) -> TestKey {
        TestKey::generate(
            kid,
            Algorithm::ES256,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        )
    }

    fn generate(kid: &str, alg: Algorithm, opts: &[&str]) -> TestKey {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temporary folder for a key");
        let private_key_path = dir.path().join("client-key.pem");
        let public = dir.path().join("client-key.pub.pem");
        let out = Command::new("openssl")
            .arg("genpkey")
            .args(opts)
            .arg("-out")
            .arg(&private_key_path)
            .output()
            .expect("run openssl (install it: scripts/install-test-deps.sh)");
        assert!(
            out.status.success(),
            "openssl genpkey: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::set_permissions(&private_key_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the key");
        let out = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private_key_path)
            .arg("-out")
            .arg(&public)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl pkey: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestKey {
            private_pem: std::fs::read_to_string(&private_key_path).expect("read the key"),
            public_pem: std::fs::read_to_string(&public).expect("read the public key"),
            private_key_path,
            kid: kid.to_owned(),
            alg,
            _dir: dir,
        }
    }

    /// A signed JWT with these claims, `kid` in the header when given.
    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        let key = match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(self.private_pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(self.private_pem.as_bytes()),
        }
        .expect("encoding key");
        jsonwebtoken::encode(&header, claims, &key).expect("sign a JWT")
    }

    /// A client assertion as RFC 7523 describes it, expiring in `exp_in` seconds (may be negative).
    pub fn assertion(&self, client_id: &str, aud: &str, exp_in: i64) -> String {
        let exp = now() as i64 + exp_in;
        self.sign(
            Some(&self.kid),
            &json!({
                "iss": client_id,
                "sub": client_id,
                "aud": aud,
                "exp": exp,
                "iat": now(),
                "jti": random_token("jti-"),
            }),
        )
    }
}

/// The claims of a JWT, without verifying it (for assertions about what the daemon sent).
pub fn jwt_claims(jwt: &str) -> Option<Value> {
    jsonwebtoken::dangerous::insecure_decode::<Value>(jwt)
        .ok()
        .map(|d| d.claims)
}

/// The header of a JWT, as JSON.
pub fn jwt_header(jwt: &str) -> Option<Value> {
    let h = jsonwebtoken::decode_header(jwt).ok()?;
    serde_json::to_value(h).ok()
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    CyberArk,
    WebMethods,
    Oracle,
    ForgeRock,
    Keycloak,
}

#[derive(Debug, Clone)]
pub struct JwtKey {
    pub kid: String,
    pub public_pem: String,
    pub alg: Algorithm,
}

/// A registered client.
#[derive(Debug, Clone)]
pub struct ClientReg {
    pub id: String,
    /// None: a public client (or one that authenticates only with a JWT assertion).
    pub secret: Option<String>,
    pub key: Option<JwtKey>,
    /// "password", "refresh_token", "client_credentials".
    pub grants: Vec<String>,
    /// The scopes this client may get.
    pub scopes: Vec<String>,
    /// The scopes a request without `scope` gets.
    pub default_scopes: Vec<String>,
    /// webMethods: issue refresh tokens to this client.
    pub refresh_tokens: bool,
}

impl ClientReg {
    pub fn new(id: &str, secret: Option<&str>, grants: &[&str], scopes: &[&str]) -> ClientReg {
        ClientReg {
            id: id.into(),
            secret: secret.map(Into::into),
            key: None,
            grants: grants.iter().map(|s| s.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            default_scopes: scopes.iter().map(|s| s.to_string()).collect(),
            refresh_tokens: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Lifetime of access tokens, seconds.
    pub lifetime: u64,
    /// CyberArk: the application id in the token path.
    pub app_id: String,
    /// ForgeRock: the sub-realm (None: the top-level realm). Keycloak: the realm.
    pub realm: Option<String>,
    /// ForgeRock: the password grant requires this `auth_chain` parameter.
    pub auth_chain: Option<String>,
    /// Every scope the server knows.
    pub scopes: Vec<String>,
    pub clients: Vec<ClientReg>,
    pub users: Vec<(String, String)>,
}

impl Options {
    /// The fixtures of a vendor: users [`USER`] and [`SPECIAL_USER`], clients [`CLIENT_ID`]
    /// (password + refresh), [`M2M_CLIENT_ID`] (client_credentials), and for webMethods
    /// [`PUBLIC_CLIENT_ID`].
    pub fn fixtures(vendor: Vendor) -> Options {
        let users = vec![
            (USER.to_owned(), USER_PASSWORD.to_owned()),
            (SPECIAL_USER.to_owned(), SPECIAL_PASSWORD.to_owned()),
        ];
        let (scopes, client_scopes, default_scopes): (&[&str], &[&str], &[&str]) = match vendor {
            Vendor::CyberArk => (&["read", "write"], &["read", "write"], &["read", "write"]),
            Vendor::WebMethods => (
                &["read", "write", "admin"],
                &["read", "write"],
                &["read", "write"],
            ),
            Vendor::Oracle => (
                &[
                    "urn:opc:idm:__myscopes__",
                    "read",
                    "write",
                    "offline_access",
                ],
                &[
                    "urn:opc:idm:__myscopes__",
                    "read",
                    "write",
                    "offline_access",
                ],
                &[],
            ),
            Vendor::ForgeRock => (&["read", "write", "profile"], &["read", "write"], &["read"]),
            Vendor::Keycloak => (
                &[
                    "openid",
                    "profile",
                    "email",
                    "read",
                    "write",
                    "offline_access",
                ],
                &[
                    "openid",
                    "profile",
                    "email",
                    "read",
                    "write",
                    "offline_access",
                ],
                &["profile", "email"],
            ),
        };
        let user_grants: &[&str] = if vendor == Vendor::CyberArk {
            &["password"]
        } else {
            &["password", "refresh_token"]
        };
        let mut client = ClientReg::new(CLIENT_ID, Some(CLIENT_SECRET), user_grants, client_scopes);
        client.default_scopes = default_scopes.iter().map(|s| s.to_string()).collect();
        let mut m2m = ClientReg::new(
            M2M_CLIENT_ID,
            Some(M2M_CLIENT_SECRET),
            &["client_credentials"],
            client_scopes,
        );
        m2m.default_scopes = client.default_scopes.clone();
        let mut clients = vec![client, m2m];
        if vendor == Vendor::WebMethods {
            clients.push(ClientReg::new(
                PUBLIC_CLIENT_ID,
                None,
                &["password", "refresh_token"],
                client_scopes,
            ));
        }
        Options {
            // CyberArk documents expires_in 18000.
            lifetime: if vendor == Vendor::CyberArk {
                18000
            } else {
                3600
            },
            app_id: CYBERARK_APP_ID.into(),
            realm: match vendor {
                Vendor::ForgeRock => Some("customers".into()),
                Vendor::Keycloak => Some("tokenbroker".into()),
                _ => None,
            },
            auth_chain: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            clients,
            users,
        }
    }

    pub fn lifetime(mut self, secs: u64) -> Options {
        self.lifetime = secs;
        self
    }

    /// Register [`JWT_CLIENT_ID`] (password, refresh_token and client_credentials) with this key.
    pub fn with_jwt_client(mut self, key: &TestKey) -> Options {
        let scopes: Vec<&str> = self
            .clients
            .first()
            .map(|c| c.scopes.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let mut c = ClientReg::new(
            JWT_CLIENT_ID,
            None,
            &["password", "refresh_token", "client_credentials"],
            &scopes,
        );
        c.default_scopes = self
            .clients
            .first()
            .map(|c| c.default_scopes.clone())
            .unwrap_or_default();
        c.key = Some(JwtKey {
            kid: key.kid.clone(),
            public_pem: key.public_pem.clone(),
            alg: key.alg,
        });
        self.clients.push(c);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Access,
    Refresh,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    client_id: String,
    username: Option<String>,
    scope: Vec<String>,
    exp: u64,
    revoked: bool,
    /// access -> its refresh token; refresh -> the latest access token issued with it.
    related: Option<String>,
}

struct State {
    vendor: Vendor,
    port: u16,
    opts: Mutex<Options>,
    tokens: Mutex<HashMap<String, Tok>>,
    jtis: Mutex<HashSet<String>>,
}

/// A running emulator. Stopped on Drop.
pub struct Emulator {
    state: Arc<State>,
    server: Server,
}

enum Endpoint {
    Token,
    Revoke,
    Introspect,
    Discovery,
}

type Params = BTreeMap<String, String>;

impl Emulator {
    pub fn start(vendor: Vendor, opts: Options) -> Emulator {
        // Bind first so that the state knows its port (Keycloak's issuer, ForgeRock's audience).
        let cell: Arc<Mutex<Option<Arc<State>>>> = Arc::new(Mutex::new(None));
        let c = cell.clone();
        let handler: Handler = Arc::new(move |req: &Recorded| {
            let state = c.lock().unwrap().clone();
            match state {
                Some(s) => s.handle(req),
                None => Reply::empty(503),
            }
        });
        let server = Server::start(handler).expect("start an emulator");
        let state = Arc::new(State {
            vendor,
            port: server.port,
            opts: Mutex::new(opts),
            tokens: Mutex::new(HashMap::new()),
            jtis: Mutex::new(HashSet::new()),
        });
        *cell.lock().unwrap() = Some(state.clone());
        Emulator { state, server }
    }

    /// The vendor's fixtures ([`Options::fixtures`]) with this access token lifetime.
    pub fn with_lifetime(vendor: Vendor, lifetime: u64) -> Emulator {
        Emulator::start(vendor, Options::fixtures(vendor).lifetime(lifetime))
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The tenant or server root: `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    pub fn token_path(&self) -> String {
        self.state.token_path()
    }

    pub fn token_url(&self) -> String {
        format!("{}{}", self.base_url(), self.token_path())
    }

    /// None where the vendor documents no revocation (CyberArk).
    pub fn revoke_path(&self) -> Option<String> {
        self.state.revoke_path()
    }

    pub fn revoke_url(&self) -> Option<String> {
        self.revoke_path()
            .map(|p| format!("{}{p}", self.base_url()))
    }

    /// None where the vendor documents no introspection (CyberArk).
    pub fn introspect_path(&self) -> Option<String> {
        self.state.introspect_path()
    }

    pub fn introspect_url(&self) -> Option<String> {
        self.introspect_path()
            .map(|p| format!("{}{p}", self.base_url()))
    }

    /// Keycloak: the issuer.
    pub fn issuer(&self) -> String {
        self.state.issuer()
    }

    pub fn set_lifetime(&self, secs: u64) {
        self.state.opts.lock().unwrap().lifetime = secs;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.log.lock().unwrap().clone()
    }

    /// The requests to the token endpoint.
    pub fn token_requests(&self) -> Vec<Recorded> {
        let p = self.token_path();
        self.requests()
            .into_iter()
            .filter(|r| r.path == p)
            .collect()
    }

    /// The token requests with this grant_type.
    pub fn grant_requests(&self, grant: &str) -> Vec<Recorded> {
        self.token_requests()
            .into_iter()
            .filter(|r| r.param("grant_type").as_deref() == Some(grant))
            .collect()
    }

    /// The requests to the revocation endpoint.
    pub fn revoke_requests(&self) -> Vec<Recorded> {
        let Some(p) = self.revoke_path() else {
            return vec![];
        };
        self.requests()
            .into_iter()
            .filter(|r| r.path == p)
            .collect()
    }

    /// RFC 7662 view of a token, straight from the table (not over HTTP).
    pub fn token_info(&self, token: &str) -> Value {
        self.state.info(token)
    }

    /// Number of tokens issued.
    pub fn issued(&self) -> usize {
        self.state.tokens.lock().unwrap().len()
    }
}

impl State {
    fn opts(&self) -> Options {
        self.opts.lock().unwrap().clone()
    }

    fn issuer(&self) -> String {
        let realm = self.opts().realm.unwrap_or_default();
        format!("http://127.0.0.1:{}/realms/{realm}", self.port)
    }

    fn forgerock_prefix(&self) -> String {
        match self.opts().realm {
            Some(r) => format!("/oauth2/realms/root/realms/{r}"),
            None => "/oauth2".into(),
        }
    }

    fn token_path(&self) -> String {
        let o = self.opts();
        match self.vendor {
            Vendor::CyberArk => format!("/oauth2/token/{}", o.app_id),
            Vendor::WebMethods => "/invoke/pub.oauth/getToken".into(),
            Vendor::Oracle => "/oauth2/v1/token".into(),
            Vendor::ForgeRock => format!("{}/access_token", self.forgerock_prefix()),
            Vendor::Keycloak => format!(
                "/realms/{}/protocol/openid-connect/token",
                o.realm.unwrap_or_default()
            ),
        }
    }

    fn revoke_path(&self) -> Option<String> {
        let o = self.opts();
        Some(match self.vendor {
            Vendor::CyberArk => return None,
            Vendor::WebMethods => "/invoke/pub.oauth/revokeToken".into(),
            Vendor::Oracle => "/oauth2/v1/revoke".into(),
            Vendor::ForgeRock => format!("{}/token/revoke", self.forgerock_prefix()),
            Vendor::Keycloak => format!(
                "/realms/{}/protocol/openid-connect/revoke",
                o.realm.unwrap_or_default()
            ),
        })
    }

    fn introspect_path(&self) -> Option<String> {
        let o = self.opts();
        Some(match self.vendor {
            Vendor::CyberArk => return None,
            Vendor::WebMethods => "/invoke/pub.oauth/introspectToken".into(),
            Vendor::Oracle => "/oauth2/v1/introspect".into(),
            Vendor::ForgeRock => format!("{}/introspect", self.forgerock_prefix()),
            Vendor::Keycloak => format!(
                "/realms/{}/protocol/openid-connect/token/introspect",
                o.realm.unwrap_or_default()
            ),
        })
    }

    // ----- errors

    fn error(&self, status: u16, code: &str, description: &str) -> Reply {
        let mut r = if self.vendor == Vendor::CyberArk {
            Reply::json(
                status,
                &json!({"success": false, "Message": description, "ErrorCode": code}),
            )
        } else {
            Reply::json(
                status,
                &json!({"error": code, "error_description": description}),
            )
        };
        if status == 401 {
            r.headers
                .push(("WWW-Authenticate".into(), "Basic realm=\"emulator\"".into()));
        }
        r
    }

    fn bad(&self, code: &str, description: &str) -> Reply {
        self.error(400, code, description)
    }

    fn unauthorized(&self, description: &str) -> Reply {
        self.error(401, "invalid_client", description)
    }

    fn not_found(&self) -> Reply {
        self.error(404, "not_found", "no such endpoint")
    }

    // ----- routing

    fn route(&self, path: &str) -> Result<Endpoint, Reply> {
        let o = self.opts();
        match self.vendor {
            Vendor::CyberArk => match path.strip_prefix("/oauth2/token/") {
                Some(app) if app == o.app_id => Ok(Endpoint::Token),
                _ => Err(self.not_found()),
            },
            Vendor::WebMethods | Vendor::Oracle => {
                if Some(path) == self.revoke_path().as_deref() {
                    Ok(Endpoint::Revoke)
                } else if Some(path) == self.introspect_path().as_deref() {
                    Ok(Endpoint::Introspect)
                } else if path == self.token_path() {
                    Ok(Endpoint::Token)
                } else {
                    Err(self.not_found())
                }
            }
            Vendor::ForgeRock => {
                let rest = path
                    .strip_prefix("/oauth2/")
                    .ok_or_else(|| self.not_found())?;
                let (realm, rest) = if let Some(r) = rest.strip_prefix("realms/root/realms/") {
                    let (realm, rest) = r.split_once('/').ok_or_else(|| self.not_found())?;
                    (Some(realm.to_owned()), rest)
                } else if let Some(r) = rest.strip_prefix("realms/root/") {
                    (None, r)
                } else {
                    (None, rest)
                };
                let ep = match rest {
                    "access_token" => Endpoint::Token,
                    "token/revoke" => Endpoint::Revoke,
                    "introspect" => Endpoint::Introspect,
                    _ => return Err(self.not_found()),
                };
                if realm != o.realm {
                    return Err(self.bad(
                        "invalid_client",
                        &format!(
                            "client authentication failed: no such client in realm {}",
                            realm.as_deref().unwrap_or("/ (top level)")
                        ),
                    ));
                }
                Ok(ep)
            }
            Vendor::Keycloak => {
                let rest = path
                    .strip_prefix("/realms/")
                    .ok_or_else(|| self.not_found())?;
                let (realm, rest) = rest.split_once('/').ok_or_else(|| self.not_found())?;
                if Some(realm) != o.realm.as_deref() {
                    return Err(Reply::json(404, &json!({"error": "Realm does not exist"})));
                }
                match rest {
                    ".well-known/openid-configuration" => Ok(Endpoint::Discovery),
                    "protocol/openid-connect/token" => Ok(Endpoint::Token),
                    "protocol/openid-connect/revoke" => Ok(Endpoint::Revoke),
                    "protocol/openid-connect/token/introspect" => Ok(Endpoint::Introspect),
                    _ => Err(self.not_found()),
                }
            }
        }
    }

    fn handle(&self, req: &Recorded) -> Reply {
        let ep = match self.route(&req.path) {
            Ok(ep) => ep,
            Err(r) => return r,
        };
        if let Endpoint::Discovery = ep {
            if req.method != "GET" {
                return self.error(405, "invalid_request", "use GET");
            }
            return self.discovery();
        }
        if req.method != "POST" {
            return self.error(405, "invalid_request", "this endpoint takes POST only");
        }
        let params = match self.parse_body(req, matches!(ep, Endpoint::Token)) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let client = match self.authenticate(req, &params, &ep) {
            Ok(c) => c,
            Err(r) => return r,
        };
        match ep {
            Endpoint::Token => self.token(&client, &params),
            Endpoint::Revoke => self.revoke(&client, &params),
            Endpoint::Introspect => self.introspect(&params),
            Endpoint::Discovery => self.discovery(),
        }
    }

    fn discovery(&self) -> Reply {
        let base = format!("http://127.0.0.1:{}", self.port);
        let issuer = self.issuer();
        Reply::json(
            200,
            &json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/protocol/openid-connect/auth"),
                "token_endpoint": format!("{base}{}", self.token_path()),
                "revocation_endpoint": format!("{base}{}", self.revoke_path().unwrap_or_default()),
                "introspection_endpoint":
                    format!("{base}{}", self.introspect_path().unwrap_or_default()),
                "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
                "grant_types_supported":
                    ["authorization_code", "password", "refresh_token", "client_credentials"],
                "token_endpoint_auth_methods_supported":
                    ["client_secret_basic", "client_secret_post"],
                "scopes_supported": self.opts().scopes,
                "response_types_supported": ["code"],
            }),
        )
    }

    // ----- bodies

    fn parse_body(&self, req: &Recorded, token_endpoint: bool) -> Result<Params, Reply> {
        let ct = req.content_type().unwrap_or("");
        let media = req.media_type().unwrap_or_default();
        if self.vendor == Vendor::CyberArk {
            if media != "application/json" {
                return Err(self.bad(
                    "invalid_request",
                    &format!("Content-Type must be application/json, not {ct:?}"),
                ));
            }
            let v: Value = serde_json::from_slice(&req.body)
                .map_err(|_| self.bad("invalid_request", "the request body is not valid JSON"))?;
            let Value::Object(o) = v else {
                return Err(self.bad("invalid_request", "the request body must be a JSON object"));
            };
            let mut out = Params::new();
            for (k, v) in o {
                let Value::String(s) = v else {
                    return Err(self.bad(
                        "invalid_request",
                        &format!("parameter {k} must be a string"),
                    ));
                };
                out.insert(k, s);
            }
            return Ok(out);
        }
        if media != "application/x-www-form-urlencoded" {
            return Err(self.bad(
                "invalid_request",
                &format!("Content-Type must be application/x-www-form-urlencoded, not {ct:?}"),
            ));
        }
        if self.vendor == Vendor::Oracle && token_endpoint {
            let norm: String = ct
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase();
            if norm != "application/x-www-form-urlencoded;charset=utf-8" {
                return Err(self.bad(
                    "invalid_request",
                    &format!(
                        "Content-Type must be application/x-www-form-urlencoded;charset=UTF-8, \
                         not {ct:?}"
                    ),
                ));
            }
        }
        let text = std::str::from_utf8(&req.body)
            .map_err(|_| self.bad("invalid_request", "the body is not UTF-8"))?;
        let mut out = Params::new();
        for (k, v) in form_urlencoded::parse(text.as_bytes()) {
            if out.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(self.bad("invalid_request", &format!("parameter {k} is repeated")));
            }
        }
        Ok(out)
    }

    // ----- client authentication

    fn authenticate(&self, req: &Recorded, p: &Params, ep: &Endpoint) -> Result<ClientReg, Reply> {
        let o = self.opts();
        let find = |id: &str| o.clients.iter().find(|c| c.id == id).cloned();
        let (basic_ok, post_ok, jwt_ok) = match self.vendor {
            Vendor::CyberArk => (true, false, false),
            Vendor::WebMethods | Vendor::Keycloak => (true, true, false),
            Vendor::Oracle => (true, false, true),
            Vendor::ForgeRock => (true, true, true),
        };
        let auth_header = req.header("authorization");
        let assertion = p.get("client_assertion");
        let post_secret = p.get("client_secret");
        let used = [
            auth_header.is_some(),
            assertion.is_some(),
            post_secret.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if used > 1 {
            return Err(self.bad(
                "invalid_request",
                "more than one client authentication method in one request",
            ));
        }
        if let Some(h) = auth_header {
            if !basic_ok {
                return Err(self.unauthorized("HTTP Basic client authentication is not accepted"));
            }
            let (id, secret) = decode_basic(h).map_err(|e| self.unauthorized(&e))?;
            if let Some(body_id) = p.get("client_id") {
                if *body_id != id {
                    return Err(self.unauthorized("client_id differs from the Basic user"));
                }
            }
            let c = find(&id).ok_or_else(|| self.unauthorized("unknown client"))?;
            return match &c.secret {
                Some(s) if *s == secret => Ok(c),
                _ => Err(self.unauthorized("client authentication failed: wrong client secret")),
            };
        }
        if let Some(secret) = post_secret {
            if !post_ok {
                return Err(self.unauthorized(
                    "client_secret in the request body is not accepted; use HTTP Basic",
                ));
            }
            let id = p
                .get("client_id")
                .ok_or_else(|| self.unauthorized("client_secret without client_id"))?;
            let c = find(id).ok_or_else(|| self.unauthorized("unknown client"))?;
            return match &c.secret {
                Some(s) if s == secret => Ok(c),
                _ => Err(self.unauthorized("client authentication failed: wrong client secret")),
            };
        }
        if let Some(jwt) = assertion {
            if !jwt_ok {
                return Err(self.unauthorized("client assertions are not accepted"));
            }
            return self.verify_assertion(jwt, p, ep);
        }
        if self.vendor == Vendor::CyberArk {
            return Err(self
                .unauthorized("the client must authenticate with an Authorization: Basic header"));
        }
        // Only a public client may go without authentication.
        if let Some(id) = p.get("client_id") {
            if let Some(c) = find(id) {
                if c.secret.is_none() && c.key.is_none() {
                    return Ok(c);
                }
            }
        }
        Err(self.unauthorized("client authentication required"))
    }

    fn verify_assertion(&self, jwt: &str, p: &Params, ep: &Endpoint) -> Result<ClientReg, Reply> {
        if p.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return Err(self.unauthorized(&format!("client_assertion_type must be {JWT_BEARER}")));
        }
        let header = jsonwebtoken::decode_header(jwt)
            .map_err(|e| self.unauthorized(&format!("client assertion is not a JWT: {e}")))?;
        let unverified: Value = jsonwebtoken::dangerous::insecure_decode::<Value>(jwt)
            .map_err(|e| self.unauthorized(&format!("client assertion is not a JWT: {e}")))?
            .claims;
        let iss = unverified["iss"].as_str().unwrap_or_default().to_owned();
        let client_id = match (self.vendor, p.get("client_id")) {
            (_, Some(id)) => id.clone(),
            (Vendor::Oracle, None) => {
                return Err(self.unauthorized("client_id is required with a client assertion"))
            }
            (_, None) => iss.clone(),
        };
        let c = self
            .opts()
            .clients
            .into_iter()
            .find(|c| c.id == client_id)
            .ok_or_else(|| self.unauthorized("unknown client"))?;
        let key = c
            .key
            .clone()
            .ok_or_else(|| self.unauthorized("this client has no registered key"))?;
        if header.alg != key.alg {
            return Err(self.unauthorized(&format!(
                "client assertion must be signed with {:?}, not {:?}",
                key.alg, header.alg
            )));
        }
        match (&header.kid, self.vendor) {
            (Some(kid), _) if *kid != key.kid => {
                return Err(self.unauthorized(&format!(
                    "client assertion kid {kid:?} is not the registered key id"
                )))
            }
            (None, Vendor::Oracle) => {
                return Err(self.unauthorized("client assertion header has no kid"))
            }
            _ => {}
        }
        let dk = match key.alg {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(key.public_pem.as_bytes()),
            _ => DecodingKey::from_ec_pem(key.public_pem.as_bytes()),
        }
        .map_err(|e| self.unauthorized(&format!("registered key unusable: {e}")))?;
        let mut v = Validation::new(key.alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims = HashSet::new();
        let claims = jsonwebtoken::decode::<Value>(jwt, &dk, &v)
            .map_err(|e| {
                self.unauthorized(&format!("client assertion signature does not verify: {e}"))
            })?
            .claims;
        if claims["iss"].as_str() != Some(c.id.as_str())
            || claims["sub"].as_str() != Some(c.id.as_str())
        {
            return Err(self.unauthorized("client assertion iss and sub must be the client id"));
        }
        let audiences: Vec<String> = match self.vendor {
            Vendor::Oracle => vec![ORACLE_ASSERTION_AUDIENCE.to_owned()],
            _ => {
                let base = format!("http://127.0.0.1:{}", self.port);
                let mut a = vec![format!("{base}{}", self.token_path())];
                let own = match ep {
                    Endpoint::Revoke => self.revoke_path(),
                    Endpoint::Introspect => self.introspect_path(),
                    _ => None,
                };
                a.extend(own.map(|p| format!("{base}{p}")));
                a
            }
        };
        let aud_ok = match &claims["aud"] {
            Value::String(s) => audiences.contains(s),
            Value::Array(a) => a
                .iter()
                .any(|x| x.as_str().is_some_and(|s| audiences.iter().any(|a| a == s))),
            _ => false,
        };
        if !aud_ok {
            return Err(self.unauthorized(&format!(
                "client assertion aud {} is not {}",
                claims["aud"], audiences[0]
            )));
        }
        let t = now();
        let exp = claims["exp"]
            .as_u64()
            .ok_or_else(|| self.unauthorized("client assertion has no exp"))?;
        if exp <= t {
            return Err(self.unauthorized(&format!(
                "client assertion expired (exp {exp} is {} s in the past)",
                t - exp
            )));
        }
        if exp > t + 3600 + 60 {
            return Err(self.unauthorized("client assertion exp is more than an hour away"));
        }
        if claims["nbf"].as_u64().is_some_and(|nbf| nbf > t + 60) {
            return Err(self.unauthorized("client assertion is not valid yet (nbf)"));
        }
        if claims["iat"].as_u64().is_some_and(|iat| iat > t + 60) {
            return Err(self.unauthorized("client assertion iat is in the future"));
        }
        let jti = claims["jti"]
            .as_str()
            .ok_or_else(|| self.unauthorized("client assertion has no jti"))?;
        if !self.jtis.lock().unwrap().insert(jti.to_owned()) {
            return Err(self.unauthorized(&format!(
                "client assertion replayed: jti {jti} was already used"
            )));
        }
        Ok(c)
    }

    // ----- grants

    fn token(&self, c: &ClientReg, p: &Params) -> Reply {
        let grant = p.get("grant_type").map(String::as_str).unwrap_or("");
        let r = match grant {
            "password" => self.password(c, p),
            "client_credentials" => self.client_credentials(c, p),
            "refresh_token" if self.vendor != Vendor::CyberArk => self.refresh(c, p),
            "" => Err(self.bad("invalid_request", "missing grant_type")),
            g => Err(self.bad(
                "unsupported_grant_type",
                &format!("grant type {g} is not supported"),
            )),
        };
        match r {
            Ok(v) => Reply::json(200, &v),
            Err(e) => e,
        }
    }

    fn check_grant_allowed(&self, c: &ClientReg, grant: &str) -> Result<(), Reply> {
        if self.vendor == Vendor::WebMethods && grant == "password" && c.secret.is_none() {
            return Err(self.error(
                401,
                "unauthorized_client",
                "the resource owner password grant is for confidential clients only",
            ));
        }
        if !c.grants.iter().any(|g| g == grant) {
            return Err(self.bad(
                "unauthorized_client",
                &format!("client {} may not use the {grant} grant", c.id),
            ));
        }
        Ok(())
    }

    /// The granted scopes for a request's `scope` (None: the defaults).
    fn resolve_scope(
        &self,
        c: &ClientReg,
        requested: Option<&String>,
    ) -> Result<Vec<String>, Reply> {
        let o = self.opts();
        let list: Vec<String> = requested
            .map(|s| {
                s.split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if list.is_empty() {
            if self.vendor == Vendor::Oracle {
                return Err(self.bad("invalid_scope", "a scope is required"));
            }
            return Ok(c.default_scopes.clone());
        }
        for s in &list {
            if !o.scopes.contains(s) {
                return Err(self.bad("invalid_scope", &format!("unknown scope: {s}")));
            }
            if !c.scopes.contains(s) {
                return Err(self.bad(
                    "invalid_scope",
                    &format!("scope {s} is not allowed for client {}", c.id),
                ));
            }
        }
        let mut out = Vec::new();
        for s in list {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Ok(out)
    }

    fn password(&self, c: &ClientReg, p: &Params) -> Result<Value, Reply> {
        self.check_grant_allowed(c, "password")?;
        let o = self.opts();
        let user_field = if self.vendor == Vendor::CyberArk {
            "user_name"
        } else {
            "username"
        };
        let Some(user) = p.get(user_field) else {
            let hint = if self.vendor == Vendor::CyberArk && p.contains_key("username") {
                " (the field is user_name, not username)"
            } else {
                ""
            };
            return Err(self.bad(
                "invalid_request",
                &format!("missing parameter {user_field}{hint}"),
            ));
        };
        let Some(password) = p.get("password") else {
            return Err(self.bad("invalid_request", "missing parameter password"));
        };
        if self.vendor == Vendor::ForgeRock {
            if let Some(chain) = &o.auth_chain {
                if p.get("auth_chain") != Some(chain) {
                    return Err(self.bad(
                        "invalid_grant",
                        &format!(
                            "authentication chain {} failed",
                            p.get("auth_chain")
                                .map(String::as_str)
                                .unwrap_or("(default)")
                        ),
                    ));
                }
            }
        }
        let scope = self.resolve_scope(c, p.get("scope"))?;
        let ok = o.users.iter().any(|(u, pw)| u == user && pw == password);
        if !ok {
            return Err(self.bad(
                "invalid_grant",
                "the resource owner's user name or password is wrong",
            ));
        }
        let refresh = match self.vendor {
            Vendor::CyberArk => false,
            Vendor::WebMethods => c.refresh_tokens,
            Vendor::Oracle => scope.iter().any(|s| s == "offline_access"),
            Vendor::ForgeRock | Vendor::Keycloak => true,
        } && c.grants.iter().any(|g| g == "refresh_token");
        Ok(self.issue(c, Some(user.clone()), scope, refresh))
    }

    fn client_credentials(&self, c: &ClientReg, p: &Params) -> Result<Value, Reply> {
        if c.secret.is_none() && c.key.is_none() {
            return Err(self.error(
                401,
                "unauthorized_client",
                "client_credentials is for confidential clients only",
            ));
        }
        self.check_grant_allowed(c, "client_credentials")?;
        let scope = self.resolve_scope(c, p.get("scope"))?;
        Ok(self.issue(c, None, scope, false))
    }

    fn refresh(&self, c: &ClientReg, p: &Params) -> Result<Value, Reply> {
        self.check_grant_allowed(c, "refresh_token")?;
        let Some(rt) = p.get("refresh_token") else {
            return Err(self.bad("invalid_request", "missing parameter refresh_token"));
        };
        let old = {
            let tokens = self.tokens.lock().unwrap();
            tokens.get(rt).cloned()
        };
        let old = match old {
            Some(t) if t.kind == Kind::Refresh && !t.revoked && t.exp > now() => t,
            _ => return Err(self.bad("invalid_grant", "the refresh token is invalid or expired")),
        };
        if old.client_id != c.id {
            return Err(self.bad(
                "invalid_grant",
                "the refresh token was issued to another client",
            ));
        }
        let scope = match p.get("scope") {
            None => old.scope.clone(),
            Some(s) => {
                let list: Vec<String> = s
                    .split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect();
                for x in &list {
                    if !old.scope.contains(x) {
                        return Err(self.bad(
                            "invalid_scope",
                            &format!("scope {x} exceeds the scope of the refresh token"),
                        ));
                    }
                }
                list
            }
        };
        // Rotation: the old refresh token is spent.
        if let Some(t) = self.tokens.lock().unwrap().get_mut(rt) {
            t.revoked = true;
        }
        let v = self.issue(c, old.username.clone(), scope, true);
        // The new refresh token keeps the original grant's scope.
        if let Some(new_rt) = v["refresh_token"].as_str() {
            if let Some(t) = self.tokens.lock().unwrap().get_mut(new_rt) {
                t.scope = old.scope.clone();
            }
        }
        Ok(v)
    }

    fn issue(
        &self,
        c: &ClientReg,
        username: Option<String>,
        scope: Vec<String>,
        refresh: bool,
    ) -> Value {
        let lifetime = self.opts().lifetime;
        let at = random_token("at-");
        let rt = refresh.then(|| random_token("rt-"));
        let t = now();
        {
            let mut tokens = self.tokens.lock().unwrap();
            tokens.insert(
                at.clone(),
                Tok {
                    kind: Kind::Access,
                    client_id: c.id.clone(),
                    username: username.clone(),
                    scope: scope.clone(),
                    exp: t + lifetime,
                    revoked: false,
                    related: rt.clone(),
                },
            );
            if let Some(rt) = &rt {
                tokens.insert(
                    rt.clone(),
                    Tok {
                        kind: Kind::Refresh,
                        client_id: c.id.clone(),
                        username,
                        scope: scope.clone(),
                        exp: t + REFRESH_LIFETIME,
                        revoked: false,
                        related: Some(at.clone()),
                    },
                );
            }
        }
        let mut m = Map::new();
        m.insert("access_token".into(), json!(at));
        m.insert("expires_in".into(), json!(lifetime));
        m.insert("scope".into(), json!(scope.join(" ")));
        m.insert("token_type".into(), json!("Bearer"));
        if let Some(rt) = rt {
            m.insert("refresh_token".into(), json!(rt));
            if self.vendor == Vendor::Keycloak {
                m.insert("refresh_expires_in".into(), json!(REFRESH_LIFETIME));
            }
        }
        Value::Object(m)
    }

    // ----- revocation and introspection

    fn revoke(&self, c: &ClientReg, p: &Params) -> Reply {
        let Some(token) = p.get("token") else {
            return self.bad("invalid_request", "missing parameter token");
        };
        let mut tokens = self.tokens.lock().unwrap();
        let related = match tokens.get_mut(token) {
            Some(t) if t.client_id == c.id => {
                t.revoked = true;
                // webMethods revokes the related token either way; the others revoke the access
                // token of a revoked refresh token (RFC 7009 §2.1).
                if self.vendor == Vendor::WebMethods || t.kind == Kind::Refresh {
                    t.related.clone()
                } else {
                    None
                }
            }
            // RFC 7009: an unknown or someone else's token is not an error for the caller.
            _ => None,
        };
        if let Some(r) = related {
            if let Some(t) = tokens.get_mut(&r) {
                t.revoked = true;
            }
        }
        if self.vendor == Vendor::ForgeRock {
            Reply::json(200, &json!({}))
        } else {
            Reply::empty(200)
        }
    }

    fn introspect(&self, p: &Params) -> Reply {
        let Some(token) = p.get("token") else {
            return self.bad("invalid_request", "missing parameter token");
        };
        Reply::json(200, &self.info(token))
    }

    fn info(&self, token: &str) -> Value {
        let tokens = self.tokens.lock().unwrap();
        match tokens.get(token) {
            Some(t) if !t.revoked && t.exp > now() => {
                let mut v = json!({
                    "active": true,
                    "scope": t.scope.join(" "),
                    "exp": t.exp,
                    "client_id": t.client_id,
                    "token_type": if t.kind == Kind::Access { "Bearer" } else { "refresh_token" },
                });
                if let Some(u) = &t.username {
                    v["username"] = json!(u);
                }
                v
            }
            _ => json!({"active": false}),
        }
    }
}
