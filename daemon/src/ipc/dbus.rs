//! The D-Bus transport: `io.tokenbroker.Broker1` on the session bus (the bus is a parameter, for
//! system mode later). Like the socket, it decodes, identifies the caller, and calls the same
//! [`Broker`] methods; no logic lives here.
//!
//! Caller identity comes from the bus daemon (`GetConnectionCredentials`), which read it from the
//! kernel when the caller connected; [`attest`] resolves the executable, through the ProcessFD
//! where the bus hands one out (dbus-broker, newer dbus-daemon). Credentials are cached per
//! unique connection name, which the bus never reuses. Every call is admitted by
//! [`Broker::admit`] first.

use std::collections::HashMap;
use std::sync::Mutex;

use tokenbroker_client::dbus::{
    account_entry, consent_entry, sign_out_entry, status_entry, token_entry, AccountEntry,
    DbusError, SignOutEntry, StatusEntry, TokenEntry, BUS_NAME, OBJECT_PATH,
};
use tokenbroker_client::{BrokerError, GetTokenParams, Notification, PROTOCOL_VERSION};
use zbus::fdo::{DBusProxy, RequestNameFlags, RequestNameReply};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::Connection;

use crate::broker::{Broker, Mode};
use crate::policy::caller::{attest, Caller, PeerFacts};

/// Which bus to serve on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    Session,
    System,
}

/// How many callers' credentials are remembered before the cache is cleared.
const CREDENTIALS_CACHE: usize = 1024;

/// A bus connection's caller as first identified, and the pidfd that pins its process.
#[derive(Clone)]
struct Known {
    caller: Caller,
    pidfd: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
}

pub struct DbusService {
    broker: Broker,
    callers: Mutex<HashMap<String, Known>>,
}

impl DbusService {
    pub fn new(broker: Broker) -> Self {
        Self {
            broker,
            callers: Mutex::new(HashMap::new()),
        }
    }

    async fn caller(&self, conn: &Connection, hdr: &Header<'_>) -> Result<Caller, DbusError> {
        let sender = hdr
            .sender()
            .ok_or_else(|| DbusError::Denied("the call has no sender".into()))?
            .to_string();
        let cached = self.lock().get(&sender).cloned();
        let known = match cached {
            Some(k) => k,
            None => {
                let k = identify(conn, &sender).await?;
                let mut cache = self.lock();
                if cache.len() >= CREDENTIALS_CACHE {
                    cache.clear();
                }
                cache.insert(sender, k.clone());
                k
            }
        };
        // The connection's process, checked again at every call: one that executed another
        // program since its first call is not the caller it was. Through the pidfd where the
        // bus gave one, else by the pid (dbus-daemon 1.14 gives no ProcessFD).
        #[cfg(target_os = "linux")]
        match &known.pidfd {
            Some(fd) => {
                use std::os::fd::AsFd;
                crate::policy::caller::recheck(&known.caller, fd.as_fd())
                    .map_err(DbusError::Denied)?
            }
            None => {
                crate::policy::caller::recheck_by_pid(&known.caller).map_err(DbusError::Denied)?
            }
        }
        let caller = known.caller;
        self.broker.admit(&caller)?;
        self.broker.admit_request(&caller)?;
        Ok(caller)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.callers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Ask the bus who `sender` is.
async fn identify(conn: &Connection, sender: &str) -> Result<Known, DbusError> {
    let fail = |e: zbus::Error| DbusError::Denied(format!("cannot identify the caller: {e}"));
    let dbus = DBusProxy::new(conn).await.map_err(fail)?;
    let name = zbus::names::BusName::try_from(sender).map_err(|e| fail(e.into()))?;
    let creds = dbus
        .get_connection_credentials(name)
        .await
        .map_err(|e| fail(e.into()))?;
    let uid = creds
        .unix_user_id()
        .ok_or_else(|| DbusError::Denied("the bus did not say the caller's uid".into()))?;
    let groups = creds.unix_group_ids().cloned().unwrap_or_default();
    let pidfd = creds
        .process_fd()
        .and_then(|fd| std::os::fd::AsFd::as_fd(fd).try_clone_to_owned().ok());
    let caller = attest(PeerFacts {
        uid,
        gid: groups.first().copied().unwrap_or(u32::MAX),
        groups,
        pid: creds.process_id().and_then(|p| i32::try_from(p).ok()),
        pidfd: pidfd.as_ref().map(std::os::fd::AsFd::as_fd),
        transport: "dbus",
    });
    Ok(Known {
        caller,
        pidfd: pidfd.map(std::sync::Arc::new),
    })
}

fn broker_err(e: BrokerError) -> DbusError {
    e.into()
}

#[zbus::interface(name = "io.tokenbroker.Broker1")]
impl DbusService {
    /// An access token for ACCOUNT with at least MIN_TTL seconds left, for SCOPES (empty: the
    /// account's). Returns (access_token, token_type, expires_at_unix, scopes).
    async fn get_token(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        account: String,
        scopes: Vec<String>,
        min_ttl: u32,
    ) -> Result<TokenEntry, DbusError> {
        let caller = self.caller(conn, &hdr).await?;
        let t = self
            .broker
            .get_token(
                &caller,
                GetTokenParams {
                    account,
                    scopes,
                    min_ttl,
                },
            )
            .await
            .map_err(broker_err)?;
        Ok(token_entry(t))
    }

    /// Every account: (name, provider, grant, state, expires_at_unix or 0).
    async fn list_accounts(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<AccountEntry>, DbusError> {
        let caller = self.caller(conn, &hdr).await?;
        Ok(self
            .broker
            .list_accounts(&caller)
            .iter()
            .map(account_entry)
            .collect())
    }

    /// Revoke ACCOUNT's tokens at the server and delete them here: (revoked, warning).
    async fn sign_out(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        account: String,
    ) -> Result<SignOutEntry, DbusError> {
        let caller = self.caller(conn, &hdr).await?;
        let r = self
            .broker
            .sign_out(&caller, &account)
            .await
            .map_err(broker_err)?;
        Ok(sign_out_entry(r))
    }

    /// (daemon_version, protocol, pid, uptime_secs).
    async fn status(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<StatusEntry, DbusError> {
        let caller = self.caller(conn, &hdr).await?;
        Ok(status_entry(&self.broker.status(&caller)))
    }

    /// The daemon's version.
    #[zbus(property)]
    fn version(&self) -> String {
        format!(
            "{} (protocol {PROTOCOL_VERSION})",
            env!("CARGO_PKG_VERSION")
        )
    }

    #[zbus(signal)]
    async fn account_changed(
        emitter: &SignalEmitter<'_>,
        account: &str,
        state: &str,
    ) -> zbus::Result<()>;

    /// A token request waits for the user: (request id, executable, pid, account, scopes).
    /// Answer it with `tokenbroker consent answer ID allow-once|allow-always|deny`.
    #[zbus(signal)]
    async fn consent_required(
        emitter: &SignalEmitter<'_>,
        id: u64,
        exe: &str,
        pid: i32,
        account: &str,
        scopes: &[String],
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn sign_in_required(
        emitter: &SignalEmitter<'_>,
        account: &str,
        reason: &str,
    ) -> zbus::Result<()>;
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to the {0} bus: {1}")]
    NoBus(&'static str, zbus::Error),
    #[error("{BUS_NAME} is already owned on the {0} bus (another tokenbrokerd?): stop it, or start this one with --replace")]
    NameTaken(&'static str),
    #[error("D-Bus: {0}")]
    Other(zbus::Error),
}

/// A served bus connection, and a signal that fires when another daemon took the name over.
pub struct Served {
    pub connection: Connection,
    pub name_lost: tokio::sync::oneshot::Receiver<()>,
}

/// Serve the object, then take the name (so that no call finds the name without the object),
/// and forward the broker's events as signals.
pub async fn start(broker: Broker, bus: Bus, replace: bool) -> Result<Served, StartError> {
    let which = match bus {
        Bus::Session => "session",
        Bus::System => "system",
    };
    let builder = match bus {
        Bus::Session => zbus::connection::Builder::session(),
        Bus::System => zbus::connection::Builder::system(),
    }
    .map_err(|e| StartError::NoBus(which, e))?;
    let connection = builder
        .serve_at(OBJECT_PATH, DbusService::new(broker.clone()))
        .map_err(StartError::Other)?
        .build()
        .await
        .map_err(|e| StartError::NoBus(which, e))?;

    let dbus = DBusProxy::new(&connection)
        .await
        .map_err(StartError::Other)?;
    let mut lost = dbus.receive_name_lost().await.map_err(StartError::Other)?;
    let mut flags = RequestNameFlags::AllowReplacement | RequestNameFlags::DoNotQueue;
    if replace {
        flags |= RequestNameFlags::ReplaceExisting;
    }
    let name =
        zbus::names::WellKnownName::try_from(BUS_NAME).map_err(|e| StartError::Other(e.into()))?;
    match dbus.request_name(name, flags).await {
        Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => {}
        Ok(RequestNameReply::Exists | RequestNameReply::InQueue) => {
            return Err(StartError::NameTaken(which))
        }
        Err(e) => return Err(StartError::Other(e.into())),
    }

    let (tx, name_lost) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        use futures_lite::StreamExt as _;
        while let Some(sig) = lost.next().await {
            if sig.args().map(|a| a.name() == BUS_NAME).unwrap_or(false) {
                let _ = tx.send(());
                break;
            }
        }
    });

    // Signals are broadcast to every connection of the bus. On the system bus that would tell
    // every local user the names and states of other users' accounts and which of their apps
    // ask for tokens, so a system-mode daemon sends none: there, the socket's Subscribe (which
    // delivers each user only its own events) is the way to follow changes.
    if broker.mode() == Mode::System {
        tracing::info!(
            bus = which,
            name = BUS_NAME,
            "serving on D-Bus (no signals in system mode)"
        );
        return Ok(Served {
            connection,
            name_lost,
        });
    }
    let conn = connection.clone();
    let mut events = broker.all_events();
    tokio::spawn(async move {
        let Ok(emitter) = SignalEmitter::new(&conn, OBJECT_PATH) else {
            return;
        };
        loop {
            let sent = match events.recv().await {
                Ok(Notification::AccountChanged { account, state }) => {
                    DbusService::account_changed(&emitter, &account, state.as_str()).await
                }
                Ok(Notification::SignInRequired { account, reason }) => {
                    DbusService::sign_in_required(&emitter, &account, &reason).await
                }
                Ok(Notification::ConsentRequired { request }) => {
                    let (id, exe, pid, account, scopes) = consent_entry(&request);
                    DbusService::consent_required(&emitter, id, &exe, pid, &account, &scopes).await
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "D-Bus signal forwarding fell behind");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, "cannot emit a D-Bus signal");
            }
        }
    });
    tracing::info!(bus = which, name = BUS_NAME, "serving on D-Bus");
    Ok(Served {
        connection,
        name_lost,
    })
}
