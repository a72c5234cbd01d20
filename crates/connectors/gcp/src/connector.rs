//! The `gcp` connector type and its connectors.

use std::sync::Arc;

use async_trait::async_trait;
use stepstack_cloud_http::{HttpClient, HttpResponse, IssuedTokenSource};
use stepstack_core::connector::{
    AuthMethodSpec, ClusterConnector, ClusterConnectorFlavor, ConnectorError as _, ConnectorScope,
    ConnectorTypeSpec, ExpirationBounds, ImplicitAuthGate, KUBERNETES_CLUSTER, ResourceIds,
    ResourceTypeSpec, ResourceVerifier, find_auth_method, not_found_as_denied,
};
use stepstack_core::{AutoConfigureRequest, ClusterConnection, ConnectorConfig, Error, Result};

use crate::auth::{self, AccessToken, CLOUD_PLATFORM_SCOPE, GoogleAuth};
use crate::config::{
    self, CONNECTOR_TYPE, Credentials, EXTERNAL_ACCOUNT, ExternalAccountConfig, IMPERSONATION,
    IMPLICIT, ImpersonationConfig, ImplicitConfig, OAUTH2_TOKEN, OAuth2TokenConfig, Parsed,
    SERVICE_ACCOUNT, ServiceAccountConfig, USER_ACCOUNT, UserAccountConfig,
};
use crate::environment::GcpEnvironment;
use crate::error::{GcpError, GcpResult};
use crate::gke::{self, ApiEndpoint, ClusterRef, GkeCluster, GkeIds, ListClustersResponse};

/// The longest (and default) lifetime of impersonated tokens, in seconds.
pub const IMPERSONATION_MAX_EXPIRATION: u64 = 3600;

/// The description of the `gcp` connector type.
pub fn connector_type_spec() -> ConnectorTypeSpec {
    let all = [
        IMPLICIT,
        USER_ACCOUNT,
        SERVICE_ACCOUNT,
        EXTERNAL_ACCOUNT,
        OAUTH2_TOKEN,
        IMPERSONATION,
    ];
    ConnectorTypeSpec::new(
        "GCP Service Connector",
        CONNECTOR_TYPE,
        "Lists the GKE clusters of a Google Cloud project and connects to them with OAuth2 access tokens (scope cloud-platform) that refresh themselves.",
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "GCP Implicit Authentication",
            IMPLICIT,
            "The machine's application default credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default login, or the metadata server's service account.",
            config::schema_of::<ImplicitConfig>(),
        )
        .implicit(),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "GCP User Account",
            USER_ACCOUNT,
            "A user's authorized_user credentials (client id, secret and refresh token); access tokens come from the refresh-token grant.",
            config::schema_of::<UserAccountConfig>(),
        )
        .with_secret_fields(["user_account_json"]),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "GCP Service Account",
            SERVICE_ACCOUNT,
            "A service-account key; access tokens come from the JWT-bearer grant signed with the key.",
            config::schema_of::<ServiceAccountConfig>(),
        )
        .with_secret_fields(["service_account_json"]),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "GCP External Account",
            EXTERNAL_ACCOUNT,
            "Workload identity federation: an external subject token (from a file or URL credential source) exchanged at Google STS, optionally for a service account's token. It reads ambient credentials of the machine, so it is gated like implicit auth.",
            config::schema_of::<ExternalAccountConfig>(),
        )
        .with_secret_fields(["external_account_json"])
        .implicit(),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "GCP OAuth 2.0 Token",
            OAUTH2_TOKEN,
            "A given access token (e.g. `gcloud auth print-access-token`); it expires at the connector's `expires_at` and is not renewed.",
            config::schema_of::<OAuth2TokenConfig>(),
        )
        .with_secret_fields(["token"]),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "GCP Service Account Impersonation",
            IMPERSONATION,
            "A source service-account key that impersonates `target_principal` through the IAM Credentials API (generateAccessToken).",
            config::schema_of::<ImpersonationConfig>(),
        )
        .with_secret_fields(["service_account_json"])
        .with_expiration(ExpirationBounds::new(
            None,
            Some(IMPERSONATION_MAX_EXPIRATION),
            Some(IMPERSONATION_MAX_EXPIRATION),
        )),
    )
    .with_resource_type(ResourceTypeSpec::new(
        "GKE Kubernetes cluster",
        KUBERNETES_CLUSTER,
        "A GKE cluster of the project, identified by its name, or by `location/name` when two locations hold clusters of the same name.",
        all,
        true,
    ))
    .with_auto_configuration(true)
}

/// The `gcp` connector type: builds [`GcpConnector`]s and configures new ones from the
/// application default credentials.
#[derive(Debug, Clone)]
pub struct GcpConnectorFlavor {
    spec: ConnectorTypeSpec,
    environment: Arc<GcpEnvironment>,
}

impl GcpConnectorFlavor {
    /// The connector type reading this process's environment.
    pub fn new() -> Self {
        Self::with_environment(GcpEnvironment::from_process())
    }

    /// The connector type reading `environment` instead of the process's.
    pub fn with_environment(environment: GcpEnvironment) -> Self {
        GcpConnectorFlavor {
            spec: connector_type_spec(),
            environment: Arc::new(environment),
        }
    }

    /// Builds a connector as its concrete type.
    pub fn build_connector(&self, config: ConnectorConfig) -> Result<GcpConnector> {
        let name = config.name.clone();
        find_auth_method(&self.spec, &config.auth_method)
            .map_err(|e| e.with_context("connector", name.clone()))?;
        let scope = ConnectorScope::new(&self.spec, config, &GkeIds)?;
        let parsed = config::parse(scope.config()).map_err(|e| e.into_core(&name))?;
        let auth = GoogleAuth::new(
            stepstack_cloud_http::http_client(None).map_err(|e| {
                GcpError::InvalidConfig {
                    method: scope.config().auth_method.clone(),
                    reason: e.to_string(),
                }
                .into_core(&name)
            })?,
            parsed.clone(),
            scope.config().expires_at,
            self.environment.clone(),
        );
        Ok(GcpConnector {
            scope,
            parsed,
            auth: Arc::new(auth),
            environment: self.environment.clone(),
        })
    }
}

impl Default for GcpConnectorFlavor {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ClusterConnectorFlavor for GcpConnectorFlavor {
    type Connector = GcpConnector;

    fn type_spec(&self) -> &ConnectorTypeSpec {
        &self.spec
    }

    fn new_connector(&self, config: ConnectorConfig) -> Result<GcpConnector> {
        self.build_connector(config)
    }

    async fn find_configuration(&self, request: &AutoConfigureRequest) -> Result<ConnectorConfig> {
        crate::auto::auto_config(&self.environment, request)
            .await
            .map_err(|e| e.into_core(&request.name))
    }
}

/// A connector to the GKE clusters of one project.
#[derive(Debug)]
pub struct GcpConnector {
    scope: ConnectorScope,
    parsed: Parsed,
    auth: Arc<GoogleAuth>,
    environment: Arc<GcpEnvironment>,
}

impl GcpConnector {
    /// The project whose clusters this connector lists.
    pub fn project_id(&self) -> &str {
        &self.parsed.project_id
    }

    fn name(&self) -> &str {
        self.scope.name()
    }

    fn core_error(&self, error: GcpError) -> Error {
        error
            .into_core(self.name())
            .with_context("project", self.project_id().to_owned())
    }

    /// `GET {container}/v1/{path}` with the cached token; on 401 once more with a new one.
    async fn api_get(&self, path: &str) -> GcpResult<HttpResponse> {
        let endpoint = format!("{}/v1/{path}", self.parsed.container_endpoint());
        let mut retried = false;
        loop {
            let token = self.auth.current().await?;
            let response = self.get_with(&endpoint, &token).await?;
            if response.status == 401
                && !retried
                && !matches!(self.parsed.credentials, Credentials::Token(_))
            {
                tracing::debug!(connector = %self.name(), "the GKE API rejected the access token; fetching a new one");
                self.auth.invalidate().await;
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }

    async fn get_with(&self, endpoint: &str, token: &AccessToken) -> GcpResult<HttpResponse> {
        let request =
            stepstack_cloud_http::bearer_request(http::Method::GET, endpoint, &token.value, &[])?;
        Ok(stepstack_cloud_http::send(self.http(), request, endpoint).await?)
    }

    fn http(&self) -> &HttpClient {
        self.auth.http()
    }

    fn api_error(&self, response: &HttpResponse) -> GcpError {
        let project = self.project_id().to_owned();
        let message = auth::error_message(response);
        match response.status {
            401 => GcpError::ApiUnauthenticated { project, message },
            403 => GcpError::ApiDenied { project, message },
            status => GcpError::Api {
                project,
                status,
                message,
            },
        }
    }

    /// Every cluster of the project, across locations.
    async fn list_clusters(&self) -> GcpResult<Vec<GkeCluster>> {
        let path = format!("projects/{}/locations/-/clusters", self.project_id());
        let response = self.api_get(&path).await?;
        if response.status != 200 {
            return Err(self.api_error(&response));
        }
        let list: ListClustersResponse = response.json(&path)?;
        Ok(list.clusters)
    }

    /// The cluster `id` names: `location/name` is fetched directly; a bare name must be
    /// unique across the project's locations.
    async fn find_cluster(&self, id: &str) -> GcpResult<GkeCluster> {
        let cluster = ClusterRef::parse(id)?;
        let project = self.project_id().to_owned();
        if let Some(location) = &cluster.location {
            let path = format!(
                "projects/{project}/locations/{location}/clusters/{}",
                cluster.name
            );
            let response = self.api_get(&path).await?;
            return match response.status {
                200 => Ok(response.json(&path)?),
                404 => Err(GcpError::ClusterNotFound {
                    cluster: cluster.name.clone(),
                    where_: format!("location `{location}`"),
                    project,
                    available: String::new(),
                }),
                _ => Err(self.api_error(&response)),
            };
        }
        let all = self.list_clusters().await?;
        let mut matching: Vec<GkeCluster> = all
            .iter()
            .filter(|c| c.name == cluster.name)
            .cloned()
            .collect();
        match matching.len() {
            1 => Ok(matching.remove(0)),
            0 => Err(GcpError::ClusterNotFound {
                cluster: cluster.name.clone(),
                where_: "any location".to_owned(),
                project,
                available: if all.is_empty() {
                    "; the project has no clusters this identity can see".to_owned()
                } else {
                    format!("; clusters found: {}", gke::listing_ids(&all).join(", "))
                },
            }),
            _ => {
                let mut locations: Vec<String> =
                    matching.iter().map(|c| c.location.clone()).collect();
                locations.sort();
                Err(GcpError::AmbiguousCluster {
                    example: format!("{}/{}", locations[0], cluster.name),
                    cluster: cluster.name,
                    project,
                    locations: locations.join(", "),
                })
            }
        }
    }

    /// Writes a kubeconfig context for cluster `id` with the current access token.
    async fn login(&self, id: &str) -> GcpResult<String> {
        let path = self
            .environment
            .login_kubeconfig_path()
            .ok_or(GcpError::NoLoginPath)?;
        let cluster = self.find_cluster(id).await?;
        let endpoint = gke::choose_endpoint(&cluster)?;
        let token = match &self.parsed.credentials {
            Credentials::Token(token) => AccessToken {
                value: token.clone(),
                expires_at: self.scope.config().expires_at,
            },
            _ => self.auth.current().await?,
        };
        let context = format!(
            "gke_{}_{}_{}",
            self.project_id(),
            cluster.location,
            cluster.name
        );
        let ca = match &endpoint {
            ApiEndpoint::Ip { ca_pem, .. } => Some(ca_pem.as_str()),
            ApiEndpoint::Dns { .. } => None,
        };
        crate::login::write_context(&path, &context, endpoint.url(), ca, token.value.clone())
            .await?;
        tracing::info!(connector = %self.name(), %context, path = %path.display(), "updated the local kubeconfig");
        let expiry = token
            .expires_at
            .map(|t| format!("; its access token expires at {t}, log in again then"))
            .unwrap_or_default();
        Ok(format!(
            "updated the kubeconfig {} with GKE cluster `{}` in `{}`; the current context is now `{context}`{expiry}",
            path.display(),
            cluster.name,
            cluster.location
        ))
    }

    /// The connection to `cluster`.
    async fn connection_for(&self, cluster: &GkeCluster) -> GcpResult<ClusterConnection> {
        let endpoint = gke::choose_endpoint(cluster)?;
        let url: http::Uri = endpoint.url().parse().map_err(|e| GcpError::BadResponse {
            endpoint: "the GKE API".to_owned(),
            status: 200,
            reason: format!("cluster `{}` has an invalid endpoint: {e}", cluster.name),
        })?;
        let mut config = kube::Config::new(url);
        if let ApiEndpoint::Ip { ca_pem, .. } = &endpoint {
            let certs =
                stepstack_cloud_http::pem_certificates(ca_pem).map_err(|e| GcpError::BadCa {
                    cluster: cluster.name.clone(),
                    reason: e.to_string(),
                })?;
            config.root_cert = Some(certs);
        }
        tracing::debug!(
            connector = %self.name(),
            cluster = %cluster.name,
            location = %cluster.location,
            server = %endpoint.url(),
            dns = matches!(endpoint, ApiEndpoint::Dns { .. }),
            "connecting to a GKE cluster"
        );
        if let Credentials::Token(token) = &self.parsed.credentials {
            // A given token cannot be renewed: the connection expires with it.
            config.auth_info.token = Some(token.clone());
            return Ok(
                ClusterConnection::new(config).with_expires_at(self.scope.config().expires_at)
            );
        }
        let current = self.auth.current().await?;
        Ok(ClusterConnection::new(config)
            .with_token_source(Arc::new(
                IssuedTokenSource::new(self.auth.clone(), CLOUD_PLATFORM_SCOPE, self.name())
                    .with_context("project", self.project_id()),
            ))
            .with_expires_at(current.expires_at))
    }
}

#[async_trait]
impl ResourceVerifier for GcpConnector {
    async fn verify_resource(
        &self,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> Result<Vec<String>> {
        let result = match (resource_type, resource_id) {
            (None, _) => self.auth.current().await.map(|_| Vec::new()),
            (Some(_), None) => self
                .list_clusters()
                .await
                .map(|clusters| gke::listing_ids(&clusters)),
            (Some(_), Some(id)) => self.find_cluster(id).await.map(|_| vec![id.to_owned()]),
        };
        result.map_err(|e| not_found_as_denied(self.core_error(e)))
    }
}

#[async_trait]
impl ClusterConnector for GcpConnector {
    fn scope(&self) -> &ConnectorScope {
        &self.scope
    }

    fn resource_ids(&self) -> &dyn ResourceIds {
        &GkeIds
    }

    fn implicit_gate(&self) -> ImplicitAuthGate {
        self.environment.implicit_auth
    }

    async fn connect_cluster(&self, id: &str) -> Result<ClusterConnection> {
        let cluster = self
            .find_cluster(id)
            .await
            .map_err(|e| self.core_error(e))?;
        self.connection_for(&cluster).await.map_err(|e| {
            self.core_error(e)
                .with_context("cluster", cluster.name.clone())
        })
    }

    async fn login_cluster(&self, id: &str) -> Result<String> {
        self.login(id).await.map_err(|e| self.core_error(e))
    }
}
