//! Every HTTP exchange with an authorization server: connect and total timeouts, a cap on the
//! reply size, no redirects. A POST is one attempt (the token engine decides on retries); a GET
//! of metadata is retried here, since it changes nothing at the server.
//!
//! Request bodies and Basic credentials are handed to the HTTP stack as `Bytes` whose owner is a
//! zeroizing buffer, so they are wiped when the stack lets go of them. Reply bodies are read into
//! a zeroizing buffer too.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use url::Url;
use zeroize::Zeroizing;

use super::retry::{with_retries, RetryPolicy};
use crate::error::{Error, Result};

/// The largest reply body read from a server.
const MAX_REPLY: usize = 1024 * 1024;

/// A reply, of any status.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Zeroizing<Vec<u8>>,
}

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

/// The HTTP client's timeouts and the retries of its GETs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    retry: RetryPolicy,
}

impl Http {
    pub fn new(options: HttpOptions) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // No idle connection is kept: its buffers would hold the last reply (a refresh
            // token) for as long as it idles. Token requests are rare; a handshake each is cheap.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("tokenbroker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self {
            client,
            retry: options.retry,
        })
    }

    /// POST to a token, revocation or introspection endpoint, once. A reply of any status is
    /// Ok; an error says whether the request may have reached the server.
    pub async fn post(&self, url: &Url, auth: Option<&HeaderValue>, body: &Body) -> Result<Reply> {
        let mut rb = self
            .client
            .post(url.clone())
            .header(ACCEPT, "application/json");
        if let Some(a) = auth {
            rb = rb.header(AUTHORIZATION, a.clone());
        }
        let rb = rb
            .header(CONTENT_TYPE, body.content_type)
            .body(body.bytes.clone());
        self.once(rb).await
    }

    /// GET a metadata document, retrying network errors and 5xx replies (the last 5xx reply is
    /// returned as it is, for the caller to report).
    pub async fn get(&self, url: &Url) -> Result<Reply> {
        let again = |r: &Result<Reply>| match r {
            Ok(reply) => reply.status >= 500,
            Err(e) => e.is_network(),
        };
        with_retries(self.retry, again, |_| {
            self.once(
                self.client
                    .get(url.clone())
                    .header(ACCEPT, "application/json"),
            )
        })
        .await
    }

    /// One attempt.
    async fn once(&self, rb: reqwest::RequestBuilder) -> Result<Reply> {
        let mut resp = rb.send().await.map_err(|e| network(&e, !e.is_connect()))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut body = Zeroizing::new(Vec::with_capacity(4096));
        while let Some(chunk) = resp.chunk().await.map_err(|e| network(&e, true))? {
            if body.len() + chunk.len() > MAX_REPLY {
                return Err(Error::ReplyTooLarge { limit: MAX_REPLY });
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

/// A network error in words, without the URL (reqwest's Display of some errors repeats it).
fn network(e: &reqwest::Error, sent: bool) -> Error {
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
    let message = if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {detail}")
    };
    Error::Network { message, sent }
}
