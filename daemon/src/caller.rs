//! Who is calling: identified by the kernel, never by what the caller says about itself.

use std::path::PathBuf;

/// A caller as the kernel identifies it (socket peer credentials; later D-Bus
/// `GetConnectionCredentials`). `client_hint` is the name the caller declared: a hint for logs,
/// never trusted.
#[derive(Debug, Clone)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, as the kernel (SO_PEERGROUPS) or the bus reports them.
    pub groups: Vec<u32>,
    pub pid: Option<i32>,
    pub exe: Option<PathBuf>,
    pub transport: &'static str,
    pub client_hint: Option<String>,
}

impl Caller {
    /// The daemon's own process as a caller, for unit tests.
    #[cfg(test)]
    pub fn internal() -> Self {
        Self {
            uid: current_uid(),
            gid: 0,
            groups: Vec::new(),
            pid: Some(std::process::id() as i32),
            exe: None,
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

pub fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }
    #[cfg(not(unix))]
    {
        0
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
    // SAFETY: pidfd_send_signal with signal 0 only checks that the process still exists.
    let alive = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    } == 0;
    alive.then_some((pid, exe))
}
