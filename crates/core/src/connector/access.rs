//! The checks every use of a connector's credentials for one cluster starts with, in one
//! order: the request is resolved against the connector's scope, the resource type must
//! have a Kubernetes API, the implicit-auth gate must be open for implicit methods, the
//! credentials must not have expired, and exactly one cluster must be named.
//!
//! A connector implements [`ClusterConnector`] (its scope, ids, gate, and what to do
//! with the one cluster) and gets `ServiceConnector` from it: `verify` through
//! [`verify_resources`] behind the implicit-auth gate, and `connect` and
//! `configure_local_client` behind [`authorize_cluster`]. So every connector refuses the
//! same requests with the same errors, in the same order, and a third party writes only
//! what is its own. Its connector type implements [`ClusterConnectorFlavor`] and gets
//! `ConnectorFlavor` the same way, with the checks around auto-configuration.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;

use super::validation::{
    ConnectorScope, ResourceIds, ResourceRequest, check_auto_configure_request,
};
use super::verify::{ResourceVerifier, verify_resources};
use super::{
    ConnectorConfig, ConnectorTypeSpec, ImplicitAuthGate, KUBERNETES_CLUSTER, ResourcesReport,
    ServiceConnector,
};
use crate::registry::{AutoConfigureRequest, ConnectorFlavor};
use crate::{ClusterConnection, Error, ErrorKind, Result};

/// What the caller is about to do with the cluster; it words the refusal of a resource
/// type that has no Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterUse {
    /// `ServiceConnector::connect`: a connection for a Kubernetes client.
    Connect,
    /// `ServiceConnector::configure_local_client`: a kubeconfig context (login).
    ConfigureLocalClient,
}

/// A request for one cluster, as `connect` and `configure_local_client` receive it.
#[derive(Debug, Clone, Copy)]
pub struct ClusterRequest<'a> {
    /// The resource type asked for (it must be [`KUBERNETES_CLUSTER`]).
    pub resource_type: &'a str,
    /// The resource id asked for; `None` takes the connector's scoped or only cluster.
    pub resource_id: Option<&'a str>,
    /// What the cluster is for.
    pub purpose: ClusterUse,
}

impl<'a> ClusterRequest<'a> {
    /// A request to connect to a cluster.
    pub fn connect(resource_type: &'a str, resource_id: Option<&'a str>) -> Self {
        ClusterRequest {
            resource_type,
            resource_id,
            purpose: ClusterUse::Connect,
        }
    }

    /// A request to configure the local client (write a kubeconfig context).
    pub fn configure_local_client(resource_type: &'a str, resource_id: Option<&'a str>) -> Self {
        ClusterRequest {
            resource_type,
            resource_id,
            purpose: ClusterUse::ConfigureLocalClient,
        }
    }
}

/// Runs the preamble of a cluster request and returns the canonical id of the one
/// cluster to use.
///
/// In order, each failure stopping the rest:
/// 1. the request is resolved against `scope` with `ids` (an unserved resource type, an
///    id outside the scope, or no id where the connector reaches several clusters are
///    `InvalidSettings`; an id the connector cannot reach is `PermissionDenied`);
/// 2. a resource type other than [`KUBERNETES_CLUSTER`] is `Unsupported`;
/// 3. an implicit auth method with `gate` closed is `PermissionDenied`;
/// 4. credentials that count as expired at `now` (skew included) are `Unauthenticated`.
pub fn authorize_cluster(
    scope: &ConnectorScope,
    ids: &dyn ResourceIds,
    gate: ImplicitAuthGate,
    request: ClusterRequest<'_>,
    now: Timestamp,
) -> Result<String> {
    let resolved = scope.resolve(
        ids,
        ResourceRequest::one(request.resource_type, request.resource_id),
    )?;
    if resolved.resource_type.as_deref() != Some(KUBERNETES_CLUSTER) {
        let message = match request.purpose {
            ClusterUse::Connect => format!(
                "connector `{}` can only connect to `{KUBERNETES_CLUSTER}` resources; `{}` has no Kubernetes API",
                scope.name(),
                request.resource_type
            ),
            ClusterUse::ConfigureLocalClient => format!(
                "connector `{}` can only configure a local client for `{KUBERNETES_CLUSTER}` resources",
                scope.name()
            ),
        };
        return Err(Error::new(ErrorKind::Unsupported, message)
            .with_context("connector", scope.name().to_owned()));
    }
    gate.check_scope(scope)?;
    scope.check_not_expired(now)?;
    // `ResourceRequest::one` requires an id, so `resolve` has refused a request without.
    resolved.resource_id.ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            format!(
                "connector `{}` resolved a cluster request to no cluster",
                scope.name()
            ),
        )
    })
}

/// A connector that reaches Kubernetes clusters: what it has to say about itself, and
/// the work that is its own once the preamble has passed. Every such type is a
/// [`ServiceConnector`] through the blanket implementation below.
///
/// Its [`ResourceVerifier`] is called behind the implicit-auth gate, so it checks only
/// the credentials and resources themselves.
#[async_trait]
pub trait ClusterConnector: ResourceVerifier + fmt::Debug {
    /// The validated scope: type description, configuration, auth method.
    fn scope(&self) -> &ConnectorScope;

    /// How the connector type names its resources.
    fn resource_ids(&self) -> &dyn ResourceIds;

    /// Whether implicit auth methods may run in this process.
    fn implicit_gate(&self) -> ImplicitAuthGate;

    /// The connection to cluster `id` (canonical, authorized, credentials not expired).
    async fn connect_cluster(&self, id: &str) -> Result<ClusterConnection>;

    /// Writes a kubeconfig context for cluster `id` and says what it did.
    async fn login_cluster(&self, id: &str) -> Result<String>;
}

/// [`authorize_cluster`] for `connector`'s own scope, ids and gate, now.
fn authorize<C: ClusterConnector>(connector: &C, request: ClusterRequest<'_>) -> Result<String> {
    let gate = connector.implicit_gate();
    let (scope, ids) = (connector.scope(), connector.resource_ids());
    authorize_cluster(scope, ids, gate, request, Timestamp::now())
}

/// A connector's verifier behind its implicit-auth gate: a closed gate fails each check
/// as an authorization failure, as if the connector had checked it itself.
struct Gated<'a, C: ?Sized>(&'a C);

#[async_trait]
impl<C: ClusterConnector + ?Sized> ResourceVerifier for Gated<'_, C> {
    async fn verify_resource(
        &self,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> Result<Vec<String>> {
        self.0.implicit_gate().check_scope(self.0.scope())?;
        self.0.verify_resource(resource_type, resource_id).await
    }
}

#[async_trait]
impl<C: ClusterConnector> ServiceConnector for C {
    fn connector_type(&self) -> &ConnectorTypeSpec {
        self.scope().spec()
    }

    fn config(&self) -> &ConnectorConfig {
        self.scope().config()
    }

    async fn verify(
        &self,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> Result<ResourcesReport> {
        verify_resources(
            self.scope(),
            self.resource_ids(),
            &Gated(self),
            resource_type,
            resource_id,
            Timestamp::now(),
        )
        .await
    }

    async fn connect(
        &self,
        resource_type: &str,
        resource_id: Option<&str>,
    ) -> Result<ClusterConnection> {
        let id = authorize(self, ClusterRequest::connect(resource_type, resource_id))?;
        self.connect_cluster(&id).await
    }

    async fn configure_local_client(
        &self,
        resource_type: &str,
        resource_id: Option<&str>,
    ) -> Result<String> {
        let request = ClusterRequest::configure_local_client(resource_type, resource_id);
        let id = authorize(self, request)?;
        self.login_cluster(&id).await
    }
}

/// A connector type whose connectors are [`ClusterConnector`]s: its description, how it
/// builds one, and how it finds a configuration in the local environment. Every such type
/// is a [`ConnectorFlavor`] through the blanket implementation below.
#[async_trait]
pub trait ClusterConnectorFlavor: Send + Sync + 'static {
    /// The connectors this type builds.
    type Connector: ClusterConnector + 'static;

    /// The connector type's description.
    fn type_spec(&self) -> &ConnectorTypeSpec;

    /// Builds a connector from `config`, checked against the description.
    fn new_connector(&self, config: ConnectorConfig) -> Result<Self::Connector>;

    /// The configuration the local environment gives for `request`, whose auth method
    /// and resource type (when given) the type has.
    async fn find_configuration(&self, request: &AutoConfigureRequest) -> Result<ConnectorConfig>;
}

#[async_trait]
impl<F: ClusterConnectorFlavor> ConnectorFlavor for F {
    fn connector_type(&self) -> &ConnectorTypeSpec {
        self.type_spec()
    }

    fn build(&self, config: ConnectorConfig) -> Result<Arc<dyn ServiceConnector>> {
        Ok(Arc::new(self.new_connector(config)?))
    }

    /// Checks the request against the type, finds the configuration, and checks that it
    /// builds and, for an implicit method, that the gate is open here, where it will run.
    async fn auto_configure(&self, request: AutoConfigureRequest) -> Result<ConnectorConfig> {
        check_auto_configure_request(self.type_spec(), &request)?;
        let config = self.find_configuration(&request).await?;
        let connector = self.new_connector(config.clone())?;
        connector.implicit_gate().check_scope(connector.scope())?;
        tracing::info!(connector = %request.name, auth_method = %config.auth_method, "configured the connector from the local environment");
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::{
        AuthMethodSpec, ConnectorConfig, ConnectorTypeSpec, IMPLICIT_AUTH_ENV, ResourceTypeSpec,
    };

    /// A connector type with a key and an implicit method, reaching clusters (many) and
    /// one account (single instance).
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
                AuthMethodSpec::new("Ambient", "implicit", "the machine's", schema).implicit(),
            )
            .with_resource_type(ResourceTypeSpec::new(
                "cluster",
                KUBERNETES_CLUSTER,
                "clusters",
                ["secret-key", "implicit"],
                true,
            ))
            .with_resource_type(ResourceTypeSpec::new(
                "account",
                "account",
                "the account",
                ["secret-key", "implicit"],
                false,
            ))
    }

    /// Cluster ids are lower-cased names; the account's one id is `acct`.
    struct Ids;

    impl ResourceIds for Ids {
        fn canonical_resource_id(&self, _: &str, resource_id: &str) -> Result<String> {
            Ok(resource_id.trim().to_ascii_lowercase())
        }
        fn default_resource_id(&self, _: &str) -> Option<String> {
            Some("acct".to_owned())
        }
    }

    fn scope(config: ConnectorConfig) -> ConnectorScope {
        ConnectorScope::new(&spec(), config, &Ids).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn now() -> Timestamp {
        at("2030-01-01T12:00:00Z")
    }

    const OPEN: ImplicitAuthGate = ImplicitAuthGate::new(true);
    const CLOSED: ImplicitAuthGate = ImplicitAuthGate::new(false);

    #[test]
    fn the_cluster_id_comes_from_the_request_or_the_scope_in_canonical_form() {
        let multi = scope(ConnectorConfig::new("c", "cloud", "secret-key"));
        let id = authorize_cluster(
            &multi,
            &Ids,
            CLOSED,
            ClusterRequest::connect(KUBERNETES_CLUSTER, Some(" Prod ")),
            now(),
        )
        .unwrap();
        assert_eq!(id, "prod");
        let scoped = scope(
            ConnectorConfig::new("c", "cloud", "secret-key")
                .with_resource_types([KUBERNETES_CLUSTER])
                .with_resource_id("Prod"),
        );
        for asked in [None, Some("prod"), Some("PROD")] {
            let id = authorize_cluster(
                &scoped,
                &Ids,
                CLOSED,
                ClusterRequest::configure_local_client(KUBERNETES_CLUSTER, asked),
                now(),
            )
            .unwrap();
            assert_eq!(id, "prod", "{asked:?}");
        }
        // Another cluster than the scoped one, and no cluster where several are reached.
        let err = authorize_cluster(
            &scoped,
            &Ids,
            CLOSED,
            ClusterRequest::connect(KUBERNETES_CLUSTER, Some("dev")),
            now(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        assert!(
            err.message().contains("is scoped to the cluster `prod`"),
            "{err}"
        );
        let err = authorize_cluster(
            &multi,
            &Ids,
            CLOSED,
            ClusterRequest::connect(KUBERNETES_CLUSTER, None),
            now(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        assert_eq!(
            err.message(),
            "connector `c` reaches several cluster resources; say which one with a resource id"
        );
    }

    #[test]
    fn unserved_types_and_types_without_a_kubernetes_api_are_refused_first() {
        let multi = scope(ConnectorConfig::new("c", "cloud", "implicit"));
        // Refused before the (closed) gate is looked at.
        let err = authorize_cluster(
            &multi,
            &Ids,
            CLOSED,
            ClusterRequest::connect("bucket", Some("b")),
            now(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        let err = authorize_cluster(
            &multi,
            &Ids,
            CLOSED,
            ClusterRequest::connect("account", None),
            now(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert_eq!(
            err.message(),
            "connector `c` can only connect to `kubernetes-cluster` resources; `account` has no Kubernetes API"
        );
        let err = authorize_cluster(
            &multi,
            &Ids,
            OPEN,
            ClusterRequest::configure_local_client("account", None),
            now(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert_eq!(
            err.message(),
            "connector `c` can only configure a local client for `kubernetes-cluster` resources"
        );
        assert_eq!(err.context_value("connector"), Some("c"));
    }

    #[test]
    fn implicit_methods_need_the_open_gate_and_explicit_ones_do_not() {
        let implicit = scope(ConnectorConfig::new("amb", "cloud", "implicit"));
        let request = ClusterRequest::connect(KUBERNETES_CLUSTER, Some("prod"));
        let err = authorize_cluster(&implicit, &Ids, CLOSED, request, now()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(err.message().contains(IMPLICIT_AUTH_ENV), "{err}");
        assert_eq!(err.context_value("auth_method"), Some("implicit"));
        assert_eq!(
            authorize_cluster(&implicit, &Ids, OPEN, request, now()).unwrap(),
            "prod"
        );
        let explicit = scope(ConnectorConfig::new("key", "cloud", "secret-key"));
        assert_eq!(
            authorize_cluster(&explicit, &Ids, CLOSED, request, now()).unwrap(),
            "prod"
        );
    }

    #[test]
    fn expiry_counts_the_skew_and_comes_after_the_gate() {
        let request = ClusterRequest::connect(KUBERNETES_CLUSTER, Some("prod"));
        let mut config = ConnectorConfig::new("old", "cloud", "secret-key");
        config.expires_at = Some(at("2030-01-01T12:05:00Z"));
        // 300 s early by default: at 12:00 the credentials count as expired…
        let err =
            authorize_cluster(&scope(config.clone()), &Ids, CLOSED, request, now()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        assert!(err.message().contains("have expired"), "{err}");
        // …one second earlier they are still good.
        let before = at("2030-01-01T11:59:59Z");
        assert!(authorize_cluster(&scope(config.clone()), &Ids, CLOSED, request, before).is_ok());
        // With a 60 s tolerance they are good until 12:04.
        config.expires_skew_tolerance = Some(60);
        assert!(authorize_cluster(&scope(config.clone()), &Ids, CLOSED, request, now()).is_ok());
        let late = at("2030-01-01T12:04:00Z");
        assert!(authorize_cluster(&scope(config.clone()), &Ids, CLOSED, request, late).is_err());
        // No expiry: never expired.
        config.expires_at = None;
        let far = at("2100-01-01T00:00:00Z");
        assert!(authorize_cluster(&scope(config), &Ids, CLOSED, request, far).is_ok());
        // An implicit method behind a closed gate is refused as such, expired or not.
        let mut implicit = ConnectorConfig::new("amb", "cloud", "implicit");
        implicit.expires_at = Some(at("2000-01-01T00:00:00Z"));
        let err =
            authorize_cluster(&scope(implicit.clone()), &Ids, CLOSED, request, now()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        let err = authorize_cluster(&scope(implicit), &Ids, OPEN, request, now()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    }

    /// Records what the connector was asked after the preamble.
    #[derive(Debug)]
    struct Recording {
        scope: ConnectorScope,
        gate: ImplicitAuthGate,
        asked: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait]
    impl ResourceVerifier for Recording {
        async fn verify_resource(
            &self,
            resource_type: Option<&str>,
            resource_id: Option<&str>,
        ) -> Result<Vec<String>> {
            self.asked
                .lock()
                .unwrap()
                .push(format!("verify {resource_type:?} {resource_id:?}"));
            Ok(vec!["prod".to_owned()])
        }
    }

    #[async_trait]
    impl ClusterConnector for Recording {
        fn scope(&self) -> &ConnectorScope {
            &self.scope
        }
        fn resource_ids(&self) -> &dyn ResourceIds {
            &Ids
        }
        fn implicit_gate(&self) -> ImplicitAuthGate {
            self.gate
        }
        async fn connect_cluster(&self, id: &str) -> Result<ClusterConnection> {
            self.asked.lock().unwrap().push(format!("connect {id}"));
            let url: http::Uri = "https://127.0.0.1:6443".parse().unwrap();
            Ok(ClusterConnection::new(kube::Config::new(url)))
        }
        async fn login_cluster(&self, id: &str) -> Result<String> {
            self.asked.lock().unwrap().push(format!("login {id}"));
            Ok(format!("logged in to {id}"))
        }
    }

    fn recording(method: &str, gate: ImplicitAuthGate) -> Recording {
        let config =
            ConnectorConfig::new("c", "cloud", method).with_resource_types([KUBERNETES_CLUSTER]);
        Recording {
            scope: scope(config),
            gate,
            asked: std::sync::Mutex::new(Vec::new()),
        }
    }

    #[tokio::test]
    async fn a_cluster_connector_gets_the_preamble_before_its_own_work() {
        let open = recording("implicit", OPEN);
        let connector: &dyn ServiceConnector = &open;
        assert_eq!(connector.config().name, "c");
        assert_eq!(connector.connector_type().connector_type, "cloud");
        connector
            .connect(KUBERNETES_CLUSTER, Some("PROD"))
            .await
            .unwrap();
        let said = connector
            .configure_local_client(KUBERNETES_CLUSTER, Some("prod"))
            .await
            .unwrap();
        assert_eq!(said, "logged in to prod");
        let report = connector.verify(None, Some("Prod")).await.unwrap();
        assert_eq!(
            report.entry(KUBERNETES_CLUSTER).unwrap().resource_ids,
            Some(vec!["prod".to_owned()])
        );
        assert_eq!(
            *open.asked.lock().unwrap(),
            [
                "connect prod",
                "login prod",
                "verify Some(\"kubernetes-cluster\") Some(\"prod\")"
            ]
        );

        // Behind a closed gate nothing of the connector's own runs; verify reports the
        // refusal as an authorization failure of the type.
        let closed = recording("implicit", CLOSED);
        let connector: &dyn ServiceConnector = &closed;
        let err = connector
            .connect(KUBERNETES_CLUSTER, Some("prod"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        let err = connector
            .configure_local_client(KUBERNETES_CLUSTER, Some("prod"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        let report = connector.verify(None, None).await.unwrap();
        let entry = report.entry(KUBERNETES_CLUSTER).unwrap();
        assert!(
            entry
                .error
                .as_deref()
                .unwrap()
                .starts_with("connector `c` authorization failure: auth method `implicit`"),
            "{entry:?}"
        );
        assert!(closed.asked.lock().unwrap().is_empty());
    }

    /// Finds a configuration with the method `found`; builds connectors behind `gate`.
    struct Finding {
        spec: ConnectorTypeSpec,
        found: &'static str,
        gate: ImplicitAuthGate,
    }

    #[async_trait]
    impl ClusterConnectorFlavor for Finding {
        type Connector = Recording;
        fn type_spec(&self) -> &ConnectorTypeSpec {
            &self.spec
        }
        fn new_connector(&self, config: ConnectorConfig) -> Result<Recording> {
            Ok(Recording {
                scope: ConnectorScope::new(&self.spec, config, &Ids)?,
                gate: self.gate,
                asked: std::sync::Mutex::new(Vec::new()),
            })
        }
        async fn find_configuration(
            &self,
            request: &AutoConfigureRequest,
        ) -> Result<ConnectorConfig> {
            Ok(ConnectorConfig::new(
                request.name.clone(),
                "cloud",
                self.found,
            ))
        }
    }

    #[tokio::test]
    async fn auto_configuration_checks_the_request_the_build_and_the_gate() {
        let flavor = |found, gate| Finding {
            spec: spec(),
            found,
            gate,
        };
        let request = AutoConfigureRequest::new("auto");
        let explicit: &dyn ConnectorFlavor = &flavor("secret-key", CLOSED);
        assert_eq!(explicit.connector_type().connector_type, "cloud");
        let config = explicit.auto_configure(request.clone()).await.unwrap();
        assert_eq!(config.auth_method, "secret-key");
        assert_eq!(
            explicit.build(config).unwrap().config().auth_method,
            "secret-key"
        );
        // An implicit configuration needs the open gate where it is configured.
        let implicit: &dyn ConnectorFlavor = &flavor("implicit", CLOSED);
        let err = implicit.auto_configure(request.clone()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        let open: &dyn ConnectorFlavor = &flavor("implicit", OPEN);
        assert!(open.auto_configure(request.clone()).await.is_ok());
        // A configuration that does not build, and a request the type cannot serve.
        let broken: &dyn ConnectorFlavor = &flavor("no-such-method", OPEN);
        let err = broken.auto_configure(request.clone()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        let mut unknown = request;
        unknown.auth_method = Some("password".to_owned());
        let err = explicit.auto_configure(unknown).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        assert_eq!(err.context_value("connector"), Some("auto"));
    }
}
