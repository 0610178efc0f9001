//! tokenbroker-tray: the thin GTK glue around the tray's library. See docs/TRAY.md.

use std::path::PathBuf;

/// A password passes through the tray: every freed allocation is wiped first.
#[global_allocator]
static ALLOC: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "tokenbroker-tray",
    version,
    about = "Tray icon of tokenbroker: account state, sign-in and consent prompts",
    after_help = "Examples:\n  tokenbroker-tray\n  tokenbroker-tray --pinentry pinentry-qt\n  TOKENBROKER_PINENTRY=pinentry-gnome3 tokenbroker-tray\n\nIt waits for tokenbrokerd if it is not running yet, and reconnects after a restart."
)]
struct Args {
    /// The pinentry program for password and consent prompts (pinentry-gnome3, pinentry-qt,
    /// pinentry-gtk2, pinentry-curses, pinentry-tty, or a path).
    #[arg(long, env = "TOKENBROKER_PINENTRY", default_value = tokenbroker_tray::pinentry::DEFAULT_PINENTRY)]
    pinentry: PathBuf,
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/tokenbroker/socket].
    #[arg(long, env = "TOKENBROKER_SOCKET")]
    socket: Option<PathBuf>,
}

fn main() -> ExitCode {
    harden();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOKENBROKER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokenbroker-tray: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The tray holds passwords for a moment: no core files. It stays dumpable: the kernel hides a
/// non-dumpable process's executable (`/proc/PID/exe`) from the other processes of its own
/// user, so a user daemon could not tell the tray from any app (docs/TRAY.md).
#[cfg(target_os = "linux")]
fn harden() {
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
}

#[cfg(not(target_os = "linux"))]
fn harden() {}

fn settings(args: Args) -> anyhow::Result<tokenbroker_tray::link::Settings> {
    let socket = match args.socket {
        Some(s) => s,
        None => tokenbroker_client::default_socket_path()?,
    };
    Ok(tokenbroker_tray::link::Settings {
        socket,
        pinentry: tokenbroker_tray::pinentry::Pinentry::new(args.pinentry),
    })
}

#[cfg(target_os = "linux")]
fn run(args: Args) -> anyhow::Result<()> {
    gtk_ui::run(settings(args)?)
}

#[cfg(not(target_os = "linux"))]
fn run(args: Args) -> anyhow::Result<()> {
    let _ = settings(args)?;
    anyhow::bail!("the tray runs on Linux only for now (macOS and Windows need their own event loop: not written yet)")
}

#[cfg(target_os = "linux")]
mod gtk_ui {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use anyhow::Context as _;
    use gtk::glib;
    use gtk::prelude::*;
    use tokenbroker_tray::icon;
    use tokenbroker_tray::link::{now_unix, Backend, Settings, ToUi};
    use tokenbroker_tray::model::{Action, Entry, Model, Overall};
    use tray_icon::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
    use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

    pub fn run(settings: Settings) -> anyhow::Result<()> {
        gtk::init().context("cannot open the display (is DISPLAY set?)")?;
        let (tx, rx) = mpsc::channel();
        let backend = Backend::start(settings, tx);
        let model = backend.model();
        let menu = menu_of(&model.menu(now_unix()))?;
        let tray = TrayIconBuilder::new()
            .with_id("tokenbroker")
            .with_icon(icon_of(model.overall())?)
            .with_tooltip(model.tooltip())
            .with_menu(Box::new(menu))
            .build()
            .context("cannot create the tray icon")?;
        let mut ui = Ui {
            tray,
            model,
            entries: Vec::new(),
            drawn: Instant::now(),
        };
        ui.entries = ui.model.menu(now_unix());
        glib::timeout_add_local(Duration::from_millis(100), move || {
            while let Ok(ev) = MenuEvent::receiver().try_recv() {
                match Action::from_id(ev.id.as_ref()) {
                    Some(Action::Quit) => gtk::main_quit(),
                    Some(a) => backend.act(a),
                    None => {}
                }
            }
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    ToUi::Model(m) => ui.show(m),
                    ToUi::Audit(text) => audit_window(&text),
                }
            }
            // Expiry times are relative: redraw the menu now and then.
            if ui.drawn.elapsed() > Duration::from_secs(30) {
                let m = ui.model.clone();
                ui.show(m);
            }
            glib::ControlFlow::Continue
        });
        gtk::main();
        Ok(())
    }

    struct Ui {
        tray: TrayIcon,
        model: Model,
        entries: Vec<Entry>,
        drawn: Instant,
    }

    impl Ui {
        fn show(&mut self, m: Model) {
            self.drawn = Instant::now();
            if m.overall() != self.model.overall() {
                match icon_of(m.overall()) {
                    Ok(i) => {
                        if let Err(e) = self.tray.set_icon(Some(i)) {
                            tracing::warn!(error = %e, "cannot change the icon");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot draw the icon"),
                }
                tracing::info!(state = m.overall().describe(), "tray state");
            }
            let _ = self.tray.set_tooltip(Some(m.tooltip()));
            let entries = m.menu(now_unix());
            if entries != self.entries {
                match menu_of(&entries) {
                    Ok(menu) => self.tray.set_menu(Some(Box::new(menu))),
                    Err(e) => tracing::warn!(error = %e, "cannot build the menu"),
                }
                self.entries = entries;
            }
            self.model = m;
        }
    }

    fn icon_of(o: Overall) -> anyhow::Result<Icon> {
        Icon::from_rgba(icon::rgba(o, icon::SIZE), icon::SIZE, icon::SIZE)
            .context("cannot make the icon")
    }

    fn menu_of(entries: &[Entry]) -> anyhow::Result<Menu> {
        let menu = Menu::new();
        // muda reads "&" as a mnemonic marker: "&&" is a literal one.
        let text = |s: &str| s.replace('&', "&&");
        for e in entries {
            match e {
                Entry::Label(l) => menu.append(&MenuItem::new(text(l), false, None))?,
                Entry::Separator => menu.append(&PredefinedMenuItem::separator())?,
                Entry::Item {
                    action,
                    label,
                    enabled,
                } => menu.append(&MenuItem::with_id(action.id(), text(label), *enabled, None))?,
            }
        }
        Ok(menu)
    }

    fn audit_window(text: &str) {
        let window = gtk::Window::new(gtk::WindowType::Toplevel);
        window.set_title("tokenbroker: audit log");
        window.set_default_size(900, 500);
        let scrolled = gtk::ScrolledWindow::new(None::<&gtk::Adjustment>, None::<&gtk::Adjustment>);
        let view = gtk::TextView::new();
        view.set_editable(false);
        view.set_cursor_visible(false);
        view.set_monospace(true);
        if let Some(buffer) = view.buffer() {
            buffer.set_text(text);
        }
        scrolled.add(&view);
        window.add(&scrolled);
        window.show_all();
    }
}
