//! The token engine's per-account state: the in-memory access-token cache (per scope set), the
//! single-flight lock, and what the account's state is. Pure data and short critical sections;
//! the algorithm that fills it is in the parent module.
//!
//! Locks: `flight` (async) is held across network calls, one account at a time, so that
//! concurrent requests for an expired token cause one refresh, and other accounts never wait.
//! `state` (sync) is only held for short, non-async sections.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokenbroker_client::{AccountState, BrokerError, Grant, SecretText, TokenReply};

/// Why an account is in its state: in full (with what the server said, scrubbed) for the user's
/// own tools, and in the daemon's words alone for every other caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub full: String,
    pub for_apps: String,
}

impl Reason {
    /// A reason in the daemon's own words: the same for everyone.
    pub fn ours(text: impl Into<String>) -> Self {
        let full = text.into();
        Self {
            for_apps: full.clone(),
            full,
        }
    }

    pub fn new(full: impl Into<String>, for_apps: impl Into<String>) -> Self {
        Self {
            full: full.into(),
            for_apps: for_apps.into(),
        }
    }

    /// The text for a caller: `trusted` is one of the user's own tools.
    pub fn for_caller(&self, trusted: bool) -> &str {
        if trusted {
            &self.full
        } else {
            &self.for_apps
        }
    }
}

impl From<&BrokerError> for Reason {
    fn from(e: &BrokerError) -> Self {
        Self {
            full: e.message.clone(),
            for_apps: e.for_apps.clone().unwrap_or_else(|| e.message.clone()),
        }
    }
}

/// Scopes, sorted and deduplicated: the cache key.
pub type ScopeKey = Vec<String>;

pub fn scope_key(scopes: &[String]) -> ScopeKey {
    let mut v = scopes.to_vec();
    v.sort();
    v.dedup();
    v
}

/// A token is never handed out with less than this many seconds left, whatever min_ttl says.
pub const MIN_REMAINING: u64 = 5;

pub struct Cached {
    pub token: SecretText,
    pub token_type: String,
    pub scopes: Vec<String>,
    pub expires_at: u64,
    pub refresh_at: u64,
    /// Handed out since it was fetched: only used tokens are refreshed ahead of expiry.
    pub used: bool,
    pub refresh_started: bool,
    pub serial: u64,
}

impl Cached {
    pub fn reply(&self) -> TokenReply {
        TokenReply {
            access_token: self.token.clone(),
            token_type: self.token_type.clone(),
            expires_at: self.expires_at,
            scopes: self.scopes.clone(),
        }
    }
}

#[derive(Default)]
pub struct SlotState {
    pub tokens: HashMap<ScopeKey, Cached>,
    /// Whether the secret store holds a refresh token (None: not looked yet).
    pub has_refresh: Option<bool>,
    /// The last failure that was not the user's to fix by signing in.
    pub error: Option<Reason>,
    /// Why sign-in is needed, when the server said so.
    pub sign_in_reason: Option<Reason>,
    /// The lifetime of the last token the server issued, in seconds.
    pub last_lifetime: Option<u64>,
    /// The scopes the server granted the account's refresh token, as the last sign-in or
    /// refresh for the whole grant said (not known before the first of them since start).
    pub granted: Option<ScopeKey>,
    pub next_serial: u64,
}

impl SlotState {
    pub fn state(&self, grant: Grant, now: u64) -> AccountState {
        if self.error.is_some() {
            return AccountState::Error;
        }
        match grant {
            Grant::ClientCredentials => AccountState::SignedIn,
            Grant::Password => {
                let live = self
                    .tokens
                    .values()
                    .any(|t| t.expires_at > now.saturating_add(MIN_REMAINING));
                if self.has_refresh == Some(true) || live {
                    AccountState::SignedIn
                } else {
                    AccountState::NeedsSignIn
                }
            }
        }
    }

    pub fn latest_expiry(&self) -> Option<u64> {
        self.tokens.values().map(|t| t.expires_at).max()
    }

    pub fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }
}

/// What a cache lookup found.
pub enum Lookup {
    Hit {
        reply: TokenReply,
        /// Past its refresh point: the caller should start a background refresh.
        refresh_due: bool,
    },
    Miss,
}

#[derive(Default)]
pub struct Slot {
    pub flight: tokio::sync::Mutex<()>,
    state: Mutex<SlotState>,
}

impl Slot {
    pub fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding this lock cannot leave the map half-updated in a way that
        // matters more than losing the daemon, so a poisoned lock is taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached token for `key` that stays valid for `min_ttl` more seconds.
    pub fn lookup(&self, key: &ScopeKey, min_ttl: u64, now: u64) -> Lookup {
        let mut st = self.lock();
        let Some(t) = st.tokens.get_mut(key) else {
            return Lookup::Miss;
        };
        if t.expires_at < now.saturating_add(min_ttl.max(MIN_REMAINING)) {
            return Lookup::Miss;
        }
        t.used = true;
        let refresh_due = now >= t.refresh_at && !t.refresh_started;
        if refresh_due {
            t.refresh_started = true;
        }
        Lookup::Hit {
            reply: t.reply(),
            refresh_due,
        }
    }

    /// Insert a fresh token and return its serial.
    pub fn insert(&self, key: ScopeKey, mut token: Cached) -> u64 {
        let mut st = self.lock();
        let serial = st.serial();
        token.serial = serial;
        st.tokens.insert(key, token);
        st.error = None;
        serial
    }
}

/// When to refresh a token of `lifetime` seconds issued at `issued_at`: at `fraction` of its life,
/// minus up to 5% jitter so that many tokens do not refresh in the same second.
pub fn refresh_point(issued_at: u64, lifetime: u64, fraction: f64, jitter: f64) -> u64 {
    let base = lifetime as f64 * fraction;
    let jittered = base - lifetime as f64 * 0.05 * jitter.clamp(0.0, 1.0);
    issued_at.saturating_add(jittered.max(0.0) as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cached(expires_at: u64, refresh_at: u64) -> Cached {
        Cached {
            token: SecretText::new("t"),
            token_type: "Bearer".into(),
            scopes: vec!["read".into()],
            expires_at,
            refresh_at,
            used: false,
            refresh_started: false,
            serial: 0,
        }
    }

    #[test]
    fn scope_keys_ignore_order_and_duplicates() {
        let a = scope_key(&["b".into(), "a".into(), "b".into()]);
        assert_eq!(a, ["a", "b"]);
        assert_eq!(a, scope_key(&["a".into(), "b".into()]));
    }

    #[test]
    fn lookup_honours_min_ttl_and_marks_use() {
        let slot = Slot::default();
        let key = scope_key(&["read".into()]);
        slot.insert(key.clone(), cached(1000, 750));
        assert!(matches!(
            slot.lookup(&key, 0, 100),
            Lookup::Hit {
                refresh_due: false,
                ..
            }
        ));
        assert!(slot.lock().tokens[&key].used);
        assert!(matches!(slot.lookup(&key, 901, 100), Lookup::Miss));
        assert!(
            matches!(slot.lookup(&key, 0, 996), Lookup::Miss),
            "less than MIN_REMAINING left"
        );
        assert!(matches!(
            slot.lookup(&["write".to_string()].to_vec(), 0, 100),
            Lookup::Miss
        ));
    }

    #[test]
    fn refresh_is_due_once_past_the_refresh_point() {
        let slot = Slot::default();
        let key = scope_key(&["read".into()]);
        slot.insert(key.clone(), cached(1000, 750));
        assert!(matches!(
            slot.lookup(&key, 0, 800),
            Lookup::Hit {
                refresh_due: true,
                ..
            }
        ));
        assert!(matches!(
            slot.lookup(&key, 0, 801),
            Lookup::Hit {
                refresh_due: false,
                ..
            }
        ));
    }

    #[test]
    fn refresh_point_is_about_three_quarters() {
        assert_eq!(refresh_point(100, 1000, 0.75, 0.0), 850);
        assert_eq!(refresh_point(100, 1000, 0.75, 1.0), 800);
        assert!(refresh_point(0, 4, 0.75, 0.5) <= 3);
    }

    #[test]
    fn state_follows_tokens_and_refresh_token() {
        let mut st = SlotState::default();
        assert_eq!(st.state(Grant::Password, 0), AccountState::NeedsSignIn);
        st.tokens.insert(vec![], cached(100, 75));
        assert_eq!(st.state(Grant::Password, 0), AccountState::SignedIn);
        assert_eq!(st.state(Grant::Password, 100), AccountState::NeedsSignIn);
        st.has_refresh = Some(true);
        assert_eq!(st.state(Grant::Password, 100), AccountState::SignedIn);
        st.error = Some(Reason::ours("x"));
        assert_eq!(st.state(Grant::Password, 100), AccountState::Error);
    }
}
