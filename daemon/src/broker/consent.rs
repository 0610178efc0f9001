//! Asking the user about an app that no rule names: the request is held while a consent agent
//! (the tray, `tokenbroker consent watch`) of the same user puts it to the user, until the
//! answer or the timeout. With no agent connected, the app is denied at once with the command
//! that would allow it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokenbroker_client::{
    AppAccess, BrokerError, ConsentAnswer, ConsentRequest, Done, Notification,
};

use super::messages::{self, denied};
use super::{lock, Broker};
use crate::clock::now_unix;
use crate::engine::ScopeKey;
use crate::policy::{self, Caller};

#[derive(Default)]
pub(super) struct Consents {
    pending: Mutex<HashMap<u64, PendingConsent>>,
    next: AtomicU64,
    /// Connections that can put a consent request to a user, by that user's uid.
    agents: Mutex<HashMap<u32, usize>>,
}

struct PendingConsent {
    request: ConsentRequest,
    tx: tokio::sync::oneshot::Sender<ConsentAnswer>,
}

/// Counts a consent agent while it is connected.
pub struct AgentGuard {
    broker: Broker,
    uid: u32,
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let mut agents = lock(&self.broker.inner.consents.agents);
        if let Some(n) = agents.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                agents.remove(&self.uid);
            }
        }
    }
}

impl Broker {
    /// Hold the request until a consent agent answers for the user, or the time runs out.
    /// Returns the reason for the audit log.
    pub(super) async fn ask_consent(
        &self,
        caller: &Caller,
        account: &str,
        scopes: &ScopeKey,
    ) -> Result<String, BrokerError> {
        let exe = policy::exe_key(caller).unwrap_or_default();
        let consents = &self.inner.consents;
        let has_agent = lock(&consents.agents)
            .get(&caller.uid)
            .is_some_and(|n| *n > 0);
        if !has_agent {
            return Err(denied(format!(
                "{exe} has no policy for account {account:?} and no consent agent (the tray, or `tokenbroker consent watch`) is running to ask the user: allow it with `tokenbroker allow {account} --app {exe}{}`",
                scopes.iter().map(|s| format!(" --scope {s}")).collect::<String>()
            )));
        }
        let timeout = self.config().policy.consent_timeout_secs;
        let id = consents.next.fetch_add(1, Ordering::SeqCst) + 1;
        let request = ConsentRequest {
            id,
            account: account.to_owned(),
            exe: exe.clone(),
            pid: caller.pid,
            uid: caller.uid,
            scopes: scopes.clone(),
            transport: caller.transport.to_owned(),
            expires_at: now_unix() + timeout,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&consents.pending).insert(
            id,
            PendingConsent {
                request: request.clone(),
                tx,
            },
        );
        tracing::info!(id, account = %account, exe = %exe, "asking the user for consent");
        self.emit(Notification::ConsentRequired { request });
        let answer = tokio::time::timeout(Duration::from_secs(timeout), rx).await;
        lock(&consents.pending).remove(&id);
        match answer {
            Ok(Ok(ConsentAnswer::AllowOnce)) => Ok("allowed once by the user".into()),
            Ok(Ok(ConsentAnswer::AllowAlways)) => {
                self.write_app_rule(account, &exe, Some((AppAccess::Allow, scopes.clone())))
                    .await?;
                Ok("allowed always by the user".into())
            }
            Ok(Ok(ConsentAnswer::Deny)) => Err(denied(format!(
                "the user denied {exe} access to account {account:?}"
            ))),
            Ok(Err(_)) | Err(_) => Err(denied(format!(
                "nobody answered the consent request for {exe} on account {account:?} within {timeout} s"
            ))),
        }
    }

    /// A consent agent's connection: counted, for its user, while it lives.
    pub(super) fn consent_agent(&self, caller: &Caller) -> AgentGuard {
        *lock(&self.inner.consents.agents)
            .entry(caller.uid)
            .or_default() += 1;
        AgentGuard {
            broker: self.clone(),
            uid: caller.uid,
        }
    }

    pub fn list_consents(&self, caller: &Caller) -> Result<Vec<ConsentRequest>, BrokerError> {
        self.require_trusted(caller, "see consent requests")?;
        let mut v: Vec<ConsentRequest> = lock(&self.inner.consents.pending)
            .values()
            .filter(|p| p.request.uid == caller.uid)
            .map(|p| p.request.clone())
            .collect();
        v.sort_by_key(|r| r.id);
        Ok(v)
    }

    pub fn answer_consent(
        &self,
        caller: &Caller,
        id: u64,
        answer: ConsentAnswer,
    ) -> Result<Done, BrokerError> {
        self.require_trusted(caller, "answer consent requests")?;
        if answer == ConsentAnswer::AllowAlways
            && self.inner.mode == super::Mode::System
            && !self.is_admin(caller)
        {
            return Err(denied(
                "in system mode only admins set standing rules: answer allow-once, or ask an admin to run `tokenbroker --system allow ...`",
            ));
        }
        // Requests of other users' apps are not this caller's to see or answer.
        let pending = {
            let mut pending = lock(&self.inner.consents.pending);
            match pending.get(&id) {
                Some(p) if p.request.uid == caller.uid => pending.remove(&id),
                _ => None,
            }
        };
        let Some(p) = pending else {
            return Err(messages::invalid(format!(
                "no pending consent request {id}: it was answered or timed out"
            )));
        };
        tracing::info!(id, answer = ?answer, exe = %p.request.exe, account = %p.request.account, "consent answered");
        let _ = p.tx.send(answer);
        Ok(Done {})
    }
}
