//! Who gets a connection slot. No app, however many connections it opens, keeps another app or
//! the user's own tools from the broker:
//!
//! - each app (its uid and executable; in system mode its uid, since other users' executables
//!   are hidden) holds at most `per_app` connections, and at most `subscriptions_per_app` of
//!   them subscribed;
//! - apps together hold at most `max_connections - reserved`: the last `reserved` slots are the
//!   user's own tools' (the CLI and the tray), so that `tokenbroker token` and `login` always
//!   find room;
//! - a connection over a limit is answered `busy` without waiting and closed at once, so that
//!   refusing costs no slot and no time.
//!
//! An app that copies itself to many paths counts as many apps (SECURITY.md says so); the
//! reserved slots still keep the user's own tools served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokenbroker_client::{BrokerError, ErrorKind};

use super::SocketOptions;
use crate::policy::Caller;

type AppKey = (u32, String);

#[derive(Default)]
struct Counts {
    total: usize,
    apps: usize,
    per_app: HashMap<AppKey, (usize, usize)>,
}

pub struct Admission {
    opts: SocketOptions,
    counts: Mutex<Counts>,
}

/// A connection's slot, given back when it is dropped.
pub struct Ticket {
    admission: Arc<Admission>,
    key: AppKey,
    trusted: bool,
    subscribed: bool,
}

fn busy(message: String) -> BrokerError {
    BrokerError::new(ErrorKind::Busy, message)
}

impl Admission {
    pub fn new(opts: SocketOptions) -> Arc<Self> {
        Arc::new(Self {
            opts,
            counts: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for `caller`, or `busy` with the limit it hit. `trusted`: one of the user's own
    /// tools.
    pub fn admit(self: &Arc<Self>, caller: &Caller, trusted: bool) -> Result<Ticket, BrokerError> {
        let key = (caller.uid, caller.exe_display());
        let o = &self.opts;
        let mut c = self.lock();
        if c.total >= o.max_connections {
            return Err(busy(
                "the daemon is at its connection limit: try again shortly".into(),
            ));
        }
        if !trusted {
            if c.apps >= o.max_connections.saturating_sub(o.reserved) {
                return Err(busy(
                    "the daemon's connections for apps are all taken: try again shortly".into(),
                ));
            }
            let held = c.per_app.get(&key).map_or(0, |n| n.0);
            if held >= o.per_app {
                return Err(busy(format!(
                    "{} holds {held} connections already, the most one app may: close one first",
                    key.1
                )));
            }
            c.apps += 1;
            c.per_app.entry(key.clone()).or_default().0 += 1;
        }
        c.total += 1;
        Ok(Ticket {
            admission: self.clone(),
            key,
            trusted,
            subscribed: false,
        })
    }
}

impl Ticket {
    /// The connection subscribes: apps may hold only so many subscribed connections.
    pub fn subscribe(&mut self) -> Result<(), BrokerError> {
        if self.trusted || self.subscribed {
            self.subscribed = true;
            return Ok(());
        }
        let limit = self.admission.opts.subscriptions_per_app;
        let mut c = self.admission.lock();
        let entry = c.per_app.entry(self.key.clone()).or_default();
        if entry.1 >= limit {
            return Err(busy(format!(
                "{} is subscribed {limit} times already, the most one app may",
                self.key.1
            )));
        }
        entry.1 += 1;
        self.subscribed = true;
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.admission.lock();
        c.total = c.total.saturating_sub(1);
        if self.trusted {
            return;
        }
        c.apps = c.apps.saturating_sub(1);
        let gone = match c.per_app.get_mut(&self.key) {
            Some(n) => {
                n.0 = n.0.saturating_sub(1);
                if self.subscribed {
                    n.1 = n.1.saturating_sub(1);
                }
                n.0 == 0
            }
            None => false,
        };
        if gone {
            c.per_app.remove(&self.key);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn caller(exe: &str) -> Caller {
        let mut c = Caller::internal();
        c.exe = Some(PathBuf::from(exe));
        c
    }

    fn opts() -> SocketOptions {
        SocketOptions {
            max_connections: 10,
            reserved: 4,
            per_app: 3,
            subscriptions_per_app: 1,
            ..SocketOptions::default()
        }
    }

    #[test]
    fn one_app_cannot_take_every_slot_and_the_users_tools_keep_theirs() {
        let a = Admission::new(opts());
        let greedy: Vec<Ticket> = (0..3)
            .map(|_| a.admit(&caller("/bin/greedy"), false).unwrap())
            .collect();
        let e = a.admit(&caller("/bin/greedy"), false).err().unwrap();
        assert!(e.message.contains("the most one app may"), "{}", e.message);
        // Other apps fill the apps' share (10 - 4 reserved = 6)...
        let others: Vec<Ticket> = (0..3)
            .map(|i| a.admit(&caller(&format!("/bin/other{i}")), false).unwrap())
            .collect();
        assert!(a.admit(&caller("/bin/late"), false).is_err());
        // ...and the user's own tools still get in.
        let tools: Vec<Ticket> = (0..4)
            .map(|_| a.admit(&caller("/usr/bin/tokenbroker"), true).unwrap())
            .collect();
        assert!(
            a.admit(&caller("/usr/bin/tokenbroker"), true).is_err(),
            "the global cap"
        );
        drop(greedy);
        assert!(
            a.admit(&caller("/bin/late"), false).is_ok(),
            "slots come back"
        );
        drop((others, tools));
    }

    #[test]
    fn apps_may_hold_few_subscriptions() {
        let a = Admission::new(opts());
        let mut one = a.admit(&caller("/bin/app"), false).unwrap();
        let mut two = a.admit(&caller("/bin/app"), false).unwrap();
        assert!(one.subscribe().is_ok());
        assert!(two.subscribe().is_err());
        drop(one);
        assert!(
            two.subscribe().is_ok(),
            "the subscription came back with its connection"
        );
        let mut tool = a.admit(&caller("/usr/bin/tokenbroker"), true).unwrap();
        assert!(tool.subscribe().is_ok());
    }
}
