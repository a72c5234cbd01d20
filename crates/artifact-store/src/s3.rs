//! The `s3` flavor: artifacts in an S3 bucket (or an S3-compatible store through
//! `endpoint_url`), through `object_store`'s S3 client. The manifest's create-if-absent is
//! a conditional `PUT` with `If-None-Match: *`.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
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
pub const S3_FLAVOR: &str = "s3";

/// Configuration of an `s3` artifact store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3StoreConfig {
    /// The bucket.
    pub bucket: String,
    /// The key prefix under which artifacts live (`team/artifacts`); none for the root.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The bucket's region, e.g. `eu-west-1`.
    pub region: String,
    /// The endpoint of an S3-compatible store (MinIO, Ceph, moto); AWS's when absent.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Allows a plain-`http` `endpoint_url` (local emulators only).
    #[serde(default)]
    pub allow_http: bool,
    /// The credentials requests are signed with.
    pub credentials: S3Credentials,
    /// Retries of transient failures.
    #[serde(default)]
    pub retry: RetrySettings,
}

/// An AWS access key, with the session token of temporary credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Credentials {
    /// The access key id (`AKIA…`, `ASIA…`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// The session token of temporary credentials.
    #[serde(default)]
    pub session_token: Option<SecretString>,
}

impl S3StoreConfig {
    /// Parses and checks a configuration.
    pub fn from_json(config: &serde_json::Value) -> std::result::Result<Self, RemoteStoreError> {
        let parsed: S3StoreConfig = serde_json::from_value(config.clone())
            .map_err(|e| RemoteStoreError::invalid(S3_FLAVOR, e.to_string()))?;
        parsed.validate()
    }

    fn validate(mut self) -> std::result::Result<Self, RemoteStoreError> {
        validate_name(S3_FLAVOR, "bucket", &self.bucket, (3, 63), &['-', '.'])?;
        if self.bucket.contains("..") {
            return Err(RemoteStoreError::invalid(
                S3_FLAVOR,
                format!("bucket `{}` must not contain `..`", self.bucket),
            ));
        }
        self.prefix = validate_prefix(S3_FLAVOR, self.prefix.as_deref())?;
        let region_ok = !self.region.is_empty()
            && self.region.len() <= 32
            && self
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !region_ok {
            return Err(RemoteStoreError::invalid(
                S3_FLAVOR,
                format!(
                    "region `{}` must be a region name such as `eu-west-1`",
                    self.region
                ),
            ));
        }
        self.endpoint_url =
            validate_endpoint(S3_FLAVOR, self.endpoint_url.as_deref(), self.allow_http)?;
        if self.allow_http && self.endpoint_url.is_none() {
            return Err(RemoteStoreError::invalid(
                S3_FLAVOR,
                "allow_http needs an endpoint_url (AWS itself is reached over https)",
            ));
        }
        let key = &self.credentials.access_key_id;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(RemoteStoreError::invalid(
                S3_FLAVOR,
                "credentials.access_key_id must be letters and digits",
            ));
        }
        if self
            .credentials
            .secret_access_key
            .expose_secret()
            .is_empty()
        {
            return Err(RemoteStoreError::invalid(
                S3_FLAVOR,
                "credentials.secret_access_key is empty",
            ));
        }
        if self
            .credentials
            .session_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().is_empty())
        {
            return Err(RemoteStoreError::invalid(
                S3_FLAVOR,
                "credentials.session_token is empty; leave it out for long-lived keys",
            ));
        }
        self.retry.validate(S3_FLAVOR)?;
        Ok(self)
    }

    /// The normalised configuration as JSON (secrets included: it is what `build` reads).
    pub fn to_json(&self) -> serde_json::Value {
        let mut credentials = serde_json::json!({
            "access_key_id": self.credentials.access_key_id,
            "secret_access_key": self.credentials.secret_access_key.expose_secret(),
        });
        if let Some(token) = &self.credentials.session_token {
            credentials["session_token"] = token.expose_secret().into();
        }
        let mut out = serde_json::json!({
            "bucket": self.bucket,
            "region": self.region,
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

    /// `s3://bucket/prefix`.
    pub fn location(&self) -> String {
        match &self.prefix {
            Some(prefix) => format!("s3://{}/{prefix}", self.bucket),
            None => format!("s3://{}", self.bucket),
        }
    }
}

/// Opens the store a checked configuration describes (no request is made).
pub fn open_s3(
    config: &S3StoreConfig,
) -> std::result::Result<RemoteArtifactStore, RemoteStoreError> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_allow_http(config.allow_http)
        .with_access_key_id(&config.credentials.access_key_id)
        .with_secret_access_key(config.credentials.secret_access_key.expose_secret())
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(config.retry.to_retry_config())
        .with_http_connector(HyperConnector);
    if let Some(token) = &config.credentials.session_token {
        builder = builder.with_token(token.expose_secret());
    }
    if let Some(endpoint) = &config.endpoint_url {
        builder = builder.with_endpoint(endpoint);
    }
    let store = builder.build().map_err(|source| RemoteStoreError::Build {
        flavor: S3_FLAVOR,
        location: config.location(),
        source,
    })?;
    Ok(RemoteArtifactStore::new(
        S3_FLAVOR,
        config.location(),
        Arc::new(store),
        config.prefix.as_deref(),
        MIN_PART_SIZE_5_MIB,
    ))
}

/// The `s3` flavor for the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct S3Flavor;

impl ArtifactStoreFlavor for S3Flavor {
    fn name(&self) -> &str {
        S3_FLAVOR
    }

    fn description(&self) -> &str {
        "artifacts in an S3 bucket or an S3-compatible store"
    }

    fn config_schema(&self) -> serde_json::Value {
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "S3StoreConfig",
            "type": "object",
            "additionalProperties": false,
            "required": ["bucket", "region", "credentials"],
            "properties": {
                "bucket": {"type": "string", "description": "The bucket."},
                "prefix": {"type": "string", "description": "Key prefix under which artifacts live."},
                "region": {"type": "string", "description": "The bucket's region, e.g. eu-west-1."},
                "endpoint_url": {"type": "string", "description": "Endpoint of an S3-compatible store; AWS's when absent."},
                "allow_http": {"type": "boolean", "default": false, "description": "Allow a plain-http endpoint_url (local emulators)."},
                "credentials": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["access_key_id", "secret_access_key"],
                    "properties": {
                        "access_key_id": {"type": "string"},
                        "secret_access_key": {"type": "string", "writeOnly": true},
                        "session_token": {"type": "string", "writeOnly": true}
                    }
                },
                "retry": retry_schema()
            }
        })
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
        Ok(S3StoreConfig::from_json(config)?.to_json())
    }

    fn build(
        &self,
        config: &serde_json::Value,
        context: ArtifactStoreContext,
    ) -> Result<Arc<dyn ArtifactStore>> {
        let config = S3StoreConfig::from_json(config)?;
        crate::remote::build_component(open_s3(&config), &context)
    }
}
