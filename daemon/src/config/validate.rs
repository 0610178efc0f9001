//! The field rules of providers and accounts. A failed rule names the offending field, for the
//! loader to turn into a line number. The transport rule of endpoints is OAuth's
//! ([`crate::oauth::discovery::check_endpoint_url`]).

use tokenbroker_client::{ClientAuth, Grant};

use super::{AccountConfig, ProviderConfig};
use crate::oauth::preset;

impl ProviderConfig {
    /// Field-level checks; the error names the offending field.
    pub fn validate(&self, name: &str) -> std::result::Result<(), (&'static str, String)> {
        let preset = match self.preset.as_deref() {
            None => preset::generic(),
            Some(p) => preset::find(p).ok_or_else(|| {
                (
                    "preset",
                    format!(
                        "provider {name:?}: unknown preset {:?}: one of {}",
                        crate::names::shorten(p),
                        preset::PRESETS
                            .iter()
                            .map(|p| p.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?,
        };
        if preset.name != "generic" {
            let base = self.base_url.as_deref().ok_or_else(|| {
                (
                    "preset",
                    format!("provider {name:?}: preset {} needs base_url", preset.name),
                )
            })?;
            self.check_url("base_url", base)
                .map_err(|m| ("base_url", format!("provider {name:?}: {m}")))?;
            for need in preset.requires {
                let have = match *need {
                    "app_id" => self.app_id.as_deref(),
                    _ => self.realm.as_deref(),
                };
                let ok = have.is_some_and(|v| {
                    !v.is_empty()
                        && v.len() <= 128
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                });
                if !ok {
                    return Err((
                        "preset",
                        format!("provider {name:?}: preset {} needs {need} (letters, digits, '.', '_', '-')", preset.name),
                    ));
                }
            }
            if let Some(r) = &self.realm {
                if !r
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                {
                    return Err((
                        "realm",
                        format!(
                            "provider {name:?}: invalid realm {:?}",
                            crate::names::shorten(r)
                        ),
                    ));
                }
            }
            if self.issuer.is_some() || self.token_endpoint.is_some() {
                return Err((
                    "preset",
                    format!("provider {name:?}: preset {} derives its endpoints from base_url: leave out issuer and token_endpoint", preset.name),
                ));
            }
            return self.validate_common(name);
        }
        if let (None, None, Some(base)) = (&self.issuer, &self.token_endpoint, &self.base_url) {
            // Generic with a base URL: the base URL is the issuer to discover from.
            self.check_url("base_url", base)
                .map_err(|m| ("base_url", format!("provider {name:?}: {m}")))?;
            return self.validate_common(name);
        }
        if self.base_url.is_some() {
            return Err((
                "base_url",
                format!("provider {name:?}: base_url goes with a preset, or alone as the issuer"),
            ));
        }
        match (&self.issuer, &self.token_endpoint) {
            (Some(_), Some(_)) => {
                return Err((
                    "token_endpoint",
                    format!(
                    "provider {name:?}: give either issuer (discovery) or token_endpoint, not both"
                ),
                ))
            }
            (None, None) => {
                return Err((
                    "client_id",
                    format!("provider {name:?}: needs issuer (for discovery) or token_endpoint"),
                ))
            }
            _ => {}
        }
        for (field, value) in [
            ("issuer", &self.issuer),
            ("token_endpoint", &self.token_endpoint),
            ("revocation_endpoint", &self.revocation_endpoint),
            ("introspection_endpoint", &self.introspection_endpoint),
        ] {
            if let Some(v) = value {
                self.check_url(field, v)
                    .map_err(|m| (field, format!("provider {name:?}: {m}")))?;
            }
        }
        self.validate_common(name)
    }

    fn validate_common(&self, name: &str) -> std::result::Result<(), (&'static str, String)> {
        for (field, value) in [
            ("revocation_endpoint", &self.revocation_endpoint),
            ("introspection_endpoint", &self.introspection_endpoint),
        ] {
            if let Some(v) = value {
                self.check_url(field, v)
                    .map_err(|m| (field, format!("provider {name:?}: {m}")))?;
            }
        }
        if self.client_id.trim().is_empty() || self.client_id.len() > 512 {
            return Err((
                "client_id",
                format!("provider {name:?}: client_id must be 1 to 512 characters"),
            ));
        }
        for s in &self.scopes {
            crate::names::check_scope(s)
                .map_err(|m| ("scopes", format!("provider {name:?}: {m}")))?;
        }
        match (self.auth(), &self.client_key) {
            (ClientAuth::PrivateKeyJwt, None) => {
                return Err((
                    "client_auth",
                    format!("provider {name:?}: private_key_jwt needs client_key, the path of the private key"),
                ))
            }
            (ClientAuth::PrivateKeyJwt, Some(k)) if !k.starts_with('/') => {
                return Err(("client_key", format!("provider {name:?}: client_key must be an absolute path")))
            }
            (ClientAuth::PrivateKeyJwt, _) => {}
            (_, Some(_)) => {
                return Err((
                    "client_key",
                    format!("provider {name:?}: client_key is only for client_auth = \"private_key_jwt\""),
                ))
            }
            _ => {}
        }
        if let Some(kid) = &self.client_key_id {
            if kid.is_empty() || kid.len() > 256 || kid.chars().any(char::is_control) {
                return Err((
                    "client_key_id",
                    format!("provider {name:?}: invalid client_key_id"),
                ));
            }
        }
        for (k, v) in &self.params {
            let ok_name = !k.is_empty()
                && k.len() <= 64
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok_name || preset::RESERVED_PARAMS.contains(&k.as_str()) {
                return Err((
                    "params",
                    format!("provider {name:?}: parameter {:?} is not allowed (a name of letters, digits, '_', '-', '.', not one the grant sets itself)", crate::names::shorten(k)),
                ));
            }
            if v.len() > 1024 || v.chars().any(char::is_control) {
                return Err((
                    "params",
                    format!("provider {name:?}: parameter {k:?} has an invalid value"),
                ));
            }
        }
        if let Some(f) = &self.username_field {
            if f.is_empty()
                || f.len() > 64
                || !f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err((
                    "username_field",
                    format!("provider {name:?}: invalid username_field"),
                ));
            }
        }
        Ok(())
    }
}

impl AccountConfig {
    pub fn validate(
        &self,
        name: &str,
        provider: &ProviderConfig,
    ) -> std::result::Result<(), (&'static str, String)> {
        match (self.grant, &self.username) {
            (Grant::Password, None) => {
                return Err(("grant", format!("account {name:?}: the password grant needs a username")))
            }
            (Grant::Password, Some(u)) if u.is_empty() || u.len() > 512 => {
                return Err(("username", format!("account {name:?}: username must be 1 to 512 characters")))
            }
            (Grant::ClientCredentials, Some(_)) => {
                return Err((
                    "username",
                    format!("account {name:?}: a client_credentials account has no username"),
                ))
            }
            (Grant::ClientCredentials, None) if provider.auth() == ClientAuth::None => {
                return Err((
                    "grant",
                    format!(
                        "account {name:?}: client_credentials needs a confidential client, but provider {:?} uses client_auth = \"none\"",
                        self.provider
                    ),
                ))
            }
            _ => {}
        }
        for s in &self.scopes {
            crate::names::check_scope(s)
                .map_err(|m| ("scopes", format!("account {name:?}: {m}")))?;
        }
        for (exe, rule) in &self.apps {
            crate::names::check_app_path(exe)
                .map_err(|m| ("apps", format!("account {name:?}: {m}")))?;
            for s in &rule.scopes {
                crate::names::check_scope(s)
                    .map_err(|m| ("apps", format!("account {name:?}, app {exe:?}: {m}")))?;
            }
        }
        Ok(())
    }
}
