//! The pinentry client against a real child process speaking Assuan (the scripted stand-in
//! `tests/fake-pinentry`): passwords with characters that need escaping, cancel, the three
//! buttons, and what the prompt was shown.

use std::path::Path;

use serde_json::Value;
use tokenbroker_tray::pinentry::{Button, ConfirmPrompt, PinPrompt, Pinentry};

/// Held by each test for its whole run. A test writes its wrapper script and then runs it; were
/// the other test forking at that moment, its child would hold the script's write descriptor
/// open until it executes, and running the script fails with ETXTBSY ("Text file busy", seen
/// in CI). The tests are short, so they take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Stand {
    dir: tempfile::TempDir,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Stand {
    fn new() -> Stand {
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Stand {
            dir: tempfile::tempdir().unwrap(),
            _turn: turn,
        }
    }

    fn pinentry(&self) -> Pinentry {
        // The stand-in finds its control folder in the environment it inherits; each test's
        // folder is passed through a wrapper so that tests can run in parallel.
        let wrapper = self.dir.path().join("pinentry");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nFAKE_PINENTRY_DIR='{}' exec '{}'\n",
                self.dir.path().display(),
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fake-pinentry")
                    .display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Pinentry::new(wrapper)
    }

    fn set(&self, name: &str, value: &str) {
        std::fs::write(self.dir.path().join(name), value).unwrap();
    }

    fn prompts(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("prompts.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[test]
fn get_pin_returns_the_password_exactly_and_none_on_cancel() {
    let s = Stand::new();
    let p = s.pinentry();
    let password = "p&ss=w+rd%20/:x ünï 100% \\ \"q\"";
    s.set("pin", password);
    let prompt = PinPrompt {
        title: "T".into(),
        description: "Sign in to “me”\nline two 100%".into(),
        prompt: "Password:".into(),
        error: Some("bad".into()),
        ok: "Sign in".into(),
        cancel: "Cancel".into(),
        timeout_secs: Some(30),
    };
    let got = p.get_pin(&prompt).unwrap().expect("a password");
    assert_eq!(got.expose(), password);
    let shown = &s.prompts()[0];
    assert_eq!(shown["command"], "GETPIN");
    assert_eq!(shown["desc"], "Sign in to “me”\nline two 100%");
    assert_eq!(shown["error"], "bad");
    assert_eq!(shown["timeout"], "30");

    std::fs::remove_file(s.dir.path().join("pin")).unwrap();
    assert!(p.get_pin(&prompt).unwrap().is_none(), "cancel gives None");
}

#[test]
fn confirm_maps_the_three_buttons() {
    let s = Stand::new();
    let p = s.pinentry();
    let prompt = ConfirmPrompt {
        title: "T".into(),
        description: "App: /usr/bin/socat".into(),
        ok: "Allow once".into(),
        not_ok: "Always allow".into(),
        cancel: "Deny".into(),
        timeout_secs: None,
    };
    for (button, want) in [
        ("ok", Button::Ok),
        ("notok", Button::NotOk),
        ("cancel", Button::Cancel),
    ] {
        s.set("button", button);
        assert_eq!(p.confirm(&prompt).unwrap(), want, "{button}");
    }
    let shown = s.prompts();
    assert_eq!(shown.len(), 3);
    assert_eq!(shown[0]["notok"], "Always allow");
    p.message("T", "done").unwrap();
    assert_eq!(s.prompts()[3]["command"], "MESSAGE");
}
