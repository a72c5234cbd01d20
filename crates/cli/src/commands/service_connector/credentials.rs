//! `service-connector token` (a kubectl credential plugin) and what `login` does with it:
//! a kubeconfig user that runs `stepstack service-connector token …` whenever kubectl
//! needs a token, instead of a short-lived token written once (an EKS token lives 15
//! minutes, a Google or Entra ID token an hour).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use kube::config::{AuthInfo, ExecConfig, ExecInteractiveMode, Kubeconfig, NamedAuthInfo};
use stepstack_core::connector::kubeconfig;
use stepstack_core::secrecy::ExposeSecret;
use stepstack_core::{ClusterConnection, Error, ErrorKind, ServiceConnector};

use super::TokenArgs;
use crate::commands::Context;
use crate::commands::support::build_connector;
use crate::exit::{CliError, CliResult, Exit};

/// The ExecCredential version written and printed (client-go's stable one).
const EXEC_API_VERSION: &str = "client.authentication.k8s.io/v1";

/// kubectl is told a token expires this much before it does, so it asks for a new one
/// while the old one still works.
const EXPIRY_MARGIN: SignedDuration = SignedDuration::from_secs(60);

/// Prints an ExecCredential with a fresh token for the connector's cluster.
pub(super) fn token(args: TokenArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let connector = build_connector(ctx, &store, &args.name)?;
    let resource_type = args.resource_type();
    let credential = ctx.block_on(async {
        let connection = connector
            .connect(&resource_type, args.resource_id.as_deref())
            .await?;
        exec_credential(&connector.config().name, &connection).await
    })??;
    // Asked for explicitly: this command exists to hand the token to kubectl.
    crate::output::print_line(&credential)?;
    Ok(Exit::Ok)
}

/// The ExecCredential kubectl reads from a credential plugin's stdout.
async fn exec_credential(
    connector: &str,
    connection: &ClusterConnection,
) -> stepstack_core::Result<serde_json::Value> {
    let (token, expires_at) = match &connection.token_source {
        Some(source) => {
            let token = source.token().await?;
            (token.value, token.expires_at)
        }
        None => match connection.config.auth_info.token.clone() {
            Some(token) => (token, connection.expires_at),
            None => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "service connector `{connector}` does not authenticate with bearer tokens \
                         (it uses a client certificate or its own exec plugin), so there is no token to print; \
                         use `stepstack service-connector login {connector}` instead"
                    ),
                )
                .with_context("connector", connector.to_owned()));
            }
        },
    };
    let mut status = serde_json::json!({ "token": token.expose_secret() });
    if let Some(expires_at) = expires_at {
        let tell = expires_at
            .checked_sub(EXPIRY_MARGIN)
            .ok()
            .filter(|t| *t > Timestamp::now())
            .unwrap_or(expires_at);
        status["expirationTimestamp"] = serde_json::json!(tell.to_string());
    }
    Ok(serde_json::json!({
        "apiVersion": EXEC_API_VERSION,
        "kind": "ExecCredential",
        "status": status,
    }))
}

/// After a connector's `configure_local_client` wrote a context with a token that will
/// expire, makes that context's user run `stepstack service-connector token` instead.
/// Returns whether it did (connectors with long-lived credentials are left as written).
pub(super) async fn use_token_command(
    ctx: &Context<'_>,
    connector: &dyn ServiceConnector,
    resource_type: &str,
    resource_id: Option<&str>,
) -> CliResult<bool> {
    let connection = connector.connect(resource_type, resource_id).await?;
    if connection.token_source.is_none() && connection.expires_at.is_none() {
        return Ok(false);
    }
    let path = login_kubeconfig_path().ok_or_else(|| {
        CliError::usage(
            "no kubeconfig to update: neither KUBECONFIG nor HOME is set; set KUBECONFIG",
        )
    })?;
    let user = current_user(&path)?;
    let exec = token_command(ctx, &connector.config().name, resource_type, resource_id)?;
    let entry = Kubeconfig {
        auth_infos: vec![NamedAuthInfo {
            name: user,
            auth_info: Some(AuthInfo {
                exec: Some(exec),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    kubeconfig::write_login(&path, entry)
        .map_err(|e| CliError::new(Exit::Usage, anyhow::anyhow!(e)))?;
    Ok(true)
}

/// The exec entry: this very binary, with the home that holds the connector.
fn token_command(
    ctx: &Context<'_>,
    connector: &str,
    resource_type: &str,
    resource_id: Option<&str>,
) -> CliResult<ExecConfig> {
    let program = std::env::current_exe().map_err(|e| {
        CliError::new(
            Exit::Internal,
            anyhow::anyhow!("cannot find the path of this stepstack binary: {e}"),
        )
    })?;
    let home = std::path::absolute(ctx.home()?).map_err(|e| {
        CliError::new(
            Exit::Internal,
            anyhow::anyhow!("cannot resolve the stepstack home: {e}"),
        )
    })?;
    let mut args = vec![
        "service-connector".to_owned(),
        "token".to_owned(),
        connector.to_owned(),
        "--resource-type".to_owned(),
        resource_type.to_owned(),
    ];
    if let Some(id) = resource_id {
        args.extend(["--resource-id".to_owned(), id.to_owned()]);
    }
    let home_var = HashMap::from([
        ("name".to_owned(), "STEPSTACK_HOME".to_owned()),
        ("value".to_owned(), home.display().to_string()),
    ]);
    Ok(ExecConfig {
        api_version: Some(EXEC_API_VERSION.to_owned()),
        command: Some(program.display().to_string()),
        args: Some(args),
        env: Some(vec![home_var]),
        install_hint: Some(format!(
            "kubectl gets tokens for this cluster from stepstack ({}); reinstall it there or run `stepstack service-connector login {connector}` again",
            program.display()
        )),
        interactive_mode: Some(ExecInteractiveMode::Never),
        ..Default::default()
    })
}

/// The kubeconfig connectors' `login` writes.
fn login_kubeconfig_path() -> Option<PathBuf> {
    let home = std::env::home_dir();
    kubeconfig::login_path(std::env::var_os("KUBECONFIG").as_deref(), home.as_deref())
}

/// The user of the kubeconfig's current context (the one `login` just wrote).
fn current_user(path: &Path) -> CliResult<String> {
    let unusable = |reason: String| {
        CliError::new(
            Exit::Usage,
            anyhow::anyhow!("cannot update the kubeconfig {}: {reason}", path.display()),
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| unusable(e.to_string()))?;
    let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|e| unusable(e.to_string()))?;
    let current = kubeconfig
        .current_context
        .ok_or_else(|| unusable("it has no current context".to_owned()))?;
    kubeconfig
        .contexts
        .into_iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context)
        .and_then(|c| c.user)
        .ok_or_else(|| unusable(format!("its current context `{current}` names no user")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use stepstack_core::{BearerToken, TokenSource};

    use super::*;

    #[derive(Debug)]
    struct Fixed(Timestamp);

    #[async_trait]
    impl TokenSource for Fixed {
        async fn token(&self) -> stepstack_core::Result<BearerToken> {
            Ok(BearerToken::new("fresh-token", Some(self.0)))
        }
    }

    fn connection() -> ClusterConnection {
        ClusterConnection::new(kube::Config::new("https://127.0.0.1:6443".parse().unwrap()))
    }

    #[tokio::test]
    async fn a_token_source_gives_its_token_with_an_expiry_a_minute_early() {
        let expires = Timestamp::from_second(Timestamp::now().as_second() + 900).unwrap();
        let connection = connection().with_token_source(Arc::new(Fixed(expires)));
        let credential = exec_credential("eks", &connection).await.unwrap();
        assert_eq!(credential["apiVersion"], EXEC_API_VERSION);
        assert_eq!(credential["kind"], "ExecCredential");
        assert_eq!(credential["status"]["token"], "fresh-token");
        let told: Timestamp = credential["status"]["expirationTimestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(expires.duration_since(told), SignedDuration::from_mins(1));
    }

    #[tokio::test]
    async fn client_certificate_connections_have_no_token_to_print() {
        let err = exec_credential("kube", &connection()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("login kube"), "{err}");
    }
}
