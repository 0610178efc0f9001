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
        // SAFETY: prctl with PR_SET_DUMPABLE and integer arguments has no memory effects.
        let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        h.not_dumpable = r == 0;
        if r != 0 {
            h.warnings.push(format!(
                "PR_SET_DUMPABLE failed: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    #[cfg(unix)]
    {
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads the struct we pass and nothing else.
        let r = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
        h.no_core = r == 0;
        if r != 0 {
            h.warnings.push(format!(
                "RLIMIT_CORE=0 failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        let got = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0;
        let enough = got && (lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= MIN_MEMLOCK);
        if enough {
            // MCL_ONFAULT: lock pages as they are touched, rather than making every mapped page
            // (the whole binary, every thread's stack) resident at once.
            // SAFETY: mlockall takes flags only.
            let r =
                unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
            h.memory_locked = r == 0;
            if r != 0 {
                h.warnings.push(format!(
                    "mlockall failed ({}): secrets may be swapped out",
                    std::io::Error::last_os_error()
                ));
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn hardening_makes_the_process_undumpable() {
        // Run in a child so that the test process itself stays normal.
        let exe = std::env::current_exe().unwrap_or_default();
        if std::env::var_os("TB_HARDEN_CHILD").is_some() {
            let h = super::harden();
            // SAFETY: prctl(PR_GET_DUMPABLE) reads a flag.
            let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
            let mut lim = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            // SAFETY: getrlimit writes into lim.
            unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) };
            assert!(h.not_dumpable && h.no_core);
            assert_eq!(dumpable, 0);
            assert_eq!(lim.rlim_cur, 0);
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
