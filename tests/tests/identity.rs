//! A caller is the process that opened its connection, as the kernel sees it, for as long as
//! the connection lives: a child that inherited the connection, the process after it executed
//! another program, a process in its own mount namespace that bind-mounted a binary over the
//! CLI's path, and the CLI over D-Bus are none of them the user's own tool.

use std::process::{Command, Stdio};

use tokenbroker_e2e::daemon::{bin, Daemon};
use tokenbroker_e2e::fake::{FakeServer, Mode};
use tokenbroker_e2e::peers::SecretService;

fn setup() -> (FakeServer, SecretService, Daemon) {
    let fake = FakeServer::start(Mode::Good { expires_in: 3600 }).unwrap();
    let ss = SecretService::start().unwrap();
    let d = Daemon::start_robot(&ss, &fake).unwrap();
    d.cli_ok(&["token", "robot"], None);
    (fake, ss, d)
}

const HELLO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"Hello","params":{"protocol":"1.0","client":"tokenbroker-cli"}}"#;
const GET: &str = r#"{"jsonrpc":"2.0","id":2,"method":"GetToken","params":{"account":"robot"}}"#;

/// Run a python script with the socket path and the CLI's path; its standard output.
fn python(d: &Daemon, script: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&d.socket)
        .arg(bin("tokenbroker"))
        .envs(d.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_child_using_its_parents_connection_is_refused() {
    let (_fake, _ss, d) = setup();
    // The parent connects, forks, and becomes the CLI; the child talks on the connection.
    let script = format!(
        r#"
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
if os.fork() == 0:
    time.sleep(1.0)
    f = s.makefile("rwb")
    f.write(b'{HELLO}\n{GET}\n'); f.flush()
    print(f.readline().decode().strip(), flush=True)
    os._exit(0)
os.execv(sys.argv[2], [sys.argv[2], "status"])
"#
    );
    let reply = python(&d, &script);
    let reply = reply.lines().last().unwrap_or_default();
    assert!(reply.contains("denied"), "{reply}");
    assert!(reply.contains("another process"), "{reply}");
    assert!(!reply.contains("access_token"), "{reply}");
}

#[test]
fn a_connection_whose_process_executed_another_program_is_refused() {
    let (_fake, _ss, d) = setup();
    // Python says Hello, then executes socat on the same connection, which asks for a token.
    let script = format!(
        r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{HELLO}\n')
f = s.makefile("rb"); f.readline()
fd = os.dup(s.fileno()); os.set_inheritable(fd, True)
r, w = os.pipe()
os.write(w, b'{GET}\n'); os.close(w)
os.dup2(r, 0)
os.execv("/usr/bin/socat", ["socat", "-t", "3", "-", "FD:%d" % fd])
"#
    );
    let reply = python(&d, &script);
    assert!(reply.contains("now runs /usr/bin/socat"), "{reply}");
    assert!(!reply.contains("access_token"), "{reply}");
}

#[test]
fn a_binary_bind_mounted_over_the_cli_in_a_private_namespace_is_not_the_cli() {
    let (_fake, _ss, d) = setup();
    let cli = bin("tokenbroker");
    let input = format!("{HELLO}\n{GET}\n");
    // In its own mount namespace, socat is mounted over the CLI's path and run from there:
    // /proc/PID/exe names the CLI's path.
    let script = format!(
        "mount --bind /usr/bin/socat {cli} && exec {cli} -t 5 - UNIX-CONNECT:{sock}",
        cli = cli.display(),
        sock = d.socket.display()
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let reply = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no reply: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert!(reply.contains("own mount namespace"), "{reply}");
    assert!(!reply.contains("access_token"), "{reply}");
    // The real CLI, on the host, is still the CLI.
    d.cli_ok(&["token", "robot"], None);
}

#[test]
fn the_cli_over_dbus_is_an_app_like_any_other() {
    let (_fake, _ss, d) = setup();
    let out = d.cli(&["--dbus", "token", "robot"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("tokenbroker allow robot --app"), "{err}");
    let cli = bin("tokenbroker");
    d.cli_ok(&["allow", "robot", "--app", cli.to_str().unwrap()], None);
    d.cli_ok(&["--dbus", "token", "robot"], None);
}

/// A D-Bus client in python, speaking the wire protocol itself: it authenticates, says Hello
/// and asks for a token as an allowed app (python), prints that reply, then executes socat,
/// which sends a second, already marshalled, `GetToken` down the same bus connection and prints
/// what comes back. The bus here gives no `ProcessFD`, so the daemon re-reads the executable by
/// pid at every call.
const DBUS_EXEC: &str = r#"
import os, socket, struct, sys, time
def pad(b, n): return b + b"\0" * (-len(b) % n)
def s(v):
    e = v.encode(); return struct.pack("<I", len(e)) + e + b"\0"
def msg(serial, member, dest, path, iface, sig, body):
    fields = b""
    for code, t, v in [(1, "o", path), (2, "s", iface), (3, "s", member), (6, "s", dest)] + ([(8, "g", sig)] if sig else []):
        fields = pad(fields, 8)
        val = bytes([len(v)]) + v.encode() + b"\0" if t == "g" else s(v)
        fields += bytes([code, 1]) + t.encode() + b"\0" + val
    head = b"l" + bytes([1, 0, 1]) + struct.pack("<III", len(body), serial, len(fields)) + fields
    return pad(head, 8) + body
def get_token(serial):
    body = pad(s("robot"), 4) + struct.pack("<I", 0) + struct.pack("<I", 0)
    return msg(serial, "GetToken", "io.tokenbroker.Broker1", "/io/tokenbroker/Broker1", "io.tokenbroker.Broker1", "sasu", body)
addr = os.environ["DBUS_SESSION_BUS_ADDRESS"]
path = addr.split("path=", 1)[1].split(",", 1)[0]
c = socket.socket(socket.AF_UNIX); c.connect(path)
c.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
assert c.recv(4096).startswith(b"OK"), "auth"
c.sendall(b"BEGIN\r\n")
c.sendall(msg(1, "Hello", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "", b""))
c.sendall(get_token(2))
got = b""; end = time.time() + 5
c.settimeout(0.2)
while time.time() < end and b"Bearer" not in got and b"Error" not in got:
    try: got += c.recv(65536)
    except socket.timeout: pass
print("FIRST", got, flush=True)
fd = os.dup(c.fileno()); os.set_inheritable(fd, True)
r, w = os.pipe()
os.write(w, get_token(3)); os.close(w)
os.dup2(r, 0)
os.execv("/usr/bin/socat", ["socat", "-t", "3", "-", "FD:%d" % fd])
"#;

#[test]
fn a_dbus_connection_whose_process_executed_another_program_is_refused() {
    let (_fake, _ss, d) = setup();
    // The interpreter `python3` runs, as the kernel will name it.
    let python = Command::new("python3")
        .args([
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable))",
        ])
        .output()
        .expect("python3 runs");
    let python = String::from_utf8_lossy(&python.stdout).trim().to_owned();
    d.cli_ok(&["allow", "robot", "--app", &python], None);
    let out = Command::new("python3")
        .args(["-c", DBUS_EXEC])
        .envs(d.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (first, second) = text
        .split_once('\n')
        .unwrap_or_else(|| panic!("{text} {}", String::from_utf8_lossy(&out.stderr)));
    // The allowed app got its token: the attack has one to steal.
    assert!(first.contains("Bearer"), "{first}");
    let token = d.cli_ok(&["token", "robot"], None);
    let token = token.trim();
    assert!(
        first.contains(token),
        "python's token is the cached one: {first}"
    );
    // socat, on python's connection, gets none.
    assert!(second.contains("now runs /usr/bin/socat"), "{second}");
    assert!(!second.contains(token), "{second}");
}

#[test]
fn a_bare_app_name_is_resolved_on_path_and_said() {
    let (_fake, _ss, d) = setup();
    let out = d.cli(&["allow", "robot", "--app", "socat"], None);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let socat = std::fs::canonicalize("/usr/bin/socat").unwrap();
    assert!(
        stderr.contains("--app socat is /usr/bin/socat (from PATH)"),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("allowed {}", socat.display())),
        "{stdout}"
    );
    let out = d.cli(&["allow", "robot", "--app", "no-such-tool-here"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no executable of that name on PATH"));
}
