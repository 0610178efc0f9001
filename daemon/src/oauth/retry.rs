//! Bounded retries with exponential backoff and jitter, for every call to an authorization
//! server. The caller says which outcomes are worth another attempt: a token request only when
//! it cannot have been carried out (see [`crate::error::Error::is_retryable`]), a metadata GET
//! on any network error or 5xx.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

/// How often and how patiently to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first.
    pub retries: u32,
    /// Milliseconds before the first retry; doubled for each further one (up to 64 times).
    pub backoff_ms: u64,
}

impl RetryPolicy {
    /// How long to wait before attempt `attempt` (1 = the first retry), with up to a quarter of
    /// jitter so that many clients do not retry in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .backoff_ms
            .saturating_mul(1 << attempt.saturating_sub(1).min(6));
        let jitter = rand::rng().random_range(0..=base / 4 + 1);
        Duration::from_millis(base.saturating_add(jitter))
    }
}

/// Run `attempt` until it gives an outcome that `again` does not want retried, or the attempts
/// run out; the last outcome is returned as it is.
pub async fn with_retries<T, E, F, Fut>(
    policy: RetryPolicy,
    again: impl Fn(&Result<T, E>) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut n = 0;
    loop {
        let outcome = attempt(n).await;
        if n >= policy.retries || !again(&outcome) {
            return outcome;
        }
        n += 1;
        tracing::debug!(
            attempt = n,
            "retrying a request to the authorization server"
        );
        tokio::time::sleep(policy.delay(n)).await;
    }
}
