//! Caching a fresh token and refreshing it ahead of expiry: at about three quarters of its life
//! (with jitter), and only if callers used it; a refresh runs in the background and never while
//! another request of the same account is in flight.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokenbroker_client::TokenReply;

use super::{refresh_point, Account, Cached, Engine, ScopeKey, Slot};
use crate::oauth::TokenResponse;

impl Engine {
    /// Put a fresh token in the cache and schedule its refresh.
    pub(super) fn cache(
        &self,
        account: &Account,
        slot: &Arc<Slot>,
        key: ScopeKey,
        resp: TokenResponse,
        used: bool,
    ) -> TokenReply {
        let now = self.now();
        let settings = self.settings();
        // However the endpoint got it, no lifetime is believed beyond a year.
        let mut resp = resp;
        resp.expires_in = resp.expires_in.min(crate::oauth::reply::MAX_EXPIRES_IN);
        let jitter = rand::rng().random_range(0.0..1.0);
        let refresh_at = refresh_point(now, resp.expires_in, settings.refresh_at_fraction, jitter);
        let scopes = resp.scopes.clone().unwrap_or_else(|| key.clone());
        let cached = Cached {
            token: resp.access_token,
            token_type: resp.token_type,
            scopes,
            expires_at: now.saturating_add(resp.expires_in),
            refresh_at,
            used,
            refresh_started: false,
            serial: 0,
        };
        let reply = cached.reply();
        slot.lock().last_lifetime = Some(resp.expires_in);
        let serial = slot.insert(key.clone(), cached);
        if settings.proactive_refresh {
            let this = self.clone();
            let account = account.clone();
            let wait = refresh_at.saturating_sub(now);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(wait)).await;
                this.scheduled_refresh(account, key, serial);
            });
        }
        reply
    }

    /// At a token's refresh point: refresh it if callers used it, else let it lapse.
    fn scheduled_refresh(&self, account: Account, key: ScopeKey, serial: u64) {
        let Some(slot) = self.existing_slot(&account.name) else {
            return;
        };
        let due = {
            let mut st = slot.lock();
            match st.tokens.get_mut(&key) {
                Some(t) if t.serial == serial && t.used && !t.refresh_started => {
                    t.refresh_started = true;
                    true
                }
                _ => false,
            }
        };
        if due {
            self.spawn_refresh(account, key);
        }
    }

    /// Refresh in the background, unless a refresh for this account is running already. The new
    /// token starts unused: it is refreshed again only if callers use it.
    pub(super) fn spawn_refresh(&self, account: Account, key: ScopeKey) {
        let this = self.clone();
        tokio::spawn(async move {
            let Some(slot) = this.existing_slot(&account.name) else {
                return;
            };
            let Ok(_flight) = slot.flight.try_lock() else {
                return;
            };
            match this.fetch(&account, &slot, key, false).await {
                Ok(_) => tracing::debug!(account = %account.name, "refreshed ahead of expiry"),
                // Let a later request try again.
                Err(e) => {
                    tracing::warn!(account = %account.name, error = %e, "refresh ahead of expiry failed")
                }
            }
        });
    }
}
