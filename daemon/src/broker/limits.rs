//! How much one app may ask. Every request of a caller that is not one of the user's own tools
//! takes a token from its app's bucket (the app: its uid and executable); an empty bucket means
//! `rate_limited`, with the time to wait. A looping app then costs the daemon little and cannot
//! flood the log, the audit file or the authorization server.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokenbroker_client::{BrokerError, ErrorKind};

use super::Broker;
use crate::policy::Caller;

/// At most this many apps are tracked; the idlest are forgotten first.
const MAX_APPS: usize = 4096;

#[derive(Default)]
pub(super) struct RateLimits {
    buckets: Mutex<HashMap<(u32, String), Bucket>>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    /// Requests refused since the last log line about them.
    refused: u64,
    reported: Option<Instant>,
}

/// Refused requests of an app are logged at most this often, with their count.
const REPORT_EVERY: Duration = Duration::from_secs(10);

impl RateLimits {
    /// Take one request from `key`'s bucket of `burst` refilled at `rate` a second; Err: the
    /// time until one is back.
    fn take(&self, key: (u32, String), rate: f64, burst: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_APPS && !buckets.contains_key(&key) {
            // Full buckets are forgotten first: they are the apps that were quiet longest.
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_APPS {
                buckets.clear();
            }
        }
        let b = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
            refused: 0,
            reported: None,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        b.refused += 1;
        if b.reported
            .is_none_or(|t| now.duration_since(t) >= REPORT_EVERY)
        {
            tracing::warn!(
                target: "tokenbroker::audit",
                uid = key.0,
                exe = %key.1,
                refused = b.refused,
                "an app asks too often: requests refused as rate_limited"
            );
            b.refused = 0;
            b.reported = Some(now);
        }
        Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
    }
}

impl Broker {
    /// Every request of an app passes here first (both transports call it). The user's own
    /// tools are not limited.
    pub fn admit_request(&self, caller: &Caller) -> Result<(), BrokerError> {
        if self.is_trusted(caller) {
            return Ok(());
        }
        let l = &self.config().limits;
        let key = (caller.uid, caller.exe_display());
        let rate = f64::from(l.app_requests_per_second);
        self.inner
            .limits
            .take(key, rate, f64::from(l.app_request_burst))
            .map_err(|wait| {
                BrokerError::new(
                    ErrorKind::RateLimited,
                    format!(
                        "{} asked too often (more than {} requests a second): retry in {:.1} s",
                        caller.exe_display(),
                        l.app_requests_per_second,
                        wait.as_secs_f64().max(0.1)
                    ),
                )
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let l = RateLimits::default();
        let key = || (1, "/usr/bin/app".to_owned());
        for _ in 0..10 {
            assert!(l.take(key(), 5.0, 10.0).is_ok());
        }
        let wait = l.take(key(), 5.0, 10.0).unwrap_err();
        assert!(wait <= Duration::from_millis(201), "{wait:?}");
        assert!(
            l.take((1, "/usr/bin/other".into()), 5.0, 10.0).is_ok(),
            "another app is not limited"
        );
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.take(key(), 5.0, 10.0).is_ok(), "refilled");
    }
}
