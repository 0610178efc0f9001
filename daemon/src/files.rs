//! Files the daemon writes: private folders, and atomic replacement (a synced temporary file in
//! the same folder, renamed over the old one, then the folder synced), so that a crash leaves
//! either the old content or the new, never half of one. The config editor and the sealed store
//! both write through here.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Create `dir` (and parents) with mode 0700 where it does not exist yet.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// The folder a file is in ("." for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync a folder, so that a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How a new file is made by [`write_atomically`].
pub struct Atomic<'a> {
    /// The temporary file's name starts with this (and is in the same folder).
    pub temp_prefix: &'a str,
    pub temp_suffix: &'a str,
    /// The mode of the new file; None keeps an existing file's mode (0600 for a new one).
    pub mode: Option<u32>,
}

/// Replace `path` by `bytes` atomically. On failure the temporary file is removed and `path`
/// is as it was.
pub fn write_atomically(path: &Path, bytes: &[u8], how: &Atomic<'_>) -> io::Result<()> {
    let dir = parent_of(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(how.temp_prefix)
        .suffix(how.temp_suffix)
        .tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = how.mode.unwrap_or_else(|| {
            std::fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0o600)
        });
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replaces_keeps_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let how = Atomic {
            temp_prefix: ".f.",
            temp_suffix: ".tmp",
            mode: None,
        };
        write_atomically(&p, b"one", &how).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
            write_atomically(&p, b"two", &how).unwrap();
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o640
            );
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
