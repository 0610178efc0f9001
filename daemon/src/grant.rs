//! The grants (RFC 6749 §4.3 password, §4.4 client_credentials, §6 refresh_token) and
//! revocation (RFC 7009): request bodies, client authentication, and strict reply parsing.

use base64::Engine as _;
use serde::Deserialize;
use tokenbroker_client::{ClientAuth, IntrospectReply, SecretText};

use crate::assertion::ClientKey;
use crate::preset::{BodyEncoding, Dialect};
use zeroize::Zeroizing;

use crate::http::{secret_bytes, secret_header, Body, Http, NetError, Reply};
use crate::provider::Endpoints;

/// A value in a request body.
pub enum Field<'a> {
    Text(&'a str),
    Secret(&'a SecretText),
}

impl Field<'_> {
    fn as_str(&self) -> &str {
        match self {
            Field::Text(s) => s,
            Field::Secret(s) => s.expose(),
        }
    }
}

/// The client's identity at the token endpoint, and how its requests are written.
pub struct ClientCredentials<'a> {
    pub client_id: &'a str,
    pub method: ClientAuth,
    pub secret: Option<&'a SecretText>,
    /// private_key_jwt: the key that signs client assertions.
    pub key: Option<&'a ClientKey>,
    pub dialect: &'a Dialect,
}

/// What to ask the token endpoint for.
pub enum Grant<'a> {
    Password {
        username: &'a str,
        password: &'a SecretText,
        scopes: &'a [String],
    },
    ClientCredentials {
        scopes: &'a [String],
    },
    Refresh {
        refresh_token: &'a SecretText,
        /// None keeps the originally granted scope.
        scopes: Option<&'a [String]>,
    },
}

impl Grant<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Grant::Password { .. } => "password",
            Grant::ClientCredentials { .. } => "client_credentials",
            Grant::Refresh { .. } => "refresh_token",
        }
    }
}

/// A successful token reply.
pub struct TokenResponse {
    pub access_token: SecretText,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_token: Option<SecretText>,
    /// The granted scopes, when the server said.
    pub scopes: Option<Vec<String>>,
}

/// How a grant or revocation failed.
#[derive(Debug, Clone)]
pub enum GrantError {
    /// The server answered with an OAuth error (RFC 6749 §5.2).
    OAuth {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// The server answered, but not with a valid reply.
    BadReply(String),
    /// The server could not be reached in time.
    Network(NetError),
}

impl GrantError {
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, GrantError::OAuth { error, .. } if error == "invalid_grant")
    }

    pub fn oauth_code(&self) -> Option<&str> {
        match self {
            GrantError::OAuth { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl std::fmt::Display for GrantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrantError::OAuth {
                status,
                error,
                description,
            } => {
                write!(f, "{error}")?;
                if let Some(d) = description {
                    write!(f, ": {d}")?;
                }
                write!(f, " (HTTP {status})")
            }
            GrantError::BadReply(m) => f.write_str(m),
            GrantError::Network(e) => write!(f, "{e}"),
        }
    }
}

/// Form-encode `fields` into a buffer that is wiped on drop. The buffer is sized up front so that
/// it never reallocates and leaves a copy behind.
pub fn encode_form(fields: &[(&str, Field<'_>)]) -> Zeroizing<Vec<u8>> {
    let cap = fields
        .iter()
        .map(|(k, v)| 3 * (k.len() + v.as_str().len()) + 2)
        .sum();
    let mut out = Zeroizing::new(Vec::with_capacity(cap));
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        for piece in form_urlencoded::byte_serialize(k.as_bytes()) {
            out.extend_from_slice(piece.as_bytes());
        }
        out.push(b'=');
        for piece in form_urlencoded::byte_serialize(v.as_str().as_bytes()) {
            out.extend_from_slice(piece.as_bytes());
        }
    }
    out
}

/// `Basic base64(form-encode(id) ":" form-encode(secret))`, RFC 6749 §2.3.1.
pub fn basic_auth_value(client_id: &str, secret: &SecretText) -> Zeroizing<Vec<u8>> {
    let mut pair = encode_pair_for_basic(client_id, secret.expose());
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Zeroizing::new(Vec::with_capacity(6 + pair.len().div_ceil(3) * 4));
    out.extend_from_slice(b"Basic ");
    let start = out.len();
    out.resize(start + pair.len().div_ceil(3) * 4, 0);
    let written = b64.encode_slice(&pair[..], &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
    zeroize::Zeroize::zeroize(&mut pair);
    out
}

fn encode_pair_for_basic(id: &str, secret: &str) -> Zeroizing<Vec<u8>> {
    let mut pair = Zeroizing::new(Vec::with_capacity(3 * (id.len() + secret.len()) + 1));
    for piece in form_urlencoded::byte_serialize(id.as_bytes()) {
        pair.extend_from_slice(piece.as_bytes());
    }
    pair.push(b':');
    for piece in form_urlencoded::byte_serialize(secret.as_bytes()) {
        pair.extend_from_slice(piece.as_bytes());
    }
    pair
}

/// Add the client's authentication to a request: body fields, or an Authorization header.
fn client_auth<'a>(
    client: &ClientCredentials<'a>,
    fields: &mut Vec<(&'a str, Field<'a>)>,
    assertion: Option<&'a SecretText>,
) -> Result<Option<reqwest::header::HeaderValue>, GrantError> {
    let need_secret = || {
        client.secret.ok_or_else(|| {
            GrantError::BadReply(format!(
                "no client secret is stored for client {:?}, which uses {}: set one with `tokenbroker provider set-secret`",
                client.client_id,
                client.method.as_str()
            ))
        })
    };
    match client.method {
        ClientAuth::ClientSecretBasic => {
            let secret = need_secret()?;
            Ok(secret_header(basic_auth_value(client.client_id, secret)))
        }
        ClientAuth::ClientSecretPost => {
            let secret = need_secret()?;
            fields.push(("client_id", Field::Text(client.client_id)));
            fields.push(("client_secret", Field::Secret(secret)));
            Ok(None)
        }
        ClientAuth::PrivateKeyJwt => {
            let assertion = assertion
                .ok_or_else(|| GrantError::BadReply("no client assertion could be made".into()))?;
            fields.push(("client_id", Field::Text(client.client_id)));
            fields.push(("client_assertion_type", Field::Text(ASSERTION_TYPE)));
            fields.push(("client_assertion", Field::Secret(assertion)));
            Ok(None)
        }
        ClientAuth::None => {
            fields.push(("client_id", Field::Text(client.client_id)));
            Ok(None)
        }
    }
}

/// RFC 7523's client assertion type.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A fresh client assertion for private_key_jwt, for requests to `endpoints`.
fn make_assertion(
    client: &ClientCredentials<'_>,
    endpoints: &Endpoints,
) -> Result<Option<SecretText>, GrantError> {
    if client.method != ClientAuth::PrivateKeyJwt {
        return Ok(None);
    }
    let key = client.key.ok_or_else(|| {
        GrantError::BadReply("private_key_jwt is configured without client_key".into())
    })?;
    let audience = client
        .dialect
        .assertion_audience
        .clone()
        .unwrap_or_else(|| endpoints.token.to_string());
    crate::assertion::sign(key, client.client_id, &audience)
        .map(Some)
        .map_err(GrantError::BadReply)
}

/// Encode a request body the way the provider's dialect says.
fn encode_body(dialect: &Dialect, fields: &[(&str, Field<'_>)], json_allowed: bool) -> Body {
    if dialect.body == BodyEncoding::Json && json_allowed {
        return Body {
            content_type: "application/json",
            bytes: secret_bytes(encode_json(fields)),
        };
    }
    Body {
        content_type: if dialect.form_charset {
            "application/x-www-form-urlencoded;charset=UTF-8"
        } else {
            "application/x-www-form-urlencoded"
        },
        bytes: secret_bytes(encode_form(fields)),
    }
}

/// A JSON object of string fields, in a buffer sized exactly and wiped on drop.
pub fn encode_json(fields: &[(&str, Field<'_>)]) -> Zeroizing<Vec<u8>> {
    let written = tokenbroker_client::protocol::write_exact(|out| -> std::io::Result<()> {
        out.write_all(b"{")?;
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut *out, k)?;
            out.write_all(b":")?;
            serde_json::to_writer(&mut *out, v.as_str())?;
        }
        out.write_all(b"}")
    });
    // Writing into memory cannot fail.
    Zeroizing::new(written.unwrap_or_default())
}

/// Run a grant at the token endpoint.
pub async fn request_token(
    http: &Http,
    endpoints: &Endpoints,
    client: &ClientCredentials<'_>,
    grant: &Grant<'_>,
) -> Result<TokenResponse, GrantError> {
    let dialect = client.dialect;
    let assertion = make_assertion(client, endpoints)?;
    let joined;
    let mut fields: Vec<(&str, Field<'_>)> = Vec::with_capacity(12);
    fields.push(("grant_type", Field::Text(grant.name())));
    let (scopes, user_grant) = match grant {
        Grant::Password {
            username,
            password,
            scopes,
        } => {
            fields.push((dialect.username_field.as_str(), Field::Text(username)));
            fields.push(("password", Field::Secret(password)));
            (Some(*scopes), true)
        }
        Grant::ClientCredentials { scopes } => (Some(*scopes), false),
        Grant::Refresh {
            refresh_token,
            scopes,
        } => {
            fields.push(("refresh_token", Field::Secret(refresh_token)));
            (*scopes, true)
        }
    };
    if let Some(s) = scopes {
        // A user grant also asks for the dialect's extra scopes (Oracle: offline_access).
        let mut all: Vec<&str> = s.iter().map(String::as_str).collect();
        if user_grant {
            for extra in &dialect.extra_scopes {
                if !all.contains(&extra.as_str()) {
                    all.push(extra);
                }
            }
        }
        if !all.is_empty() {
            joined = all.join(" ");
            fields.push(("scope", Field::Text(&joined)));
        }
    }
    for (k, v) in &dialect.params {
        fields.push((k.as_str(), Field::Text(v)));
    }
    let auth = client_auth(client, &mut fields, assertion.as_ref())?;
    let body = encode_body(dialect, &fields, true);
    drop(fields);
    let reply = http
        .post(&endpoints.token, auth.as_ref(), body)
        .await
        .map_err(GrantError::Network)?;
    parse_token_reply(&reply)
}

/// Revoke a token (RFC 7009). Ok(false) when the provider has no revocation endpoint.
pub async fn revoke(
    http: &Http,
    endpoints: &Endpoints,
    client: &ClientCredentials<'_>,
    token: &SecretText,
    hint: &str,
) -> Result<bool, GrantError> {
    let Some(url) = &endpoints.revocation else {
        return Ok(false);
    };
    let reply = post_token(http, url, endpoints, client, token, hint).await?;
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    if reply.status == 200 {
        Ok(true)
    } else {
        Err(oauth_error(&reply))
    }
}

/// POST `token` (with its type hint) and the client's authentication to a revocation or
/// introspection endpoint: always a form body.
async fn post_token(
    http: &Http,
    url: &url::Url,
    endpoints: &Endpoints,
    client: &ClientCredentials<'_>,
    token: &SecretText,
    hint: &str,
) -> Result<Reply, GrantError> {
    let assertion = make_assertion(client, endpoints)?;
    let mut fields = vec![
        ("token", Field::Secret(token)),
        ("token_type_hint", Field::Text(hint)),
    ];
    let auth = client_auth(client, &mut fields, assertion.as_ref())?;
    let body = encode_body(client.dialect, &fields, false);
    drop(fields);
    http.post(url, auth.as_ref(), body)
        .await
        .map_err(GrantError::Network)
}

#[derive(Deserialize)]
struct RawIntrospection {
    active: serde_json::Value,
    #[serde(default)]
    scope: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

/// RFC 7662 introspection of `token` at `url`, with the client's authentication.
pub async fn introspect(
    http: &Http,
    endpoints: &Endpoints,
    client: &ClientCredentials<'_>,
    token: &SecretText,
) -> Result<IntrospectReply, GrantError> {
    let Some(url) = &endpoints.introspection else {
        return Err(GrantError::BadReply(
            "the provider has no introspection endpoint".into(),
        ));
    };
    let reply = post_token(http, url, endpoints, client, token, "access_token").await?;
    if reply.status != 200 {
        return Err(oauth_error(&reply));
    }
    let raw: RawIntrospection = serde_json::from_slice(&reply.body).map_err(|e| {
        GrantError::BadReply(format!(
            "the introspection endpoint answered with {} that is not an introspection response ({})",
            describe_body(&reply),
            json_problem(&e)
        ))
    })?;
    let active = match raw.active {
        serde_json::Value::Bool(b) => b,
        serde_json::Value::String(s) => s == "true",
        _ => false,
    };
    let number = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let scope = match raw.scope {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Array(a)) => Some(
            a.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    };
    Ok(IntrospectReply {
        active,
        scope,
        exp: number(raw.exp),
        client_id: raw.client_id,
        username: raw.username,
    })
}

#[derive(Deserialize)]
struct RawToken {
    access_token: SecretText,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<SecretText>,
    #[serde(default)]
    scope: Option<serde_json::Value>,
}

/// When a server gives no `expires_in`, assume this many seconds (RFC 6749 leaves it open).
pub const DEFAULT_EXPIRES_IN: u64 = 3600;

/// Parse a token endpoint reply strictly: 200 with a JSON object holding a non-empty
/// access_token, else an error that says what the server sent (never its body's secrets).
pub fn parse_token_reply(reply: &Reply) -> Result<TokenResponse, GrantError> {
    if reply.status != 200 {
        return Err(oauth_error(reply));
    }
    let raw: RawToken = serde_json::from_slice(&reply.body).map_err(|e| {
        GrantError::BadReply(format!(
            "the token endpoint answered HTTP 200 with {} that is not a valid token response ({})",
            describe_body(reply),
            json_problem(&e)
        ))
    })?;
    if raw.access_token.is_empty() {
        return Err(GrantError::BadReply(
            "the token endpoint answered with an empty access_token".into(),
        ));
    }
    let expires_in = match raw.expires_in {
        None | Some(serde_json::Value::Null) => DEFAULT_EXPIRES_IN,
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .ok_or_else(|| {
                GrantError::BadReply(format!("the token endpoint sent expires_in {n}"))
            })?,
        Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().map_err(|_| {
            GrantError::BadReply("the token endpoint sent a non-numeric expires_in".into())
        })?,
        Some(_) => {
            return Err(GrantError::BadReply(
                "the token endpoint sent expires_in that is not a number".into(),
            ))
        }
    };
    let scopes = match raw.scope {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => {
            Some(s.split_whitespace().map(str::to_owned).collect())
        }
        Some(serde_json::Value::Array(a)) => Some(
            a.into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        Some(_) => {
            return Err(GrantError::BadReply(
                "the token endpoint sent a scope that is neither a string nor a list".into(),
            ))
        }
    };
    Ok(TokenResponse {
        access_token: raw.access_token,
        token_type: raw
            .token_type
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "Bearer".into()),
        expires_in,
        refresh_token: raw.refresh_token.filter(|r| !r.is_empty()),
        scopes,
    })
}

/// The error bodies vendors send: RFC 6749 §5.2's, and CyberArk's `{ErrorCode, Message}`
/// (also with lower-case names, and as a nested `error` object).
fn error_fields(v: &serde_json::Value) -> Option<(String, Option<String>)> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    if let Some(code) = s("error") {
        return Some((code, s("error_description").or_else(|| s("message"))));
    }
    if let Some(inner) = v.get("error").filter(|e| e.is_object()) {
        return error_fields(inner).or_else(|| {
            let code = inner.get("code").and_then(|c| c.as_str())?.to_owned();
            Some((
                code,
                inner
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned),
            ))
        });
    }
    let code = s("ErrorCode")
        .or_else(|| s("errorCode"))
        .or_else(|| s("code"))?;
    Some((
        code,
        s("Message")
            .or_else(|| s("message"))
            .or_else(|| s("error_description")),
    ))
}

/// An error reply as an OAuth error where the body is one, else as the HTTP status.
pub fn oauth_error(reply: &Reply) -> GrantError {
    let fields = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .as_ref()
        .and_then(error_fields);
    match fields {
        Some((error, description)) if !error.is_empty() => GrantError::OAuth {
            status: reply.status,
            error: sanitize(&error, 64),
            description: description.map(|d| sanitize(&d, 300)),
        },
        _ => GrantError::BadReply(format!(
            "the server answered HTTP {} with {} and no OAuth error",
            reply.status,
            describe_body(reply)
        )),
    }
}

fn describe_body(reply: &Reply) -> String {
    let ct = reply.content_type.split(';').next().unwrap_or("").trim();
    match (reply.body.len(), ct) {
        (0, _) => "an empty body".into(),
        (n, "") => format!("a {n}-byte body"),
        (n, ct) => format!("a {n}-byte {} body", sanitize(ct, 64)),
    }
}

fn json_problem(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => "it is cut short",
        Category::Syntax => "it is not JSON",
        Category::Data => "a required field is missing or of the wrong type",
        Category::Io => "it could not be read",
    }
}

/// Server-supplied text, made safe to show: printable characters only, bounded.
fn sanitize(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn reply(status: u16, ct: &str, body: &str) -> Reply {
        Reply {
            status,
            content_type: ct.into(),
            body: Zeroizing::new(body.as_bytes().to_vec()),
        }
    }

    #[test]
    fn form_encoding_of_awkward_secrets() {
        let pw = SecretText::new("p&ss=w+rd%20/:x ünï");
        let body = encode_form(&[
            ("grant_type", Field::Text("password")),
            ("password", Field::Secret(&pw)),
        ]);
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(
            text,
            "grant_type=password&password=p%26ss%3Dw%2Brd%2520%2F%3Ax+%C3%BCn%C3%AF"
        );
        let decoded: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(decoded[1].1, "p&ss=w+rd%20/:x ünï");
        assert!(body.capacity() >= body.len());
    }

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        let v = basic_auth_value("my client", &SecretText::new("s3cr&t=+%/: é"));
        let text = std::str::from_utf8(&v).unwrap();
        let b64 = text.strip_prefix("Basic ").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&raw).unwrap(),
            "my+client:s3cr%26t%3D%2B%25%2F%3A+%C3%A9"
        );
    }

    #[test]
    fn parses_a_token_reply() {
        let t = parse_token_reply(&reply(
            200,
            "application/json",
            r#"{"access_token":"at","token_type":"bearer","expires_in":"60","refresh_token":"rt","scope":"read write","id_token":"x"}"#,
        ))
        .unwrap();
        assert_eq!(t.access_token.expose(), "at");
        assert_eq!(t.expires_in, 60);
        assert_eq!(t.refresh_token.unwrap().expose(), "rt");
        assert_eq!(t.scopes.unwrap(), ["read", "write"]);
    }

    #[test]
    fn refuses_broken_replies_without_echoing_them() {
        for (status, ct, body, want) in [
            (200, "text/html", "<html>login</html>", "not JSON"),
            (
                200,
                "application/json",
                r#"{"access_token":"secret-at","expires_in":"#,
                "cut short",
            ),
            (
                200,
                "application/json",
                r#"{"token_type":"Bearer"}"#,
                "missing",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":""}"#,
                "empty access_token",
            ),
            (500, "text/html", "<h1>oops secret-at</h1>", "HTTP 500"),
        ] {
            let e = parse_token_reply(&reply(status, ct, body))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("secret-at"), "{e}");
        }
    }

    #[test]
    fn json_bodies_are_exact_and_escaped() {
        let pw = SecretText::new("p&ss=w+rd%20/:x \"ünï\\");
        let body = encode_json(&[
            ("grant_type", Field::Text("password")),
            ("user_name", Field::Text("bob")),
            ("password", Field::Secret(&pw)),
        ]);
        assert_eq!(body.len(), body.capacity());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["password"], "p&ss=w+rd%20/:x \"ünï\\");
        assert_eq!(v["user_name"], "bob");
    }

    #[test]
    fn vendor_error_shapes_are_understood() {
        for (body, code, desc) in [
            (
                r#"{"error":"invalid_scope","error_description":"no such scope"}"#,
                "invalid_scope",
                "no such scope",
            ),
            (
                r#"{"success":false,"Message":"Bad client","ErrorCode":"invalid_client"}"#,
                "invalid_client",
                "Bad client",
            ),
            (
                r#"{"error":{"code":"invalid_grant","message":"locked"}}"#,
                "invalid_grant",
                "locked",
            ),
        ] {
            match oauth_error(&reply(400, "application/json", body)) {
                GrantError::OAuth {
                    error, description, ..
                } => {
                    assert_eq!(error, code);
                    assert_eq!(description.as_deref(), Some(desc));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn oauth_errors_are_reported_with_description() {
        let e = parse_token_reply(&reply(
            400,
            "application/json",
            r#"{"error":"invalid_grant","error_description":"Invalid credentials given."}"#,
        ))
        .err()
        .unwrap();
        assert!(e.is_invalid_grant());
        assert_eq!(
            e.to_string(),
            "invalid_grant: Invalid credentials given. (HTTP 400)"
        );
    }
}
