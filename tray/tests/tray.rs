//! The tray end to end: the real `tokenbroker-tray` under Xvfb (with trayer as the tray host),
//! the real daemon, authorization server and Secret Service of the e2e harness, and
//! `tests/fake-pinentry` as the pinentry, scripted through files and recording what it showed.
//!
//! Screenshots are kept under `<target>/test-artifacts/tray/`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenbroker_client::AccountState;
use tokenbroker_e2e::daemon::{bin, Daemon};
use tokenbroker_e2e::peers::*;
use tokenbroker_tray::icon;
use tokenbroker_tray::model::Overall;

const CONFIG: &str = "version = 1\n\n[policy]\nconsent_timeout_secs = 20\n";
const SOCAT: &str = "/usr/bin/socat";
const SCREEN: (usize, usize) = (800, 600);

/// A child process, killed and reaped on drop, its stderr in a file.
struct Proc {
    name: String,
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    fn spawn(name: &str, dir: &Path, cmd: &mut Command) -> Proc {
        let stderr = dir.join(format!("{name}.stderr"));
        let child = cmd
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name}: {e} (run scripts/install-test-deps.sh)")
            });
        Proc {
            name: name.to_owned(),
            child,
            stderr,
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("{} had to be killed", self.name);
    }
}

/// Poll `f` every 100 ms until it gives Some, for at most `secs` seconds.
fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    for _ in 0..(secs * 10 + 1) {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// An X server of our own on a free display number.
struct Display {
    number: String,
    _xvfb: Proc,
}

impl Display {
    fn start(dir: &Path) -> Display {
        let mut cmd = Command::new("Xvfb");
        cmd.args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0"])
            .arg(format!("{}x{}x24", SCREEN.0, SCREEN.1))
            .stdout(Stdio::piped());
        let mut xvfb = Proc::spawn("Xvfb", dir, &mut cmd);
        let stdout = xvfb.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("Xvfb gave no display number: {}", xvfb.log()));
        let number = line.trim().to_owned();
        assert!(!number.is_empty(), "Xvfb: {}", xvfb.log());
        Display {
            number: format!(":{number}"),
            _xvfb: xvfb,
        }
    }

    /// The whole screen as RGB bytes, also written to `png`.
    fn screenshot(&self, png: &Path) -> Vec<u8> {
        let out = Command::new("import")
            .args(["-display", &self.number, "-window", "root"])
            .arg(png)
            .output()
            .expect("run import (imagemagick)");
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("convert")
            .arg(png)
            .args(["-depth", "8", "rgb:-"])
            .output()
            .expect("run convert (imagemagick)");
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), SCREEN.0 * SCREEN.1 * 3);
        out.stdout
    }

    fn xdotool(&self, args: &[&str]) {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.number)
            .output()
            .expect("run xdotool");
        assert!(
            out.status.success(),
            "xdotool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Where the pixels of colour `c` (±10 per channel) are in rows `rows`: count and centre.
fn find(img: &[u8], c: [u8; 3], rows: std::ops::Range<usize>) -> (usize, (usize, usize)) {
    let (mut n, mut sx, mut sy) = (0, 0, 0);
    for y in rows {
        for x in 0..SCREEN.0 {
            let i = (y * SCREEN.0 + x) * 3;
            if (0..3).all(|k| img[i + k].abs_diff(c[k]) <= 10) {
                n += 1;
                sx += x;
                sy += y;
            }
        }
    }
    let centre = (
        sx.checked_div(n).unwrap_or(0),
        sy.checked_div(n).unwrap_or(0),
    );
    (n, centre)
}

fn artifacts() -> PathBuf {
    // <target>/debug/deps/tray-… → <target>/test-artifacts/tray
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("test-artifacts").join("tray");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The scripted pinentry's control folder.
struct FakePinentry {
    dir: PathBuf,
}

impl FakePinentry {
    fn new(dir: &Path) -> FakePinentry {
        let dir = dir.join("pinentry");
        std::fs::create_dir_all(&dir).unwrap();
        FakePinentry { dir }
    }

    fn program() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-pinentry")
    }

    fn set(&self, name: &str, value: Option<&str>) {
        let p = self.dir.join(name);
        match value {
            Some(v) => std::fs::write(p, v).unwrap(),
            None => {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    fn prompts(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("prompts.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// trayer, an XEmbed tray host, as a 160×32 dock at the top left.
fn start_trayer(dir: &Path, display: &Display) -> Proc {
    Proc::spawn(
        "trayer",
        dir,
        Command::new("trayer")
            .args(["--SetDockType", "true", "--edge", "top", "--align", "left"])
            .args(["--widthtype", "pixel", "--width", "160"])
            .args(["--heighttype", "pixel", "--height", "32"])
            .args(["--transparent", "false"])
            .env("DISPLAY", &display.number)
            .stdout(Stdio::null()),
    )
}

fn start_tray(
    dir: &Path,
    display: &Display,
    ss: &SecretService,
    socket: &Path,
    pin: &FakePinentry,
) -> Proc {
    let mut cmd = Command::new(bin("tokenbroker-tray"));
    cmd.envs(ss.env())
        .env("DISPLAY", &display.number)
        .env("TOKENBROKER_SOCKET", socket)
        .env("TOKENBROKER_PINENTRY", FakePinentry::program())
        .env("FAKE_PINENTRY_DIR", &pin.dir)
        .env("TOKENBROKER_LOG", "debug")
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null());
    Proc::spawn("tokenbroker-tray", dir, &mut cmd)
}

fn state_of(d: &Daemon, account: &str) -> AccountState {
    d.client()
        .list_accounts()
        .unwrap()
        .into_iter()
        .find(|a| a.name == account)
        .unwrap()
        .state
}

#[test]
fn icon_shows_the_state_and_sign_in_goes_through_pinentry() {
    let dir = tempfile::tempdir().unwrap();
    let art = artifacts();
    let server = AuthServer::start(AuthServerOptions::default()).unwrap();
    let ss = SecretService::start().unwrap();
    let d = Daemon::start(&ss, Some(CONFIG)).unwrap();
    // The app asks for fewer scopes than the account's: by a scoped refresh.
    d.add_dot_provider_with(&server, &["read", "write"], &["--scoped-refresh"]);
    d.add_dot_account("me", ALICE_USERNAME);
    assert_eq!(state_of(&d, "me"), AccountState::NeedsSignIn);

    let display = Display::start(dir.path());
    let mut trayer = start_trayer(dir.path(), &display);
    let pin = FakePinentry::new(dir.path());
    let mut tray = start_tray(dir.path(), &display, &ss, &d.socket, &pin);

    // The icon appears in the tray, in the colour of "needs sign-in".
    let amber = icon::colour(Overall::NeedsSignIn);
    let green = icon::colour(Overall::SignedIn);
    let shot = art.join("tray-needs-sign-in.png");
    let (_, at) = wait_for("the amber icon in the tray", 30, || {
        assert!(tray.running(), "the tray exited: {}", tray.log());
        assert!(trayer.running(), "trayer exited: {}", trayer.log());
        let img = display.screenshot(&shot);
        let (n, at) = find(&img, amber, 0..40);
        (n >= 40).then_some((n, at))
    });

    // The daemon asks for sign-in (a token was asked for); the tray prompts through pinentry
    // and signs the account in.
    pin.set("pin", Some(ALICE_PASSWORD));
    let out = d.cli(&["token", "me"], None);
    assert!(!out.status.success(), "no token before sign-in");
    wait_for("the account signed in through the tray", 30, || {
        assert!(tray.running(), "the tray exited: {}", tray.log());
        (state_of(&d, "me") == AccountState::SignedIn).then_some(())
    });
    let prompts = pin.prompts();
    let p = prompts
        .iter()
        .find(|p| p["command"] == "GETPIN")
        .expect("a password prompt");
    let desc = p["desc"].as_str().unwrap();
    assert!(desc.contains("account \u{201c}me\u{201d}"), "{desc}");
    assert!(desc.contains("provider \u{201c}dot\u{201d}"), "{desc}");
    assert!(desc.contains("user \u{201c}alice\u{201d}"), "{desc}");
    assert_eq!(p["prompt"], "Password:");
    // The CLI gets a token now.
    let token = d.cli_ok(&["token", "me"], None);
    assert!(!token.trim().is_empty());
    // The password is not in the tray's log.
    assert!(!tray.log().contains(ALICE_PASSWORD));

    // The icon turns green, where the amber one was.
    let shot = art.join("tray-signed-in.png");
    let (_, at2) = wait_for("the green icon", 20, || {
        let img = display.screenshot(&shot);
        let (g, at) = find(&img, green, 0..40);
        let (a, _) = find(&img, amber, 0..40);
        (g >= 40 && a == 0).then_some((g, at))
    });
    assert!(at.0.abs_diff(at2.0) < 20 && at.1.abs_diff(at2.1) < 20);

    // The password is not left in the tray's memory once sent (reading it needs root).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(
            !contains(&read_memory(tray.child.id()), ALICE_PASSWORD.as_bytes()),
            "the password is still in the tray's memory"
        );
    } else {
        eprintln!("not root: the tray's memory is not searched for the password");
    }

    // A click opens the menu (kept as the menu's screenshot).
    open_menu(&display, at2, &art.join("tray-menu.png"));
    // Its items work: Sign out of me (the second selectable item).
    pin.set("pin", None);
    display.xdotool(&["key", "Down", "Down", "Return"]);
    wait_for("the account signed out from the menu", 20, || {
        (state_of(&d, "me") == AccountState::NeedsSignIn).then_some(())
    });
    wait_for("the amber icon again", 20, || {
        let img = display.screenshot(&art.join("tray-signed-out.png"));
        (find(&img, amber, 0..40).0 >= 40).then_some(())
    });
    // Sign in to me… (the first): the pinentry prompt, then signed in.
    pin.set("pin", Some(ALICE_PASSWORD));
    let asked = pin
        .prompts()
        .iter()
        .filter(|p| p["command"] == "GETPIN")
        .count();
    open_menu(&display, at2, &art.join("tray-menu-signed-out.png"));
    display.xdotool(&["key", "Down", "Return"]);
    wait_for("the account signed in from the menu", 30, || {
        (state_of(&d, "me") == AccountState::SignedIn).then_some(())
    });
    assert!(
        pin.prompts()
            .iter()
            .filter(|p| p["command"] == "GETPIN")
            .count()
            > asked
    );
    // Show audit log (the third): a window of that name.
    wait_for("the green icon again", 20, || {
        let img = display.screenshot(&art.join("tray-signed-in-again.png"));
        (find(&img, green, 0..40).0 >= 40).then_some(())
    });
    open_menu(&display, at2, &art.join("tray-menu-again.png"));
    display.xdotool(&["key", "Down", "Down", "Down", "Return"]);
    wait_for("the audit log window", 15, || {
        let out = Command::new("xdotool")
            .args(["search", "--name", "tokenbroker: audit log"])
            .env("DISPLAY", &display.number)
            .output()
            .unwrap();
        (out.status.success() && !out.stdout.is_empty()).then_some(())
    });
    display.screenshot(&art.join("tray-audit-log.png"));
    assert!(tray.running(), "the tray exited: {}", tray.log());
}

/// Click the icon at `at` and wait until a menu is drawn below the tray.
fn open_menu(display: &Display, at: (usize, usize), png: &Path) {
    let before = display.screenshot(png);
    display.xdotool(&["mousemove", &at.0.to_string(), &at.1.to_string()]);
    display.xdotool(&["click", "1"]);
    wait_for("the menu", 15, || {
        let img = display.screenshot(png);
        let changed = img
            .chunks(3)
            .zip(before.chunks(3))
            .enumerate()
            .filter(|(i, (a, b))| i / SCREEN.0 > 40 && a != b)
            .count();
        (changed > 2000).then_some(())
    });
    // Let GTK finish mapping it and take the keyboard grab.
    std::thread::sleep(Duration::from_millis(300));
}

/// Every private writable mapping of `pid`, read through /proc/PID/mem (as root).
fn read_memory(pid: u32) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut out = Vec::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 2 || !f[1].starts_with("rw") || f.get(5).is_some_and(|p| p.starts_with("[v")) {
            continue;
        }
        let Some((a, b)) = f[0].split_once('-') else {
            continue;
        };
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        if b - a > 1 << 30 {
            continue;
        }
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_ok() && mem.read_exact(&mut buf).is_ok() {
            out.extend_from_slice(&buf);
        }
    }
    assert!(out.len() > 1 << 20, "read too little of the tray's memory");
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Run socat as an app asking for a token of `me`; the GetToken reply.
fn app_get_token(socket: &Path) -> Value {
    let input = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"Hello\",\"params\":{\"protocol\":\"1.0\"}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"GetToken\",\"params\":{\"account\":\"me\",\"scopes\":[\"read\"]}}\n";
    let mut child = Command::new(SOCAT)
        .args(["-t", "30", "-"])
        .arg(format!("UNIX-CONNECT:{}", socket.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no reply: {text:?} {:?}", out.stderr));
    serde_json::from_str(line).unwrap()
}

/// Ask until the daemon has the tray as its consent agent (a request made before that is
/// refused at once with "no consent agent"); the first reply that was put to the user.
fn ask_with_agent(socket: &Path, tray: &mut Proc) -> Value {
    wait_for("the tray as consent agent", 30, || {
        assert!(tray.running(), "the tray exited: {}", tray.log());
        let v = app_get_token(socket);
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        (!msg.contains("no consent agent")).then_some(v)
    })
}

#[test]
fn consent_answers_reach_the_waiting_request_across_daemon_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = AuthServer::start(AuthServerOptions::default()).unwrap();
    let ss = SecretService::start().unwrap();
    let display = Display::start(dir.path());
    let pin = FakePinentry::new(dir.path());

    // The tray starts first, with no daemon yet.
    let socket = ss.runtime_dir().join("tokenbroker").join("socket");
    let _trayer = start_trayer(dir.path(), &display);
    let mut tray = start_tray(dir.path(), &display, &ss, &socket, &pin);
    // Grey: no daemon. It keeps running, and waits.
    let art = artifacts();
    wait_for("the grey icon", 30, || {
        assert!(tray.running(), "the tray exited: {}", tray.log());
        let img = display.screenshot(&art.join("tray-no-daemon.png"));
        (find(&img, icon::colour(Overall::Offline), 0..40).0 >= 40).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        tray.running(),
        "the tray gave up without a daemon: {}",
        tray.log()
    );

    let mut d = Daemon::start(&ss, Some(CONFIG)).unwrap();
    assert_eq!(d.socket, socket);
    // The app asks for fewer scopes than the account's: by a scoped refresh.
    d.add_dot_provider_with(&server, &["read", "write"], &["--scoped-refresh"]);
    d.add_dot_account("me", ALICE_USERNAME);
    d.login("me", ALICE_PASSWORD);
    wait_for("the green icon once the daemon is there", 30, || {
        let img = display.screenshot(&art.join("tray-daemon-appeared.png"));
        (find(&img, icon::colour(Overall::SignedIn), 0..40).0 >= 40).then_some(())
    });

    // Allow once: the waiting request gets its token.
    pin.set("button", Some("ok"));
    let v = ask_with_agent(&socket, &mut tray);
    assert!(
        v["result"]["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{v}"
    );
    let prompts = pin.prompts();
    let p = prompts.last().expect("a consent prompt");
    assert_eq!(p["command"], "CONFIRM");
    let desc = p["desc"].as_str().unwrap();
    assert!(desc.contains(&format!("App: {SOCAT}\n")), "{desc}");
    assert!(desc.contains("account \u{201c}me\u{201d}"), "{desc}");
    assert!(desc.contains("Scopes: read"), "{desc}");
    assert_eq!(
        (&p["ok"], &p["notok"], &p["cancel"]),
        (
            &Value::from("Allow once"),
            &Value::from("Always allow"),
            &Value::from("Deny")
        )
    );

    // Deny (or closing the prompt): denied, and asked again next time (nothing was kept).
    pin.set("button", Some("cancel"));
    let v = app_get_token(&socket);
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("the user denied"), "{v}");
    assert_eq!(pin.prompts().len(), 2);

    // The daemon restarts: the tray comes back as its consent agent by itself.
    d.restart().unwrap();
    pin.set("button", Some("ok"));
    let v = ask_with_agent(&socket, &mut tray);
    assert!(v["result"]["access_token"].as_str().is_some(), "{v}");
    assert_eq!(pin.prompts().len(), 3);

    // Always allow: a token now, and later ones without asking (the answer would be Deny).
    pin.set("button", Some("notok"));
    let v = app_get_token(&socket);
    assert!(v["result"]["access_token"].as_str().is_some(), "{v}");
    assert_eq!(pin.prompts().len(), 4);
    pin.set("button", Some("cancel"));
    let v = app_get_token(&socket);
    assert!(v["result"]["access_token"].as_str().is_some(), "{v}");
    assert_eq!(pin.prompts().len(), 4, "asked again after Always allow");
    assert!(d.cli_ok(&["policy"], None).contains(SOCAT));
    assert!(tray.running(), "the tray exited: {}", tray.log());
}
