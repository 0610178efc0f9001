//! Who is calling: identified by the kernel, never by what the caller says about itself.
//!
//! Both transports hand the facts the kernel gave them (the socket's peer credentials, the
//! bus's `GetConnectionCredentials`) to [`attest`], the one place that turns them into a
//! [`Caller`]. The executable is read through the caller's pidfd where there is one: the pidfd
//! pins the process that connected, and the process is checked to be alive after its executable
//! was read, so a pid reused after the caller exited is never taken for it. Without a pidfd
//! (older kernels and buses), through the bare pid.

use std::path::PathBuf;

/// A caller as the kernel identifies it. `client_hint` is the name the caller declared: a hint
/// for logs, never trusted.
#[derive(Debug, Clone)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, as the kernel (SO_PEERGROUPS) or the bus reports them.
    pub groups: Vec<u32>,
    pub pid: Option<i32>,
    pub exe: Option<PathBuf>,
    /// Set when the caller runs in another mount or user namespace than the daemon (a
    /// sandbox, a container, `unshare`): its executable's path names a file of another file
    /// system view, so it never matches a host path rule or the user's own tools.
    pub foreign: Option<&'static str>,
    pub transport: &'static str,
    pub client_hint: Option<String>,
}

/// What a transport learnt of its peer from the kernel.
pub struct PeerFacts<'a> {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The pid the kernel reported when the peer connected.
    pub pid: Option<i32>,
    /// The peer's pidfd, where the kernel or the bus offers one.
    #[cfg(unix)]
    pub pidfd: Option<std::os::fd::BorrowedFd<'a>>,
    #[cfg(not(unix))]
    pub pidfd: Option<std::marker::PhantomData<&'a ()>>,
    pub transport: &'static str,
}

/// The caller behind `facts`. With a pidfd, the pid and executable come through it; if it says
/// the caller is gone, the executable stays unknown rather than falling back to the pid, which
/// may already be another process's.
pub fn attest(facts: PeerFacts<'_>) -> Caller {
    #[cfg(target_os = "linux")]
    let by_fd = facts.pidfd.map(exe_of_pidfd);
    #[cfg(not(target_os = "linux"))]
    let by_fd: Option<Option<(i32, PathBuf)>> = {
        let _ = facts.pidfd;
        None
    };
    let (pid, exe) = match by_fd {
        Some(Some((pid, exe))) => (Some(pid), Some(exe)),
        Some(None) => (facts.pid, None),
        None => (facts.pid, facts.pid.and_then(exe_of)),
    };
    // Read after the executable and before the alive check of exe_of_pidfd has passed: a pid
    // reused since then would show as another namespace or executable at the next request.
    let foreign = match (pid, &exe) {
        (Some(p), Some(_)) => foreign_namespace(p),
        _ => None,
    };
    Caller {
        uid: facts.uid,
        gid: facts.gid,
        groups: facts.groups,
        pid,
        exe,
        foreign,
        transport: facts.transport,
        client_hint: None,
    }
}

/// Which of the daemon's namespaces `pid` is not in: mount (its paths are another view) or
/// user (its uid is another's). An unreadable namespace counts as foreign.
#[cfg(target_os = "linux")]
pub fn foreign_namespace(pid: i32) -> Option<&'static str> {
    use std::sync::OnceLock;
    static OURS: OnceLock<[Option<PathBuf>; 2]> = OnceLock::new();
    const KINDS: [(&str, &str); 2] = [("mnt", "mount namespace"), ("user", "user namespace")];
    let ours = OURS
        .get_or_init(|| KINDS.map(|(k, _)| std::fs::read_link(format!("/proc/self/ns/{k}")).ok()));
    for ((kind, what), mine) in KINDS.iter().zip(ours) {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok();
        if mine.is_some() && theirs != *mine {
            return Some(what);
        }
    }
    None
}

#[cfg(not(target_os = "linux"))]
pub fn foreign_namespace(_pid: i32) -> Option<&'static str> {
    None
}

impl Caller {
    /// The daemon's own process as a caller, for unit tests.
    #[cfg(test)]
    pub fn internal() -> Self {
        Self {
            uid: crate::users::current_uid(),
            gid: 0,
            groups: Vec::new(),
            pid: Some(std::process::id() as i32),
            exe: None,
            foreign: None,
            transport: "internal",
            client_hint: None,
        }
    }

    /// Whether the caller is in group `gid`, primary or supplementary.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    pub fn exe_display(&self) -> String {
        self.exe
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "?".into())
    }
}

/// The executable of `pid`, from /proc. Best effort: None when the process is gone or hidden.
pub fn exe_of(pid: i32) -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_link(format!("/proc/{pid}/exe")).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// The pid and executable of the process a pidfd pins, checked after the executable is read so
/// that a pid reused meanwhile is not mistaken for the caller. None when the process is gone.
#[cfg(target_os = "linux")]
pub fn exe_of_pidfd(fd: std::os::fd::BorrowedFd<'_>) -> Option<(i32, PathBuf)> {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    let pid: i32 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|p| *p > 0)?;
    let exe = exe_of(pid)?;
    pidfd_alive(fd).then_some((pid, exe))
}

/// Whether the process behind `fd` is still `first` as it was identified: alive, and running
/// the same executable. Err says what changed.
///
/// A caller identified by uid alone (its executable was unreadable when it connected: another
/// user's process, as every caller of the system daemon is, docs/SYSTEM.md) is only required to
/// be alive. The pid is the one the pidfd gave at connect time; the pidfd's liveness is checked
/// after the executable is read, so a pid reused meanwhile is never read for the caller.
#[cfg(target_os = "linux")]
pub fn recheck(first: &Caller, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), String> {
    const GONE: &str = "the process that opened this connection is gone";
    let (Some(pid), Some(known)) = (first.pid, first.exe.as_ref()) else {
        return if pidfd_alive(fd) {
            Ok(())
        } else {
            Err(GONE.into())
        };
    };
    let now = exe_of(pid);
    if !pidfd_alive(fd) {
        return Err(GONE.into());
    }
    same_exe(first, pid, known, now)
}

/// Whether `now` (the executable read again for `pid`) is `known`, the one `first` connected with.
fn same_exe(
    first: &Caller,
    pid: i32,
    known: &std::path::Path,
    now: Option<PathBuf>,
) -> Result<(), String> {
    match now {
        Some(exe) if exe == known => Ok(()),
        Some(exe) => Err(format!(
            "the process behind this connection (pid {pid}) now runs {}, not {}: it must connect again",
            exe.display(),
            first.exe_display()
        )),
        None => Err(format!(
            "the executable of the process behind this connection (pid {pid}) can no longer be read (it is gone): it must connect again"
        )),
    }
}

/// [`recheck`] for a transport that has no pidfd (a bus without `ProcessFD`, a kernel before
/// 6.5): the executable is read again by the pid the kernel gave at connect time. A pid reused
/// since is another process, which this check can only refuse (another executable) or take for
/// the same program, never for a better one; a caller known by uid alone passes.
pub fn recheck_by_pid(first: &Caller) -> Result<(), String> {
    let (Some(pid), Some(known)) = (first.pid, first.exe.as_ref()) else {
        return Ok(());
    };
    same_exe(first, pid, known, exe_of(pid))
}

/// Whether the process a pidfd refers to still runs: a pidfd turns readable when its process
/// exits (pidfd_open(2)), for any process, not only children.
#[cfg(target_os = "linux")]
fn pidfd_alive(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => true,
        Ok(_) => false,
        Err(_) => false,
    }
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};

    fn pidfd_of(pid: i32) -> OwnedFd {
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap()
    }

    #[test]
    fn a_live_process_is_attested_and_a_gone_one_is_not() {
        let (mut child, pid) = sleeping();
        let fd = pidfd_of(pid);
        let (p, exe) = exe_of_pidfd(fd.as_fd()).unwrap();
        assert_eq!(p, pid);
        assert!(exe.ends_with("sleep"), "{exe:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            exe_of_pidfd(fd.as_fd()).is_none(),
            "a reaped process has no identity"
        );
    }

    /// A child that sleeps for 30 s, and its pid; the test kills it.
    fn sleeping() -> (std::process::Child, i32) {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        (child, pid)
    }

    fn caller_of(pid: i32, exe: Option<PathBuf>) -> Caller {
        Caller {
            pid: Some(pid),
            exe,
            ..Caller::internal()
        }
    }

    #[test]
    fn a_caller_known_by_uid_alone_passes_the_recheck_while_it_lives() {
        // The system daemon cannot read another user's executable: such a caller is
        // identified by uid, and each of its requests must not be refused for that.
        let (mut child, pid) = sleeping();
        let fd = pidfd_of(pid);
        assert_eq!(recheck(&caller_of(pid, None), fd.as_fd()), Ok(()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(recheck(&caller_of(pid, None), fd.as_fd()).is_err());
    }

    #[test]
    fn without_a_pidfd_the_executable_is_read_again_by_pid() {
        let (mut child, pid) = sleeping();
        let exe = exe_of(pid).unwrap();
        assert_eq!(recheck_by_pid(&caller_of(pid, Some(exe))), Ok(()));
        assert_eq!(recheck_by_pid(&caller_of(pid, None)), Ok(()));
        let other = caller_of(pid, Some(PathBuf::from("/usr/bin/tokenbroker")));
        let err = recheck_by_pid(&other).unwrap_err();
        assert!(err.contains("now runs"), "{err}");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_changed_executable_fails_the_recheck() {
        let (mut child, pid) = sleeping();
        let fd = pidfd_of(pid);
        let (_, exe) = exe_of_pidfd(fd.as_fd()).unwrap();
        assert_eq!(recheck(&caller_of(pid, Some(exe)), fd.as_fd()), Ok(()));
        let other = caller_of(pid, Some(PathBuf::from("/usr/bin/tokenbroker")));
        let err = recheck(&other, fd.as_fd()).unwrap_err();
        assert!(err.contains("now runs"), "{err}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
