#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
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
        msg.contains("cannot be decrypted with this key: corrupted, or sealed with another key"),
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
