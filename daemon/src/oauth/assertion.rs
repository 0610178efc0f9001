//! private_key_jwt (RFC 7523): a short-lived JWT signed with the client's private key stands in
//! for a client secret.
//!
//! The key file is read at each use, and only if it is a regular file owned by the daemon's user
//! and readable by nobody else; its contents are held in a zeroizing buffer and never logged.
//! RS256 for RSA keys, ES256 for EC P-256 keys.

use std::path::PathBuf;

use serde::Serialize;
use tokenbroker_client::SecretText;
use zeroize::Zeroizing;

use crate::clock::now_unix;
use crate::error::{ClientKeyProblem, Error, Result};

/// How long a client assertion is valid.
pub const LIFETIME_SECS: u64 = 120;

/// The client's private key for private_key_jwt.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientKey {
    pub path: PathBuf,
    /// The `kid` of the JWT header.
    pub kid: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// Read the key file with care: a regular file, ours, mode 0600 or stricter.
fn read_key(path: &std::path::Path) -> Result<Zeroizing<Vec<u8>>> {
    let fail = |problem| Error::ClientKey {
        path: path.to_owned(),
        problem,
    };
    let meta = std::fs::symlink_metadata(path).map_err(|e| fail(ClientKeyProblem::Read(e)))?;
    if !meta.file_type().is_file() {
        return Err(fail(ClientKeyProblem::NotRegular));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(ClientKeyProblem::ReadableByOthers {
                mode,
                path: path.to_owned(),
            }));
        }
        if meta.uid() != crate::users::current_uid() {
            return Err(fail(ClientKeyProblem::OthersUser));
        }
    }
    let bytes = std::fs::read(path).map_err(|e| fail(ClientKeyProblem::Read(e)))?;
    Ok(Zeroizing::new(bytes))
}

/// A signed client assertion for `client_id`, for the audience `aud`.
pub fn sign(key: &ClientKey, client_id: &str, aud: &str) -> Result<SecretText> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let pem = read_key(&key.path)?;
    let (alg, encoding) = if let Ok(k) = EncodingKey::from_rsa_pem(&pem) {
        (Algorithm::RS256, k)
    } else if let Ok(k) = EncodingKey::from_ec_pem(&pem) {
        (Algorithm::ES256, k)
    } else {
        return Err(Error::ClientKey {
            path: key.path.clone(),
            problem: ClientKeyProblem::NotAKey,
        });
    };
    drop(pem);
    let mut header = Header::new(alg);
    header.kid = key.kid.clone();
    let now = now_unix();
    let jti: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let claims = Claims {
        iss: client_id,
        sub: client_id,
        aud,
        iat: now,
        exp: now + LIFETIME_SECS,
        jti,
    };
    jsonwebtoken::encode(&header, &claims, &encoding)
        .map(SecretText::from)
        .map_err(Error::Sign)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_keys_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "not a key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = sign(
                &ClientKey {
                    path: path.clone(),
                    kid: None,
                },
                "c",
                "a",
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("readable by others"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let e = sign(&ClientKey { path, kid: None }, "c", "a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither an RSA nor an EC"), "{e}");
        assert!(
            !e.contains("not a key"),
            "the key's contents are never echoed"
        );
    }
}
