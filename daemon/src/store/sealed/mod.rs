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

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XNonce};
use tokenbroker_client::SecretText;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, FolderProblem, Result, SealedProblem};
use crate::files::sync_dir;
use crate::store::{Backend, SecretKey};
use crate::users::current_uid;

mod key;
use key::os_random;
pub use key::{KeySource, StoreKey};

/// The systemd credential that holds the key (`LoadCredentialEncrypted=store-key:...`).
pub const CREDENTIAL_NAME: &str = "store-key";
/// The usual name of the key file in the state directory, when there is no credential.
pub const KEY_FILE_NAME: &str = "store.key";
/// The largest secret the store takes, in bytes.
pub const MAX_SECRET: usize = 64 * 1024;

pub(crate) const KEY_SIZE: usize = 32;
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
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

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
        let fail = |problem| Error::StoreFolder {
            path: dir.to_owned(),
            problem,
        };
        crate::files::create_private_dir(dir).map_err(|e| fail(FolderProblem::Create(e)))?;
        let meta = fs::metadata(dir).map_err(|e| fail(FolderProblem::Read(e)))?;
        if !meta.is_dir() {
            return Err(fail(FolderProblem::NotAFolder));
        }
        let euid = current_uid();
        if meta.uid() != euid {
            return Err(fail(FolderProblem::OwnedBy {
                uid: meta.uid(),
                euid,
            }));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(fail(FolderProblem::Writable {
                mode,
                path: dir.to_owned(),
            }));
        }
        if mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| fail(FolderProblem::Chmod(e)))?;
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
        if crate::names::check_name(kind, name).is_err() {
            return Err(Error::SealedName {
                kind,
                name: name.chars().take(80).collect(),
            });
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
    pub(crate) fn unseal(&self, path: &Path, key: &SecretKey, file: &[u8]) -> Result<SecretText> {
        let fail = |problem| Error::SealedFile {
            secret: describe(key),
            path: path.to_owned(),
            problem,
        };
        let truncated = |expected| SealedProblem::Truncated {
            len: file.len(),
            expected,
        };
        if file.len() < HEADER.len() {
            return Err(if HEADER.starts_with(file) {
                fail(truncated(None))
            } else {
                fail(SealedProblem::NotAStoreFile)
            });
        }
        if &file[..MAGIC.len()] != MAGIC {
            return Err(fail(SealedProblem::NotAStoreFile));
        }
        if file[..HEADER.len()] != HEADER[..] {
            let v = file[MAGIC.len()];
            let v = if v.is_ascii_graphic() {
                format!("{}", v as char)
            } else {
                format!("0x{v:02x}")
            };
            return Err(fail(SealedProblem::Version(v)));
        }
        if file.len() < PREFIX {
            return Err(fail(truncated(None)));
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&file[HEADER.len()..AUTHENTICATED]);
        let sealed_len = u32::from_be_bytes(len) as usize;
        if !(TAG_SIZE..=MAX_SECRET + TAG_SIZE).contains(&sealed_len) {
            return Err(fail(SealedProblem::ImpossibleLength));
        }
        let expected = PREFIX + sealed_len;
        if file.len() < expected {
            return Err(fail(truncated(Some(expected))));
        }
        if file.len() > expected {
            return Err(fail(SealedProblem::Trailing(file.len() - expected)));
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
            .map_err(|_| fail(SealedProblem::Undecryptable))?;
        match String::from_utf8(std::mem::take(&mut *plain)) {
            Ok(s) => Ok(SecretText::from(s)),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(fail(SealedProblem::NotUtf8))
            }
        }
    }

    /// `value` sealed for `key`: the whole file's bytes, in memory that is wiped on drop.
    pub(crate) fn seal(&self, key: &SecretKey, value: &SecretText) -> Result<Zeroizing<Vec<u8>>> {
        let plain = value.expose().as_bytes();
        if plain.len() > MAX_SECRET {
            return Err(Error::SealedTooLarge {
                secret: describe(key),
                len: plain.len(),
                max: MAX_SECRET,
            });
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
            .map_err(|_| Error::SealedEncrypt {
                secret: describe(key),
            })?;
        buf.extend_from_slice(&tag);
        Ok(buf)
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
            Err(source) => {
                return Err(Error::SealedIo {
                    op: "read",
                    secret: describe(key),
                    path,
                    source,
                })
            }
        };
        self.unseal(&path, key, &bytes).map(Some)
    }

    fn set(&self, key: &SecretKey, value: &SecretText) -> Result<()> {
        let path = self.path_of(key)?;
        let sealed = self.seal(key, value)?;
        let how = crate::files::Atomic {
            temp_prefix: TEMP_PREFIX,
            temp_suffix: TEMP_SUFFIX,
            mode: Some(0o600),
        };
        crate::files::write_atomically(&path, &sealed, &how).map_err(|source| Error::SealedIo {
            op: "write",
            secret: describe(key),
            path,
            source,
        })
    }

    fn delete(&self, key: &SecretKey) -> Result<()> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(Error::SealedIo {
                    op: "delete",
                    secret: describe(key),
                    path,
                    source,
                })
            }
        }
        sync_dir(&self.dir).map_err(|source| Error::SealedSync { path, source })
    }
}

#[cfg(test)]
mod tests;
