//! The grants (RFC 6749 §4.3 password, §4.4 client_credentials, §6 refresh_token), revocation
//! (RFC 7009) and introspection (RFC 7662): one request each, built from the provider's
//! dialect and the client's credentials. Retries are the caller's (the token engine's) choice.

use tokenbroker_client::{IntrospectReply, SecretText};

use super::client_auth::{client_auth, encode_body, make_assertion, ClientCredentials, Field};
use super::discovery::Endpoints;
use super::http::{Http, Reply};
use super::reply::{oauth_error, parse_introspection, parse_token_reply, TokenResponse};
use super::scrub;
use crate::error::{Error, Result};

/// What to ask the token endpoint for.
pub enum TokenRequest<'a> {
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

impl TokenRequest<'_> {
    /// The request's own secret (the password, the refresh token), empty for none.
    fn secret(&self) -> &str {
        match self {
            TokenRequest::Password { password, .. } => password.expose(),
            TokenRequest::Refresh { refresh_token, .. } => refresh_token.expose(),
            TokenRequest::ClientCredentials { .. } => "",
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            TokenRequest::Password { .. } => "password",
            TokenRequest::ClientCredentials { .. } => "client_credentials",
            TokenRequest::Refresh { .. } => "refresh_token",
        }
    }
}

/// Run a grant at the token endpoint.
pub async fn request_token(
    http: &Http,
    endpoints: &Endpoints,
    client: &ClientCredentials<'_>,
    request: &TokenRequest<'_>,
) -> Result<TokenResponse> {
    let dialect = client.dialect;
    let assertion = make_assertion(client, endpoints)?;
    let joined;
    let mut fields: Vec<(&str, Field<'_>)> = Vec::with_capacity(12);
    fields.push(("grant_type", Field::Text(request.name())));
    let (scopes, user_grant) = match request {
        TokenRequest::Password {
            username,
            password,
            scopes,
        } => {
            fields.push((dialect.username_field.as_str(), Field::Text(username)));
            fields.push(("password", Field::Secret(password)));
            (Some(*scopes), true)
        }
        TokenRequest::ClientCredentials { scopes } => (Some(*scopes), false),
        TokenRequest::Refresh {
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
    let reply = http.post(&endpoints.token, auth.as_ref(), &body).await?;
    let mut secrets = vec![request.secret()];
    secrets.extend(client.secret.map(SecretText::expose));
    secrets.extend(assertion.as_ref().map(SecretText::expose));
    parse_token_reply(&reply).map_err(|e| scrub::error(e, &secrets))
}

/// Revoke a token (RFC 7009). Ok(false) when the provider has no revocation endpoint.
pub async fn revoke(
    http: &Http,
    endpoints: &Endpoints,
    client: &ClientCredentials<'_>,
    token: &SecretText,
    hint: &str,
) -> Result<bool> {
    let Some(url) = &endpoints.revocation else {
        return Ok(false);
    };
    let reply = post_token(http, url, endpoints, client, token, hint).await?;
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    if reply.status == 200 {
        Ok(true)
    } else {
        Err(scrub::error(oauth_error(&reply), &client.secrets(token)))
    }
}

/// RFC 7662 introspection of `token`, with the client's authentication.
pub async fn introspect(
    http: &Http,
    endpoints: &Endpoints,
    client: &ClientCredentials<'_>,
    token: &SecretText,
) -> Result<IntrospectReply> {
    let Some(url) = &endpoints.introspection else {
        return Err(Error::BadReply {
            status: 0,
            message: "the provider has no introspection endpoint".into(),
        });
    };
    let reply = post_token(http, url, endpoints, client, token, "access_token").await?;
    parse_introspection(&reply).map_err(|e| scrub::error(e, &client.secrets(token)))
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
) -> Result<Reply> {
    let assertion = make_assertion(client, endpoints)?;
    let mut fields = vec![
        ("token", Field::Secret(token)),
        ("token_type_hint", Field::Text(hint)),
    ];
    let auth = client_auth(client, &mut fields, assertion.as_ref())?;
    let body = encode_body(client.dialect, &fields, false);
    drop(fields);
    http.post(url, auth.as_ref(), &body).await
}
