//! The `ServiceConnector` contract: turn stored credentials into access to a resource
//! (here: a Kubernetes cluster), and say which resources they reach.

mod access;
mod cached;
mod config;
mod error;
mod expiry;
mod implicit;
pub mod kubeconfig;
mod qualified;
mod report;
mod spec;
mod validation;
mod verify;

use std::fmt;

use async_trait::async_trait;

pub use config::ConnectorConfig;
pub use qualified::{qualified_ids, split_qualified};
pub use report::{ResourceTypeResources, ResourcesReport};
pub use spec::{AuthMethodSpec, ConnectorTypeSpec, ExpirationBounds, ResourceTypeSpec};

pub use access::{
    ClusterConnector, ClusterConnectorFlavor, ClusterRequest, ClusterUse, authorize_cluster,
};
pub use cached::{CachedConnection, Clock, derived_client_config};
pub use error::ConnectorError;
pub use expiry::{DEFAULT_EXPIRY_SKEW, check_not_expired, has_expired, skew_tolerance};
pub use implicit::{IMPLICIT_AUTH_ENV, ImplicitAuthGate};
pub use validation::{
    ConnectorScope, PlainResourceIds, ResolvedResource, ResourceIds, ResourceRequest,
    check_auto_configure_request, find_auth_method, find_resource_specifications,
    find_resource_type, validate_expiration,
};
pub use verify::{ResourceVerifier, not_found_as_denied, verify_resources};

use crate::{ClusterConnection, Result};

/// The resource type of Kubernetes clusters, shared by every connector that reaches one.
pub const KUBERNETES_CLUSTER: &str = "kubernetes-cluster";

/// One configured connector: an auth method with its credentials, for one or several
/// resource types. Built by a [`crate::ConnectorFlavor`] from a [`ConnectorConfig`].
#[async_trait]
pub trait ServiceConnector: Send + Sync + fmt::Debug {
    /// The description of this connector's type.
    fn connector_type(&self) -> &ConnectorTypeSpec;

    /// The configuration this connector was built from.
    fn config(&self) -> &ConnectorConfig;

    /// Checks the credentials and lists the resources they reach, per resource type.
    ///
    /// `resource_type` narrows the check to one type, `resource_id` to one resource. A
    /// failure for one resource type is reported in that type's entry rather than
    /// failing the whole call; `Err` is for invalid arguments or configuration.
    async fn verify(
        &self,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> Result<ResourcesReport>;

    /// Connects to one resource and returns what a Kubernetes client needs, including a
    /// token source when the credentials are short-lived.
    async fn connect(
        &self,
        resource_type: &str,
        resource_id: Option<&str>,
    ) -> Result<ClusterConnection>;

    /// Configures the local client for the resource (for a cluster: writes a kubeconfig
    /// context and makes it current) and says what it did.
    async fn configure_local_client(
        &self,
        resource_type: &str,
        resource_id: Option<&str>,
    ) -> Result<String>;
}
