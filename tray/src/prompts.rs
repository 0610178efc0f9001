//! The words of the sign-in and consent prompts.
//!
//! Names that come from elsewhere (an app's executable path above all: any local program can
//! pick its own) are shown with their control characters escaped, so that a path holding a
//! line break cannot draw a second, made-up line into the prompt.

use tokenbroker_client::{AccountInfo, ConsentAnswer, ConsentRequest};

use crate::pinentry::{Button, ConfirmPrompt, PinPrompt};

/// `s` with control characters shown as escapes (`\n`, `\u{1b}`), everything else as is.
pub fn shown(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Like [`shown`], but keeps line breaks (for messages that the daemon wrote).
pub fn shown_lines(s: &str) -> String {
    s.split('\n').map(shown).collect::<Vec<_>>().join("\n")
}

/// How long a password prompt stays up before it gives up by itself.
pub const SIGN_IN_TIMEOUT_SECS: u64 = 300;

/// The password prompt for `a`: it names the account, the provider and the user.
pub fn sign_in(a: &AccountInfo, reason: Option<&str>, error: Option<&str>) -> PinPrompt {
    let user = a
        .username
        .as_deref()
        .map(shown)
        .unwrap_or_else(|| "(no user name configured)".to_owned());
    let mut description = format!(
        "Sign in to account \u{201c}{}\u{201d} at provider \u{201c}{}\u{201d} as user \u{201c}{user}\u{201d}.\n\nThe password goes to tokenbrokerd only, which sends it to the provider once and keeps only the tokens.",
        shown(&a.name),
        shown(&a.provider),
    );
    if let Some(r) = reason {
        description.push_str(&format!("\n\nWhy: {}", shown(r)));
    }
    PinPrompt {
        title: "tokenbroker: sign in".to_owned(),
        description,
        prompt: "Password:".to_owned(),
        error: error.map(shown),
        ok: "Sign in".to_owned(),
        cancel: "Cancel".to_owned(),
        timeout_secs: Some(SIGN_IN_TIMEOUT_SECS),
    }
}

/// The consent prompt for `r` at time `now`: the app's executable as the kernel reported it,
/// its pid and uid, the account and the scopes. OK allows once, "not OK" always, Cancel (and
/// closing the window) denies.
pub fn consent(r: &ConsentRequest, now: u64) -> ConfirmPrompt {
    let pid = r.pid.map(|p| format!("pid {p}, ")).unwrap_or_default();
    let scopes = if r.scopes.is_empty() {
        "(the account's default scopes)".to_owned()
    } else {
        r.scopes
            .iter()
            .map(|s| shown(s))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let description = format!(
        "An app asks for an access token of account \u{201c}{}\u{201d}.\n\nApp: {}\n({pid}uid {}, over {})\nScopes: {scopes}\n\n\u{201c}Always allow\u{201d} lets this executable get these scopes from now on without asking.",
        shown(&r.account),
        shown(&r.exe),
        r.uid,
        shown(&r.transport),
    );
    ConfirmPrompt {
        title: "tokenbroker: allow access?".to_owned(),
        description,
        ok: "Allow once".to_owned(),
        not_ok: "Always allow".to_owned(),
        cancel: "Deny".to_owned(),
        timeout_secs: Some(r.expires_at.saturating_sub(now).max(1)),
    }
}

/// The answer that a button of the consent prompt gives.
pub fn consent_answer(b: Button) -> ConsentAnswer {
    match b {
        Button::Ok => ConsentAnswer::AllowOnce,
        Button::NotOk => ConsentAnswer::AllowAlways,
        Button::Cancel => ConsentAnswer::Deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenbroker_client::{AccountState, Grant};

    #[test]
    fn sign_in_prompt_names_account_provider_and_user() {
        let a = AccountInfo {
            name: "me".into(),
            provider: "corp".into(),
            grant: Grant::Password,
            username: Some("alice".into()),
            scopes: vec![],
            state: AccountState::NeedsSignIn,
            expires_at: None,
            detail: None,
            owner: None,
        };
        let p = sign_in(&a, Some("no refresh token"), None);
        assert!(p.description.contains("\u{201c}me\u{201d}"));
        assert!(p.description.contains("provider \u{201c}corp\u{201d}"));
        assert!(p.description.contains("user \u{201c}alice\u{201d}"));
        assert!(p.description.contains("no refresh token"));
        assert_eq!(p.error, None);
        let p = sign_in(&a, None, Some("wrong password"));
        assert_eq!(p.error.as_deref(), Some("wrong password"));
    }

    #[test]
    fn consent_prompt_names_exe_account_scopes_and_escapes_tricks() {
        let r = ConsentRequest {
            id: 3,
            account: "me".into(),
            exe: "/tmp/evil\nApp: /usr/bin/firefox".into(),
            pid: Some(42),
            uid: 1000,
            scopes: vec!["read".into(), "write".into()],
            transport: "socket".into(),
            expires_at: 160,
        };
        let p = consent(&r, 100);
        assert!(p.description.contains("account \u{201c}me\u{201d}"));
        assert!(p
            .description
            .contains("App: /tmp/evil\\nApp: /usr/bin/firefox\n"));
        assert!(p.description.contains("pid 42, uid 1000"));
        assert!(p.description.contains("Scopes: read write"));
        assert_eq!(p.timeout_secs, Some(60));
        assert_eq!(consent_answer(Button::Ok), ConsentAnswer::AllowOnce);
        assert_eq!(consent_answer(Button::NotOk), ConsentAnswer::AllowAlways);
        assert_eq!(consent_answer(Button::Cancel), ConsentAnswer::Deny);
        // An expired request still gets a positive timeout.
        assert_eq!(consent(&r, 500).timeout_secs, Some(1));
    }
}
