//! The daemon's start-up and shutdown, called by the thin `main`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;

use crate::broker::{Broker, Mode};
use crate::config::Layout;
use crate::store::{Backend, Keyring, Store};

/// tokenbrokerd: the tokenbroker daemon.
#[derive(Debug, Parser)]
#[command(
    name = "tokenbrokerd",
    version,
    about = "A local OAuth2 credential broker: signs users in once, keeps refresh tokens in the keychain, hands apps short-lived access tokens",
    after_help = "Examples:\n  tokenbrokerd                          serve with the user's config and socket\n  tokenbrokerd --check-config           validate the config and exit\n  tokenbrokerd --config ./c.toml --socket /tmp/tb.sock\n  tokenbrokerd --replace                take over from a running daemon\n  tokenbrokerd --system                 the system service, for every local user\n  tokenbrokerd --system --check-config  validate /etc/tokenbroker/config.toml and config.d/\n\nLogging: TOKENBROKER_LOG (or RUST_LOG), e.g. TOKENBROKER_LOG=debug."
)]
pub struct Args {
    /// Serve every local user as the system service: config /etc/tokenbroker/config.toml and
    /// config.d/*.toml, socket $RUNTIME_DIRECTORY/socket (/run/tokenbroker/socket), the system
    /// bus, secrets in an encrypted store under $STATE_DIRECTORY (/var/lib/tokenbroker).
    #[arg(long)]
    pub system: bool,
    /// The config file [default: $XDG_CONFIG_HOME/tokenbroker/config.toml; with --system
    /// /etc/tokenbroker/config.toml, with drop-ins from the config.d folder beside it]
    #[arg(long, env = "TOKENBROKER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The socket to serve [default: $XDG_RUNTIME_DIR/tokenbroker/socket]
    #[arg(long, env = "TOKENBROKER_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Validate the config file, print what is wrong (with the line) and exit: 0 valid, 1 not.
    #[arg(long)]
    pub check_config: bool,
    /// Take over from a running tokenbrokerd: its D-Bus name and its socket.
    #[arg(long)]
    pub replace: bool,
    /// Serve the socket only, not D-Bus.
    #[arg(long)]
    pub no_dbus: bool,
    /// The append-only audit file [default: $XDG_STATE_HOME/tokenbroker/audit.jsonl; with
    /// --system $LOGS_DIRECTORY/audit.jsonl (/var/log/tokenbroker/audit.jsonl)]
    #[arg(long, value_name = "PATH")]
    pub audit_file: Option<PathBuf>,
    /// With --system: the folder of the encrypted secret store and its key file [default:
    /// $STATE_DIRECTORY, else /var/lib/tokenbroker]
    #[arg(long, env = "STATE_DIRECTORY", value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
}

/// The system-mode config file.
pub const SYSTEM_CONFIG: &str = "/etc/tokenbroker/config.toml";

/// A folder that systemd names in `var` (the first, if it names several).
fn systemd_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next().map(PathBuf::from))
        })
        .filter(|p| p.is_absolute())
}

pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("io", "tokenbroker", "tokenbroker")
        .map(|d| d.config_dir().join("config.toml"))
}

/// Parse arguments and run. Returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokenbrokerd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config_path = match (args.config, args.system) {
        (Some(p), _) => p,
        (None, true) => PathBuf::from(SYSTEM_CONFIG),
        (None, false) => default_config_path()
            .context("cannot find the config folder: set XDG_CONFIG_HOME or use --config")?,
    };
    let layout = if args.system {
        Layout::system(&config_path)
    } else {
        Layout::user(&config_path)
    };
    if args.check_config {
        if !args.system {
            // User mode: the file must exist to be checked.
            std::fs::metadata(&config_path)
                .with_context(|| format!("cannot read {}", config_path.display()))?;
        }
        let c = layout.load()?;
        let dropins = layout.dropin_files()?;
        println!(
            "{}: valid ({} provider(s), {} account(s){})",
            config_path.display(),
            c.providers.len(),
            c.accounts.len(),
            if dropins.is_empty() {
                String::new()
            } else {
                format!(", with {} drop-in(s)", dropins.len())
            }
        );
        return Ok(());
    }

    let hardening = crate::harden::harden();
    init_logging();
    for w in &hardening.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        not_dumpable = hardening.not_dumpable,
        no_core = hardening.no_core,
        memory_locked = hardening.memory_locked,
        "hardened"
    );

    let mode = if args.system {
        Mode::System
    } else {
        Mode::User
    };
    // The user's own socket folder is checked and made private; the system one is systemd's.
    let own_folder = args.socket.is_none() && mode == Mode::User;
    let socket_path = match (args.socket, mode) {
        (Some(p), _) => p,
        (None, Mode::System) => systemd_dir("RUNTIME_DIRECTORY")
            .map(|d| d.join("socket"))
            .unwrap_or_else(|| PathBuf::from(tokenbroker_client::SYSTEM_SOCKET)),
        (None, Mode::User) => tokenbroker_client::paths::user_socket_path()
            .context("XDG_RUNTIME_DIR is not set: set it or use --socket")?,
    };
    let audit_path = match (args.audit_file, mode) {
        (Some(p), _) => Some(p),
        (None, Mode::System) => {
            let logs = systemd_dir("LOGS_DIRECTORY")
                .unwrap_or_else(|| PathBuf::from("/var/log/tokenbroker"));
            Some(logs.join("audit.jsonl"))
        }
        (None, Mode::User) => crate::audit::default_path(),
    };
    let backend: Arc<dyn Backend> = match mode {
        Mode::User => Arc::new(Keyring::new()),
        Mode::System => {
            let state = args
                .state_dir
                .map(|p| {
                    p.to_str()
                        .and_then(|s| s.split(':').next())
                        .map(PathBuf::from)
                        .unwrap_or(p)
                })
                .unwrap_or_else(|| PathBuf::from("/var/lib/tokenbroker"));
            open_sealed(&state)?
        }
    };
    let config = layout.load()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .thread_stack_size(512 * 1024)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(Serve {
        layout,
        config,
        backend,
        mode,
        socket_path,
        replace: args.replace,
        dbus: !args.no_dbus,
        audit_path,
        own_folder,
    }))
}

/// The system mode's encrypted store under `state`: its key from the systemd credential
/// `store-key`, else from `state/store.key` (made on first start).
#[cfg(unix)]
fn open_sealed(state: &std::path::Path) -> anyhow::Result<Arc<dyn Backend>> {
    use crate::store::sealed::{KeySource, Sealed, StoreKey};
    let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    crate::files::create_private_dir(state)
        .with_context(|| format!("cannot create the state folder {}", state.display()))?;
    let (key, source) = StoreKey::load(creds.as_deref(), &state.join("store.key"))?;
    match &source {
        KeySource::Credential(p) => {
            tracing::info!(credential = %p.display(), "store key from the systemd credential")
        }
        KeySource::KeyFile(p) => {
            tracing::info!(key_file = %p.display(), "store key from the key file")
        }
    }
    let sealed = Sealed::open(&state.join("secrets"), key)?;
    Ok(Arc::new(sealed))
}

#[cfg(not(unix))]
fn open_sealed(_state: &std::path::Path) -> anyhow::Result<Arc<dyn Backend>> {
    anyhow::bail!("system mode (--system) is for Unix systems")
}

/// Everything `serve` needs.
struct Serve {
    layout: Layout,
    config: crate::config::Config,
    backend: Arc<dyn Backend>,
    mode: Mode,
    socket_path: PathBuf,
    replace: bool,
    dbus: bool,
    audit_path: Option<PathBuf>,
    own_folder: bool,
}

async fn serve(s: Serve) -> anyhow::Result<()> {
    let Serve {
        layout,
        config,
        backend,
        mode,
        socket_path,
        replace,
        dbus,
        audit_path,
        own_folder,
    } = s;
    let config_path = layout.main.clone();
    let everyone = mode == Mode::System;
    let store = Store::new(backend);
    let options = crate::broker::Options {
        mode,
        audit_path,
        trusted: crate::policy::Trusted::beside_daemon(),
    };
    let broker = Broker::new(layout, config, store, options).map_err(|e| anyhow::anyhow!(e))?;
    broker.load_states().await;

    // The socket first, so that a caller that finds the D-Bus name finds the socket too. With
    // --replace, D-Bus first: taking the name over tells the old daemon to go, and it lets go of
    // the socket, which this one then binds.
    // Socket activation: a listener the service manager passed is served as it is, and left
    // in place at exit (the manager owns it and starts the daemon again on the next client).
    let activated = crate::ipc::socket::inherited(everyone)?;
    let socket_path = match &activated {
        Some((_, path)) if *path != socket_path => {
            tracing::warn!(
                inherited = %path.display(),
                expected = %socket_path.display(),
                "serving the socket the service manager passed, which is not where clients look by default"
            );
            path.clone()
        }
        _ => socket_path,
    };
    let by_manager = activated.is_some();
    let early = match activated {
        Some((listener, _)) => Some(listener),
        None if replace => None,
        None => Some(bind_socket(&socket_path, false, own_folder, everyone).await?),
    };
    let mut name_lost = None;
    let _bus = if dbus {
        use crate::ipc::dbus::{start, Bus, StartError};
        let bus = match mode {
            Mode::User => Bus::Session,
            Mode::System => Bus::System,
        };
        match start(broker.clone(), bus, replace).await {
            Ok(served) => {
                name_lost = Some(served.name_lost);
                Some(served.connection)
            }
            Err(e @ StartError::NameTaken(_)) => return Err(e.into()),
            Err(e) => {
                tracing::warn!("D-Bus is not available, serving the socket only: {e}");
                None
            }
        }
    } else {
        None
    };

    let listener = match early {
        Some(l) => l,
        None => bind_socket(&socket_path, replace, own_folder, everyone).await?,
    };
    let ours = if by_manager {
        None
    } else {
        socket_identity(&socket_path)
    };
    broker.set_socket_path(&socket_path);
    tracing::info!(socket = %socket_path.display(), config = %config_path.display(), activated = by_manager, "serving");
    let server = tokio::spawn(crate::ipc::socket::serve(
        listener,
        broker.clone(),
        crate::ipc::socket::SocketOptions::from_limits(&broker.config().limits),
    ));
    let lost = async {
        match name_lost {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let ticker = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                every.tick().await;
                broker.audit_tick();
            }
        })
    };
    notify(Notify::Ready);
    let reloads = reload_on_hangup(broker.clone());
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        _ = lost => tracing::info!("another tokenbrokerd took over the D-Bus name: shutting down"),
        _ = reloads => {}
    }
    notify(Notify::Stopping);
    server.abort();
    ticker.abort();
    // Remove the socket only if it is still ours, not the one of a daemon that replaced us.
    if ours.is_some() && socket_identity(&socket_path) == ours {
        let _ = std::fs::remove_file(&socket_path);
    }
    Ok(())
}

/// Bind the socket; with `replace`, wait (bounded) for the old daemon to let go of it.
async fn bind_socket(
    path: &std::path::Path,
    replace: bool,
    own_folder: bool,
    everyone: bool,
) -> anyhow::Result<tokio::net::UnixListener> {
    let attempts = if replace { 50 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        match crate::ipc::socket::bind(path, own_folder, everyone) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    match last {
        Some(e) => Err(e.into()),
        None => anyhow::bail!("cannot bind {}", path.display()),
    }
}

fn socket_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// What the daemon tells systemd.
#[derive(Clone, Copy)]
enum Notify {
    Ready,
    Reloading,
    Stopping,
}

/// Tell systemd (Type=notify) how the service is; nothing when not started by systemd.
#[cfg(target_os = "linux")]
fn notify(state: Notify) {
    use sd_notify::NotifyState;
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let states: &[NotifyState<'_>] = match state {
        Notify::Ready => &[NotifyState::Ready],
        Notify::Reloading => &[NotifyState::Reloading],
        Notify::Stopping => &[NotifyState::Stopping],
    };
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

#[cfg(not(target_os = "linux"))]
fn notify(_state: Notify) {}

/// Reload the config on every SIGHUP, for as long as the daemon runs. A config that does not
/// load is reported and changes nothing.
async fn reload_on_hangup(broker: Broker) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload by restarting");
            return std::future::pending().await;
        };
        while hup.recv().await.is_some() {
            notify(Notify::Reloading);
            match broker.reload().await {
                Ok(r) => tracing::info!(
                    providers = r.providers,
                    accounts = r.accounts,
                    providers_changed = r.providers_changed,
                    accounts_reset = r.accounts_reset,
                    "config reloaded"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "config reload failed: keeping the running config")
                }
            }
            notify(Notify::Ready);
        }
    }
    std::future::pending().await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("TOKENBROKER_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
}
