//! The `gcs` flavor: artifacts in a Google Cloud Storage bucket, through `object_store`'s
//! GCS client (the XML API: single `PUT`s, XML multipart uploads, `list-type=2`
//! listings). The manifest's create-if-absent is a `PUT` with
//! `x-goog-if-generation-match: 0`.

use std::sync::Arc;

use object_store::gcp::GoogleCloudStorageBuilder;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use stepstack_core::registry::{ArtifactStoreContext, ArtifactStoreFlavor};
use stepstack_core::{ArtifactStore, Result};

use crate::error::RemoteStoreError;
use crate::http::HyperConnector;
use crate::remote::{
    MIN_PART_SIZE_5_MIB, RemoteArtifactStore, RetrySettings, retry_schema, validate_endpoint,
    validate_name, validate_prefix,
};

/// The flavor name.
pub const GCS_FLAVOR: &str = "gcs";

/// Configuration of a `gcs` artifact store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsStoreConfig {
    /// The bucket.
    pub bucket: String,
    /// The key prefix under which artifacts live; none for the bucket's root.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The storage endpoint (an emulator); `https://storage.googleapis.com` when absent.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Allows a plain-`http` `endpoint_url` (local emulators only).
    #[serde(default)]
    pub allow_http: bool,
    /// The credentials requests carry.
    pub credentials: GcsCredentials,
    /// Retries of transient failures.
    #[serde(default)]
    pub retry: RetrySettings,
}

/// A Google OAuth2 access token (not refreshed: the connector hands out a fresh one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsCredentials {
    /// The access token.
    pub bearer_token: SecretString,
}

impl GcsStoreConfig {
    /// Parses and checks a configuration.
    pub fn from_json(config: &serde_json::Value) -> std::result::Result<Self, RemoteStoreError> {
        let parsed: GcsStoreConfig = serde_json::from_value(config.clone())
            .map_err(|e| RemoteStoreError::invalid(GCS_FLAVOR, e.to_string()))?;
        parsed.validate()
    }

    fn validate(mut self) -> std::result::Result<Self, RemoteStoreError> {
        validate_name(
            GCS_FLAVOR,
            "bucket",
            &self.bucket,
            (3, 63),
            &['-', '_', '.'],
        )?;
        if self.bucket.starts_with("goog") || self.bucket.contains("..") {
            return Err(RemoteStoreError::invalid(
                GCS_FLAVOR,
                format!(
                    "bucket `{}` must not start with `goog` or contain `..`",
                    self.bucket
                ),
            ));
        }
        self.prefix = validate_prefix(GCS_FLAVOR, self.prefix.as_deref())?;
        self.endpoint_url =
            validate_endpoint(GCS_FLAVOR, self.endpoint_url.as_deref(), self.allow_http)?;
        if self.allow_http && self.endpoint_url.is_none() {
            return Err(RemoteStoreError::invalid(
                GCS_FLAVOR,
                "allow_http needs an endpoint_url (Google itself is reached over https)",
            ));
        }
        let token = self.credentials.bearer_token.expose_secret();
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RemoteStoreError::invalid(
                GCS_FLAVOR,
                "credentials.bearer_token must be a non-empty token without spaces",
            ));
        }
        self.retry.validate(GCS_FLAVOR)?;
        Ok(self)
    }

    /// The normalised configuration as JSON (secrets included: it is what `build` reads).
    pub fn to_json(&self) -> serde_json::Value {
        let mut out = serde_json::json!({
            "bucket": self.bucket,
            "allow_http": self.allow_http,
            "credentials": {"bearer_token": self.credentials.bearer_token.expose_secret()},
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

    /// `gs://bucket/prefix`.
    pub fn location(&self) -> String {
        match &self.prefix {
            Some(prefix) => format!("gs://{}/{prefix}", self.bucket),
            None => format!("gs://{}", self.bucket),
        }
    }
}

/// Opens the store a checked configuration describes (no request is made).
pub fn open_gcs(
    config: &GcsStoreConfig,
) -> std::result::Result<RemoteArtifactStore, RemoteStoreError> {
    let mut builder = GoogleCloudStorageBuilder::new()
        .with_bucket_name(&config.bucket)
        // An explicit token: object_store then reads no application-default credentials
        // and asks no metadata server.
        .with_bearer_token(config.credentials.bearer_token.expose_secret())
        .with_retry(config.retry.to_retry_config())
        .with_http_connector(HyperConnector);
    if let Some(endpoint) = &config.endpoint_url {
        builder = builder.with_base_url(endpoint);
    }
    let store = builder.build().map_err(|source| RemoteStoreError::Build {
        flavor: GCS_FLAVOR,
        location: config.location(),
        source,
    })?;
    Ok(RemoteArtifactStore::new(
        GCS_FLAVOR,
        config.location(),
        Arc::new(store),
        config.prefix.as_deref(),
        MIN_PART_SIZE_5_MIB,
    ))
}

/// The `gcs` flavor for the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcsFlavor;

impl ArtifactStoreFlavor for GcsFlavor {
    fn name(&self) -> &str {
        GCS_FLAVOR
    }

    fn description(&self) -> &str {
        "artifacts in a Google Cloud Storage bucket"
    }

    fn config_schema(&self) -> serde_json::Value {
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "GcsStoreConfig",
            "type": "object",
            "additionalProperties": false,
            "required": ["bucket", "credentials"],
            "properties": {
                "bucket": {"type": "string", "description": "The bucket."},
                "prefix": {"type": "string", "description": "Key prefix under which artifacts live."},
                "endpoint_url": {"type": "string", "description": "Storage endpoint of an emulator; Google's when absent."},
                "allow_http": {"type": "boolean", "default": false, "description": "Allow a plain-http endpoint_url (local emulators)."},
                "credentials": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["bearer_token"],
                    "properties": {
                        "bearer_token": {"type": "string", "writeOnly": true}
                    }
                },
                "retry": retry_schema()
            }
        })
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
        Ok(GcsStoreConfig::from_json(config)?.to_json())
    }

    fn build(
        &self,
        config: &serde_json::Value,
        context: ArtifactStoreContext,
    ) -> Result<Arc<dyn ArtifactStore>> {
        let config = GcsStoreConfig::from_json(config)?;
        crate::remote::build_component(open_gcs(&config), &context)
    }
}
