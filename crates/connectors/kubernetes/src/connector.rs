//! The `kubernetes` connector type and its connectors.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::config::KubeConfigOptions;
use stepstack_core::connector::{
    AuthMethodSpec, ClusterConnector, ClusterConnectorFlavor, ConnectorError as _, ConnectorScope,
    ConnectorTypeSpec, ImplicitAuthGate, KUBERNETES_CLUSTER, ResourceIds, ResourceTypeSpec,
    ResourceVerifier, find_auth_method,
};
use stepstack_core::{AutoConfigureRequest, ClusterConnection, ConnectorConfig, Error, Result};

use crate::config::{
    self, Auth, CLIENT_CERTIFICATE, CONNECTOR_TYPE, ClientCertificateConfig, IN_CLUSTER,
    InClusterConfig, KUBECONFIG, KubeconfigConfig, PASSWORD, Parsed, PasswordConfig, TOKEN,
    TokenConfig,
};
use crate::environment::LocalEnvironment;
use crate::error::{KubernetesError, KubernetesResult};
use crate::in_cluster::ServiceAccountToken;
use crate::kubeconfig::{SA_CA, SA_NAMESPACE, SA_TOKEN};
use crate::review;

/// How often the in-cluster token is re-read before its nominal expiry.
const IN_CLUSTER_REFRESH_MARGIN: Duration = Duration::from_secs(10);

/// The description of the `kubernetes` connector type.
pub fn connector_type_spec() -> ConnectorTypeSpec {
    let common = ["certificate_authority"];
    ConnectorTypeSpec::new(
        "Kubernetes Service Connector",
        CONNECTOR_TYPE,
        "Reaches one Kubernetes cluster with a bearer token, a client certificate, a user name and password, a stored kubeconfig context or the pod's service account.",
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "Kubernetes Token",
            TOKEN,
            "A bearer token (service-account or OIDC token), optionally with a client certificate and key.",
            config::schema_of::<TokenConfig>(),
        )
        .with_secret_fields(common.into_iter().chain(["token", "client_certificate", "client_key"])),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "Kubernetes Client Certificate",
            CLIENT_CERTIFICATE,
            "A client certificate and key (X.509 client authentication).",
            config::schema_of::<ClientCertificateConfig>(),
        )
        .with_secret_fields(common.into_iter().chain(["client_certificate", "client_key"])),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "Kubernetes Username and Password",
            PASSWORD,
            "A user name and password, sent as HTTP basic auth (for API servers and proxies that still accept it).",
            config::schema_of::<PasswordConfig>(),
        )
        .with_secret_fields(common.into_iter().chain(["username", "password"])),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "Kubeconfig Context",
            KUBECONFIG,
            "A stored kubeconfig with one context; its user may run an exec plugin (a local command), so the method is implicit.",
            config::schema_of::<KubeconfigConfig>(),
        )
        .with_secret_fields(["kubeconfig"])
        .implicit(),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "In-cluster Service Account",
            IN_CLUSTER,
            "The service account of the pod this process runs in; its token and CA are re-read as they rotate.",
            config::schema_of::<InClusterConfig>(),
        )
        .implicit(),
    )
    .with_resource_type(ResourceTypeSpec::new(
        "Kubernetes cluster",
        KUBERNETES_CLUSTER,
        "A Kubernetes cluster, identified by its cluster name.",
        [TOKEN, CLIENT_CERTIFICATE, PASSWORD, KUBECONFIG, IN_CLUSTER],
        false,
    ))
    .with_auto_configuration(true)
}

/// The `kubernetes` connector type: builds [`KubernetesConnector`]s and configures new
/// ones from the local kubeconfig or the pod's service account.
#[derive(Debug, Clone)]
pub struct KubernetesFlavor {
    spec: ConnectorTypeSpec,
    environment: Arc<LocalEnvironment>,
}

impl KubernetesFlavor {
    /// The connector type reading this process's environment.
    pub fn new() -> Self {
        Self::with_environment(LocalEnvironment::from_process())
    }

    /// The connector type reading `environment` instead of the process's.
    pub fn with_environment(environment: LocalEnvironment) -> Self {
        KubernetesFlavor {
            spec: connector_type_spec(),
            environment: Arc::new(environment),
        }
    }

    /// The environment the connectors read.
    pub fn environment(&self) -> &LocalEnvironment {
        &self.environment
    }

    /// Builds a connector as its concrete type.
    pub fn build_connector(&self, config: ConnectorConfig) -> Result<KubernetesConnector> {
        let name = config.name.clone();
        find_auth_method(&self.spec, &config.auth_method)
            .map_err(|e| e.with_context("connector", name.clone()))?;
        let parsed = config::parse(&config, &self.environment.in_cluster_server)
            .map_err(|e| e.into_core(&name))?;
        let ids = ClusterIds {
            cluster_name: parsed.target.cluster_name.clone(),
        };
        let scope = ConnectorScope::new(&self.spec, config, &ids)?;
        if parsed.target.insecure {
            tracing::warn!(
                connector = %name,
                server = %parsed.target.server,
                "connector `{name}` skips TLS verification of the API server (insecure); anyone on the network path can impersonate the cluster"
            );
        }
        Ok(KubernetesConnector {
            scope,
            parsed,
            ids,
            environment: self.environment.clone(),
        })
    }
}

impl Default for KubernetesFlavor {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ClusterConnectorFlavor for KubernetesFlavor {
    type Connector = KubernetesConnector;

    fn type_spec(&self) -> &ConnectorTypeSpec {
        &self.spec
    }

    fn new_connector(&self, config: ConnectorConfig) -> Result<KubernetesConnector> {
        self.build_connector(config)
    }

    async fn find_configuration(&self, request: &AutoConfigureRequest) -> Result<ConnectorConfig> {
        crate::auto::auto_config(&self.environment, request)
    }
}

/// Resource ids of the `kubernetes-cluster` type: the connector's cluster name.
#[derive(Debug, Clone)]
struct ClusterIds {
    cluster_name: String,
}

impl ResourceIds for ClusterIds {
    fn default_resource_id(&self, _resource_type: &str) -> Option<String> {
        Some(self.cluster_name.clone())
    }
}

/// A connector to one Kubernetes cluster.
#[derive(Debug)]
pub struct KubernetesConnector {
    scope: ConnectorScope,
    parsed: Parsed,
    ids: ClusterIds,
    environment: Arc<LocalEnvironment>,
}

impl KubernetesConnector {
    /// The cluster's name, the one resource id this connector reaches.
    pub fn cluster_name(&self) -> &str {
        &self.parsed.target.cluster_name
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.parsed.target.server
    }

    /// The namespace verification checks and clients default to.
    pub fn namespace(&self) -> &str {
        self.parsed.target.namespace.as_deref().unwrap_or("default")
    }

    fn name(&self) -> &str {
        self.scope.name()
    }

    fn core_error(&self, error: KubernetesError) -> Error {
        error.into_core(self.name())
    }

    /// The connection, without the argument and expiry checks.
    async fn connection(&self) -> KubernetesResult<ClusterConnection> {
        let cluster = self.cluster_name().to_owned();
        let dir = &self.environment.service_account_dir;
        if matches!(self.parsed.auth, Auth::InCluster) {
            for (what, file) in [("token", SA_TOKEN), ("CA certificate", SA_CA)] {
                let path = dir.join(file);
                if let Err(source) = tokio::fs::metadata(&path).await {
                    return Err(KubernetesError::InCluster { what, path, source });
                }
            }
        }
        let entries = config::entries(&self.parsed, &cluster, dir);
        let options = KubeConfigOptions {
            context: Some(cluster.clone()),
            ..Default::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(entries, &options)
            .await
            .map_err(|e| KubernetesError::BuildClient {
                cluster: cluster.clone(),
                reason: e.to_string(),
            })?;
        if let Some(namespace) = &self.parsed.target.namespace {
            config.default_namespace = namespace.clone();
        }
        let mut connection = match &self.parsed.auth {
            Auth::InCluster => {
                // The token comes from the source; the CA file is re-read by the client.
                config.auth_info.token_file = None;
                config.root_cert_file = Some(dir.join(SA_CA));
                if self.parsed.target.namespace.is_none()
                    && let Ok(namespace) = tokio::fs::read_to_string(dir.join(SA_NAMESPACE)).await
                    && !namespace.trim().is_empty()
                {
                    config.default_namespace = namespace.trim().to_owned();
                }
                ClusterConnection::new(config)
                    .with_token_source(Arc::new(ServiceAccountToken {
                        path: dir.join(SA_TOKEN),
                    }))
                    .with_refresh_margin(IN_CLUSTER_REFRESH_MARGIN)
            }
            _ => ClusterConnection::new(config),
        };
        connection = connection.with_expires_at(self.scope.config().expires_at);
        Ok(connection)
    }

    /// The namespace the connection defaults to (for in-cluster: the pod's).
    async fn effective_namespace(&self) -> String {
        if let Some(namespace) = &self.parsed.target.namespace {
            return namespace.clone();
        }
        if matches!(self.parsed.auth, Auth::InCluster)
            && let Ok(namespace) =
                tokio::fs::read_to_string(self.environment.service_account_dir.join(SA_NAMESPACE))
                    .await
            && !namespace.trim().is_empty()
        {
            return namespace.trim().to_owned();
        }
        "default".to_owned()
    }
}

#[async_trait]
impl ResourceVerifier for KubernetesConnector {
    async fn verify_resource(
        &self,
        _resource_type: Option<&str>,
        _resource_id: Option<&str>,
    ) -> Result<Vec<String>> {
        let cluster = self.cluster_name().to_owned();
        let connection = self.connection().await.map_err(|e| self.core_error(e))?;
        let client = connection
            .into_client()
            .map_err(|e| e.with_context("connector", self.name().to_owned()))?;
        let namespace = self.effective_namespace().await;
        review::check_permissions(&client, &namespace, &cluster, self.server())
            .await
            .map_err(|e| {
                self.core_error(e)
                    .with_context("namespace", namespace.clone())
            })?;
        Ok(vec![cluster])
    }
}

#[async_trait]
impl ClusterConnector for KubernetesConnector {
    fn scope(&self) -> &ConnectorScope {
        &self.scope
    }

    fn resource_ids(&self) -> &dyn ResourceIds {
        &self.ids
    }

    fn implicit_gate(&self) -> ImplicitAuthGate {
        self.environment.implicit_auth
    }

    /// `id` is the connector's one cluster: the preamble refused any other.
    async fn connect_cluster(&self, _id: &str) -> Result<ClusterConnection> {
        self.connection().await.map_err(|e| self.core_error(e))
    }

    async fn login_cluster(&self, _id: &str) -> Result<String> {
        let path = self
            .environment
            .login_kubeconfig_path()
            .ok_or_else(|| self.core_error(KubernetesError::NoLoginPath))?;
        let cluster = self.cluster_name().to_owned();
        let entries = config::entries(
            &self.parsed,
            &cluster,
            &self.environment.service_account_dir,
        );
        crate::login::write_context(&path, entries)
            .await
            .map_err(|e| self.core_error(e))?;
        tracing::info!(connector = %self.name(), context = %cluster, path = %path.display(), "updated the local kubeconfig");
        Ok(format!(
            "updated the kubeconfig {} with cluster `{cluster}`; the current context is now `{cluster}`",
            path.display()
        ))
    }
}
