//! What a provider's settings mean: its preset, client authentication, request dialect and
//! endpoints (configured, or derived from the preset's templates and `base_url`).

use tokenbroker_client::{ClientAuth, ProviderSettings, ProviderSpec};
use url::Url;

use super::ProviderConfig;
use crate::error::{Error, Result};
use crate::oauth::discovery::{check_endpoint_url, Discovery};
use crate::oauth::preset::{self, Dialect, Preset};
use crate::oauth::Endpoints;

impl ProviderConfig {
    /// The config's form of settings given over the wire: `preset = "generic"` is the default
    /// and is not written.
    pub fn from_settings(mut settings: ProviderSettings) -> Self {
        if settings.preset.as_deref() == Some("generic") {
            settings.preset = None;
        }
        Self(settings)
    }

    /// The provider as the admin sees it, with the client authentication resolved.
    pub fn to_spec(&self, name: &str) -> ProviderSpec {
        let mut settings = self.0.clone();
        settings.client_auth = Some(self.auth());
        ProviderSpec {
            name: name.to_owned(),
            settings,
        }
    }

    pub fn preset(&self) -> &'static Preset {
        self.preset
            .as_deref()
            .and_then(preset::find)
            .unwrap_or_else(preset::generic)
    }

    /// How the client authenticates: configured, else the preset's.
    pub fn auth(&self) -> ClientAuth {
        self.client_auth.unwrap_or(self.preset().client_auth)
    }

    /// Everything about requests that varies by vendor.
    pub fn dialect(&self) -> Dialect {
        let p = self.preset();
        Dialect {
            body: self.body.unwrap_or(p.body),
            username_field: self
                .username_field
                .clone()
                .unwrap_or_else(|| p.username_field.to_owned()),
            form_charset: p.form_charset,
            extra_scopes: p.extra_scopes.iter().map(|s| s.to_string()).collect(),
            params: self.params.clone(),
            assertion_audience: p.assertion_audience.map(str::to_owned),
        }
    }

    fn render(&self, template: Option<&str>) -> Option<String> {
        let base = self.base_url.as_deref()?;
        template.map(|t| preset::render(t, base, self.app_id.as_deref(), self.realm.as_deref()))
    }

    /// The issuer to discover from: configured, or the preset's template.
    pub fn issuer_url(&self) -> Option<String> {
        self.issuer
            .clone()
            .or_else(|| self.render(self.preset().issuer))
    }

    /// The explicit token endpoint: configured, or the preset's template.
    pub fn token_url(&self) -> Option<String> {
        self.token_endpoint
            .clone()
            .or_else(|| self.render(self.preset().token))
    }

    pub fn revocation_url(&self) -> Option<String> {
        self.revocation_endpoint
            .clone()
            .or_else(|| self.render(self.preset().revocation))
    }

    pub fn introspection_url(&self) -> Option<String> {
        self.introspection_endpoint
            .clone()
            .or_else(|| self.render(self.preset().introspection))
    }

    /// Check one endpoint against the transport rule: https, or http to a loopback address when
    /// the provider allows it.
    pub fn check_url(&self, what: &str, raw: &str) -> std::result::Result<Url, String> {
        check_endpoint_url(what, raw, self.allow_insecure_loopback)
    }

    /// What discovery needs, or None when the provider has no issuer.
    pub fn discovery(&self) -> Option<Discovery> {
        Some(Discovery {
            issuer: self.issuer_url()?,
            allow_insecure_loopback: self.allow_insecure_loopback,
            revocation: self.revocation_url(),
            introspection: self.introspection_url(),
        })
    }

    /// The endpoints of a provider configured with explicit URLs (or a preset's templates), or None
    /// when it uses discovery.
    pub fn explicit_endpoints(&self) -> Result<Option<Endpoints>> {
        let p = self;
        let Some(token) = p.token_url() else {
            return Ok(None);
        };
        let rule = |problem| Error::Endpoint { problem };
        let check = |what: &str, raw: Option<String>| {
            raw.as_deref()
                .map(|r| p.check_url(what, r))
                .transpose()
                .map_err(rule)
        };
        Ok(Some(Endpoints {
            token: p.check_url("token_endpoint", &token).map_err(rule)?,
            revocation: check("revocation_endpoint", p.revocation_url())?,
            introspection: check("introspection_endpoint", p.introspection_url())?,
        }))
    }
}
