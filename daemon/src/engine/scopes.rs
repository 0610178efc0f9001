//! Which scopes a refresh may ask for, so that no request for fewer scopes narrows an account
//! for every app.
//!
//! RFC 6749 §6 says a refresh may ask for fewer scopes than were granted and that a new refresh
//! token keeps the old one's scope. Not every server keeps it: django-oauth-toolkit ties the
//! new refresh token to the narrower scope, so one app's narrower request would shrink the
//! account until the next sign-in. So a refresh names scopes only where the provider is known
//! to keep them (`scoped_refresh`); elsewhere it always asks for the whole grant, and a request
//! for other scopes is refused here, before any request, with the reason and the fix. Where the
//! provider says it keeps them, a later refresh for the whole grant is checked, and a grant the
//! server narrowed is reported rather than handed out as the whole.

use std::sync::Arc;

use tokenbroker_client::{BrokerError, ErrorKind};

use super::{Account, Reason, ScopeKey, Slot};
use crate::oauth::TokenResponse;

fn list(scopes: &[String]) -> String {
    format!("[{}]", scopes.join(" "))
}

/// The `scope` of a refresh for `key`: None (the account's whole grant) or the scopes to name.
pub(super) fn refresh_scopes<'k>(
    account: &Account,
    key: &'k ScopeKey,
) -> Result<Option<&'k [String]>, BrokerError> {
    if *key == account.default_scopes {
        return Ok(None);
    }
    let name = &account.name;
    let granted = &account.default_scopes;
    if !granted.is_empty() && !key.iter().all(|s| granted.contains(s)) {
        let extra: Vec<String> = key
            .iter()
            .filter(|s| !granted.contains(s))
            .cloned()
            .collect();
        return Err(BrokerError::new(
            ErrorKind::InvalidArgument,
            format!(
                "account {name:?} signs in for {}, and {} is not among them: a refresh can only keep or narrow the scopes of the sign-in. Add the scope to the account and sign in again (`tokenbroker login {name}`)",
                list(granted),
                list(&extra)
            ),
        ));
    }
    if !account.scoped_refresh {
        return Err(BrokerError::new(
            ErrorKind::InvalidArgument,
            format!(
                "a token of account {name:?} for {} instead of its {} would take a refresh that names fewer scopes, and provider {:?} is not known to keep a refresh token's scope (RFC 6749 §6; django-oauth-toolkit narrows it for good): ask for the account's scopes, or, if the server keeps them, set scoped_refresh on the provider",
                list(key),
                list(granted),
                account.provider
            ),
        ));
    }
    Ok(Some(key.as_slice()))
}

/// After a refresh for the whole grant: the server must not have granted less than the last
/// time. If it did, an earlier narrower refresh narrowed the refresh token: report it and hand
/// nothing out as the whole grant.
pub(super) fn check_not_narrowed(
    account: &Account,
    slot: &Arc<Slot>,
    resp: &TokenResponse,
) -> Result<(), BrokerError> {
    let Some(now) = resp.scopes.as_ref().map(|s| super::scope_key(s)) else {
        return Ok(());
    };
    let mut st = slot.lock();
    let narrowed = st
        .granted
        .as_ref()
        .is_some_and(|before| before.iter().any(|s| !now.contains(s)));
    if !narrowed {
        st.granted = Some(now);
        return Ok(());
    }
    let before = st.granted.clone().unwrap_or_default();
    let text = format!(
        "provider {:?} narrowed the grant of account {:?} from {} to {} after a refresh for fewer scopes: it does not keep a refresh token's scope. Unset scoped_refresh on the provider and sign in again (`tokenbroker login {}`)",
        account.provider,
        account.name,
        list(&before),
        list(&now),
        account.name
    );
    tracing::error!(account = %account.name, provider = %account.provider, "the server narrowed the account's grant");
    st.error = Some(Reason::ours(text.clone()));
    Err(BrokerError::new(ErrorKind::ServerError, text))
}
