//! `tokenbroker provider ...`.

use std::io::IsTerminal;
use std::path::PathBuf;

use tokenbroker_client::{
    AddProviderParams, ClientAuth, ProviderSettings, ProviderSpec, SetClientSecretParams,
};

use super::connect;
use super::policy::app_path;
use crate::args::ProviderCmd;
use crate::failure::Failure;
use crate::{input, output};

pub fn run(socket: &Option<PathBuf>, cmd: ProviderCmd) -> Result<(), Failure> {
    match cmd {
        ProviderCmd::Add {
            name,
            preset,
            base_url,
            app_id,
            realm,
            issuer,
            token_endpoint,
            revocation_endpoint,
            introspection_endpoint,
            client_id,
            client_auth,
            client_key,
            client_key_id,
            params,
            client_secret_stdin,
            scopes,
            allow_insecure_loopback,
            scoped_refresh,
        } => {
            let client_auth = client_auth.map(ClientAuth::from);
            if client_secret_stdin && client_auth.is_some_and(|a| !a.needs_secret()) {
                return Err(Failure::Usage(
                    "--client-secret-stdin goes with --client-auth basic or post".into(),
                ));
            }
            let client_key = match client_key {
                Some(k) => Some(app_path(&k)?),
                None => None,
            };
            let client_secret = if client_secret_stdin {
                Some(input::secret_line("client secret")?)
            } else {
                None
            };
            let mut c = connect(socket)?;
            let info = c.add_provider(&AddProviderParams {
                provider: ProviderSpec {
                    name,
                    settings: ProviderSettings {
                        preset,
                        base_url,
                        app_id,
                        realm,
                        issuer,
                        token_endpoint,
                        revocation_endpoint,
                        introspection_endpoint,
                        client_id,
                        client_auth,
                        client_key,
                        client_key_id,
                        params: params.into_iter().collect(),
                        scopes,
                        allow_insecure_loopback,
                        scoped_refresh,
                        ..Default::default()
                    },
                },
                client_secret,
            })?;
            println!("added provider {}", info.spec.name);
            let resolved = info.spec.settings.client_auth.unwrap_or_default();
            if resolved.needs_secret() && !info.has_client_secret {
                eprintln!(
                    "tokenbroker: note: no client secret stored yet: `tokenbroker provider set-secret {}`",
                    info.spec.name
                );
            }
            Ok(())
        }
        ProviderCmd::Presets(j) => {
            let presets = connect(socket)?.list_presets()?;
            if j.json {
                output::json(&presets);
                return Ok(());
            }
            for p in presets {
                let needs = if p.requires.is_empty() {
                    String::new()
                } else {
                    format!(" (needs --{})", p.requires.join(", --").replace('_', "-"))
                };
                println!("{}\t{}{needs}", p.name, p.description);
            }
            Ok(())
        }
        ProviderCmd::List(j) => {
            let list = connect(socket)?.list_providers()?;
            if j.json {
                output::json(&list);
                return Ok(());
            }
            if list.is_empty() {
                println!("no providers: add one with `tokenbroker provider add`");
            }
            for p in list {
                let s = &p.spec.settings;
                let at = s
                    .issuer
                    .as_deref()
                    .or(s.token_endpoint.as_deref())
                    .unwrap_or("?");
                let auth = s.client_auth.unwrap_or_default();
                println!(
                    "{}\t{}\tclient {} ({}{})",
                    p.spec.name,
                    at,
                    s.client_id,
                    auth.as_str(),
                    if auth.needs_secret() && !p.has_client_secret {
                        ", no secret"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        ProviderCmd::Remove { name } => {
            connect(socket)?.remove_provider(&name)?;
            println!("removed provider {name}");
            Ok(())
        }
        ProviderCmd::SetSecret { name } => {
            let mut c = connect(socket)?;
            let secret = if std::io::stdin().is_terminal() {
                input::prompt_secret(&format!("Client secret for provider {name}: "))?
            } else {
                input::secret_line("client secret")?
            };
            c.set_client_secret(&SetClientSecretParams {
                provider: name.clone(),
                client_secret: secret,
            })?;
            println!("stored the client secret of {name}");
            Ok(())
        }
    }
}
