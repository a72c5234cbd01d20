//! `auto_configure`: a connector configuration from the local environment. The
//! `AZURE_*` service-principal variables give `service-principal` (with the secret, or the
//! certificate file's PEM); otherwise the Azure CLI's login gives `access-token` with a
//! token for Resource Manager and one for the AKS server application (they expire, as the
//! CLI's do, and are not renewed; register again, or use `implicit`, for longer use).
//! `implicit` is chosen only when asked for.

use secrecy::ExposeSecret as _;
use stepstack_core::ConnectorConfig;
use stepstack_core::registry::AutoConfigureRequest;

use crate::ambient;
use crate::auth::AKS_SERVER_APP_SCOPE;
use crate::config::{
    ACCESS_TOKEN, CONNECTOR_TYPE, DEFAULT_MANAGEMENT_SCOPE, IMPLICIT, SERVICE_PRINCIPAL,
};
use crate::environment::{AzureEnvironment, read_variable_file};
use crate::error::{AzureError, AzureResult};

/// Request values copied into every configuration (endpoints for sovereign clouds and
/// fakes, scope settings).
const SHARED_KEYS: [&str; 6] = [
    "subscription_id",
    "resource_group",
    "authority_host",
    "management_endpoint",
    "management_scope",
    "ca_certificate",
];

/// Request values only the `implicit` method takes; `azure_cli` also names the program
/// that auto-configuration runs.
const IMPLICIT_KEYS: [&str; 2] = ["managed_identity_endpoint", "azure_cli"];

pub(crate) async fn auto_config(
    env: &AzureEnvironment,
    request: &AutoConfigureRequest,
) -> AzureResult<ConnectorConfig> {
    let base = |method: &str| {
        let mut config = ConnectorConfig::new(request.name.clone(), CONNECTOR_TYPE, method);
        for key in SHARED_KEYS {
            if let Some(value) = request.values.get(key) {
                config = config.with_value(key, value.clone());
            }
        }
        if let Some(value) = request.values.get("use_admin_credentials") {
            config = config.with_value("use_admin_credentials", value.trim() == "true");
        }
        if let Some(resource_type) = &request.resource_type {
            config = config.with_resource_types([resource_type.clone()]);
        }
        if let Some(id) = &request.resource_id {
            config = config.with_resource_id(id.clone());
        }
        if !request.values.contains_key("subscription_id")
            && let Some(subscription) = &env.subscription_id
        {
            config = config.with_value("subscription_id", subscription.clone());
        }
        config
    };
    let requested = request.auth_method.as_deref();
    if requested == Some(IMPLICIT) {
        let mut config = base(IMPLICIT);
        for key in IMPLICIT_KEYS {
            if let Some(value) = request.values.get(key) {
                config = config.with_value(key, value.clone());
            }
        }
        return Ok(config);
    }
    let wrong_method = |found: &str| AzureError::InvalidConfig {
        method: requested.unwrap_or_default().to_owned(),
        reason: format!(
            "the local environment holds {found}, which configure auth method `{}`, not this one",
            if found.starts_with("AZURE_") {
                SERVICE_PRINCIPAL
            } else {
                ACCESS_TOKEN
            }
        ),
    };
    if let Some(secret) = &env.client_secret
        && let (Some(tenant), Some(client)) = (&env.tenant_id, &env.client_id)
    {
        if requested.is_some_and(|m| m != SERVICE_PRINCIPAL) {
            return Err(wrong_method("AZURE_CLIENT_SECRET credentials"));
        }
        return Ok(base(SERVICE_PRINCIPAL)
            .with_value("tenant_id", tenant.clone())
            .with_value("client_id", client.clone())
            .with_secret("client_secret", secret.expose_secret().to_owned()));
    }
    if let Some((tenant, client, path)) = env.client_certificate_file() {
        if requested.is_some_and(|m| m != SERVICE_PRINCIPAL) {
            return Err(wrong_method("AZURE_CLIENT_CERTIFICATE_PATH credentials"));
        }
        let pem = read_variable_file("AZURE_CLIENT_CERTIFICATE_PATH", &path).await?;
        let mut config = base(SERVICE_PRINCIPAL)
            .with_value("tenant_id", tenant)
            .with_value("client_id", client)
            .with_secret("client_certificate", pem);
        if let Some(password) = &env.client_certificate_password {
            config = config.with_secret(
                "client_certificate_password",
                password.expose_secret().to_owned(),
            );
        }
        return Ok(config);
    }
    if requested.is_some_and(|m| m != ACCESS_TOKEN) {
        return Err(AzureError::InvalidConfig {
            method: requested.unwrap_or_default().to_owned(),
            reason: "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH) are not set, so there is nothing to configure it from".to_owned(),
        });
    }
    let program = request
        .values
        .get("azure_cli")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env.azure_cli.clone());
    let management_scope = request
        .values
        .get("management_scope")
        .map(String::as_str)
        .unwrap_or(DEFAULT_MANAGEMENT_SCOPE);
    let no_credentials = |e: AzureError| AzureError::NoCredentials {
        tried: format!("no AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH; {e}"),
    };
    let tenant = request
        .values
        .get("tenant_id")
        .or(env.tenant_id.as_ref())
        .map(String::as_str);
    let arm = ambient::azure_cli_token(&program, management_scope, tenant)
        .await
        .map_err(no_credentials)?;
    let aks = ambient::azure_cli_token(&program, AKS_SERVER_APP_SCOPE, tenant)
        .await
        .map_err(no_credentials)?;
    let mut config = base(ACCESS_TOKEN)
        .with_secret("token", arm.token.value.expose_secret().to_owned())
        .with_secret(
            "kubernetes_token",
            aks.token.value.expose_secret().to_owned(),
        );
    if let Some(tenant) = arm.tenant {
        config = config.with_value("tenant_id", tenant);
    }
    if !config.values.contains_key("subscription_id")
        && let Some(subscription) = arm.subscription
    {
        config = config.with_value("subscription_id", subscription);
    }
    config.expires_at = match (arm.token.expires_at, aks.token.expires_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(config)
}
