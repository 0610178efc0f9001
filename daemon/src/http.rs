//! Every call to an authorization server: connect and total timeouts, bounded retries with
//! backoff for network errors and 5xx replies, a cap on the reply size, no redirects.
//!
//! Request bodies and Basic credentials are handed to the HTTP stack as `Bytes` whose owner is a
//! zeroizing buffer, so they are wiped when the stack lets go of them. Reply bodies are read into
//! a zeroizing buffer too.

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use url::Url;
use zeroize::Zeroizing;

use crate::config::HttpSettings;

/// The largest reply body read from a server.
const MAX_REPLY: usize = 1024 * 1024;

/// A reply, of any status.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Zeroizing<Vec<u8>>,
}

/// The server could not be reached, or broke off, within the timeouts and retries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NetError(pub String);

/// A request body: bytes that are wiped when the HTTP stack drops its last reference.
pub fn secret_bytes(buf: Zeroizing<Vec<u8>>) -> Bytes {
    Bytes::from_owner(ZeroizingOwner(buf))
}

struct ZeroizingOwner(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for ZeroizingOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A header value backed by a wiped-on-drop buffer, marked sensitive so that the HTTP stack
/// never logs it.
pub fn secret_header(value: Zeroizing<Vec<u8>>) -> Option<HeaderValue> {
    let mut hv = HeaderValue::from_maybe_shared(secret_bytes(value)).ok()?;
    hv.set_sensitive(true);
    Some(hv)
}

/// A request body and its content type.
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Bytes,
}

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    settings: HttpSettings,
}

impl Http {
    pub fn new(settings: &HttpSettings) -> Result<Self, NetError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
            .timeout(Duration::from_secs(settings.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tokenbroker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NetError(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            settings: settings.clone(),
        })
    }

    /// POST to a token or revocation endpoint. A network error is retried only when the request
    /// cannot have reached the server (no connection was made): a refresh that the server carried
    /// out but whose reply was lost must not be sent again with the token it has just rotated.
    pub async fn post(
        &self,
        url: &Url,
        auth: Option<&HeaderValue>,
        body: Body,
    ) -> Result<Reply, NetError> {
        self.send(false, || {
            let mut rb = self
                .client
                .post(url.clone())
                .header(ACCEPT, "application/json");
            if let Some(a) = auth {
                rb = rb.header(AUTHORIZATION, a.clone());
            }
            rb.header(CONTENT_TYPE, body.content_type)
                .body(body.bytes.clone())
        })
        .await
    }

    pub async fn get(&self, url: &Url) -> Result<Reply, NetError> {
        self.send(true, || {
            self.client
                .get(url.clone())
                .header(ACCEPT, "application/json")
        })
        .await
    }

    /// Send, retrying network errors and 5xx replies with exponential backoff and jitter. After
    /// the last attempt a 5xx reply is returned as it is, for the caller to report.
    async fn send(
        &self,
        idempotent: bool,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, NetError> {
        let attempts = self.settings.retries + 1;
        let mut last_err = NetError(String::from("no attempt made"));
        for attempt in 0..attempts {
            if attempt > 0 {
                let base = self
                    .settings
                    .retry_backoff_ms
                    .saturating_mul(1 << (attempt - 1).min(6));
                let jitter = rand::rng().random_range(0..=base / 4 + 1);
                tokio::time::sleep(Duration::from_millis(base + jitter)).await;
            }
            match self.once(build()).await {
                Ok(reply) if reply.status >= 500 && attempt + 1 < attempts => {
                    tracing::debug!(status = reply.status, attempt, "server error, retrying");
                }
                Ok(reply) => return Ok(reply),
                Err((e, sent)) => {
                    tracing::debug!(error = %e, attempt, "request failed");
                    last_err = e;
                    if sent && !idempotent {
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    /// One attempt. An error comes with whether the request may have reached the server.
    async fn once(&self, rb: reqwest::RequestBuilder) -> Result<Reply, (NetError, bool)> {
        let mut resp = rb
            .send()
            .await
            .map_err(|e| (describe(&e), !e.is_connect()))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut body = Zeroizing::new(Vec::with_capacity(4096));
        while let Some(chunk) = resp.chunk().await.map_err(|e| (describe(&e), true))? {
            if body.len() + chunk.len() > MAX_REPLY {
                let e = NetError(format!(
                    "the server's reply is larger than {} KiB",
                    MAX_REPLY / 1024
                ));
                return Err((e, true));
            }
            // Reserve ahead so that growing the buffer never leaves an unwiped copy behind.
            if body.capacity() - body.len() < chunk.len() {
                let mut bigger = Zeroizing::new(Vec::with_capacity((body.len() + chunk.len()) * 2));
                bigger.extend_from_slice(&body);
                body = bigger;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }
}

/// A network error in words, without the URL's query (which never holds a secret here, but
/// reqwest's Display of some errors repeats the URL).
fn describe(e: &reqwest::Error) -> NetError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "broke off while sending its reply"
    } else if e.is_request() {
        "request failed"
    } else {
        "failed"
    };
    let mut detail = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        NetError(what.to_owned())
    } else {
        NetError(format!("{what}: {detail}"))
    }
}
