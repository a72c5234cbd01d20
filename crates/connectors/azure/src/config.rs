//! The configuration of each auth method, parsed from a `ConnectorConfig`.

use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use stepstack_core::ConnectorConfig;

use crate::certificate::ClientCertificate;
use crate::environment::AzureEnvironment;
use crate::error::{AzureError, AzureResult};

/// Auth method: a service principal with a client secret or certificate.
pub(crate) const SERVICE_PRINCIPAL: &str = "service-principal";
/// Auth method: given access tokens.
pub(crate) const ACCESS_TOKEN: &str = "access-token";
/// The connector type id.
pub const CONNECTOR_TYPE: &str = "azure";

/// Auth method: the environment's credentials (gated).
pub(crate) const IMPLICIT: &str = "implicit";

/// The Microsoft Entra ID authority of the public cloud.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The Azure Resource Manager endpoint of the public cloud.
pub const DEFAULT_MANAGEMENT_ENDPOINT: &str = "https://management.azure.com";
/// The token scope of Azure Resource Manager in the public cloud.
pub const DEFAULT_MANAGEMENT_SCOPE: &str = "https://management.azure.com/.default";
/// The `api-version` of the `Microsoft.ContainerService` calls.
pub const ARM_API_VERSION: &str = "2024-09-01";

/// Settings every auth method shares.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct AzureCommonConfig {
    /// The subscription whose AKS clusters are listed; unset, the single subscription the
    /// identity can see (an error names them when it sees several).
    #[serde(default)]
    pub subscription_id: Option<String>,
    /// Limits the connector to the clusters of this resource group.
    #[serde(default)]
    pub resource_group: Option<String>,
    /// The Entra ID authority host (default `https://login.microsoftonline.com`; set it for
    /// sovereign clouds).
    #[serde(default)]
    pub authority_host: Option<String>,
    /// The Azure Resource Manager endpoint (default `https://management.azure.com`).
    #[serde(default)]
    pub management_endpoint: Option<String>,
    /// The token scope of the Resource Manager (default
    /// `https://management.azure.com/.default`).
    #[serde(default)]
    pub management_scope: Option<String>,
    /// A CA certificate (PEM) to trust, instead of the system roots, for the authority
    /// host and the management endpoint (private clouds, TLS-inspecting proxies, fakes).
    #[serde(default)]
    pub ca_certificate: Option<String>,
    /// Connect with the cluster's admin credentials (`listClusterAdminCredential`) instead
    /// of an Entra ID token; fails on clusters whose local accounts are disabled.
    #[serde(default)]
    pub use_admin_credentials: bool,
}

/// `service-principal`: an Entra ID application with a client secret or a client
/// certificate.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
pub struct ServicePrincipalConfig {
    /// The Entra ID tenant (directory) id.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret's value.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub client_secret: Option<SecretString>,
    /// A client certificate instead of a secret: one PEM holding the certificate
    /// uploaded to the application and its RSA private key (unencrypted).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub client_certificate: Option<SecretString>,
    /// The password of an encrypted private key in `client_certificate`; encrypted keys
    /// are not supported yet, so giving one only improves the error.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub client_certificate_password: Option<SecretString>,
    /// Shared settings.
    #[serde(flatten)]
    pub common: AzureCommonConfig,
}

/// `access-token`: given tokens (e.g. from `az account get-access-token`); they expire at
/// the connector's `expires_at` and are not renewed.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
pub struct AccessTokenConfig {
    /// A token for Azure Resource Manager.
    #[schemars(with = "String")]
    pub token: SecretString,
    /// A token for the AKS server application (needed to connect to clusters with Entra
    /// ID, unless `use_admin_credentials` is set).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub kubernetes_token: Option<SecretString>,
    /// The tenant the tokens belong to (informational).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Shared settings.
    #[serde(flatten)]
    pub common: AzureCommonConfig,
}

/// `implicit`: the process's ambient credentials, in this order: AZURE_TENANT_ID,
/// AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH); workload
/// identity (AZURE_FEDERATED_TOKEN_FILE); a managed identity (IDENTITY_ENDPOINT/IDENTITY_HEADER, else the instance metadata service); the
/// Azure CLI's login.
#[derive(Deserialize, JsonSchema)]
pub struct ImplicitConfig {
    /// The managed-identity token endpoint of the instance metadata service (default
    /// `http://169.254.169.254/metadata/identity/oauth2/token`).
    #[serde(default)]
    pub managed_identity_endpoint: Option<String>,
    /// The Azure CLI program (default `az` on `PATH`).
    #[serde(default)]
    pub azure_cli: Option<String>,
    /// Shared settings.
    #[serde(flatten)]
    pub common: AzureCommonConfig,
}

/// The credentials of a connector.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    /// An application's OAuth2 client-credentials grant.
    Client(ClientCredentials),
    /// Given tokens for ARM and, optionally, the AKS server application.
    Tokens {
        arm: SecretString,
        kubernetes: Option<SecretString>,
    },
    /// The ambient credentials, looked for when a token is needed.
    Implicit {
        managed_identity_endpoint: Option<String>,
        azure_cli: Option<PathBuf>,
    },
}

/// An Entra ID application and how it proves itself in the client-credentials grant.
#[derive(Debug, Clone)]
pub(crate) struct ClientCredentials {
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    pub(crate) proof: ClientProof,
}

/// What the client-credentials grant carries besides the client id.
#[derive(Debug, Clone)]
pub(crate) enum ClientProof {
    /// `client_secret`.
    Secret(SecretString),
    /// A JWT `client_assertion` signed by a client certificate.
    Certificate(Arc<ClientCertificate>),
    /// Workload identity federation: the token in this file (written by AKS workload
    /// identity, and rotated) as `client_assertion`.
    FederatedTokenFile(PathBuf),
}

// Here rather than in `environment`, so the environment stays below the configuration:
// these say what the `AZURE_*` variables mean as client credentials.
impl AzureEnvironment {
    /// The client-secret credentials of the `AZURE_*` variables, when all three are set.
    pub(crate) fn client_secret_credentials(&self) -> Option<ClientCredentials> {
        Some(ClientCredentials {
            tenant_id: self.tenant_id.clone()?,
            client_id: self.client_id.clone()?,
            proof: ClientProof::Secret(self.client_secret.clone()?),
        })
    }

    /// Workload identity federation through `AZURE_FEDERATED_TOKEN_FILE`, when it and the
    /// tenant and client ids are set.
    pub(crate) fn federated_credentials(&self) -> Option<ClientCredentials> {
        Some(ClientCredentials {
            tenant_id: self.tenant_id.clone()?,
            client_id: self.client_id.clone()?,
            proof: ClientProof::FederatedTokenFile(self.federated_token_file.clone()?),
        })
    }
}

/// A parsed configuration.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    /// `None`: the single subscription the identity sees, looked up on first use.
    pub(crate) subscription_id: Option<String>,
    pub(crate) resource_group: Option<String>,
    pub(crate) authority_host: String,
    pub(crate) management_endpoint: String,
    pub(crate) management_scope: String,
    pub(crate) use_admin_credentials: bool,
    /// DER certificates of `ca_certificate`.
    pub(crate) ca_certificates: Option<Vec<Vec<u8>>>,
    pub(crate) credentials: Credentials,
}

pub(crate) fn schema_of<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|_| serde_json::json!({"type": "object"}))
}

/// Parses the configuration of `config.auth_method`.
pub(crate) fn parse(config: &ConnectorConfig, env: &AzureEnvironment) -> AzureResult<Parsed> {
    let method = config.auth_method.as_str();
    let invalid = |reason: &str| AzureError::InvalidConfig {
        method: method.to_owned(),
        reason: reason.to_owned(),
    };
    let (common, credentials) = match method {
        SERVICE_PRINCIPAL => {
            let c: ServicePrincipalConfig = typed(config)?;
            check_id("tenant_id", &c.tenant_id, method)?;
            check_id("client_id", &c.client_id, method)?;
            let tenant_id = c.tenant_id.trim().to_owned();
            let client_id = c.client_id.trim().to_owned();
            let proof = match (c.client_secret, c.client_certificate) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "both `client_secret` and `client_certificate` are set; keep one",
                    ));
                }
                (None, None) => {
                    return Err(invalid(
                        "missing `client_secret` (or `client_certificate`, a PEM with the certificate and its private key)",
                    ));
                }
                (Some(secret), None) => ClientProof::Secret(secret),
                (None, Some(pem)) => {
                    ClientProof::Certificate(Arc::new(ClientCertificate::from_pem(
                        &pem,
                        c.client_certificate_password.as_ref(),
                        method,
                    )?))
                }
            };
            let credentials = Credentials::Client(ClientCredentials {
                tenant_id,
                client_id,
                proof,
            });
            (c.common, credentials)
        }
        ACCESS_TOKEN => {
            let c: AccessTokenConfig = typed(config)?;
            (
                c.common,
                Credentials::Tokens {
                    arm: c.token,
                    kubernetes: c.kubernetes_token,
                },
            )
        }
        IMPLICIT => {
            let c: ImplicitConfig = typed(config)?;
            let managed_identity_endpoint = c
                .managed_identity_endpoint
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty());
            if let Some(endpoint) = &managed_identity_endpoint
                && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            {
                return Err(invalid(&format!(
                    "`managed_identity_endpoint` must be an http(s) URL, got `{endpoint}`"
                )));
            }
            let credentials = Credentials::Implicit {
                managed_identity_endpoint,
                azure_cli: c
                    .azure_cli
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
            };
            let mut common = c.common;
            if common.subscription_id.is_none() {
                common.subscription_id = env.subscription_id.clone();
            }
            (common, credentials)
        }
        other => return Err(invalid(&format!("unknown auth method `{other}`"))),
    };
    let subscription_id = common
        .subscription_id
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if let Some(subscription_id) = &subscription_id {
        check_id("subscription_id", subscription_id, method)?;
    }
    let resource_group = common
        .resource_group
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty());
    if let Some(group) = &resource_group
        && !crate::aks::is_resource_group(group)
    {
        return Err(invalid(&format!(
            "`resource_group` `{group}` is not a resource group name (1-90 letters, digits, `-`, `_`, `.`, `(`, `)`, not ending in `.`)"
        )));
    }
    let ca_certificates = match common.ca_certificate.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(pem) => Some(
            stepstack_cloud_http::pem_certificates(pem)
                .map_err(|e| invalid(&format!("`ca_certificate` cannot be used: {e}")))?,
        ),
    };
    let url = |field: &str, value: Option<String>, default: &str| -> AzureResult<String> {
        let value = value
            .map(|v| v.trim().trim_end_matches('/').to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned());
        if !(value.starts_with("https://") || value.starts_with("http://")) {
            return Err(invalid(&format!(
                "`{field}` must be an http(s) URL, got `{value}`"
            )));
        }
        Ok(value)
    };
    Ok(Parsed {
        subscription_id,
        resource_group,
        authority_host: url(
            "authority_host",
            common.authority_host,
            DEFAULT_AUTHORITY_HOST,
        )?,
        management_endpoint: url(
            "management_endpoint",
            common.management_endpoint,
            DEFAULT_MANAGEMENT_ENDPOINT,
        )?,
        management_scope: common
            .management_scope
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_MANAGEMENT_SCOPE.to_owned()),
        use_admin_credentials: common.use_admin_credentials,
        ca_certificates,
        credentials,
    })
}

/// Tenant, client and subscription ids: GUIDs, or (tenants) domain names.
fn check_id(field: &str, value: &str, method: &str) -> AzureResult<()> {
    let value = value.trim();
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(AzureError::InvalidConfig {
            method: method.to_owned(),
            reason: format!(
                "`{field}` must be a GUID (or, for tenants, a domain such as contoso.onmicrosoft.com)"
            ),
        })
    }
}

/// Deserializes the values and secrets of `config` as `T`, refusing keys that are not in
/// `T`'s schema.
fn typed<T: DeserializeOwned + JsonSchema>(config: &ConnectorConfig) -> AzureResult<T> {
    use secrecy::ExposeSecret;
    let method = config.auth_method.clone();
    let schema = schema_of::<T>();
    let known: Vec<&str> = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut object = serde_json::Map::new();
    for (key, value) in &config.values {
        object.insert(key.clone(), value.clone());
    }
    for (key, value) in &config.secrets {
        object.insert(
            key.clone(),
            serde_json::Value::String(value.expose_secret().to_owned()),
        );
    }
    if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(AzureError::InvalidConfig {
            method,
            reason: format!(
                "unknown field `{unknown}`; expected one of: {}",
                known.join(", ")
            ),
        });
    }
    // The error names the field but never echoes a value (values may be secrets).
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| {
        let reason = e.to_string();
        let reason = reason
            .split(" at line")
            .next()
            .unwrap_or_default()
            .to_owned();
        AzureError::InvalidConfig {
            method,
            reason: if reason.starts_with("missing field") {
                reason
            } else {
                "a field has the wrong type".to_owned()
            },
        }
    })
}
