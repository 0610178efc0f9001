//! Who is at the other end of a socket connection, as the kernel says: SO_PEERCRED (uid, gid,
//! pid), SO_PEERGROUPS (supplementary groups) and SO_PEERPIDFD (a pidfd pinning the process
//! that connected, Linux 6.5+). The facts go to [`attest`], which resolves the executable.

use std::os::fd::AsFd;

use tokio::net::UnixStream;

use crate::policy::caller::{attest, Caller, PeerFacts};

/// The caller behind `stream`, and the pidfd that pins it (kept to check the caller again at
/// every request); None when its credentials cannot be read.
pub fn identify(stream: &UnixStream) -> Option<(Caller, Option<std::os::fd::OwnedFd>)> {
    let cred = stream.peer_cred().ok()?;
    let pidfd = peer_pidfd(stream);
    let caller = attest(PeerFacts {
        uid: cred.uid(),
        gid: cred.gid(),
        groups: peer_groups(stream),
        pid: cred.pid(),
        pidfd: pidfd.as_ref().map(|f| f.as_fd()),
        transport: "socket",
    });
    Some((caller, pidfd))
}

/// Ask the kernel to attach the sender's credentials to every message on `socket` (and on the
/// connections accepted from it).
#[cfg(target_os = "linux")]
pub fn pass_credentials<F: AsFd>(socket: &F) -> std::io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::PassCred, &true)
        .map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
pub fn pass_credentials<F: AsFd>(_socket: &F) -> std::io::Result<()> {
    Ok(())
}

#[cfg(target_os = "linux")]
fn peer_pidfd(stream: &UnixStream) -> Option<std::os::fd::OwnedFd> {
    nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerPidfd).ok()
}

#[cfg(not(target_os = "linux"))]
fn peer_pidfd(_stream: &UnixStream) -> Option<std::os::fd::OwnedFd> {
    None
}

/// The peer's supplementary groups at connect time (SO_PEERGROUPS); empty when unavailable.
/// Neither nix nor rustix offers this option, so it is read here.
#[cfg(target_os = "linux")]
fn peer_groups(stream: &UnixStream) -> Vec<u32> {
    use std::os::fd::AsRawFd;
    const GID: usize = std::mem::size_of::<libc::gid_t>();
    // 64 groups fit most users; on ERANGE the kernel says how many bytes it needs (at most
    // NGROUPS_MAX, 65536 groups).
    let mut want = 64 * GID;
    for _ in 0..2 {
        let mut groups = vec![0 as libc::gid_t; want / GID];
        let mut len = want as libc::socklen_t;
        // SAFETY: the fd is a live socket borrowed from `stream`; getsockopt writes at most
        // `len` bytes into `groups`, which holds exactly `len` bytes, and stores how many.
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r == 0 {
            groups.truncate(len as usize / GID);
            return groups;
        }
        let erange = std::io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE);
        if !erange || len as usize <= want || len as usize > 65_536 * GID {
            break;
        }
        want = len as usize;
    }
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
fn peer_groups(_stream: &UnixStream) -> Vec<u32> {
    Vec::new()
}
