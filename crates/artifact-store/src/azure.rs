//! The `azure` flavor: artifacts in an Azure Blob Storage container, through
//! `object_store`'s Azure client (block blobs; large files as staged blocks committed by a
//! block list). The manifest's create-if-absent is a `PUT` with `If-None-Match: *`.

use std::sync::Arc;

use object_store::azure::MicrosoftAzureBuilder;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use stepstack_core::registry::{ArtifactStoreContext, ArtifactStoreFlavor};
use stepstack_core::{ArtifactStore, Result};

use crate::error::RemoteStoreError;
use crate::http::HyperConnector;
use crate::remote::{
    RemoteArtifactStore, RetrySettings, retry_schema, validate_endpoint, validate_name,
    validate_prefix,
};

/// The flavor name.
pub const AZURE_FLAVOR: &str = "azure";

/// Configuration of an `azure` artifact store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureStoreConfig {
    /// The storage account.
    pub account: String,
    /// The blob container.
    pub container: String,
    /// The blob-name prefix under which artifacts live; none for the container's root.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The account's blob endpoint, e.g. Azurite's `http://127.0.0.1:10000/devstoreaccount1`;
    /// `https://<account>.blob.core.windows.net` when absent.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Allows a plain-`http` `endpoint_url` (local emulators only).
    #[serde(default)]
    pub allow_http: bool,
    /// The credentials requests carry: exactly one of its fields.
    pub credentials: AzureCredentials,
    /// Retries of transient failures.
    #[serde(default)]
    pub retry: RetrySettings,
}

/// How requests are authorised: exactly one of an account key, a SAS token or an Entra
/// ID bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureCredentials {
    /// The storage account's shared key (base64).
    #[serde(default)]
    pub account_key: Option<SecretString>,
    /// A shared access signature (the query string, with or without `?`).
    #[serde(default)]
    pub sas_token: Option<SecretString>,
    /// An Entra ID access token for `https://storage.azure.com`.
    #[serde(default)]
    pub bearer_token: Option<SecretString>,
}

impl AzureStoreConfig {
    /// Parses and checks a configuration.
    pub fn from_json(config: &serde_json::Value) -> std::result::Result<Self, RemoteStoreError> {
        let parsed: AzureStoreConfig = serde_json::from_value(config.clone())
            .map_err(|e| RemoteStoreError::invalid(AZURE_FLAVOR, e.to_string()))?;
        parsed.validate()
    }

    fn validate(mut self) -> std::result::Result<Self, RemoteStoreError> {
        let account_ok = (3..=24).contains(&self.account.len())
            && self
                .account
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !account_ok {
            return Err(RemoteStoreError::invalid(
                AZURE_FLAVOR,
                format!(
                    "account `{}` must be 3 to 24 lowercase letters or digits",
                    self.account
                ),
            ));
        }
        validate_name(AZURE_FLAVOR, "container", &self.container, (3, 63), &['-'])?;
        if self.container.contains("--") {
            return Err(RemoteStoreError::invalid(
                AZURE_FLAVOR,
                format!("container `{}` must not contain `--`", self.container),
            ));
        }
        self.prefix = validate_prefix(AZURE_FLAVOR, self.prefix.as_deref())?;
        self.endpoint_url =
            validate_endpoint(AZURE_FLAVOR, self.endpoint_url.as_deref(), self.allow_http)?;
        if self.allow_http && self.endpoint_url.is_none() {
            return Err(RemoteStoreError::invalid(
                AZURE_FLAVOR,
                "allow_http needs an endpoint_url (Azure itself is reached over https)",
            ));
        }
        let c = &self.credentials;
        let given: Vec<(&str, &SecretString)> = [
            ("account_key", c.account_key.as_ref()),
            ("sas_token", c.sas_token.as_ref()),
            ("bearer_token", c.bearer_token.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect();
        match given.as_slice() {
            [(name, value)] => {
                if value.expose_secret().trim().is_empty() {
                    return Err(RemoteStoreError::invalid(
                        AZURE_FLAVOR,
                        format!("credentials.{name} is empty"),
                    ));
                }
            }
            [] => {
                return Err(RemoteStoreError::invalid(
                    AZURE_FLAVOR,
                    "credentials needs one of account_key, sas_token or bearer_token",
                ));
            }
            _ => {
                let names: Vec<&str> = given.iter().map(|(n, _)| *n).collect();
                return Err(RemoteStoreError::invalid(
                    AZURE_FLAVOR,
                    format!("credentials has {}; give exactly one", names.join(" and ")),
                ));
            }
        }
        self.retry.validate(AZURE_FLAVOR)?;
        Ok(self)
    }

    /// The normalised configuration as JSON (secrets included: it is what `build` reads).
    pub fn to_json(&self) -> serde_json::Value {
        let mut credentials = serde_json::Map::new();
        let c = &self.credentials;
        for (name, value) in [
            ("account_key", &c.account_key),
            ("sas_token", &c.sas_token),
            ("bearer_token", &c.bearer_token),
        ] {
            if let Some(value) = value {
                credentials.insert(name.into(), value.expose_secret().into());
            }
        }
        let mut out = serde_json::json!({
            "account": self.account,
            "container": self.container,
            "allow_http": self.allow_http,
            "credentials": credentials,
            "retry": self.retry.to_json(),
        });
        if let Some(prefix) = &self.prefix {
            out["prefix"] = prefix.as_str().into();
        }
        if let Some(endpoint) = &self.endpoint_url {
            out["endpoint_url"] = endpoint.as_str().into();
        }
        out
    }

    /// `az://account/container/prefix`.
    pub fn location(&self) -> String {
        match &self.prefix {
            Some(prefix) => format!("az://{}/{}/{prefix}", self.account, self.container),
            None => format!("az://{}/{}", self.account, self.container),
        }
    }
}

/// Opens the store a checked configuration describes (no request is made).
pub fn open_azure(
    config: &AzureStoreConfig,
) -> std::result::Result<RemoteArtifactStore, RemoteStoreError> {
    let mut builder = MicrosoftAzureBuilder::new()
        .with_account(&config.account)
        .with_container_name(&config.container)
        .with_allow_http(config.allow_http)
        .with_retry(config.retry.to_retry_config())
        .with_http_connector(HyperConnector);
    let c = &config.credentials;
    // The credential type is pinned, so object_store never falls back to ambient
    // credentials (managed identity, the Azure CLI) when the given one is refused.
    if let Some(key) = &c.account_key {
        builder = builder
            .with_credential_type("access_key")
            .with_access_key(key.expose_secret());
    } else if let Some(sas) = &c.sas_token {
        builder = builder.with_credential_type("sas_token").with_config(
            object_store::azure::AzureConfigKey::SasKey,
            sas.expose_secret().trim_start_matches('?'),
        );
    } else if let Some(token) = &c.bearer_token {
        builder = builder
            .with_credential_type("bearer_token")
            .with_bearer_token_authorization(token.expose_secret());
    }
    if let Some(endpoint) = &config.endpoint_url {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let store = builder.build().map_err(|source| RemoteStoreError::Build {
        flavor: AZURE_FLAVOR,
        location: config.location(),
        source,
    })?;
    Ok(RemoteArtifactStore::new(
        AZURE_FLAVOR,
        config.location(),
        Arc::new(store),
        config.prefix.as_deref(),
        // Blocks have no lower bound on their size.
        1,
    ))
}

/// The `azure` flavor for the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct AzureFlavor;

impl ArtifactStoreFlavor for AzureFlavor {
    fn name(&self) -> &str {
        AZURE_FLAVOR
    }

    fn description(&self) -> &str {
        "artifacts in an Azure Blob Storage container"
    }

    fn config_schema(&self) -> serde_json::Value {
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "AzureStoreConfig",
            "type": "object",
            "additionalProperties": false,
            "required": ["account", "container", "credentials"],
            "properties": {
                "account": {"type": "string", "description": "The storage account."},
                "container": {"type": "string", "description": "The blob container."},
                "prefix": {"type": "string", "description": "Blob-name prefix under which artifacts live."},
                "endpoint_url": {"type": "string", "description": "The account's blob endpoint (an emulator); Azure's when absent."},
                "allow_http": {"type": "boolean", "default": false, "description": "Allow a plain-http endpoint_url (local emulators)."},
                "credentials": {
                    "type": "object",
                    "additionalProperties": false,
                    "minProperties": 1,
                    "maxProperties": 1,
                    "properties": {
                        "account_key": {"type": "string", "writeOnly": true},
                        "sas_token": {"type": "string", "writeOnly": true},
                        "bearer_token": {"type": "string", "writeOnly": true}
                    }
                },
                "retry": retry_schema()
            }
        })
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
        Ok(AzureStoreConfig::from_json(config)?.to_json())
    }

    fn build(
        &self,
        config: &serde_json::Value,
        context: ArtifactStoreContext,
    ) -> Result<Arc<dyn ArtifactStore>> {
        let config = AzureStoreConfig::from_json(config)?;
        crate::remote::build_component(open_azure(&config), &context)
    }
}
