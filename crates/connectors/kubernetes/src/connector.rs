//! The `kubernetes` connector type and its connectors.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kube::config::{KubeConfigOptions, Kubeconfig};
use secrecy::ExposeSecret;
use stepstack_core::connector::{
    AuthMethodSpec, ConnectorScope, ConnectorTypeSpec, KUBERNETES_CLUSTER, ResourceIds,
    ResourceRequest, ResourceTypeSpec, ResourceVerifier, ResourcesReport, find_auth_method,
    verify_resources,
};
use stepstack_core::{
    AutoConfigureRequest, ClusterConnection, ConnectorConfig, ConnectorFlavor, Error, ErrorKind,
    Result, ServiceConnector,
};

use crate::config::{
    self, Auth, CLIENT_CERTIFICATE, ClientCertificateConfig, IN_CLUSTER, InClusterConfig,
    KUBECONFIG, KubeconfigConfig, PASSWORD, Parsed, PasswordConfig, TOKEN, TokenConfig,
};
use crate::environment::LocalEnvironment;
use crate::error::{KResult, KubeConnectorError};
use crate::in_cluster::ServiceAccountToken;
use crate::kubeconfig::{self as kc, SA_CA, SA_NAMESPACE, SA_TOKEN};
use crate::review;

/// The connector type id.
pub const CONNECTOR_TYPE: &str = "kubernetes";

/// The `AutoConfigureRequest::values` key naming the kubeconfig context to use.
pub const KUBERNETES_CONTEXT: &str = "kubernetes_context";

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
impl ConnectorFlavor for KubernetesFlavor {
    fn connector_type(&self) -> &ConnectorTypeSpec {
        &self.spec
    }

    fn build(&self, config: ConnectorConfig) -> Result<Arc<dyn ServiceConnector>> {
        Ok(Arc::new(self.build_connector(config)?))
    }

    async fn auto_configure(&self, request: AutoConfigureRequest) -> Result<ConnectorConfig> {
        let name = request.name.clone();
        if let Some(resource_type) = &request.resource_type
            && resource_type != KUBERNETES_CLUSTER
        {
            stepstack_core::connector::find_resource_type(&self.spec, resource_type)
                .map_err(|e| e.with_context("connector", name.clone()))?;
        }
        if let Some(method) = &request.auth_method {
            find_auth_method(&self.spec, method)
                .map_err(|e| e.with_context("connector", name.clone()))?;
        }
        let env = &self.environment;
        let config = match request.auth_method.as_deref() {
            Some(IN_CLUSTER) => self.in_cluster_config(&request)?,
            requested => match kc::read_merged(&env.kubeconfig_paths())
                .map_err(|e| e.into_core(&name))?
            {
                Some(kubeconfig) => self.kubeconfig_config(&request, requested, kubeconfig)?,
                None if requested.is_none() && env.service_account_dir.join(SA_TOKEN).is_file() => {
                    self.in_cluster_config(&request)?
                }
                None => {
                    let looked_at = env
                        .kubeconfig_paths()
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(KubeConnectorError::NoKubeconfig {
                        looked_at: if looked_at.is_empty() {
                            "nowhere: KUBECONFIG and HOME are unset".to_owned()
                        } else {
                            looked_at
                        },
                    }
                    .into_core(&name));
                }
            },
        };
        // The result must build; an implicit method must be allowed here, where it will run.
        let connector = self.build_connector(config.clone())?;
        env.implicit_auth
            .check(&name, connector.scope.auth_method())?;
        tracing::info!(connector = %name, auth_method = %config.auth_method, "configured the connector from the local environment");
        Ok(config)
    }
}

impl KubernetesFlavor {
    fn in_cluster_config(&self, request: &AutoConfigureRequest) -> Result<ConnectorConfig> {
        let token = self.environment.service_account_dir.join(SA_TOKEN);
        if !token.is_file() {
            return Err(KubeConnectorError::InCluster {
                what: "token",
                path: token,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }
            .into_core(&request.name));
        }
        let mut config = ConnectorConfig::new(request.name.clone(), CONNECTOR_TYPE, IN_CLUSTER)
            .with_resource_types([KUBERNETES_CLUSTER])
            .with_value("server", self.environment.in_cluster_server.clone());
        if let Some(id) = &request.resource_id {
            config = config.with_value("cluster_name", id.clone());
        }
        Ok(config)
    }

    fn kubeconfig_config(
        &self,
        request: &AutoConfigureRequest,
        requested: Option<&str>,
        kubeconfig: Kubeconfig,
    ) -> Result<ConnectorConfig> {
        let name = request.name.as_str();
        let context = match request
            .values
            .get(KUBERNETES_CONTEXT)
            .filter(|c| !c.is_empty())
        {
            Some(context) => context.clone(),
            None => kubeconfig
                .current_context
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    KubeConnectorError::NoCurrentContext {
                        available: kc::context_names(&kubeconfig),
                    }
                    .into_core(name)
                })?,
        };
        let mut reduced = kc::reduce(&kubeconfig, &context).map_err(|e| e.into_core(name))?;
        kc::inline_files(&mut reduced).map_err(|e| e.into_core(name))?;
        auto_config_from(name, request, requested, &context, reduced).map_err(|e| e.into_core(name))
    }
}

/// The connector configuration for one reduced kubeconfig context.
fn auto_config_from(
    name: &str,
    request: &AutoConfigureRequest,
    requested: Option<&str>,
    context: &str,
    reduced: Kubeconfig,
) -> KResult<ConnectorConfig> {
    let cluster = reduced
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .unwrap_or_default();
    let user = reduced
        .auth_infos
        .first()
        .and_then(|u| u.auth_info.clone())
        .unwrap_or_default();
    let namespace = reduced
        .contexts
        .first()
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.namespace.clone());
    let server =
        cluster
            .server
            .clone()
            .ok_or_else(|| KubeConnectorError::InvalidStoredKubeconfig {
                reason: format!("the cluster of context `{context}` has no server"),
            })?;
    let url = config::parse_server(&server)?;
    let cluster_name = request
        .resource_id
        .clone()
        .unwrap_or_else(|| config::host_of(&url));
    let token = match (&user.token, &user.token_file) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(file)) => Some(kc::read_secret_file(
            std::path::Path::new(file),
            "the token file",
        )?),
        (None, None) => None,
    };
    let has_identity = user.client_certificate_data.is_some() && user.client_key_data.is_some();
    let has_basic = user.username.is_some() && user.password.is_some();
    let is_plugin = user.exec.is_some() || user.auth_provider.is_some();
    let method = match requested {
        Some(method) => method.to_owned(),
        None if is_plugin => KUBECONFIG.to_owned(),
        None if has_basic => PASSWORD.to_owned(),
        None if token.is_none() && has_identity => CLIENT_CERTIFICATE.to_owned(),
        None => TOKEN.to_owned(),
    };
    let does_not_fit = |reason: &str| KubeConnectorError::MethodDoesNotFit {
        method: method.clone(),
        reason: reason.to_owned(),
    };
    let mut config = ConnectorConfig::new(name, CONNECTOR_TYPE, method.clone())
        .with_resource_types([KUBERNETES_CLUSTER])
        .with_value("cluster_name", cluster_name);
    if let Some(namespace) = namespace.filter(|n| !n.is_empty()) {
        config = config.with_value("namespace", namespace);
    }
    if method == KUBECONFIG {
        let yaml = serde_norway::to_string(&reduced).map_err(|e| {
            KubeConnectorError::InvalidStoredKubeconfig {
                reason: e.to_string(),
            }
        })?;
        return Ok(config
            .with_secret("kubeconfig", yaml)
            .with_value("context", context));
    }
    if is_plugin {
        return Err(does_not_fit(
            "the user runs an exec or auth-provider plugin, whose short-lived credentials must not be stored; use the `kubeconfig` auth method",
        ));
    }
    if cluster.tls_server_name.is_some() || cluster.proxy_url.is_some() {
        tracing::warn!(
            connector = name,
            context,
            "the kubeconfig cluster sets tls-server-name or proxy-url, which auth method `{method}` does not carry; use the `kubeconfig` auth method to keep them"
        );
    }
    config = config.with_value("server", server);
    if cluster.insecure_skip_tls_verify == Some(true) {
        config = config.with_value("insecure", true);
    }
    if let Some(ca) = &cluster.certificate_authority_data {
        config = config.with_secret("certificate_authority", ca.clone());
    }
    match method.as_str() {
        PASSWORD => {
            let (Some(username), Some(password)) = (&user.username, &user.password) else {
                return Err(does_not_fit("the user has no user name and password"));
            };
            config = config
                .with_secret("username", username.clone())
                .with_secret("password", password.expose_secret().to_owned());
        }
        CLIENT_CERTIFICATE | TOKEN => {
            if method == CLIENT_CERTIFICATE && !has_identity {
                return Err(does_not_fit("the user has no client certificate and key"));
            }
            if let (Some(cert), Some(key)) = (&user.client_certificate_data, &user.client_key_data)
            {
                config = config
                    .with_secret("client_certificate", cert.clone())
                    .with_secret("client_key", key.expose_secret().to_owned());
            }
            if method == TOKEN {
                match token {
                    Some(token) => {
                        config =
                            config.with_secret("token", token.expose_secret().trim().to_owned())
                    }
                    None if !has_identity => {
                        tracing::warn!(
                            connector = name,
                            "the kubeconfig user has no credentials; the connector will send anonymous requests"
                        );
                    }
                    None => {}
                }
            }
        }
        _ => return Err(does_not_fit("it is not configured from a kubeconfig")),
    }
    Ok(config)
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

    fn core_error(&self, error: KubeConnectorError) -> Error {
        error.into_core(self.name())
    }

    /// The checks every use of the credentials starts with.
    fn authorize(&self, resource_type: &str, resource_id: Option<&str>) -> Result<()> {
        self.scope
            .resolve(&self.ids, ResourceRequest::one(resource_type, resource_id))?;
        self.environment
            .implicit_auth
            .check(self.name(), self.scope.auth_method())?;
        self.scope.check_not_expired(Timestamp::now())
    }

    /// The connection, without the argument and expiry checks.
    async fn connection(&self) -> KResult<ClusterConnection> {
        let cluster = self.cluster_name().to_owned();
        let dir = &self.environment.service_account_dir;
        if matches!(self.parsed.auth, Auth::InCluster) {
            for (what, file) in [("token", SA_TOKEN), ("CA certificate", SA_CA)] {
                let path = dir.join(file);
                if let Err(source) = tokio::fs::metadata(&path).await {
                    return Err(KubeConnectorError::InCluster { what, path, source });
                }
            }
        }
        let entries = kc::entries(&self.parsed, &cluster, dir);
        let options = KubeConfigOptions {
            context: Some(cluster.clone()),
            ..Default::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(entries, &options)
            .await
            .map_err(|e| KubeConnectorError::BuildClient {
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
        self.environment
            .implicit_auth
            .check(self.name(), self.scope.auth_method())?;
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
impl ServiceConnector for KubernetesConnector {
    fn connector_type(&self) -> &ConnectorTypeSpec {
        self.scope.spec()
    }

    fn config(&self) -> &ConnectorConfig {
        self.scope.config()
    }

    async fn verify(
        &self,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> Result<ResourcesReport> {
        verify_resources(
            &self.scope,
            &self.ids,
            self,
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
        self.authorize(resource_type, resource_id)?;
        self.connection().await.map_err(|e| self.core_error(e))
    }

    async fn configure_local_client(
        &self,
        resource_type: &str,
        resource_id: Option<&str>,
    ) -> Result<String> {
        self.authorize(resource_type, resource_id)?;
        let path = self
            .environment
            .login_kubeconfig_path()
            .ok_or_else(|| self.core_error(KubeConnectorError::NoLoginPath))?;
        let cluster = self.cluster_name().to_owned();
        let entries = kc::entries(
            &self.parsed,
            &cluster,
            &self.environment.service_account_dir,
        );
        let write_path = path.clone();
        tokio::task::spawn_blocking(move || kc::write_login(&write_path, entries))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Internal, "writing the kubeconfig panicked").with_source(e)
            })?
            .map_err(|e| self.core_error(e))?;
        tracing::info!(connector = %self.name(), context = %cluster, path = %path.display(), "updated the local kubeconfig");
        Ok(format!(
            "updated the kubeconfig {} with cluster `{cluster}`; the current context is now `{cluster}`",
            path.display()
        ))
    }
}
