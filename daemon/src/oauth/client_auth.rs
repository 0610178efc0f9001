//! The client's side of every request: how the broker authenticates itself (Basic, body
//! fields, a signed assertion, or only its id), and how a body is encoded (form or JSON), into
//! buffers that are sized once and wiped on drop, because they hold secrets.

use base64::Engine as _;
use tokenbroker_client::{ClientAuth, SecretText};
use zeroize::Zeroizing;

use super::assertion::ClientKey;
use super::discovery::Endpoints;
use super::http::{secret_bytes, secret_header, Body};
use super::preset::{BodyEncoding, Dialect};
use crate::error::{Error, Result};

/// A value in a request body.
pub enum Field<'a> {
    Text(&'a str),
    Secret(&'a SecretText),
}

impl Field<'_> {
    pub(super) fn as_str(&self) -> &str {
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

impl ClientCredentials<'_> {
    /// The secrets a request with `token` carries (the token, the client secret), for the
    /// scrub of what the server answers. The assertion is signed per request and not listed;
    /// the scrub cuts it as a token-like run.
    pub fn secrets<'a>(&'a self, token: &'a SecretText) -> Vec<&'a str> {
        let mut v = vec![token.expose()];
        v.extend(self.secret.map(SecretText::expose));
        v
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
pub(super) fn client_auth<'a>(
    client: &ClientCredentials<'a>,
    fields: &mut Vec<(&'a str, Field<'a>)>,
    assertion: Option<&'a SecretText>,
) -> Result<Option<reqwest::header::HeaderValue>> {
    let need_secret = || {
        client.secret.ok_or_else(|| Error::NoClientSecret {
            client_id: client.client_id.to_owned(),
            method: client.method.as_str(),
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
            let assertion = assertion.ok_or(Error::NoClientKey)?;
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
pub(super) fn make_assertion(
    client: &ClientCredentials<'_>,
    endpoints: &Endpoints,
) -> Result<Option<SecretText>> {
    if client.method != ClientAuth::PrivateKeyJwt {
        return Ok(None);
    }
    let key = client.key.ok_or(Error::NoClientKey)?;
    let audience = client
        .dialect
        .assertion_audience
        .clone()
        .unwrap_or_else(|| endpoints.token.to_string());
    super::assertion::sign(key, client.client_id, &audience).map(Some)
}

/// Encode a request body the way the provider's dialect says.
pub(super) fn encode_body(
    dialect: &Dialect,
    fields: &[(&str, Field<'_>)],
    json_allowed: bool,
) -> Body {
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
