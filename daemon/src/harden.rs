//! Process hardening at start-up: no core dumps, not dumpable or traceable by peers of the same
//! uid, and memory locked so that secrets are not swapped out (best effort).

/// What hardening achieved, for the log.
#[derive(Debug, Default)]
pub struct Hardening {
    pub not_dumpable: bool,
    pub no_core: bool,
    pub memory_locked: bool,
    pub warnings: Vec<String>,
}

/// The RLIMIT_MEMLOCK below which mlockall(MCL_FUTURE) is not attempted: with a small limit it
/// would make later allocations fail, which is worse than swappable memory.
pub const MIN_MEMLOCK: u64 = 256 * 1024 * 1024;

pub fn harden() -> Hardening {
    let mut h = Hardening::default();
    #[cfg(target_os = "linux")]
    {
        match nix::sys::prctl::set_dumpable(false) {
            Ok(()) => h.not_dumpable = true,
            Err(e) => h.warnings.push(format!("PR_SET_DUMPABLE failed: {e}")),
        }
    }
    #[cfg(unix)]
    {
        use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
        match setrlimit(Resource::RLIMIT_CORE, 0, 0) {
            Ok(()) => h.no_core = true,
            Err(e) => h.warnings.push(format!("RLIMIT_CORE=0 failed: {e}")),
        }
        // Connections over a limit are refused and closed at once, but every accepted one is a
        // descriptor for a moment: take all the descriptors the hard limit allows.
        if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let want = hard.min(65_536);
            if soft < want {
                let _ = setrlimit(Resource::RLIMIT_NOFILE, want, hard);
            }
        }
        let enough = getrlimit(Resource::RLIMIT_MEMLOCK)
            .is_ok_and(|(soft, _)| soft == RLIM_INFINITY || soft >= MIN_MEMLOCK);
        if enough {
            match lock_memory() {
                Ok(()) => h.memory_locked = true,
                Err(e) => h
                    .warnings
                    .push(format!("mlockall failed ({e}): secrets may be swapped out")),
            }
        } else {
            h.warnings.push(format!(
                "memory not locked: RLIMIT_MEMLOCK is below {} MiB (raise it, e.g. LimitMEMLOCK=infinity in the unit); secrets may be swapped out",
                MIN_MEMLOCK >> 20
            ));
        }
    }
    h
}

/// mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT): lock pages as they are touched, rather
/// than making every mapped page (the whole binary, every thread's stack) resident at once.
#[cfg(unix)]
fn lock_memory() -> nix::Result<()> {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    let mut flags = MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE;
    #[cfg(target_os = "linux")]
    {
        // nix names no MCL_ONFAULT; the kernel's value is libc's.
        flags |= MlockAllFlags::from_bits_retain(libc::MCL_ONFAULT);
    }
    mlockall(flags)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn hardening_makes_the_process_undumpable() {
        // Run in a child so that the test process itself stays normal.
        let exe = std::env::current_exe().unwrap_or_default();
        if std::env::var_os("TB_HARDEN_CHILD").is_some() {
            let h = super::harden();
            let dumpable = nix::sys::prctl::get_dumpable().unwrap_or(true);
            let (core, _) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE)
                    .unwrap_or((1, 1));
            assert!(h.not_dumpable && h.no_core);
            assert!(!dumpable);
            assert_eq!(core, 0);
            return;
        }
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "harden::tests::hardening_makes_the_process_undumpable",
                "--nocapture",
            ])
            .env("TB_HARDEN_CHILD", "1")
            .output();
        let ok = out.as_ref().map(|o| o.status.success()).unwrap_or(false);
        assert!(ok, "{out:?}");
    }
}
