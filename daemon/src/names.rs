//! The naming rules of everything a caller or admin names: providers, accounts, scopes, apps.
//! One rule each, used by the config loader, the broker and the sealed store alike.

/// Names of providers and accounts: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} name {:?}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
            shorten(name)
        ))
    }
}

/// An app is named by the absolute path of its executable.
pub fn check_app_path(exe: &str) -> Result<(), String> {
    if exe.starts_with('/') && exe.len() <= 4096 && !exe.contains('\0') && !exe.ends_with('/') {
        Ok(())
    } else {
        Err(format!(
            "app {:?} must be the absolute path of an executable",
            shorten(exe)
        ))
    }
}

/// At most 64 characters of a caller-supplied string, for error messages.
pub fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// A scope token (RFC 6749 §3.3): printable ASCII without space, '"' or '\'.
pub fn check_scope(scope: &str) -> Result<(), String> {
    let ok = !scope.is_empty()
        && scope.len() <= 256
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid scope {:?}: a scope is 1 to 256 printable ASCII characters without spaces, quotes or backslashes",
            scope.chars().take(40).collect::<String>()
        ))
    }
}
