//! packaging/autostart/tokenbroker-tray.desktop is a valid XDG desktop entry that starts the
//! tray by the name it is installed under.

use std::path::Path;
use std::process::Command;

#[test]
fn the_autostart_entry_is_valid_and_starts_the_tray() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/autostart/tokenbroker-tray.desktop");
    let out = Command::new("desktop-file-validate")
        .arg(&file)
        .output()
        .expect("run desktop-file-validate (desktop-file-utils: scripts/install-test-deps.sh)");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("error"), "{said}");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "[Desktop Entry]");
    for want in [
        "Type=Application",
        "Exec=tokenbroker-tray",
        "TryExec=tokenbroker-tray",
    ] {
        assert!(lines.contains(&want), "no {want}");
    }
}
