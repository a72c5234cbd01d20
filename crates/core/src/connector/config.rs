//! `ConnectorConfig`: a connector as the user configured it, secrets kept apart.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use secrecy::SecretString;

/// A connector as the user configured it: type, auth method, resource scope and the
/// method's configuration, with secret values kept apart and never shown by `Debug`.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ConnectorConfig {
    /// The connector's name, e.g. `aws-eu`.
    pub name: String,
    /// The connector type id, e.g. `aws`.
    pub connector_type: String,
    /// The auth method id, e.g. `secret-key`.
    pub auth_method: String,
    /// The resource types it may reach; several (or none, meaning all) make it a
    /// multi-type connector.
    pub resource_types: Vec<String>,
    /// The one resource it is scoped to, if any.
    pub resource_id: Option<String>,
    /// Non-secret configuration values.
    pub values: BTreeMap<String, serde_json::Value>,
    /// Secret configuration values.
    pub secrets: BTreeMap<String, SecretString>,
    /// When the stored credentials expire.
    pub expires_at: Option<Timestamp>,
    /// How many seconds before `expires_at` the credentials count as expired (300 when
    /// unset).
    pub expires_skew_tolerance: Option<u64>,
    /// The lifetime of temporary credentials the connector issues.
    pub expiration_seconds: Option<u64>,
}

impl ConnectorConfig {
    /// A connector named `name` of type `connector_type` using `auth_method`.
    pub fn new(
        name: impl Into<String>,
        connector_type: impl Into<String>,
        auth_method: impl Into<String>,
    ) -> Self {
        ConnectorConfig {
            name: name.into(),
            connector_type: connector_type.into(),
            auth_method: auth_method.into(),
            ..Default::default()
        }
    }

    /// Adds a non-secret value.
    pub fn with_value(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.values.insert(key.into(), value.into());
        self
    }

    /// Adds a secret value.
    pub fn with_secret(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.secrets
            .insert(key.into(), SecretString::from(value.into()));
        self
    }

    /// Scopes the connector to resource types.
    pub fn with_resource_types(
        mut self,
        types: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.resource_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Scopes the connector to one resource.
    pub fn with_resource_id(mut self, resource_id: impl Into<String>) -> Self {
        self.resource_id = Some(resource_id.into());
        self
    }

    /// A non-secret string value.
    pub fn str_value(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|v| v.as_str())
    }

    /// A secret value.
    pub fn secret(&self, key: &str) -> Option<&SecretString> {
        self.secrets.get(key)
    }
}

impl fmt::Debug for ConnectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorConfig")
            .field("name", &self.name)
            .field("connector_type", &self.connector_type)
            .field("auth_method", &self.auth_method)
            .field("resource_types", &self.resource_types)
            .field("resource_id", &self.resource_id)
            .field("values", &self.values)
            .field(
                "secrets",
                &self
                    .secrets
                    .keys()
                    .map(|k| (k, "[HIDDEN]"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("expires_at", &self.expires_at)
            .field("expires_skew_tolerance", &self.expires_skew_tolerance)
            .field("expiration_seconds", &self.expiration_seconds)
            .finish()
    }
}
