//! Checking a connector's auth method, resource types and resource ids against its type's
//! description, with the meanings of ZenML's service-connector errors.
//!
//! [`ConnectorScope`] is what a connector keeps after its configuration passed these
//! checks: the type description, the auth method, the resource types it serves (one for a
//! single-type connector, several for a multi-type one) and its canonical resource id.
//! Connector types tell the scope how their resource ids look through [`ResourceIds`].

use std::time::Duration;

use jiff::Timestamp;

use super::expiry;
use super::{AuthMethodSpec, ConnectorConfig, ConnectorTypeSpec, ResourceTypeSpec};
use crate::{Error, ErrorKind, Result};

/// How a connector type names its resources: the canonical form of a resource id and the
/// one id of a single-instance resource type.
pub trait ResourceIds: Send + Sync {
    /// The canonical form of `resource_id` for `resource_type`, e.g. an EKS cluster ARN
    /// reduced to the cluster name. The default trims surrounding whitespace.
    ///
    /// An error of kind `PermissionDenied` means the id names a resource the connector
    /// cannot reach; `InvalidSettings` means the id is malformed.
    fn canonical_resource_id(&self, resource_type: &str, resource_id: &str) -> Result<String> {
        let _ = resource_type;
        Ok(resource_id.trim().to_owned())
    }

    /// The id of the one resource of a single-instance resource type (for the Kubernetes
    /// connector: its cluster name). `None` when the connector cannot tell.
    fn default_resource_id(&self, resource_type: &str) -> Option<String> {
        let _ = resource_type;
        None
    }
}

/// Resource ids taken as given (trimmed), with no default: for connector types whose
/// resource types all support instances.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainResourceIds;

impl ResourceIds for PlainResourceIds {}

/// The auth method `auth_method` of connector type `spec`.
///
/// The error (`InvalidSettings`) lists the methods the type supports.
pub fn find_auth_method<'a>(
    spec: &'a ConnectorTypeSpec,
    auth_method: &str,
) -> Result<&'a AuthMethodSpec> {
    spec.auth_method(auth_method).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidSettings,
            format!(
                "connector type `{}` has no auth method `{auth_method}`; use one of: {}",
                spec.connector_type,
                list(spec.auth_methods.iter().map(|m| m.auth_method.as_str()))
            ),
        )
        .with_context("connector_type", spec.connector_type.clone())
    })
}

/// Checks that the auth method and the resource type an auto-configuration request asks
/// for exist in connector type `spec`; the errors name the new connector.
pub fn check_auto_configure_request(
    spec: &ConnectorTypeSpec,
    request: &crate::registry::AutoConfigureRequest,
) -> Result<()> {
    let named = |e: Error| e.with_context("connector", request.name.clone());
    if let Some(resource_type) = &request.resource_type {
        find_resource_type(spec, resource_type).map_err(named)?;
    }
    if let Some(method) = &request.auth_method {
        find_auth_method(spec, method).map_err(named)?;
    }
    Ok(())
}

/// The resource type `resource_type` of connector type `spec`.
///
/// The error (`InvalidSettings`) lists the resource types the type provides.
pub fn find_resource_type<'a>(
    spec: &'a ConnectorTypeSpec,
    resource_type: &str,
) -> Result<&'a ResourceTypeSpec> {
    spec.resource_type(resource_type).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidSettings,
            format!(
                "connector type `{}` does not provide resource type `{resource_type}`; use one of: {}",
                spec.connector_type,
                list(spec.resource_types.iter().map(|r| r.resource_type.as_str()))
            ),
        )
        .with_context("connector_type", spec.connector_type.clone())
    })
}

/// Checks that `auth_method` can reach `resource_type` and returns both descriptions.
pub fn find_resource_specifications<'a>(
    spec: &'a ConnectorTypeSpec,
    auth_method: &str,
    resource_type: &str,
) -> Result<(&'a AuthMethodSpec, &'a ResourceTypeSpec)> {
    let method = find_auth_method(spec, auth_method)?;
    let resource = find_resource_type(spec, resource_type)?;
    if !resource.auth_methods.iter().any(|m| m == auth_method) {
        return Err(Error::new(
            ErrorKind::InvalidSettings,
            format!(
                "auth method `{auth_method}` of connector type `{}` cannot reach resource type `{resource_type}`; use one of the methods that can: {}",
                spec.connector_type,
                list(resource.auth_methods.iter().map(String::as_str))
            ),
        )
        .with_context("connector_type", spec.connector_type.clone()));
    }
    Ok((method, resource))
}

/// The lifetime to ask for temporary credentials of `method`: `requested` checked
/// against the method's bounds, or its default.
///
/// Asking for a lifetime from a method that issues no temporary credentials is an error,
/// as is a lifetime outside the bounds (all `InvalidSettings`).
pub fn validate_expiration(method: &AuthMethodSpec, requested: Option<u64>) -> Result<Option<u64>> {
    let Some(bounds) = method.expiration else {
        return match requested {
            None => Ok(None),
            Some(seconds) => Err(Error::new(
                ErrorKind::InvalidSettings,
                format!(
                    "auth method `{}` does not issue temporary credentials, so it takes no expiration time ({seconds} s was given); remove the expiration seconds",
                    method.auth_method
                ),
            )
            .with_context("auth_method", method.auth_method.clone())),
        };
    };
    let Some(seconds) = requested.or(bounds.default_seconds) else {
        return Ok(None);
    };
    if let Some(min) = bounds.min_seconds
        && seconds < min
    {
        return Err(Error::new(
            ErrorKind::InvalidSettings,
            format!(
                "the expiration time of auth method `{}` must be at least {min} s, got {seconds} s; ask for {min} s or more",
                method.auth_method
            ),
        )
        .with_context("auth_method", method.auth_method.clone()));
    }
    if let Some(max) = bounds.max_seconds
        && seconds > max
    {
        return Err(Error::new(
            ErrorKind::InvalidSettings,
            format!(
                "the expiration time of auth method `{}` must be at most {max} s, got {seconds} s; ask for {max} s or less",
                method.auth_method
            ),
        )
        .with_context("auth_method", method.auth_method.clone()));
    }
    Ok(Some(seconds))
}

/// What a caller asks a connector for: a resource type and id, either of which may be
/// filled in from the connector's own scope.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceRequest<'a> {
    /// The resource type asked for.
    pub resource_type: Option<&'a str>,
    /// The resource id asked for.
    pub resource_id: Option<&'a str>,
    /// Whether a resource type must come out (from the request or the scope).
    pub require_resource_type: bool,
    /// Whether a resource id must come out (from the request, the scope or the type's
    /// default).
    pub require_resource_id: bool,
}

impl<'a> ResourceRequest<'a> {
    /// A request for exactly one resource (type and id both required), as for `connect`.
    pub fn one(resource_type: &'a str, resource_id: Option<&'a str>) -> Self {
        ResourceRequest {
            resource_type: Some(resource_type),
            resource_id,
            require_resource_type: true,
            require_resource_id: true,
        }
    }

    /// A request that may leave type and id open, as for `verify`.
    pub fn any(resource_type: Option<&'a str>, resource_id: Option<&'a str>) -> Self {
        ResourceRequest {
            resource_type,
            resource_id,
            require_resource_type: false,
            require_resource_id: false,
        }
    }
}

/// A request after [`ConnectorScope::resolve`]: the type and the canonical id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ResolvedResource {
    /// The resource type, when known.
    pub resource_type: Option<String>,
    /// The canonical resource id, when known.
    pub resource_id: Option<String>,
}

/// A connector configuration that passed the checks against its type: the auth method
/// exists, every configured resource type exists and accepts the method, the expiration
/// time is within bounds and the scoped resource id is canonical.
#[derive(Debug, Clone)]
pub struct ConnectorScope {
    spec: ConnectorTypeSpec,
    config: ConnectorConfig,
    auth_method: AuthMethodSpec,
    resource_types: Vec<ResourceTypeSpec>,
}

impl ConnectorScope {
    /// Checks `config` against `spec`; `ids` canonicalises the scoped resource id.
    ///
    /// No resource types in `config` means every type the auth method reaches (a
    /// multi-type connector). A scoped resource id needs exactly one resource type.
    /// The returned scope's configuration carries the effective `expiration_seconds`
    /// (the method's default when none was given) and the canonical resource id.
    pub fn new(
        spec: &ConnectorTypeSpec,
        config: ConnectorConfig,
        ids: &dyn ResourceIds,
    ) -> Result<Self> {
        let name = config.name.clone();
        let named = |e: Error| e.with_context("connector", name.clone());
        if config.connector_type != spec.connector_type {
            return Err(named(Error::new(
                ErrorKind::InvalidSettings,
                format!(
                    "the configuration is for connector type `{}`, but it was given to connector type `{}`; build it with the `{}` flavor",
                    config.connector_type, spec.connector_type, config.connector_type
                ),
            )));
        }
        let auth_method = find_auth_method(spec, &config.auth_method)
            .map_err(named)?
            .clone();
        let resource_types = if config.resource_types.is_empty() {
            spec.resource_types
                .iter()
                .filter(|r| r.auth_methods.contains(&config.auth_method))
                .cloned()
                .collect::<Vec<_>>()
        } else {
            let mut types = Vec::new();
            for resource_type in &config.resource_types {
                let (_, resource) =
                    find_resource_specifications(spec, &config.auth_method, resource_type)
                        .map_err(named)?;
                if !types
                    .iter()
                    .any(|t: &ResourceTypeSpec| t.resource_type == *resource_type)
                {
                    types.push(resource.clone());
                }
            }
            types
        };
        if resource_types.is_empty() {
            return Err(named(Error::new(
                ErrorKind::InvalidSettings,
                format!(
                    "auth method `{}` of connector type `{}` reaches no resource type; choose another auth method",
                    config.auth_method, spec.connector_type
                ),
            )));
        }
        let expiration_seconds =
            validate_expiration(&auth_method, config.expiration_seconds).map_err(named)?;
        let mut scope = ConnectorScope {
            spec: spec.clone(),
            config,
            auth_method,
            resource_types,
        };
        scope.config.expiration_seconds = expiration_seconds;
        if let Some(resource_id) = scope.config.resource_id.clone() {
            let [resource_type] = scope.resource_types.as_slice() else {
                return Err(named(Error::new(
                    ErrorKind::InvalidSettings,
                    format!(
                        "the connector is scoped to resource `{resource_id}` but to several resource types ({}); scope it to one resource type, or drop the resource id",
                        list(
                            scope
                                .resource_types
                                .iter()
                                .map(|r| r.resource_type.as_str())
                        )
                    ),
                )));
            };
            let resource_type = resource_type.resource_type.clone();
            let canonical = scope
                .validate_resource_id(ids, &resource_type, Some(&resource_id))
                .map_err(named)?;
            scope.config.resource_id = canonical;
        }
        Ok(scope)
    }

    /// The connector type's description.
    pub fn spec(&self) -> &ConnectorTypeSpec {
        &self.spec
    }

    /// The validated configuration.
    pub fn config(&self) -> &ConnectorConfig {
        &self.config
    }

    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The auth method's description.
    pub fn auth_method(&self) -> &AuthMethodSpec {
        &self.auth_method
    }

    /// The resource types this connector serves.
    pub fn resource_types(&self) -> &[ResourceTypeSpec] {
        &self.resource_types
    }

    /// Whether the connector serves several resource types.
    pub fn is_multi_type(&self) -> bool {
        self.resource_types.len() > 1
    }

    /// The one resource type of a single-type connector.
    pub fn single_resource_type(&self) -> Option<&ResourceTypeSpec> {
        match self.resource_types.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// The resource type `resource_type` if this connector serves it.
    pub fn served_resource_type(&self, resource_type: &str) -> Result<&ResourceTypeSpec> {
        self.resource_types
            .iter()
            .find(|r| r.resource_type == resource_type)
            .ok_or_else(|| {
                let message = match self.single_resource_type() {
                    Some(only) => format!(
                        "connector `{}` is configured for resource type `{}`, but resource type `{resource_type}` was requested; ask for `{}` or use another connector",
                        self.name(),
                        only.resource_type,
                        only.resource_type
                    ),
                    None => format!(
                        "connector `{}` does not provide resource type `{resource_type}`; it provides: {}",
                        self.name(),
                        list(self.resource_types.iter().map(|r| r.resource_type.as_str()))
                    ),
                };
                Error::new(ErrorKind::InvalidSettings, message).with_context("connector", self.name().to_owned())
            })
    }

    /// The canonical form of `resource_id` for `resource_type` (ZenML's
    /// `_validate_resource_id`).
    ///
    /// Multi-instance types canonicalise a given id and keep `None`. Single-instance types
    /// default to their one id and refuse any other with a `PermissionDenied` error that
    /// names the one resource the connector reaches.
    pub fn validate_resource_id(
        &self,
        ids: &dyn ResourceIds,
        resource_type: &str,
        resource_id: Option<&str>,
    ) -> Result<Option<String>> {
        let spec = find_resource_type(&self.spec, resource_type)?;
        if spec.supports_instances {
            return resource_id
                .map(|id| ids.canonical_resource_id(resource_type, id))
                .transpose();
        }
        let default = ids.default_resource_id(resource_type);
        let Some(resource_id) = resource_id else {
            return Ok(default);
        };
        let canonical = ids.canonical_resource_id(resource_type, resource_id)?;
        match default {
            Some(default) if default != canonical => Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "connector `{}` does not reach the {} `{canonical}`; it only reaches `{default}`",
                    self.name(),
                    spec.name
                ),
            )
            .with_context("connector", self.name().to_owned())),
            _ => Ok(Some(canonical)),
        }
    }

    /// Fills in and checks what a caller asks for (ZenML's `validate_runtime_args`).
    pub fn resolve(
        &self,
        ids: &dyn ResourceIds,
        request: ResourceRequest<'_>,
    ) -> Result<ResolvedResource> {
        let named = |message: String| {
            Error::new(ErrorKind::InvalidSettings, message)
                .with_context("connector", self.name().to_owned())
        };
        let resource_type = match request.resource_type {
            Some(requested) => Some(self.served_resource_type(requested)?.clone()),
            None => self.single_resource_type().cloned(),
        };
        let Some(resource_type) = resource_type else {
            if let Some(id) = request.resource_id {
                return Err(named(format!(
                    "a resource id (`{id}`) was given without a resource type, and connector `{}` provides several ({}); give the resource type too",
                    self.name(),
                    list(self.resource_types.iter().map(|r| r.resource_type.as_str()))
                )));
            }
            if request.require_resource_type {
                return Err(named(format!(
                    "connector `{}` provides several resource types ({}); say which one to use",
                    self.name(),
                    list(self.resource_types.iter().map(|r| r.resource_type.as_str()))
                )));
            }
            return Ok(ResolvedResource::default());
        };
        let requested_id = request.resource_id.or(self.config.resource_id.as_deref());
        let resource_id =
            self.validate_resource_id(ids, &resource_type.resource_type, requested_id)?;
        if let (Some(scoped), Some(requested)) = (&self.config.resource_id, &resource_id)
            && scoped != requested
        {
            return Err(named(format!(
                "connector `{}` is scoped to the {} `{scoped}`, but `{requested}` was requested; ask for `{scoped}` or use another connector",
                self.name(),
                resource_type.name
            )));
        }
        if resource_id.is_none() && request.require_resource_id {
            return Err(named(format!(
                "connector `{}` reaches several {} resources; say which one with a resource id",
                self.name(),
                resource_type.name
            )));
        }
        Ok(ResolvedResource {
            resource_type: Some(resource_type.resource_type),
            resource_id,
        })
    }

    /// How long before `expires_at` the credentials count as expired.
    pub fn skew(&self) -> Duration {
        expiry::skew_tolerance(&self.config)
    }

    /// Whether the credentials count as expired at `now`.
    pub fn has_expired(&self, now: Timestamp) -> bool {
        expiry::has_expired(self.config.expires_at, self.skew(), now)
    }

    /// An `Unauthenticated` error if the credentials count as expired at `now`.
    pub fn check_not_expired(&self, now: Timestamp) -> Result<()> {
        expiry::check_not_expired(&self.config, now)
    }
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::ExpirationBounds;

    fn spec() -> ConnectorTypeSpec {
        let schema = serde_json::json!({"type": "object"});
        ConnectorTypeSpec::new("Cloud", "cloud", "a cloud")
            .with_auth_method(AuthMethodSpec::new(
                "Key",
                "secret-key",
                "a key",
                schema.clone(),
            ))
            .with_auth_method(
                AuthMethodSpec::new("Role", "iam-role", "a role", schema.clone())
                    .with_expiration(ExpirationBounds::new(Some(900), Some(43200), Some(3600))),
            )
            .with_auth_method(AuthMethodSpec::new(
                "Token",
                "k8s-token",
                "only clusters",
                schema,
            ))
            .with_resource_type(ResourceTypeSpec::new(
                "Kubernetes cluster",
                "kubernetes-cluster",
                "clusters",
                ["secret-key", "iam-role", "k8s-token"],
                true,
            ))
            .with_resource_type(ResourceTypeSpec::new(
                "generic cloud resource",
                "cloud-generic",
                "the account",
                ["secret-key", "iam-role"],
                false,
            ))
    }

    /// Cluster ids: `arn:…/name` reduces to `name`; the account's id is `acct-1`.
    struct Ids;

    impl ResourceIds for Ids {
        fn canonical_resource_id(&self, resource_type: &str, resource_id: &str) -> Result<String> {
            if resource_type == "kubernetes-cluster" {
                return Ok(resource_id
                    .rsplit('/')
                    .next()
                    .unwrap_or(resource_id)
                    .to_owned());
            }
            Ok(resource_id.to_owned())
        }
        fn default_resource_id(&self, resource_type: &str) -> Option<String> {
            (resource_type == "cloud-generic").then(|| "acct-1".to_owned())
        }
    }

    fn config(method: &str) -> ConnectorConfig {
        ConnectorConfig::new("prod", "cloud", method)
    }

    #[test]
    fn unknown_auth_method_lists_the_supported_ones() {
        let err = ConnectorScope::new(&spec(), config("password"), &Ids).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        assert_eq!(
            err.message(),
            "connector type `cloud` has no auth method `password`; use one of: secret-key, iam-role, k8s-token"
        );
        assert_eq!(err.context_value("connector"), Some("prod"));
    }

    #[test]
    fn unknown_resource_type_and_unsupported_method_are_refused() {
        let err = ConnectorScope::new(
            &spec(),
            config("secret-key").with_resource_types(["s3-bucket"]),
            &Ids,
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            "connector type `cloud` does not provide resource type `s3-bucket`; use one of: kubernetes-cluster, cloud-generic"
        );
        let err = ConnectorScope::new(
            &spec(),
            config("k8s-token").with_resource_types(["cloud-generic"]),
            &Ids,
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            "auth method `k8s-token` of connector type `cloud` cannot reach resource type `cloud-generic`; use one of the methods that can: secret-key, iam-role"
        );
    }

    #[test]
    fn wrong_connector_type_is_refused() {
        let err = ConnectorScope::new(
            &spec(),
            ConnectorConfig::new("x", "aws", "secret-key"),
            &Ids,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        assert!(err.message().contains("connector type `aws`"), "{err}");
    }

    #[test]
    fn no_resource_types_means_every_type_the_method_reaches() {
        let scope = ConnectorScope::new(&spec(), config("secret-key"), &Ids).unwrap();
        assert!(scope.is_multi_type());
        assert_eq!(scope.resource_types().len(), 2);
        let scope = ConnectorScope::new(&spec(), config("k8s-token"), &Ids).unwrap();
        assert!(!scope.is_multi_type());
        assert_eq!(
            scope.single_resource_type().unwrap().resource_type,
            "kubernetes-cluster"
        );
    }

    #[test]
    fn expiration_is_checked_against_the_bounds() {
        let role = spec().auth_method("iam-role").unwrap().clone();
        let key = spec().auth_method("secret-key").unwrap().clone();
        assert_eq!(validate_expiration(&role, None).unwrap(), Some(3600));
        assert_eq!(validate_expiration(&role, Some(900)).unwrap(), Some(900));
        assert_eq!(
            validate_expiration(&role, Some(60)).unwrap_err().message(),
            "the expiration time of auth method `iam-role` must be at least 900 s, got 60 s; ask for 900 s or more"
        );
        assert_eq!(
            validate_expiration(&role, Some(50000))
                .unwrap_err()
                .message(),
            "the expiration time of auth method `iam-role` must be at most 43200 s, got 50000 s; ask for 43200 s or less"
        );
        assert_eq!(validate_expiration(&key, None).unwrap(), None);
        let err = validate_expiration(&key, Some(60)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        assert!(
            err.message()
                .starts_with("auth method `secret-key` does not issue temporary credentials")
        );
        // The scope records the effective lifetime.
        let scope = ConnectorScope::new(&spec(), config("iam-role"), &Ids).unwrap();
        assert_eq!(scope.config().expiration_seconds, Some(3600));
    }

    #[test]
    fn single_instance_types_default_to_their_one_id_and_refuse_others() {
        let scope = ConnectorScope::new(
            &spec(),
            config("secret-key").with_resource_types(["cloud-generic"]),
            &Ids,
        )
        .unwrap();
        assert_eq!(
            scope
                .validate_resource_id(&Ids, "cloud-generic", None)
                .unwrap()
                .as_deref(),
            Some("acct-1")
        );
        let err = scope
            .validate_resource_id(&Ids, "cloud-generic", Some("acct-2"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert_eq!(
            err.message(),
            "connector `prod` does not reach the generic cloud resource `acct-2`; it only reaches `acct-1`"
        );
        let resolved = scope
            .resolve(&Ids, ResourceRequest::any(None, None))
            .unwrap();
        assert_eq!(resolved.resource_type.as_deref(), Some("cloud-generic"));
        assert_eq!(resolved.resource_id.as_deref(), Some("acct-1"));
    }

    #[test]
    fn multi_instance_ids_are_canonicalised() {
        let scope = ConnectorScope::new(
            &spec(),
            config("secret-key")
                .with_resource_types(["kubernetes-cluster"])
                .with_resource_id("arn:aws:eks:eu-west-1:1:cluster/prod"),
            &Ids,
        )
        .unwrap();
        assert_eq!(scope.config().resource_id.as_deref(), Some("prod"));
        // The ARN of the scoped cluster is the same resource.
        let resolved = scope
            .resolve(
                &Ids,
                ResourceRequest::one("kubernetes-cluster", Some("arn:x/prod")),
            )
            .unwrap();
        assert_eq!(resolved.resource_id.as_deref(), Some("prod"));
        let err = scope
            .resolve(
                &Ids,
                ResourceRequest::one("kubernetes-cluster", Some("staging")),
            )
            .unwrap_err();
        assert_eq!(
            err.message(),
            "connector `prod` is scoped to the Kubernetes cluster `prod`, but `staging` was requested; ask for `prod` or use another connector"
        );
    }

    #[test]
    fn runtime_arguments_follow_zenml_meanings() {
        let multi = ConnectorScope::new(&spec(), config("secret-key"), &Ids).unwrap();
        // Multi-type: a type is required when asked for, and an id needs a type.
        let err = multi.resolve(
            &Ids,
            ResourceRequest {
                require_resource_type: true,
                ..Default::default()
            },
        );
        assert_eq!(
            err.unwrap_err().message(),
            "connector `prod` provides several resource types (kubernetes-cluster, cloud-generic); say which one to use"
        );
        let err = multi
            .resolve(&Ids, ResourceRequest::any(None, Some("prod")))
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("a resource id (`prod`) was given without a resource type")
        );
        assert_eq!(
            multi
                .resolve(&Ids, ResourceRequest::any(None, None))
                .unwrap(),
            ResolvedResource::default()
        );
        // A multi-instance type needs an id when one is required.
        let err = multi
            .resolve(&Ids, ResourceRequest::one("kubernetes-cluster", None))
            .unwrap_err();
        assert_eq!(
            err.message(),
            "connector `prod` reaches several Kubernetes cluster resources; say which one with a resource id"
        );
        // A single-type connector refuses another type.
        let single = ConnectorScope::new(
            &spec(),
            config("secret-key").with_resource_types(["cloud-generic"]),
            &Ids,
        )
        .unwrap();
        let err = single
            .resolve(&Ids, ResourceRequest::one("kubernetes-cluster", None))
            .unwrap_err();
        assert_eq!(
            err.message(),
            "connector `prod` is configured for resource type `cloud-generic`, but resource type `kubernetes-cluster` was requested; ask for `cloud-generic` or use another connector"
        );
    }

    #[test]
    fn a_resource_id_needs_exactly_one_resource_type() {
        let err = ConnectorScope::new(&spec(), config("secret-key").with_resource_id("prod"), &Ids)
            .unwrap_err();
        assert!(
            err.message().contains("scope it to one resource type"),
            "{err}"
        );
    }

    #[test]
    fn scoped_id_outside_the_single_instance_is_refused_at_build() {
        let err = ConnectorScope::new(
            &spec(),
            config("secret-key")
                .with_resource_types(["cloud-generic"])
                .with_resource_id("acct-9"),
            &Ids,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    }
}
