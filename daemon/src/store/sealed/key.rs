//! The sealed store's key: from the systemd credential `store-key`, or from a key file that is
//! made with 32 random bytes when missing. Never logged, wiped on drop.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305};
use rand::TryRngCore;
use zeroize::Zeroizing;

use super::{CREDENTIAL_NAME, KEY_SIZE, TEMP_SUFFIX};
use crate::error::{Error, KeyFileProblem, Result};
use crate::files::{parent_of, sync_dir};
use crate::users::current_uid;

/// Where the key came from, for the start-up log line. Never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The systemd credential file `$CREDENTIALS_DIRECTORY/store-key`.
    Credential(PathBuf),
    /// A key file, 0600 and owned by the daemon's user.
    KeyFile(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Credential(p) => write!(f, "systemd credential {}", p.display()),
            KeySource::KeyFile(p) => write!(f, "key file {}", p.display()),
        }
    }
}

/// The store's 32-byte key: wiped on drop, redacted in `Debug`.
pub struct StoreKey(pub(super) Zeroizing<[u8; KEY_SIZE]>);

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey([redacted])")
    }
}

impl StoreKey {
    /// The key from the systemd credential `store-key` in `credentials_dir` (what the caller
    /// read from `$CREDENTIALS_DIRECTORY`) when that file exists, or else from `key_file`,
    /// which is created with 32 random bytes when it does not exist.
    ///
    /// A key file must be a regular file owned by the daemon's user, with no access for group
    /// or others, holding exactly 32 raw bytes or 64 hex digits (an optional trailing newline:
    /// `openssl rand -hex 32`). A credential file is not checked for owner and mode: systemd
    /// makes it readable by the service alone.
    pub fn load(credentials_dir: Option<&Path>, key_file: &Path) -> Result<(StoreKey, KeySource)> {
        if let Some(dir) = credentials_dir {
            let path = dir.join(CREDENTIAL_NAME);
            match File::open(&path) {
                Ok(f) => {
                    let key = read_key(&path, f, "credential")?;
                    return Ok((key, KeySource::Credential(path)));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(key_error(&path, KeyFileProblem::Open(e))),
            }
        }
        let key = load_key_file(key_file)?;
        Ok((key, KeySource::KeyFile(key_file.to_path_buf())))
    }

    /// A new random key, from the OS.
    pub fn generate() -> Result<StoreKey> {
        let mut key = Zeroizing::new([0u8; KEY_SIZE]);
        os_random(&mut key[..])?;
        Ok(StoreKey(key))
    }

    pub(super) fn cipher(&self) -> XChaCha20Poly1305 {
        // The cipher holds its own copy of the key and wipes it on drop.
        XChaCha20Poly1305::new(Key::from_slice(&self.0[..]))
    }

    /// The key in `bytes`: 32 raw bytes, or 64 hex digits with an optional trailing newline.
    fn parse(path: &Path, bytes: &[u8], what: &'static str) -> Result<StoreKey> {
        let mut key = Zeroizing::new([0u8; KEY_SIZE]);
        let hex = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        if bytes.len() == KEY_SIZE {
            key.copy_from_slice(bytes);
        } else if hex.len() == 2 * KEY_SIZE {
            hex::decode_to_slice(hex, &mut key[..])
                .map_err(|_| key_error(path, KeyFileProblem::NotHex { what }))?;
        } else {
            return Err(key_error(
                path,
                KeyFileProblem::WrongSize {
                    what,
                    len: bytes.len(),
                },
            ));
        }
        Ok(StoreKey(key))
    }
}

fn key_error(path: &Path, problem: KeyFileProblem) -> Error {
    Error::StoreKey {
        path: path.to_owned(),
        problem,
    }
}

pub(super) fn os_random(buf: &mut [u8]) -> Result<()> {
    rand::rngs::OsRng.try_fill_bytes(buf).map_err(Error::Random)
}

/// Reads a key from an open file into wiped memory, refusing anything but a small regular file.
fn read_key(path: &Path, mut f: File, what: &'static str) -> Result<StoreKey> {
    let meta = f
        .metadata()
        .map_err(|e| key_error(path, KeyFileProblem::Read(e)))?;
    if !meta.is_file() {
        return Err(key_error(path, KeyFileProblem::NotRegular { what }));
    }
    // One byte more than the longest valid form, to tell "too long" from "just right".
    let mut buf = Zeroizing::new([0u8; 2 * KEY_SIZE + 2]);
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(key_error(path, KeyFileProblem::Read(e))),
        }
    }
    if n == buf.len() {
        return Err(key_error(
            path,
            KeyFileProblem::TooLarge {
                what,
                len: meta.len(),
            },
        ));
    }
    StoreKey::parse(path, &buf[..n], what)
}

fn load_key_file(path: &Path) -> Result<StoreKey> {
    // Twice at most: when another process creates the file between our open and our create.
    for _ in 0..2 {
        match File::open(path) {
            Ok(f) => {
                check_key_file(path, &f)?;
                return read_key(path, f, "key file");
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(key_error(path, KeyFileProblem::Open(e))),
        }
        if let Some(key) = create_key_file(path)? {
            return Ok(key);
        }
    }
    Err(key_error(path, KeyFileProblem::Vanished))
}

/// A key file must be the daemon's own and closed to group and others.
fn check_key_file(path: &Path, f: &File) -> Result<()> {
    let meta = f
        .metadata()
        .map_err(|e| key_error(path, KeyFileProblem::Read(e)))?;
    let euid = current_uid();
    if meta.uid() != euid {
        return Err(key_error(
            path,
            KeyFileProblem::OwnedBy {
                uid: meta.uid(),
                euid,
            },
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_error(
            path,
            KeyFileProblem::OpenToOthers {
                mode,
                path: path.to_owned(),
            },
        ));
    }
    Ok(())
}

/// Creates the key file with 32 random bytes, atomically: a temporary file (0600) is written
/// and synced, then linked to `path` only if `path` does not exist. `None` when another process
/// created `path` meanwhile.
fn create_key_file(path: &Path) -> Result<Option<StoreKey>> {
    let dir = parent_of(path);
    let key = StoreKey::generate()?;
    let fail = |e: io::Error| key_error(path, KeyFileProblem::Create(e));
    let mut tmp = tempfile::Builder::new()
        .prefix(".store.key.")
        .suffix(TEMP_SUFFIX)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.write_all(&key.0[..]).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(fail(e.error)),
    }
    sync_dir(dir).map_err(fail)?;
    Ok(Some(key))
}
