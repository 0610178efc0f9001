//! Following the broker: a subscription delivers every event (account changes, sign-in
//! required, consent requests) that its caller may see, and may make its connection a consent
//! agent.

use tokenbroker_client::{BrokerError, Notification, SubscribeParams};

use super::{AgentGuard, Broker};
use crate::policy::Caller;

/// A caller's subscription: its events, and its place as a consent agent while it lives.
pub struct Subscription {
    pub events: tokio::sync::broadcast::Receiver<Notification>,
    _agent: Option<AgentGuard>,
}

impl Broker {
    /// Subscribe `caller` to events. Only the user's own tools may be consent agents.
    pub fn subscribe(
        &self,
        caller: &Caller,
        p: &SubscribeParams,
    ) -> Result<Subscription, BrokerError> {
        if p.consent_agent {
            self.require_trusted(caller, "act as a consent agent")?;
        }
        Ok(Subscription {
            events: self.inner.events.subscribe(),
            _agent: p.consent_agent.then(|| self.consent_agent(caller)),
        })
    }

    /// Every event, unfiltered: for the D-Bus signals of user mode.
    pub fn all_events(&self) -> tokio::sync::broadcast::Receiver<Notification> {
        self.inner.events.subscribe()
    }
}
