//! Providers: an authorization server's endpoints, from explicit config or from discovery
//! (RFC 8414 authorization server metadata, and OpenID Connect discovery).

use serde::Deserialize;
use url::Url;

use crate::config::ProviderConfig;
use crate::http::Http;

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub token: Url,
    pub revocation: Option<Url>,
    pub introspection: Option<Url>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DiscoveryError(pub String);

impl DiscoveryError {
    /// Whether the issuer could not be reached at all (rather than answering wrongly).
    pub fn is_network(&self) -> bool {
        self.0.starts_with("cannot fetch")
    }
}

/// The endpoints of a provider configured with explicit URLs (or a preset's templates), or None
/// when it uses discovery.
pub fn explicit_endpoints(p: &ProviderConfig) -> Result<Option<Endpoints>, DiscoveryError> {
    let Some(token) = p.token_url() else {
        return Ok(None);
    };
    let check = |what: &str, raw: Option<String>| {
        raw.as_deref()
            .map(|r| p.check_url(what, r))
            .transpose()
            .map_err(DiscoveryError)
    };
    Ok(Some(Endpoints {
        token: p
            .check_url("token_endpoint", &token)
            .map_err(DiscoveryError)?,
        revocation: check("revocation_endpoint", p.revocation_url())?,
        introspection: check("introspection_endpoint", p.introspection_url())?,
    }))
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

/// Fetch and check the issuer's metadata. The document's `issuer` must be the configured issuer
/// (RFC 8414 §3.3; a trailing slash is ignored), and every endpoint must pass the provider's
/// transport rule.
pub async fn discover(http: &Http, p: &ProviderConfig) -> Result<Endpoints, DiscoveryError> {
    let Some(raw_issuer) = p.issuer_url() else {
        return Err(DiscoveryError(
            "the provider has no issuer to discover from".into(),
        ));
    };
    let raw_issuer = &raw_issuer;
    let issuer = p.check_url("issuer", raw_issuer).map_err(DiscoveryError)?;
    let mut tried = Vec::new();
    for url in metadata_urls(&issuer) {
        let reply = match http.get(&url).await {
            Ok(r) => r,
            Err(e) => {
                return Err(DiscoveryError(format!(
                    "cannot fetch the metadata of issuer {raw_issuer} from {url}: {e}"
                )))
            }
        };
        if reply.status == 404 || reply.status == 410 {
            tried.push(url.to_string());
            continue;
        }
        if reply.status != 200 {
            return Err(DiscoveryError(format!(
                "the metadata document {url} answered HTTP {}",
                reply.status
            )));
        }
        let meta: Metadata = serde_json::from_slice(&reply.body).map_err(|e| {
            DiscoveryError(format!(
                "the metadata document {url} is not valid metadata: {e}"
            ))
        })?;
        let same = meta.issuer.trim_end_matches('/') == raw_issuer.trim_end_matches('/');
        if !same {
            return Err(DiscoveryError(format!(
                "the metadata document {url} names issuer {:?}, not the configured {raw_issuer:?}",
                meta.issuer
            )));
        }
        let token = meta.token_endpoint.ok_or_else(|| {
            DiscoveryError(format!("the metadata document {url} has no token_endpoint"))
        })?;
        let check = |what: &str, raw: &Option<String>| {
            raw.as_deref()
                .map(|r| p.check_url(what, r))
                .transpose()
                .map_err(|m| DiscoveryError(format!("discovered {m}")))
        };
        return Ok(Endpoints {
            token: p
                .check_url("token_endpoint", &token)
                .map_err(|m| DiscoveryError(format!("discovered {m}")))?,
            revocation: check("revocation_endpoint", &meta.revocation_endpoint)?
                .or(check("revocation_endpoint", &p.revocation_url())?),
            introspection: check("introspection_endpoint", &meta.introspection_endpoint)?
                .or(check("introspection_endpoint", &p.introspection_url())?),
        });
    }
    Err(DiscoveryError(format!(
        "issuer {raw_issuer} publishes no metadata: tried {}",
        tried.join(", ")
    )))
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
