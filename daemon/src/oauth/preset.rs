//! Provider presets: each vendor's documented token endpoint, as data over one mechanism (a
//! [`Dialect`] and endpoint templates). No grant code knows about any vendor.
//!
//! Templates use `{base_url}` (without a trailing slash), `{app_id}`, `{realm}`, and
//! `{realm_path}` (ForgeRock: empty for the root realm, else `/realms/root/realms/REALM`).

use std::collections::BTreeMap;

use tokenbroker_client::ClientAuth;

pub use tokenbroker_client::BodyEncoding;

pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    /// Discovery from this issuer (Keycloak).
    pub issuer: Option<&'static str>,
    pub token: Option<&'static str>,
    pub revocation: Option<&'static str>,
    pub introspection: Option<&'static str>,
    /// Settings this preset needs: "app_id", "realm".
    pub requires: &'static [&'static str],
    pub client_auth: ClientAuth,
    pub body: BodyEncoding,
    pub username_field: &'static str,
    /// Send `;charset=UTF-8` with form bodies (Oracle documents it).
    pub form_charset: bool,
    /// Scopes added to every user grant (Oracle: offline_access, for a refresh token).
    pub extra_scopes: &'static [&'static str],
    /// The `aud` of JWT client assertions; None: the token endpoint URL (RFC 7523).
    pub assertion_audience: Option<&'static str>,
}

const GENERIC: Preset = Preset {
    name: "generic",
    description:
        "any RFC 6749 server: discovery from --issuer (or --base-url), or explicit --token-endpoint",
    issuer: Some("{base_url}"),
    token: None,
    revocation: None,
    introspection: None,
    requires: &[],
    client_auth: ClientAuth::ClientSecretBasic,
    body: BodyEncoding::Form,
    username_field: "username",
    form_charset: false,
    extra_scopes: &[],
    assertion_audience: None,
};

pub const PRESETS: &[Preset] = &[
    GENERIC,
    Preset {
        name: "cyberark",
        issuer: None,
        description: "CyberArk Identity: POST {base_url}/oauth2/token/{app_id}, JSON body with user_name, Basic client auth, no refresh token",
        token: Some("{base_url}/oauth2/token/{app_id}"),
        requires: &["app_id"],
        body: BodyEncoding::Json,
        username_field: "user_name",
        ..GENERIC
    },
    Preset {
        name: "webmethods",
        issuer: None,
        description: "webMethods Integration Server: the pub.oauth:getToken service, form body, confidential clients; introspection and revocation services",
        token: Some("{base_url}/invoke/pub.oauth/getToken"),
        revocation: Some("{base_url}/invoke/pub.oauth/revokeToken"),
        introspection: Some("{base_url}/invoke/pub.oauth/introspectToken"),
        ..GENERIC
    },
    Preset {
        name: "oracle",
        issuer: None,
        description: "Oracle Identity Cloud Service / OCI IAM identity domain: {base_url}/oauth2/v1/token, Basic or JWT assertion, offline_access for a refresh token",
        token: Some("{base_url}/oauth2/v1/token"),
        revocation: Some("{base_url}/oauth2/v1/revoke"),
        introspection: Some("{base_url}/oauth2/v1/introspect"),
        form_charset: true,
        extra_scopes: &["offline_access"],
        assertion_audience: Some("https://identity.oraclecloud.com/"),
        ..GENERIC
    },
    Preset {
        name: "forgerock",
        issuer: None,
        description: "ForgeRock AM: {base_url}/oauth2[/realms/root/realms/{realm}]/access_token, client id and secret as form parameters, optional auth_chain",
        token: Some("{base_url}/oauth2{realm_path}/access_token"),
        revocation: Some("{base_url}/oauth2{realm_path}/token/revoke"),
        introspection: Some("{base_url}/oauth2{realm_path}/introspect"),
        client_auth: ClientAuth::ClientSecretPost,
        ..GENERIC
    },
    Preset {
        name: "keycloak",
        description: "Keycloak and other OpenID Connect servers: discovery from {base_url}/realms/{realm}",
        issuer: Some("{base_url}/realms/{realm}"),
        requires: &["realm"],
        ..GENERIC
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

pub fn generic() -> &'static Preset {
    &PRESETS[0]
}

/// The template filled in. Values were validated (URL, names) before.
pub fn render(template: &str, base_url: &str, app_id: Option<&str>, realm: Option<&str>) -> String {
    let realm_path = realm
        .filter(|r| !r.is_empty() && *r != "root" && *r != "/")
        .map(|r| format!("/realms/root/realms/{}", r.trim_matches('/')))
        .unwrap_or_default();
    template
        .replace("{base_url}", base_url.trim_end_matches('/'))
        .replace("{app_id}", app_id.unwrap_or(""))
        .replace("{realm_path}", &realm_path)
        .replace("{realm}", realm.unwrap_or(""))
}

/// Everything about a provider's requests that varies by vendor.
#[derive(Debug, Clone, PartialEq)]
pub struct Dialect {
    pub body: BodyEncoding,
    pub username_field: String,
    pub form_charset: bool,
    pub extra_scopes: Vec<String>,
    /// Extra parameters of every token request (ForgeRock's auth_chain).
    pub params: BTreeMap<String, String>,
    pub assertion_audience: Option<String>,
}

impl Default for Dialect {
    fn default() -> Self {
        let g = generic();
        Self {
            body: g.body,
            username_field: g.username_field.into(),
            form_charset: g.form_charset,
            extra_scopes: Vec::new(),
            params: BTreeMap::new(),
            assertion_audience: None,
        }
    }
}

/// Token request parameters that `--param` may not override.
pub const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "username",
    "user_name",
    "password",
    "scope",
    "refresh_token",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "token",
    "token_type_hint",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render() {
        let t = |name: &str| find(name).and_then(|p| p.token).unwrap_or("");
        assert_eq!(
            render(t("cyberark"), "https://t.example/", Some("app1"), None),
            "https://t.example/oauth2/token/app1"
        );
        assert_eq!(
            render(
                t("forgerock"),
                "https://am.example",
                None,
                Some("customers")
            ),
            "https://am.example/oauth2/realms/root/realms/customers/access_token"
        );
        assert_eq!(
            render(t("forgerock"), "https://am.example", None, None),
            "https://am.example/oauth2/access_token"
        );
        assert_eq!(
            render(t("oracle"), "https://idcs.example", None, None),
            "https://idcs.example/oauth2/v1/token"
        );
        assert_eq!(
            render(
                find("keycloak").and_then(|p| p.issuer).unwrap_or(""),
                "https://kc.example",
                None,
                Some("corp")
            ),
            "https://kc.example/realms/corp"
        );
    }

    #[test]
    fn names_are_unique_and_generic_first() {
        assert_eq!(PRESETS[0].name, "generic");
        let mut names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PRESETS.len());
    }
}
