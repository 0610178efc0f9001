//! Who is calling: identified by the kernel, never by what the caller says about itself.

use std::path::PathBuf;

/// A caller as the kernel identifies it (socket peer credentials; later D-Bus
/// `GetConnectionCredentials`). `client_hint` is the name the caller declared: a hint for logs,
/// never trusted.
#[derive(Debug, Clone)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    pub exe: Option<PathBuf>,
    pub transport: &'static str,
    pub client_hint: Option<String>,
}

impl Caller {
    /// The daemon itself, for internal work (background refresh).
    pub fn internal() -> Self {
        Self {
            uid: current_uid(),
            gid: 0,
            pid: Some(std::process::id() as i32),
            exe: None,
            transport: "internal",
            client_hint: None,
        }
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
