//! Token requests: the caller's scopes checked, the policy (or the user) asked, the token
//! engine asked, and every token handed out and every denial audited.

use tokenbroker_client::{
    BrokerError, Decision, ErrorKind, GetTokenParams, IntrospectReply, TokenReply,
};

use super::messages::{self, grant_failure};
use super::{engine_account, Broker, Found, Mode};
use crate::engine::{scope_key, ScopeKey};
use crate::names::check_scope;
use crate::policy::{self, Caller, Verdict};

/// The most scopes one request may name.
pub const MAX_SCOPES: usize = 64;
/// The largest min_ttl a caller may ask for (a day).
pub const MAX_MIN_TTL: u32 = 86_400;

impl Broker {
    /// A token for the caller, if the account's policy (or the user, asked) allows it. Every
    /// token handed out and every denial is audited.
    pub async fn get_token(
        &self,
        caller: &Caller,
        p: GetTokenParams,
    ) -> Result<TokenReply, BrokerError> {
        let account = p.account.clone();
        let asked = p.scopes.clone();
        match self.get_token_inner(caller, p).await {
            Ok((reply, rule)) => {
                self.inner
                    .audit
                    .record(caller, &account, &reply.scopes, Decision::Allow, &rule);
                Ok(reply)
            }
            Err(e) => {
                if e.kind == ErrorKind::Denied {
                    self.inner
                        .audit
                        .record(caller, &account, &asked, Decision::Deny, &e.message);
                }
                // What a server said goes to the user's own tools only.
                if self.is_trusted(caller) {
                    Err(e)
                } else {
                    Err(e.for_app())
                }
            }
        }
    }

    async fn get_token_inner(
        &self,
        caller: &Caller,
        p: GetTokenParams,
    ) -> Result<(TokenReply, String), BrokerError> {
        if p.min_ttl > MAX_MIN_TTL {
            return Err(messages::invalid(format!(
                "min_ttl {} is more than the allowed {MAX_MIN_TTL} seconds",
                p.min_ttl
            )));
        }
        let found = self.own_account(caller, &p.account)?;
        let requested = normalize_scopes(&found, &p.scopes)?;
        let verdict = if self.inner.mode == Mode::System {
            // The owner's uid, checked above, is the whole identity (see access).
            Verdict::Allow {
                scopes: requested.clone(),
                rule: format!("the account's owner (uid {})", caller.uid),
            }
        } else {
            policy::decide(
                &self.inner.trusted,
                caller,
                &p.account,
                &found.account,
                &found.provider,
                &requested,
                !p.scopes.is_empty(),
            )
        };
        let (key, rule) = match verdict {
            Verdict::Allow { scopes, rule } => (scopes, rule),
            Verdict::Deny(m) => return Err(messages::denied(m)),
            Verdict::Ask { scopes } => {
                let rule = self.ask_consent(caller, &p.account, &scopes).await?;
                (scopes, rule)
            }
        };
        let account = engine_account(&p.account, &found);
        let reply = self
            .inner
            .engine
            .token(&account, key, u64::from(p.min_ttl))
            .await?;
        Ok((reply, rule))
    }

    /// RFC 7662 introspection of the account's current access token at its provider.
    pub async fn introspect(
        &self,
        caller: &Caller,
        account: &str,
    ) -> Result<IntrospectReply, BrokerError> {
        self.require_trusted(caller, "introspect tokens")?;
        let found = self.own_account(caller, account)?;
        let provider = &found.account.provider;
        let material = self.inner.providers.material(provider).await?;
        if material.endpoints.introspection.is_none() {
            return Err(messages::invalid(format!(
                "provider {provider:?} has no introspection endpoint: set introspection_endpoint"
            )));
        }
        let token = self
            .get_token(
                caller,
                GetTokenParams {
                    account: account.to_owned(),
                    scopes: Vec::new(),
                    min_ttl: 0,
                },
            )
            .await?;
        let again = |r: &crate::error::Result<IntrospectReply>| {
            r.as_ref()
                .err()
                .is_some_and(crate::error::Error::is_retryable)
        };
        crate::oauth::retry::with_retries(self.config().http.retry_policy(), again, |_| {
            self.inner
                .providers
                .introspect(&material, &token.access_token)
        })
        .await
        .map_err(|e| grant_failure(account, provider, "introspection", e))
    }
}

/// The scopes of a request, checked and sorted; none named: the account's.
fn normalize_scopes(found: &Found, requested: &[String]) -> Result<ScopeKey, BrokerError> {
    if requested.len() > MAX_SCOPES {
        return Err(messages::invalid(format!(
            "{} scopes requested: at most {MAX_SCOPES} are allowed",
            requested.len()
        )));
    }
    for s in requested {
        check_scope(s).map_err(messages::invalid)?;
    }
    if requested.is_empty() {
        Ok(scope_key(found.account.default_scopes(&found.provider)))
    } else {
        Ok(scope_key(requested))
    }
}
