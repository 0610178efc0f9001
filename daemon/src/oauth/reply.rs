//! What an authorization server answers, read strictly: a token reply is a 200 with a JSON
//! object holding a non-empty access_token; anything else becomes an error that says what came,
//! never the body's content (which may echo a secret).

use serde::Deserialize;
use tokenbroker_client::{IntrospectReply, SecretText};

use super::http::Reply;
use crate::error::{Error, Result};

/// A successful token reply.
pub struct TokenResponse {
    pub access_token: SecretText,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_token: Option<SecretText>,
    /// The granted scopes, when the server said.
    pub scopes: Option<Vec<String>>,
}

fn bad(status: u16, message: impl Into<String>) -> Error {
    Error::BadReply {
        status,
        message: message.into(),
    }
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

/// The longest lifetime believed of an access token: a year. A server that says more gets a
/// year, so that no arithmetic on times can overflow and no token is trusted for decades.
pub const MAX_EXPIRES_IN: u64 = 365 * 86_400;

/// A lifetime as the server wrote it.
enum Lifetime {
    Whole(u64),
    Real(f64),
}

impl Lifetime {
    /// Seconds, at most [`MAX_EXPIRES_IN`]; None for a negative or not-a-number value.
    fn capped(self) -> Option<u64> {
        match self {
            Lifetime::Whole(n) => Some(n.min(MAX_EXPIRES_IN)),
            Lifetime::Real(f) if f.is_nan() || f < 0.0 => None,
            Lifetime::Real(f) => Some(if f >= MAX_EXPIRES_IN as f64 {
                MAX_EXPIRES_IN
            } else {
                f as u64
            }),
        }
    }
}

/// Parse a token endpoint reply strictly: 200 with a JSON object holding a non-empty
/// access_token, else an error that says what the server sent (never its body's secrets).
pub fn parse_token_reply(reply: &Reply) -> Result<TokenResponse> {
    if reply.status != 200 {
        return Err(oauth_error(reply));
    }
    let raw: RawToken = serde_json::from_slice(&reply.body).map_err(|e| {
        bad(
            reply.status,
            format!(
            "the token endpoint answered HTTP 200 with {} that is not a valid token response ({})",
            describe_body(reply),
            json_problem(&e)
        ),
        )
    })?;
    if raw.access_token.is_empty() {
        return Err(bad(
            reply.status,
            "the token endpoint answered with an empty access_token",
        ));
    }
    let expires_in = match raw.expires_in {
        None | Some(serde_json::Value::Null) => DEFAULT_EXPIRES_IN,
        Some(serde_json::Value::Number(n)) => {
            let seconds = n
                .as_u64()
                .map(Lifetime::Whole)
                .or_else(|| n.as_f64().map(Lifetime::Real));
            seconds.and_then(Lifetime::capped).ok_or_else(|| {
                bad(
                    reply.status,
                    "the token endpoint sent a negative expires_in",
                )
            })?
        }
        Some(serde_json::Value::String(s)) => {
            let s = s.trim();
            let seconds = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                // All digits: a number too large for u64 is still a (very long) lifetime.
                Some(Lifetime::Whole(s.parse::<u64>().unwrap_or(u64::MAX)))
            } else {
                s.parse::<f64>().ok().map(Lifetime::Real)
            };
            seconds.and_then(Lifetime::capped).ok_or_else(|| {
                bad(
                    reply.status,
                    "the token endpoint sent a non-numeric expires_in",
                )
            })?
        }
        Some(_) => {
            return Err(bad(
                reply.status,
                "the token endpoint sent expires_in that is not a number",
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
            return Err(bad(
                reply.status,
                "the token endpoint sent a scope that is neither a string nor a list",
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
pub fn oauth_error(reply: &Reply) -> Error {
    let fields = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .as_ref()
        .and_then(error_fields);
    match fields {
        Some((error, description)) if !error.is_empty() => Error::OAuth {
            status: reply.status,
            error: sanitize(&error, 64),
            description: description.map(|d| sanitize(&d, 300)),
        },
        _ => bad(
            reply.status,
            format!(
                "the server answered HTTP {} with {} and no OAuth error",
                reply.status,
                describe_body(reply)
            ),
        ),
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

/// An RFC 7662 introspection reply, leniently typed (vendors send `active` and `exp` as strings).
pub fn parse_introspection(reply: &Reply) -> Result<IntrospectReply> {
    if reply.status != 200 {
        return Err(oauth_error(reply));
    }
    let raw: RawIntrospection = serde_json::from_slice(&reply.body).map_err(|e| {
        bad(
            reply.status,
            format!(
                "the introspection endpoint answered with {} that is not an introspection response ({})",
                describe_body(reply),
                json_problem(&e)
            ),
        )
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
