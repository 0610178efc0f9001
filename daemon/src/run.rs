//! The daemon's start-up and shutdown, called by the thin `main`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;

use crate::broker::Broker;
use crate::config::Config;
use crate::store::{Keyring, Store};

/// tokenbrokerd: the tokenbroker daemon.
#[derive(Debug, Parser)]
#[command(
    name = "tokenbrokerd",
    version,
    about = "A local OAuth2 credential broker: signs users in once, keeps refresh tokens in the keychain, hands apps short-lived access tokens",
    after_help = "Examples:\n  tokenbrokerd                          serve with the user's config and socket\n  tokenbrokerd --check-config           validate the config and exit\n  tokenbrokerd --config ./c.toml --socket /tmp/tb.sock\n  tokenbrokerd --replace                take over from a running daemon\n\nLogging: TOKENBROKER_LOG (or RUST_LOG), e.g. TOKENBROKER_LOG=debug."
)]
pub struct Args {
    /// The config file [default: $XDG_CONFIG_HOME/tokenbroker/config.toml]
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
    /// The append-only audit file [default: $XDG_STATE_HOME/tokenbroker/audit.jsonl]
    #[arg(long, value_name = "PATH")]
    pub audit_file: Option<PathBuf>,
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
    let config_path = match args.config {
        Some(p) => p,
        None => default_config_path()
            .context("cannot find the config folder: set XDG_CONFIG_HOME or use --config")?,
    };
    if args.check_config {
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        let c = Config::parse(&config_path, &text)?;
        println!(
            "{}: valid ({} provider(s), {} account(s))",
            config_path.display(),
            c.providers.len(),
            c.accounts.len()
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

    let own_folder = args.socket.is_none();
    let socket_path = match args.socket {
        Some(p) => p,
        None => crate::ipc::socket::default_path()
            .context("XDG_RUNTIME_DIR is not set: set it or use --socket")?,
    };
    let config = Config::load(&config_path)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .thread_stack_size(512 * 1024)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(
        config_path,
        config,
        socket_path,
        args.replace,
        !args.no_dbus,
        args.audit_file,
        own_folder,
    ))
}

async fn serve(
    config_path: PathBuf,
    config: Config,
    socket_path: PathBuf,
    replace: bool,
    dbus: bool,
    audit_path: Option<PathBuf>,
    own_folder: bool,
) -> anyhow::Result<()> {
    let store = Store::new(Arc::new(Keyring::new()));
    let options = crate::broker::Options {
        audit_path: audit_path.or_else(crate::audit::default_path),
        trusted: crate::policy::Trusted::beside_daemon(),
    };
    let broker =
        Broker::new(config_path.clone(), config, store, options).map_err(|e| anyhow::anyhow!(e))?;
    broker.load_states().await;

    // The socket first, so that a caller that finds the D-Bus name finds the socket too. With
    // --replace, D-Bus first: taking the name over tells the old daemon to go, and it lets go of
    // the socket, which this one then binds.
    let early = if replace {
        None
    } else {
        Some(bind_socket(&socket_path, false, own_folder).await?)
    };
    let mut name_lost = None;
    let _bus = if dbus {
        use crate::ipc::dbus::{start, Bus, StartError};
        match start(broker.clone(), Bus::Session, replace).await {
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
        None => bind_socket(&socket_path, replace, own_folder).await?,
    };
    let ours = socket_identity(&socket_path);
    broker.set_socket_path(&socket_path);
    tracing::info!(socket = %socket_path.display(), config = %config_path.display(), "serving");
    let server = tokio::spawn(crate::ipc::socket::serve(
        listener,
        broker.clone(),
        crate::ipc::socket::SocketOptions::default(),
    ));
    let lost = async {
        match name_lost {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        _ = lost => tracing::info!("another tokenbrokerd took over the D-Bus name: shutting down"),
    }
    server.abort();
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
) -> anyhow::Result<tokio::net::UnixListener> {
    let attempts = if replace { 50 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        match crate::ipc::socket::bind(path, own_folder) {
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
