//! The encrypted secret store of system mode: a system service cannot reach a user's keychain,
//! so refresh tokens and client secrets are sealed with XChaCha20-Poly1305 into files under the
//! service's state directory.
//!
//! - One file per secret, `<dir>/<kind>.<name>.sealed` (`refresh_token.alice.sealed`,
//!   `client_secret.corp.sealed`), so that a damaged file harms only that one account or provider.
//! - A file is `TBSEAL1\0` (magic and format version), the sealed length (u32, big-endian), a
//!   random 24-byte nonce, then the ciphertext and its 16-byte tag. The associated data is the
//!   first 12 bytes and the secret's identity ([`SecretKey::user`]), so a file copied over
//!   another account's file does not decrypt as that account's secret.
//! - Writes go to a temporary file in the same folder (0600), are synced, renamed over the old
//!   file, and the folder is synced: a crash leaves either the old secret or the new one.
//! - The 32-byte key comes from the systemd credential `store-key` (`$CREDENTIALS_DIRECTORY`),
//!   or else from a key file (0600, the daemon's own), made with 32 random bytes when missing.
//!
//! The threat: other local users, and apps of an account's owner, must not read the secrets;
//! the folder is 0700 and the files 0600, and the key is not in the state directory when it
//! comes from a credential, so a copy of the state directory alone (a backup) reveals nothing.
#![cfg(unix)]

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use rand::TryRngCore;
use tokenbroker_client::SecretText;
use zeroize::{Zeroize, Zeroizing};

use crate::caller::current_uid;
use crate::error::{Error, Result};
use crate::store::{Backend, SecretKey};

/// The systemd credential that holds the key (`LoadCredentialEncrypted=store-key:...`).
pub const CREDENTIAL_NAME: &str = "store-key";
/// The usual name of the key file in the state directory, when there is no credential.
pub const KEY_FILE_NAME: &str = "store.key";
/// The largest secret the store takes, in bytes.
pub const MAX_SECRET: usize = 64 * 1024;

const KEY_SIZE: usize = 32;
/// Magic and format version.
const HEADER: &[u8; 8] = b"TBSEAL1\0";
const MAGIC: &[u8] = b"TBSEAL";
const NONCE_SIZE: usize = 24;
const TAG_SIZE: usize = 16;
/// Header, sealed length, nonce.
const PREFIX: usize = HEADER.len() + 4 + NONCE_SIZE;
/// The authenticated part of the prefix: header and sealed length.
const AUTHENTICATED: usize = HEADER.len() + 4;
const MAX_FILE: usize = PREFIX + MAX_SECRET + TAG_SIZE;
const SUFFIX: &str = ".sealed";
/// Temporary files: a leading '.' keeps them apart from every secret's file name.
const TEMP_PREFIX: &str = ".tmp-";
const TEMP_SUFFIX: &str = ".tmp";

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
pub struct StoreKey(Zeroizing<[u8; KEY_SIZE]>);

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
                Err(e) => return Err(key_error(&path, format!("cannot open it: {e}"))),
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

    fn cipher(&self) -> XChaCha20Poly1305 {
        // The cipher holds its own copy of the key and wipes it on drop.
        XChaCha20Poly1305::new(Key::from_slice(&self.0[..]))
    }

    /// The key in `bytes`: 32 raw bytes, or 64 hex digits with an optional trailing newline.
    fn parse(path: &Path, bytes: &[u8], what: &str) -> Result<StoreKey> {
        let mut key = Zeroizing::new([0u8; KEY_SIZE]);
        let hex = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        if bytes.len() == KEY_SIZE {
            key.copy_from_slice(bytes);
        } else if hex.len() == 2 * KEY_SIZE {
            for (out, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
                match (hex_digit(pair[0]), hex_digit(pair[1])) {
                    (Some(hi), Some(lo)) => *out = (hi << 4) | lo,
                    _ => {
                        return Err(key_error(
                            path,
                            format!(
                                "the {what} has 64 characters that are not all hex digits: a store key is \
                                 32 raw bytes or 64 hex digits (make one with `openssl rand -hex 32`)"
                            ),
                        ))
                    }
                }
            }
        } else {
            return Err(key_error(
                path,
                format!(
                    "the {what} has the wrong size ({} bytes): a store key is exactly 32 raw bytes \
                     or 64 hex digits (make one with `openssl rand -hex 32`)",
                    bytes.len()
                ),
            ));
        }
        Ok(StoreKey(key))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn key_error(path: &Path, message: String) -> Error {
    Error::Store(format!("store key {}: {message}", path.display()))
}

fn os_random(buf: &mut [u8]) -> Result<()> {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|e| Error::Store(format!("the OS random number generator failed: {e}")))
}

/// Reads a key from an open file into wiped memory, refusing anything but a small regular file.
fn read_key(path: &Path, mut f: File, what: &str) -> Result<StoreKey> {
    let meta = f
        .metadata()
        .map_err(|e| key_error(path, format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(key_error(path, format!("the {what} is not a regular file")));
    }
    // One byte more than the longest valid form, to tell "too long" from "just right".
    let mut buf = Zeroizing::new([0u8; 2 * KEY_SIZE + 2]);
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(key_error(path, format!("cannot read it: {e}"))),
        }
    }
    if n == buf.len() {
        return Err(key_error(
            path,
            format!(
                "the {what} is too large ({} bytes): a store key is exactly 32 raw bytes or 64 hex \
                 digits (make one with `openssl rand -hex 32`)",
                meta.len()
            ),
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
            Err(e) => return Err(key_error(path, format!("cannot open it: {e}"))),
        }
        if let Some(key) = create_key_file(path)? {
            return Ok(key);
        }
    }
    Err(key_error(
        path,
        "it appeared while being created, yet cannot be opened (a dangling symbolic link?)".into(),
    ))
}

/// A key file must be the daemon's own and closed to group and others.
fn check_key_file(path: &Path, f: &File) -> Result<()> {
    let meta = f
        .metadata()
        .map_err(|e| key_error(path, format!("cannot read it: {e}")))?;
    let euid = current_uid();
    if meta.uid() != euid {
        return Err(key_error(
            path,
            format!(
                "the key file is owned by uid {}, not by the daemon's user (uid {euid}): refusing it \
                 (chown it to the daemon's user)",
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_error(
            path,
            format!(
                "the key file has mode {mode:04o}, which lets group or others at it: refusing it \
                 (chmod 600 {})",
                path.display()
            ),
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
    let fail = |e: io::Error| key_error(path, format!("cannot create it: {e}"));
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

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The sealed store: one file per secret in a 0700 folder.
#[derive(Debug)]
pub struct Sealed {
    dir: PathBuf,
    key: StoreKey,
}

impl Sealed {
    /// Opens the store in `dir`, creating the folder (0700) if it is missing. A folder that is
    /// not the daemon's own or that group or others can write is refused; one that they can
    /// only read or enter is closed to 0700. Temporary files left by a crash are removed.
    pub fn open(dir: &Path, key: StoreKey) -> Result<Sealed> {
        let fail = |m: String| Error::Store(format!("store folder {}: {m}", dir.display()));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(format!("cannot create it: {e}")))?;
        let meta = fs::metadata(dir).map_err(|e| fail(format!("cannot read it: {e}")))?;
        if !meta.is_dir() {
            return Err(fail("it is not a folder".into()));
        }
        let euid = current_uid();
        if meta.uid() != euid {
            return Err(fail(format!(
                "it is owned by uid {}, not by the daemon's user (uid {euid}): refusing it",
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(fail(format!(
                "it has mode {mode:04o}, which lets group or others write it: refusing it (chmod 700 {})",
                dir.display()
            )));
        }
        if mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| fail(format!("cannot set its mode to 0700: {e}")))?;
        }
        let store = Sealed {
            dir: dir.to_path_buf(),
            key,
        };
        store.remove_temp_files();
        Ok(store)
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `key`'s secret. Names that could leave the folder or hide as dot
    /// files are refused, whatever validated them before.
    pub fn path_of(&self, key: &SecretKey) -> Result<PathBuf> {
        let (kind, name) = match key {
            SecretKey::RefreshToken { account } => ("refresh_token", account),
            SecretKey::ClientSecret { provider } => ("client_secret", provider),
        };
        if crate::config::check_name(kind, name).is_err() {
            return Err(Error::Store(format!(
                "refusing to store {kind} under the name {:?}: use 1 to 64 letters, digits, '.', '_' \
                 or '-', not starting with '.' or '-'",
                name.chars().take(80).collect::<String>()
            )));
        }
        Ok(self.dir.join(format!("{kind}.{name}{SUFFIX}")))
    }

    /// Temporary files are only ever ours (a secret's file never starts with '.'); one left
    /// behind by a crash is a write that did not happen.
    fn remove_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => tracing::warn!(
                        path = %path.display(),
                        "removed a temporary file left by an interrupted write"
                    ),
                    Err(e) => tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "cannot remove a temporary file left by an interrupted write"
                    ),
                }
            }
        }
    }

    /// The associated data: the file's authenticated prefix and the secret's identity.
    fn aad(prefix: &[u8], key: &SecretKey) -> Vec<u8> {
        let user = key.user();
        let mut aad = Vec::with_capacity(prefix.len() + user.len());
        aad.extend_from_slice(prefix);
        aad.extend_from_slice(user.as_bytes());
        aad
    }

    /// A file's bytes as a secret. `what` names the secret, `path` the file.
    fn unseal(&self, path: &Path, key: &SecretKey, file: &[u8]) -> Result<SecretText> {
        let fail = |m: String| {
            Error::Store(format!(
                "cannot read the {}: {} {m}",
                describe(key),
                path.display()
            ))
        };
        if file.len() < HEADER.len() {
            return Err(if HEADER.starts_with(file) {
                fail(format!(
                    "is truncated ({} bytes); store the secret again",
                    file.len()
                ))
            } else {
                fail("is not a tokenbroker store file".into())
            });
        }
        if &file[..MAGIC.len()] != MAGIC {
            return Err(fail("is not a tokenbroker store file".into()));
        }
        if file[..HEADER.len()] != HEADER[..] {
            let v = file[MAGIC.len()];
            let v = if v.is_ascii_graphic() {
                format!("{}", v as char)
            } else {
                format!("0x{v:02x}")
            };
            return Err(fail(format!(
                "has format version {v}, which this tokenbroker cannot read (it reads version 1)"
            )));
        }
        if file.len() < PREFIX {
            return Err(fail(format!(
                "is truncated ({} bytes); store the secret again",
                file.len()
            )));
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&file[HEADER.len()..AUTHENTICATED]);
        let sealed_len = u32::from_be_bytes(len) as usize;
        if !(TAG_SIZE..=MAX_SECRET + TAG_SIZE).contains(&sealed_len) {
            return Err(fail(
                "is corrupted: its header gives an impossible length; store the secret again"
                    .into(),
            ));
        }
        let expected = PREFIX + sealed_len;
        if file.len() < expected {
            return Err(fail(format!(
                "is truncated ({} of {expected} bytes); store the secret again",
                file.len()
            )));
        }
        if file.len() > expected {
            return Err(fail(format!(
                "is corrupted: {} bytes follow the sealed data; store the secret again",
                file.len() - expected
            )));
        }
        let nonce = XNonce::from_slice(&file[AUTHENTICATED..PREFIX]);
        let (ciphertext, tag) = file[PREFIX..].split_at(sealed_len - TAG_SIZE);
        let aad = Self::aad(&file[..AUTHENTICATED], key);
        // Exactly the plaintext's size, so that the String below keeps this one allocation.
        let mut plain = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
        plain.extend_from_slice(ciphertext);
        self.key
            .cipher()
            .decrypt_in_place_detached(nonce, &aad, &mut plain[..], Tag::from_slice(tag))
            .map_err(|_| {
                fail(
                    "cannot be decrypted with this key: corrupted, or sealed with another key"
                        .into(),
                )
            })?;
        match String::from_utf8(std::mem::take(&mut *plain)) {
            Ok(s) => Ok(SecretText::from(s)),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(fail("holds a value that is not UTF-8".into()))
            }
        }
    }

    /// `value` sealed for `key`: the whole file's bytes, in memory that is wiped on drop.
    fn seal(&self, key: &SecretKey, value: &SecretText) -> Result<Zeroizing<Vec<u8>>> {
        let plain = value.expose().as_bytes();
        if plain.len() > MAX_SECRET {
            return Err(Error::Store(format!(
                "the {} is too large to store ({} bytes; at most {MAX_SECRET})",
                describe(key),
                plain.len()
            )));
        }
        let mut nonce = [0u8; NONCE_SIZE];
        os_random(&mut nonce)?;
        let sealed_len = (plain.len() + TAG_SIZE) as u32;
        // Sized for the tag too, so that pushing it never moves the buffer and leaves a copy.
        let mut buf = Zeroizing::new(Vec::with_capacity(PREFIX + plain.len() + TAG_SIZE));
        buf.extend_from_slice(HEADER);
        buf.extend_from_slice(&sealed_len.to_be_bytes());
        buf.extend_from_slice(&nonce);
        let aad = Self::aad(&buf[..AUTHENTICATED], key);
        buf.extend_from_slice(plain);
        let tag = self
            .key
            .cipher()
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut buf[PREFIX..])
            .map_err(|_| Error::Store(format!("cannot encrypt the {}", describe(key))))?;
        buf.extend_from_slice(&tag);
        Ok(buf)
    }

    /// Writes `bytes` to `path` atomically: a synced temporary file renamed over it, then the
    /// folder synced.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        // On failure the temporary file is removed when the error drops it.
        tmp.persist(path).map_err(|e| e.error)?;
        sync_dir(&self.dir)
    }
}

/// A secret in words, for messages: "refresh token of account \"alice\"".
fn describe(key: &SecretKey) -> String {
    match key {
        SecretKey::RefreshToken { account } => format!("refresh token of account {account:?}"),
        SecretKey::ClientSecret { provider } => format!("client secret of provider {provider:?}"),
    }
}

/// Reads a store file, refusing what is not a regular file or is larger than any sealed secret.
fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let f = OpenOptions::new().read(true).open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("it is not a regular file"));
    }
    if meta.len() > MAX_FILE as u64 {
        return Err(io::Error::other(format!(
            "it is too large ({} bytes) to be a tokenbroker store file",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_FILE as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl Backend for Sealed {
    fn get(&self, key: &SecretKey) -> Result<Option<SecretText>> {
        let path = self.path_of(key)?;
        let bytes = match read_file(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Store(format!(
                    "cannot read the {} from {}: {e}",
                    describe(key),
                    path.display()
                )))
            }
        };
        self.unseal(&path, key, &bytes).map(Some)
    }

    fn set(&self, key: &SecretKey, value: &SecretText) -> Result<()> {
        let path = self.path_of(key)?;
        let sealed = self.seal(key, value)?;
        self.write_atomic(&path, &sealed).map_err(|e| {
            Error::Store(format!(
                "cannot write the {} to {}: {e}",
                describe(key),
                path.display()
            ))
        })
    }

    fn delete(&self, key: &SecretKey) -> Result<()> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Error::Store(format!(
                    "cannot delete the {} at {}: {e}",
                    describe(key),
                    path.display()
                )))
            }
        }
        sync_dir(&self.dir).map_err(|e| {
            Error::Store(format!(
                "deleted {}, but cannot sync its folder: {e}",
                path.display()
            ))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn rt(account: &str) -> SecretKey {
        SecretKey::RefreshToken {
            account: account.into(),
        }
    }

    fn cs(provider: &str) -> SecretKey {
        SecretKey::ClientSecret {
            provider: provider.into(),
        }
    }

    fn key_of(b: u8) -> StoreKey {
        StoreKey(Zeroizing::new([b; KEY_SIZE]))
    }

    fn store(dir: &Path, b: u8) -> Sealed {
        Sealed::open(&dir.join("secrets"), key_of(b)).unwrap()
    }

    fn err_of<T>(r: Result<T>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o777
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    const TOKEN: &str = "rt-Grüße-日本語-🔑-x/y+z=";
    const SECRET: &str = "cs-ünïcödé-秘密-\"\\";

    #[test]
    fn round_trip_set_get_delete() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        s.set(&rt("alice"), &SecretText::new(TOKEN)).unwrap();
        s.set(&cs("corp"), &SecretText::new(SECRET)).unwrap();
        assert_eq!(s.get(&rt("alice")).unwrap().unwrap().expose(), TOKEN);
        assert_eq!(s.get(&cs("corp")).unwrap().unwrap().expose(), SECRET);
        // The same name for a refresh token and a client secret are two secrets.
        assert!(s.get(&rt("corp")).unwrap().is_none());
        s.delete(&rt("alice")).unwrap();
        assert!(s.get(&rt("alice")).unwrap().is_none());
        assert_eq!(s.get(&cs("corp")).unwrap().unwrap().expose(), SECRET);
        s.delete(&cs("corp")).unwrap();
        assert!(s.get(&cs("corp")).unwrap().is_none());
        // Deleting what is not there is fine.
        s.delete(&cs("corp")).unwrap();
        s.delete(&rt("nobody")).unwrap();
    }

    #[test]
    fn empty_value_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        s.set(&rt("a"), &SecretText::new("")).unwrap();
        assert_eq!(s.get(&rt("a")).unwrap().unwrap().expose(), "");
    }

    #[test]
    fn get_missing_is_none() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        assert!(s.get(&rt("alice")).unwrap().is_none());
        assert!(s.get(&cs("corp")).unwrap().is_none());
    }

    #[test]
    fn survives_a_restart() {
        let t = tempfile::tempdir().unwrap();
        store(t.path(), 7)
            .set(&rt("alice"), &SecretText::new(TOKEN))
            .unwrap();
        let again = store(t.path(), 7);
        assert_eq!(again.get(&rt("alice")).unwrap().unwrap().expose(), TOKEN);
    }

    #[test]
    fn survives_a_restart_with_a_loaded_key() {
        let t = tempfile::tempdir().unwrap();
        let kf = t.path().join(KEY_FILE_NAME);
        let (k, _) = StoreKey::load(None, &kf).unwrap();
        let s = Sealed::open(&t.path().join("secrets"), k).unwrap();
        s.set(&cs("corp"), &SecretText::new(SECRET)).unwrap();
        drop(s);
        let (k, _) = StoreKey::load(None, &kf).unwrap();
        let s = Sealed::open(&t.path().join("secrets"), k).unwrap();
        assert_eq!(s.get(&cs("corp")).unwrap().unwrap().expose(), SECRET);
    }

    #[test]
    fn overwrite_replaces_and_leaves_no_temp_files() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        s.set(&rt("alice"), &SecretText::new("old")).unwrap();
        s.set(&rt("alice"), &SecretText::new("new")).unwrap();
        assert_eq!(s.get(&rt("alice")).unwrap().unwrap().expose(), "new");
        let names: Vec<String> = fs::read_dir(s.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["refresh_token.alice.sealed".to_string()]);
    }

    #[test]
    fn wrong_key_is_a_clear_error_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        store(t.path(), 1)
            .set(&rt("alice"), &SecretText::new(TOKEN))
            .unwrap();
        let other = store(t.path(), 2);
        let msg = err_of(other.get(&rt("alice")));
        assert!(msg.contains("refresh_token.alice.sealed"), "{msg}");
        assert!(
            msg.contains(
                "cannot be decrypted with this key: corrupted, or sealed with another key"
            ),
            "{msg}"
        );
        assert!(!msg.contains(TOKEN));
    }

    #[test]
    fn truncated_and_garbage_files_fail_alone() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        for a in ["short", "cut", "junk", "empty", "good"] {
            s.set(&rt(a), &SecretText::new(TOKEN)).unwrap();
        }
        let short = s.path_of(&rt("short")).unwrap();
        let bytes = fs::read(&short).unwrap();
        fs::write(&short, &bytes[..20]).unwrap();
        let cut = s.path_of(&rt("cut")).unwrap();
        fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
        fs::write(
            s.path_of(&rt("junk")).unwrap(),
            b"this is not sealed at all",
        )
        .unwrap();
        fs::write(s.path_of(&rt("empty")).unwrap(), b"").unwrap();

        let msg = err_of(s.get(&rt("short")));
        assert!(
            msg.contains("refresh_token.short.sealed is truncated"),
            "{msg}"
        );
        let msg = err_of(s.get(&rt("cut")));
        assert!(
            msg.contains("refresh_token.cut.sealed is truncated"),
            "{msg}"
        );
        let msg = err_of(s.get(&rt("junk")));
        assert!(
            msg.contains("refresh_token.junk.sealed is not a tokenbroker store file"),
            "{msg}"
        );
        let msg = err_of(s.get(&rt("empty")));
        assert!(
            msg.contains("refresh_token.empty.sealed is truncated"),
            "{msg}"
        );
        assert_eq!(s.get(&rt("good")).unwrap().unwrap().expose(), TOKEN);
        // A broken file is mended by storing the secret again.
        s.set(&rt("short"), &SecretText::new("fresh")).unwrap();
        assert_eq!(s.get(&rt("short")).unwrap().unwrap().expose(), "fresh");
    }

    #[test]
    fn flipped_bit_and_other_versions_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        s.set(&rt("alice"), &SecretText::new(TOKEN)).unwrap();
        let p = s.path_of(&rt("alice")).unwrap();
        let good = fs::read(&p).unwrap();
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        fs::write(&p, &bad).unwrap();
        assert!(err_of(s.get(&rt("alice"))).contains("cannot be decrypted with this key"));
        let mut v2 = good.clone();
        v2[6] = b'2';
        fs::write(&p, &v2).unwrap();
        assert!(err_of(s.get(&rt("alice"))).contains("has format version 2"));
        let mut longer = good.clone();
        longer.push(0);
        fs::write(&p, &longer).unwrap();
        assert!(err_of(s.get(&rt("alice"))).contains("is corrupted"));
    }

    #[test]
    fn a_file_copied_to_another_name_does_not_decrypt() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        s.set(&rt("alice"), &SecretText::new("alice's")).unwrap();
        s.set(&rt("bob"), &SecretText::new("bob's")).unwrap();
        s.set(&cs("alice"), &SecretText::new("provider's")).unwrap();
        fs::copy(
            s.path_of(&rt("alice")).unwrap(),
            s.path_of(&rt("bob")).unwrap(),
        )
        .unwrap();
        let msg = err_of(s.get(&rt("bob")));
        assert!(
            msg.contains("refresh_token.bob.sealed cannot be decrypted"),
            "{msg}"
        );
        // Nor across kinds, for the same name.
        fs::copy(
            s.path_of(&rt("alice")).unwrap(),
            s.path_of(&cs("alice")).unwrap(),
        )
        .unwrap();
        assert!(err_of(s.get(&cs("alice"))).contains("cannot be decrypted"));
        assert_eq!(s.get(&rt("alice")).unwrap().unwrap().expose(), "alice's");
    }

    #[test]
    fn the_file_does_not_hold_the_plaintext() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        let value = "plaintext-marker-0123456789-ünï";
        s.set(&rt("alice"), &SecretText::new(value)).unwrap();
        let bytes = fs::read(s.path_of(&rt("alice")).unwrap()).unwrap();
        assert!(bytes.starts_with(HEADER));
        assert!(!contains(&bytes, value.as_bytes()));
        assert!(!contains(&bytes, b"plaintext-marker"));
        assert!(
            !contains(&bytes, &[1u8; 8]),
            "the key must not be in the file"
        );
        // A fresh nonce each write: the same value seals differently.
        s.set(&rt("alice"), &SecretText::new(value)).unwrap();
        let again = fs::read(s.path_of(&rt("alice")).unwrap()).unwrap();
        assert_ne!(bytes, again);
    }

    #[test]
    fn modes_are_0600_and_0700() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        assert_eq!(mode_of(s.dir()), 0o700);
        s.set(&rt("alice"), &SecretText::new(TOKEN)).unwrap();
        assert_eq!(mode_of(&s.path_of(&rt("alice")).unwrap()), 0o600);
        s.set(&rt("alice"), &SecretText::new("again")).unwrap();
        assert_eq!(mode_of(&s.path_of(&rt("alice")).unwrap()), 0o600);
    }

    #[test]
    fn folder_others_can_write_is_refused_and_readable_one_closed() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("open");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        let msg = err_of(Sealed::open(&d, key_of(1)));
        assert!(msg.contains("open") && msg.contains("0777"), "{msg}");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        Sealed::open(&d, key_of(1)).unwrap();
        assert_eq!(mode_of(&d), 0o700);
    }

    #[test]
    fn leftover_temp_files_are_removed_on_open() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        s.set(&rt("alice"), &SecretText::new(TOKEN)).unwrap();
        let stale = s.dir().join(".tmp-abc123.tmp");
        fs::write(&stale, b"half").unwrap();
        let s = store(t.path(), 1);
        assert!(!stale.exists());
        assert_eq!(s.get(&rt("alice")).unwrap().unwrap().expose(), TOKEN);
    }

    #[test]
    fn bad_names_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a\0b", &"x".repeat(65)] {
            assert!(s.path_of(&rt(bad)).is_err(), "{bad:?}");
            assert!(s.set(&rt(bad), &SecretText::new("v")).is_err(), "{bad:?}");
        }
        assert!(s.path_of(&rt("ok.name_1-2")).is_ok());
    }

    #[test]
    fn oversized_value_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 1);
        let big = "x".repeat(MAX_SECRET + 1);
        assert!(err_of(s.set(&rt("a"), &SecretText::new(big))).contains("too large"));
        s.set(&rt("a"), &SecretText::new("x".repeat(MAX_SECRET)))
            .unwrap();
        assert_eq!(s.get(&rt("a")).unwrap().unwrap().expose().len(), MAX_SECRET);
    }

    #[test]
    fn key_file_is_created_0600_and_reused() {
        let t = tempfile::tempdir().unwrap();
        let kf = t.path().join(KEY_FILE_NAME);
        let (k1, src) = StoreKey::load(None, &kf).unwrap();
        assert_eq!(src, KeySource::KeyFile(kf.clone()));
        assert_eq!(mode_of(&kf), 0o600);
        let bytes = fs::read(&kf).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(&bytes[..], &k1.0[..]);
        let (k2, _) = StoreKey::load(None, &kf).unwrap();
        assert_eq!(&k1.0[..], &k2.0[..]);
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn key_file_open_to_others_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let kf = t.path().join(KEY_FILE_NAME);
        StoreKey::load(None, &kf).unwrap();
        fs::set_permissions(&kf, fs::Permissions::from_mode(0o644)).unwrap();
        let msg = err_of(StoreKey::load(None, &kf));
        assert!(msg.contains(&kf.display().to_string()), "{msg}");
        assert!(msg.contains("0644"), "{msg}");
        fs::set_permissions(&kf, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(err_of(StoreKey::load(None, &kf)).contains("0640"));
        fs::set_permissions(&kf, fs::Permissions::from_mode(0o400)).unwrap();
        StoreKey::load(None, &kf).unwrap();
    }

    #[test]
    fn files_of_another_owner_are_refused() {
        // Only root can give a file away; elsewhere this is covered by the code review.
        if current_uid() != 0 {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let kf = t.path().join(KEY_FILE_NAME);
        StoreKey::load(None, &kf).unwrap();
        std::os::unix::fs::chown(&kf, Some(65534), None).unwrap();
        let msg = err_of(StoreKey::load(None, &kf));
        assert!(msg.contains("owned by uid 65534"), "{msg}");
        let d = t.path().join("theirs");
        fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), None).unwrap();
        assert!(err_of(Sealed::open(&d, key_of(1))).contains("owned by uid 65534"));
    }

    #[test]
    fn key_file_of_the_wrong_size_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let kf = t.path().join(KEY_FILE_NAME);
        for bad in [&b"short"[..], &[7u8; 33][..], &[b'a'; 200][..], &b""[..]] {
            fs::write(&kf, bad).unwrap();
            fs::set_permissions(&kf, fs::Permissions::from_mode(0o600)).unwrap();
            let msg = err_of(StoreKey::load(None, &kf));
            assert!(msg.contains(&kf.display().to_string()), "{msg}");
            assert!(
                msg.contains("wrong size") || msg.contains("too large"),
                "{msg}"
            );
        }
        let mut not_hex = [b'a'; 64];
        not_hex[10] = b'g';
        fs::write(&kf, not_hex).unwrap();
        assert!(err_of(StoreKey::load(None, &kf)).contains("not all hex digits"));
    }

    #[test]
    fn hex_key_file_is_accepted() {
        let t = tempfile::tempdir().unwrap();
        let kf = t.path().join(KEY_FILE_NAME);
        let hex = "00112233445566778899aabbccddeeffFFEEDDCCBBAA99887766554433221100";
        let mut want = [0u8; 32];
        for (i, b) in want.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        for body in [hex.to_string(), format!("{hex}\n")] {
            fs::write(&kf, &body).unwrap();
            fs::set_permissions(&kf, fs::Permissions::from_mode(0o600)).unwrap();
            let (k, _) = StoreKey::load(None, &kf).unwrap();
            assert_eq!(&k.0[..], &want[..]);
        }
    }

    #[test]
    fn credential_is_preferred_over_the_key_file() {
        let t = tempfile::tempdir().unwrap();
        let creds = t.path().join("creds");
        fs::create_dir(&creds).unwrap();
        let kf = t.path().join(KEY_FILE_NAME);
        // Without the credential file, the key file is made and used.
        let (from_file, src) = StoreKey::load(Some(&creds), &kf).unwrap();
        assert_eq!(src, KeySource::KeyFile(kf.clone()));
        let cred = creds.join(CREDENTIAL_NAME);
        fs::write(&cred, [9u8; 32]).unwrap();
        let (k, src) = StoreKey::load(Some(&creds), &kf).unwrap();
        assert_eq!(src, KeySource::Credential(cred.clone()));
        assert_eq!(&k.0[..], &[9u8; 32][..]);
        assert_ne!(&k.0[..], &from_file.0[..]);
        assert!(src.to_string().contains("systemd credential"));
        // A credential of the wrong size is an error, not a silent fall-back.
        fs::write(&cred, b"oops").unwrap();
        let msg = err_of(StoreKey::load(Some(&creds), &kf));
        assert!(
            msg.contains(CREDENTIAL_NAME) && msg.contains("wrong size"),
            "{msg}"
        );
    }

    #[test]
    fn debug_and_errors_hold_no_key() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path(), 0xAB);
        let dbg = format!("{s:?} {:?}", key_of(0xAB));
        assert!(dbg.contains("[redacted]"), "{dbg}");
        assert!(
            !dbg.contains("171") && !dbg.to_lowercase().contains("abab"),
            "{dbg}"
        );
    }
}
