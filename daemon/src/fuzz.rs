//! Entry points for the fuzz targets (`fuzz/`) and for the regression test that feeds them every
//! committed corpus file (`daemon/tests/fuzz_corpus.rs`): each hands outside input to one parser
//! the way the daemon does, and checks what must hold whatever the input. None may panic.
#![doc(hidden)]
// A fuzz oracle panics on what must not happen.
#![allow(clippy::panic)]

use std::path::Path;

use tokenbroker_client::types::*;
use tokenbroker_client::{protocol::methods, SecretText};

use crate::config::{ConfigEditor, Layout, ProviderConfig};
use crate::ipc::socket::{framing, rpc};
use crate::oauth::discovery::{endpoints_from, Discovery};
use crate::oauth::http::Reply;
use crate::oauth::reply;

/// Socket framing: every line the reader hands out fits MAX_LINE and holds no newline.
pub fn socket_lines(data: &[u8]) {
    futures_lite::future::block_on(async {
        let mut r = framing::LineReader::new(framing::Plain(data));
        let mut line = Vec::new();
        for _ in 0..data.len() + 1 {
            line.clear();
            match r.read_line(&mut line).await {
                Ok(_) => {
                    assert!(line.len() < tokenbroker_client::MAX_LINE);
                    assert!(!line.contains(&b'\n'));
                }
                Err(framing::LineError::TooLong) => {}
                Err(_) => break,
            }
        }
    });
}

/// A request line: the envelope, then its params decoded as the method's type.
pub fn rpc_request(data: &[u8]) {
    let Ok((_, req)) = rpc::envelope(data) else {
        return;
    };
    let raw = req.params;
    macro_rules! try_as {
        ($($t:ty),*) => {{ $( let _ = rpc::params::<$t>(raw); )* }};
    }
    match &*req.method {
        methods::HELLO => try_as!(HelloParams),
        methods::GET_TOKEN => try_as!(GetTokenParams),
        methods::SIGN_IN => try_as!(SignInParams),
        methods::SIGN_OUT | methods::INTROSPECT => try_as!(AccountParams),
        methods::ADD_PROVIDER => {
            if let Ok(p) = rpc::params::<AddProviderParams>(raw) {
                // What the daemon would do with it: the same checks as the config's.
                let pc = ProviderConfig::from_settings(p.provider.settings);
                let _ = pc.validate(&p.provider.name);
                let _ = pc.explicit_endpoints();
                let _ = pc.dialect();
            }
        }
        methods::SET_CLIENT_SECRET => try_as!(SetClientSecretParams),
        methods::ADD_ACCOUNT => try_as!(AccountSpec),
        methods::REMOVE_ACCOUNT | methods::REMOVE_PROVIDER => try_as!(NameParams),
        methods::SET_APP_POLICY => try_as!(AppPolicy),
        methods::REMOVE_APP_POLICY => try_as!(RemoveAppPolicyParams),
        methods::GET_POLICY => try_as!(PolicyQuery),
        methods::ANSWER_CONSENT => try_as!(AnswerConsentParams),
        methods::READ_AUDIT => try_as!(AuditQuery),
        methods::SUBSCRIBE => try_as!(SubscribeParams),
        _ => {}
    }
}

/// A token endpoint's reply, of every status and content type a server may send; an error
/// reply in every vendor's shape; an introspection reply. A token's lifetime is capped, and
/// what a server says passes the scrub: none of the request's secrets survive it.
pub fn token_reply(data: &[u8]) {
    const SECRET: &str = "fuzz-refresh-token-1";
    for status in [200u16, 400, 401, 500] {
        let r = Reply {
            status,
            content_type: "application/json".into(),
            body: zeroize::Zeroizing::new(data.to_vec()),
        };
        match reply::parse_token_reply(&r) {
            Ok(t) => assert!(t.expires_in <= reply::MAX_EXPIRES_IN),
            Err(e) => {
                let e = crate::oauth::scrub::error(e, &[SECRET]);
                assert!(!e.to_string().contains(SECRET), "{e}");
            }
        }
        let _ = reply::parse_introspection(&r);
    }
}

/// A metadata document (RFC 8414 / OIDC discovery): endpoints come out only if they pass the
/// transport rule.
pub fn discovery(data: &[u8]) {
    let Ok(url) = url::Url::parse("https://id.example/.well-known/openid-configuration") else {
        return;
    };
    for allow_insecure_loopback in [false, true] {
        let what = Discovery {
            issuer: "https://id.example".into(),
            allow_insecure_loopback,
            revocation: None,
            introspection: None,
        };
        if let Ok(ep) = endpoints_from(&what, &url, data) {
            for u in [
                Some(&ep.token),
                ep.revocation.as_ref(),
                ep.introspection.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                assert!(u.scheme() == "https" || (allow_insecure_loopback && u.scheme() == "http"));
            }
        }
    }
}

/// A config file: loaded and validated; one that loads survives an edit by the admin methods
/// (a provider and an account set, then removed) and loads again from the edited text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/tokenbroker-fuzz/config.toml");
    let layout = Layout::user(path);
    let Ok(before) = layout.merge(Some(text)) else {
        return;
    };
    let Ok(mut ed) = ConfigEditor::from_text(path, text) else {
        return;
    };
    let provider = ProviderConfig(ProviderSettings {
        token_endpoint: Some("https://fuzz.example/token".into()),
        client_id: "fuzz".into(),
        client_auth: Some(ClientAuth::None),
        ..Default::default()
    });
    if ed.set("providers", "fuzz-p", &provider).is_err() {
        return;
    }
    ed.remove("providers", "fuzz-p");
    let after = match layout.merge(Some(&ed.text())) {
        Ok(c) => c,
        Err(e) => panic!("a config that loaded no longer loads after an edit: {e}"),
    };
    assert_eq!(before.accounts.len(), after.accounts.len());
    assert_eq!(before.providers.len(), after.providers.len());
}

/// A sealed store file: refused with a clear error, or opened; and every value seals and opens
/// back to itself.
pub fn sealed_file(data: &[u8]) {
    #[cfg(unix)]
    {
        use crate::store::sealed::{Sealed, StoreKey};
        use crate::store::SecretKey;
        use std::sync::OnceLock;
        static STORE: OnceLock<Option<(tempfile::TempDir, Sealed)>> = OnceLock::new();
        let Some((_, store)) = STORE.get_or_init(|| {
            let dir = tempfile::tempdir().ok()?;
            let key = StoreKey::generate().ok()?;
            let store = Sealed::open(&dir.path().join("secrets"), key).ok()?;
            Some((dir, store))
        }) else {
            return;
        };
        let which = SecretKey::RefreshToken {
            account: "fuzz".into(),
        };
        let _ = store.unseal(Path::new("fuzz.sealed"), &which, data);
        if let Ok(text) = std::str::from_utf8(data) {
            let value = SecretText::new(text);
            if let Ok(file) = store.seal(&which, &value) {
                let back = store.unseal(Path::new("fuzz.sealed"), &which, &file);
                assert!(back.is_ok_and(|b| b.ct_eq(&value)));
            }
        }
    }
}
