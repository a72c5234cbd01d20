//! Connector type descriptions: auth methods, their schemas and resource types.

use serde::{Deserialize, Serialize};

/// What a connector type offers: its auth methods and the resource types it reaches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConnectorTypeSpec {
    /// Display name, e.g. "Kubernetes Service Connector".
    pub name: String,
    /// The type id, e.g. `kubernetes`, `aws`.
    pub connector_type: String,
    /// What the connector is for.
    pub description: String,
    /// The ways it can authenticate.
    pub auth_methods: Vec<AuthMethodSpec>,
    /// The kinds of resources it can reach.
    pub resource_types: Vec<ResourceTypeSpec>,
    /// Whether it can configure itself from the local environment (kubeconfig, AWS
    /// profile, …).
    pub supports_auto_configuration: bool,
}

impl ConnectorTypeSpec {
    /// A connector type with no auth methods or resource types yet.
    pub fn new(
        name: impl Into<String>,
        connector_type: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        ConnectorTypeSpec {
            name: name.into(),
            connector_type: connector_type.into(),
            description: description.into(),
            auth_methods: Vec::new(),
            resource_types: Vec::new(),
            supports_auto_configuration: false,
        }
    }

    /// Adds an auth method.
    pub fn with_auth_method(mut self, method: AuthMethodSpec) -> Self {
        self.auth_methods.push(method);
        self
    }

    /// Adds a resource type.
    pub fn with_resource_type(mut self, resource_type: ResourceTypeSpec) -> Self {
        self.resource_types.push(resource_type);
        self
    }

    /// Declares whether auto-configuration is supported.
    pub fn with_auto_configuration(mut self, supported: bool) -> Self {
        self.supports_auto_configuration = supported;
        self
    }

    /// The auth method with id `auth_method`.
    pub fn auth_method(&self, auth_method: &str) -> Option<&AuthMethodSpec> {
        self.auth_methods
            .iter()
            .find(|m| m.auth_method == auth_method)
    }

    /// The resource type with id `resource_type`.
    pub fn resource_type(&self, resource_type: &str) -> Option<&ResourceTypeSpec> {
        self.resource_types
            .iter()
            .find(|r| r.resource_type == resource_type)
    }
}

/// One way of authenticating: its configuration schema, which fields are secret, and
/// the bounds of the credentials' lifetime when it issues temporary ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuthMethodSpec {
    /// Display name, e.g. "Kubernetes Token".
    pub name: String,
    /// The method id, e.g. `token`, `secret-key`.
    pub auth_method: String,
    /// What it does and when to use it.
    pub description: String,
    /// JSON Schema of the method's configuration (secret fields included).
    pub config_schema: serde_json::Value,
    /// Names of the configuration fields that are secret.
    pub secret_fields: Vec<String>,
    /// Lifetime bounds of issued credentials, for methods that issue temporary ones.
    pub expiration: Option<ExpirationBounds>,
    /// Whether the method uses ambient credentials of the machine (environment, local
    /// files, metadata servers, local commands); such methods are disabled unless
    /// `STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS` is set.
    pub implicit: bool,
}

impl AuthMethodSpec {
    /// An auth method whose configuration follows `config_schema`.
    pub fn new(
        name: impl Into<String>,
        auth_method: impl Into<String>,
        description: impl Into<String>,
        config_schema: serde_json::Value,
    ) -> Self {
        AuthMethodSpec {
            name: name.into(),
            auth_method: auth_method.into(),
            description: description.into(),
            config_schema,
            secret_fields: Vec::new(),
            expiration: None,
            implicit: false,
        }
    }

    /// Declares the secret configuration fields.
    pub fn with_secret_fields(
        mut self,
        fields: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.secret_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Declares lifetime bounds of issued credentials.
    pub fn with_expiration(mut self, bounds: ExpirationBounds) -> Self {
        self.expiration = Some(bounds);
        self
    }

    /// Marks the method as implicit (ambient credentials).
    pub fn implicit(mut self) -> Self {
        self.implicit = true;
        self
    }

    /// Whether `field` is a secret of this method.
    pub fn is_secret(&self, field: &str) -> bool {
        self.secret_fields.iter().any(|f| f == field)
    }
}

/// Lifetime bounds, in seconds, of temporary credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExpirationBounds {
    /// Shortest lifetime allowed.
    pub min_seconds: Option<u64>,
    /// Longest lifetime allowed.
    pub max_seconds: Option<u64>,
    /// Lifetime used when none is asked for.
    pub default_seconds: Option<u64>,
}

impl ExpirationBounds {
    /// Bounds with the given minimum, maximum and default.
    pub fn new(
        min_seconds: Option<u64>,
        max_seconds: Option<u64>,
        default_seconds: Option<u64>,
    ) -> Self {
        ExpirationBounds {
            min_seconds,
            max_seconds,
            default_seconds,
        }
    }
}

/// A kind of resource a connector reaches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceTypeSpec {
    /// Display name, e.g. "Kubernetes cluster".
    pub name: String,
    /// The type id, e.g. `kubernetes-cluster`.
    pub resource_type: String,
    /// What the resource is.
    pub description: String,
    /// The auth methods that can reach it.
    pub auth_methods: Vec<String>,
    /// Whether one connector reaches many resources of this type, told apart by resource
    /// id (`true`), or exactly one with a default id (`false`).
    pub supports_instances: bool,
}

impl ResourceTypeSpec {
    /// A resource type reachable with `auth_methods`.
    pub fn new(
        name: impl Into<String>,
        resource_type: impl Into<String>,
        description: impl Into<String>,
        auth_methods: impl IntoIterator<Item = impl Into<String>>,
        supports_instances: bool,
    ) -> Self {
        ResourceTypeSpec {
            name: name.into(),
            resource_type: resource_type.into(),
            description: description.into(),
            auth_methods: auth_methods.into_iter().map(Into::into).collect(),
            supports_instances,
        }
    }
}
