//! Local users and groups: the daemon's own uid, and names resolved through the user and group
//! databases (NSS). nix's lookups grow their buffer on ERANGE, so a group with many members or
//! a long entry is found rather than silently missed.

/// The daemon's effective uid.
pub fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        nix::unistd::geteuid().as_raw()
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// A local user, by name or numeric uid, to its uid; None when there is no such user.
pub fn resolve_user(user: &str) -> Option<u32> {
    if let Ok(uid) = user.parse::<u32>() {
        return Some(uid);
    }
    lookup_user(user).map(|(uid, _)| uid)
}

/// A user's uid and primary gid from the user database.
#[cfg(unix)]
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Some((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(user = %crate::names::shorten(name), error = %e, "cannot look the user up");
            None
        }
    }
}

#[cfg(not(unix))]
pub fn lookup_user(_name: &str) -> Option<(u32, u32)> {
    None
}

/// A group's gid from the group database (a number is taken as the gid); None when there is
/// no such group.
#[cfg(unix)]
pub fn lookup_group(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Some(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Some(g.gid.as_raw()),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(group = %crate::names::shorten(name), error = %e, "cannot look the group up");
            None
        }
    }
}

#[cfg(not(unix))]
pub fn lookup_group(_name: &str) -> Option<u32> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn root_and_numbers_resolve() {
        assert_eq!(resolve_user("root"), Some(0));
        assert_eq!(resolve_user("4242"), Some(4242));
        assert_eq!(resolve_user("no-such-user-tb"), None);
        assert_eq!(lookup_group("root"), Some(0));
        assert_eq!(lookup_group("no-such-group-tb"), None);
    }
}
