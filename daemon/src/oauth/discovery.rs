//! Providers: an authorization server's endpoints, from explicit config or from discovery
//! (RFC 8414 authorization server metadata, and OpenID Connect discovery).

use serde::Deserialize;
use url::Url;

use super::http::Http;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub token: Url,
    pub revocation: Option<Url>,
    pub introspection: Option<Url>,
}

/// https, or http to a loopback address when `allow_insecure_loopback`.
pub fn check_endpoint_url(
    what: &str,
    raw: &str,
    allow_insecure_loopback: bool,
) -> std::result::Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{what} {raw:?} is not a valid URL: {e}"))?;
    if url.username() != "" || url.password().is_some() {
        return Err(format!("{what} must not carry credentials in the URL"));
    }
    if url.fragment().is_some() {
        return Err(format!("{what} {raw:?} must not have a fragment"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if !loopback {
                Err(format!(
                    "{what} {raw:?} uses plain http: only https is allowed, except to a loopback address"
                ))
            } else if !allow_insecure_loopback {
                Err(format!(
                    "{what} {raw:?} uses plain http to a loopback address: set allow_insecure_loopback = true on the provider to allow it"
                ))
            } else {
                Ok(url)
            }
        }
        other => Err(format!(
            "{what} {raw:?} has scheme {other:?}: only https is allowed"
        )),
    }
}

/// The endpoints a metadata document at `url` names, checked against what was asked: the
/// issuer must be the configured one (RFC 8414 §3.3; a trailing slash is ignored), and every
/// endpoint must pass the transport rule.
pub fn endpoints_from(what: &Discovery, url: &Url, body: &[u8]) -> Result<Endpoints> {
    let raw_issuer = &what.issuer;
    let check_url =
        |name: &str, raw: &str| check_endpoint_url(name, raw, what.allow_insecure_loopback);
    let meta: Metadata =
        serde_json::from_slice(body).map_err(|source| Error::DiscoveryInvalid {
            url: url.to_string(),
            source,
        })?;
    let same = meta.issuer.trim_end_matches('/') == raw_issuer.trim_end_matches('/');
    if !same {
        return Err(Error::DiscoveryIssuer {
            url: url.to_string(),
            found: super::scrub::text(&meta.issuer.chars().take(200).collect::<String>(), &[]),
            configured: raw_issuer.clone(),
        });
    }
    let token = meta.token_endpoint.ok_or_else(|| Error::DiscoveryNoToken {
        url: url.to_string(),
    })?;
    let discovered = |m: String| Error::Endpoint {
        problem: format!("discovered {m}"),
    };
    let check = |name: &str, raw: &Option<String>| {
        raw.as_deref()
            .map(|r| check_url(name, r))
            .transpose()
            .map_err(discovered)
    };
    Ok(Endpoints {
        token: check_url("token_endpoint", &token).map_err(discovered)?,
        revocation: check("revocation_endpoint", &meta.revocation_endpoint)?
            .or(check("revocation_endpoint", &what.revocation)?),
        introspection: check("introspection_endpoint", &meta.introspection_endpoint)?
            .or(check("introspection_endpoint", &what.introspection)?),
    })
}

/// The metadata URLs to try for `issuer`, in order:
/// 1. RFC 8414 §3: `/.well-known/oauth-authorization-server` inserted before the issuer's path;
/// 2. OpenID Connect Discovery: `/.well-known/openid-configuration` appended to the issuer;
/// 3. the RFC 8414 name appended to the issuer (a form some servers use).
pub fn metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut out = Vec::with_capacity(3);
    let mut with_path = |p: String| {
        let mut u = issuer.clone();
        u.set_path(&p);
        u.set_query(None);
        if !out.contains(&u) {
            out.push(u);
        }
    };
    with_path(format!("/.well-known/oauth-authorization-server{path}"));
    with_path(format!("{path}/.well-known/openid-configuration"));
    with_path(format!("{path}/.well-known/oauth-authorization-server"));
    out
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    token_endpoint: Option<String>,
    #[serde(default)]
    revocation_endpoint: Option<String>,
    #[serde(default)]
    introspection_endpoint: Option<String>,
}

/// What to discover: the issuer, its transport rule, and the endpoints to use where the
/// metadata names none.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    pub issuer: String,
    pub allow_insecure_loopback: bool,
    pub revocation: Option<String>,
    pub introspection: Option<String>,
}

/// Fetch and check the issuer's metadata. The document's `issuer` must be the configured issuer
/// (RFC 8414 §3.3; a trailing slash is ignored), and every endpoint must pass the provider's
/// transport rule.
pub async fn discover(http: &Http, what: &Discovery) -> Result<Endpoints> {
    let raw_issuer = &what.issuer;
    let check_url =
        |name: &str, raw: &str| check_endpoint_url(name, raw, what.allow_insecure_loopback);
    let issuer = check_url("issuer", raw_issuer).map_err(|problem| Error::Endpoint { problem })?;
    let mut tried = Vec::new();
    for url in metadata_urls(&issuer) {
        let reply = match http.get(&url).await {
            Ok(r) => r,
            Err(e) => {
                return Err(Error::DiscoveryFetch {
                    issuer: raw_issuer.clone(),
                    url: url.to_string(),
                    source: Box::new(e),
                })
            }
        };
        if reply.status == 404 || reply.status == 410 {
            tried.push(url.to_string());
            continue;
        }
        if reply.status != 200 {
            return Err(Error::DiscoveryStatus {
                url: url.to_string(),
                status: reply.status,
            });
        }
        return endpoints_from(what, &url, &reply.body);
    }
    Err(Error::DiscoveryNone {
        issuer: raw_issuer.clone(),
        tried,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_for_an_issuer_with_a_path() {
        let urls = metadata_urls(&Url::parse("https://as.example/o").unwrap());
        let urls: Vec<String> = urls.iter().map(Url::to_string).collect();
        assert_eq!(
            urls,
            [
                "https://as.example/.well-known/oauth-authorization-server/o",
                "https://as.example/o/.well-known/openid-configuration",
                "https://as.example/o/.well-known/oauth-authorization-server",
            ]
        );
    }

    #[test]
    fn metadata_urls_for_a_bare_issuer() {
        let urls = metadata_urls(&Url::parse("https://as.example/").unwrap());
        let urls: Vec<String> = urls.iter().map(Url::to_string).collect();
        assert_eq!(
            urls,
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ]
        );
    }
}
