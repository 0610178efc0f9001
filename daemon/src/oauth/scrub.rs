//! Server text is data, not a channel. Whatever an authorization server says (an error code, a
//! description, a content type, an issuer name) passes through here before it reaches an error,
//! a log line or an account's state: every secret of the request that provoked it is cut out, in
//! the forms a careless server echoes it back (as sent, form-encoded, JSON-escaped), and so is
//! anything else that looks like a token.

use zeroize::Zeroize;

use crate::error::Error;

/// What replaces a secret or a token-like run.
pub const REDACTED: &str = "[redacted]";

/// The shortest run of token characters taken for a token when it mixes letters and digits.
const TOKEN_MIXED: usize = 20;
/// The shortest run taken for a token whatever its characters.
const TOKEN_ANY: usize = 48;

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=' | '%')
}

/// The forms of `secret` a server may echo: as sent, form-encoded, percent-encoded with `%20`,
/// and JSON-escaped.
fn forms(secret: &str) -> Vec<String> {
    let mut v = vec![secret.to_owned()];
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    v.push(form.replace('+', "%20"));
    v.push(form);
    if let Ok(json) = serde_json::to_string(secret) {
        v.push(json.trim_matches('"').to_owned());
    }
    v.sort();
    v.dedup();
    // Longest first, so that a form that contains another is cut whole.
    v.sort_by_key(|f| std::cmp::Reverse(f.len()));
    v
}

/// `text` with every secret and every token-like run replaced by [`REDACTED`].
pub fn text(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        for mut form in forms(secret) {
            if out.contains(form.as_str()) {
                let mut cut = out.replace(form.as_str(), REDACTED);
                std::mem::swap(&mut out, &mut cut);
                cut.zeroize();
            }
            form.zeroize();
        }
    }
    let cleaned = tokens_out(&out);
    out.zeroize();
    cleaned
}

/// Every run of token characters that is long and mixes letters and digits, or is very long,
/// replaced.
fn tokens_out(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let mixed =
            run.chars().any(|c| c.is_ascii_digit()) && run.chars().any(|c| c.is_ascii_alphabetic());
        if run.len() >= TOKEN_ANY || (mixed && run.len() >= TOKEN_MIXED) {
            out.push_str(REDACTED);
        } else {
            out.push_str(run);
        }
        run.zeroize();
        run.clear();
    };
    for c in s.chars() {
        if token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// An error with the server's words in it, scrubbed of `secrets` and token-like runs.
pub fn error(e: Error, secrets: &[&str]) -> Error {
    match e {
        Error::OAuth {
            status,
            error,
            description,
        } => Error::OAuth {
            status,
            error: text(&error, secrets),
            description: description.map(|d| text(&d, secrets)),
        },
        Error::BadReply { status, message } => Error::BadReply {
            status,
            message: text(&message, secrets),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_cut_in_every_echoed_form() {
        let secret = "p&ss=w+rd/ü\"x";
        let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let said = format!(
            "bad request: password={secret} body=password={form} json={}",
            serde_json::to_string(secret).unwrap_or_default()
        );
        let clean = text(&said, &[secret]);
        assert!(!clean.contains("ss=w"), "{clean}");
        assert!(!clean.contains("p%26ss"), "{clean}");
        assert_eq!(clean.matches(REDACTED).count(), 3, "{clean}");
        assert!(clean.starts_with("bad request: password="), "{clean}");
    }

    #[test]
    fn token_like_runs_are_cut_and_words_stay() {
        let said = "invalid_grant: token 9f8e7d6c5b4a39281706fedcba is expired; eyJhbGciOi.eyJzdWIi.sig_nature_here_long_enough_x; the refresh_token_was_revoked_by_the_administrator";
        let clean = text(said, &[]);
        assert!(!clean.contains("9f8e7d6c5b4a"), "{clean}");
        assert!(!clean.contains("eyJhbGciOi"), "{clean}");
        assert!(clean.contains("invalid_grant"), "{clean}");
        assert!(clean.contains("is expired"), "{clean}");
        assert!(
            clean.contains("refresh_token_was_revoked_by_the_administrator"),
            "a long word without digits is kept: {clean}"
        );
    }

    #[test]
    fn short_secrets_do_not_blank_the_text() {
        assert_eq!(text("a b c", &["a"]), "a b c");
    }
}
