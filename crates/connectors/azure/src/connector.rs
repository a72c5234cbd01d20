//! The `azure` connector type and its connectors.

use std::sync::Arc;

use async_trait::async_trait;
use stepstack_cloud_http::{HttpClient, HttpResponse, IssuedTokenSource};
use stepstack_core::connector::{
    AuthMethodSpec, ClusterConnector, ClusterConnectorFlavor, ConnectorError as _, ConnectorScope,
    ConnectorTypeSpec, ImplicitAuthGate, KUBERNETES_CLUSTER, ResourceIds, ResourceTypeSpec,
    ResourceVerifier, find_auth_method, not_found_as_denied,
};
use stepstack_core::registry::AutoConfigureRequest;
use stepstack_core::{ClusterConnection, ConnectorConfig, Error, Result};
use tokio::sync::OnceCell;

use crate::aks::{self, AksIds, ClusterList, ClusterRef, CredentialResults, ManagedCluster};
use crate::auth::{self, AKS_SERVER_APP_SCOPE, AccessToken, AzureAuth};
use crate::config::{
    self, ACCESS_TOKEN, ARM_API_VERSION, AccessTokenConfig, CONNECTOR_TYPE, Credentials, IMPLICIT,
    ImplicitConfig, Parsed, SERVICE_PRINCIPAL, ServicePrincipalConfig,
};
use crate::environment::AzureEnvironment;
use crate::error::{AzureError, AzureResult};

/// The `api-version` of `GET /subscriptions`.
const SUBSCRIPTIONS_API_VERSION: &str = "2022-12-01";

/// The longest list of pages followed through `nextLink`.
const MAX_PAGES: usize = 100;

/// The description of the `azure` connector type.
pub fn connector_type_spec() -> ConnectorTypeSpec {
    ConnectorTypeSpec::new(
        "Azure Service Connector",
        CONNECTOR_TYPE,
        "Lists the AKS clusters of an Azure subscription and connects to them with Microsoft Entra ID tokens for the AKS server application (so clusters with local accounts disabled work); admin credentials only when asked for.",
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "Azure Service Principal",
            SERVICE_PRINCIPAL,
            "An Entra ID application (tenant id, client id) with a client secret or a client certificate (PEM with its private key, sent as a signed JWT client assertion); tokens come from the OAuth2 client-credentials grant and renew themselves.",
            config::schema_of::<ServicePrincipalConfig>(),
        )
        .with_secret_fields([
            "client_secret",
            "client_certificate",
            "client_certificate_password",
        ]),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "Azure Access Token",
            ACCESS_TOKEN,
            "Given tokens (`az account get-access-token`): one for Azure Resource Manager and, to reach clusters with Entra ID, one for the AKS server application; they expire at the connector's `expires_at` and are not renewed.",
            config::schema_of::<AccessTokenConfig>(),
        )
        .with_secret_fields(["token", "kubernetes_token"]),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "Azure Implicit Authentication",
            IMPLICIT,
            "The process's ambient credentials, as DefaultAzureCredential looks for them: AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH), then workload identity (AZURE_FEDERATED_TOKEN_FILE), then a managed identity (IDENTITY_ENDPOINT, else the instance metadata service), then the Azure CLI's login.",
            config::schema_of::<ImplicitConfig>(),
        )
        .implicit(),
    )
    .with_resource_type(ResourceTypeSpec::new(
        "AKS Kubernetes cluster",
        KUBERNETES_CLUSTER,
        "An AKS cluster of the subscription, identified by its name, or by `resource-group/name` when two resource groups hold clusters of the same name.",
        [SERVICE_PRINCIPAL, ACCESS_TOKEN, IMPLICIT],
        true,
    ))
    .with_auto_configuration(true)
}

/// The `azure` connector type: builds [`AzureConnector`]s.
#[derive(Debug, Clone)]
pub struct AzureConnectorFlavor {
    spec: ConnectorTypeSpec,
    environment: Arc<AzureEnvironment>,
}

impl AzureConnectorFlavor {
    /// The connector type reading this process's environment.
    pub fn new() -> Self {
        Self::with_environment(AzureEnvironment::from_process())
    }

    /// The connector type reading `environment` instead of the process's.
    pub fn with_environment(environment: AzureEnvironment) -> Self {
        AzureConnectorFlavor {
            spec: connector_type_spec(),
            environment: Arc::new(environment),
        }
    }

    /// Builds a connector as its concrete type.
    pub fn build_connector(&self, config: ConnectorConfig) -> Result<AzureConnector> {
        let name = config.name.clone();
        find_auth_method(&self.spec, &config.auth_method)
            .map_err(|e| e.with_context("connector", name.clone()))?;
        let scope = ConnectorScope::new(&self.spec, config, &AksIds)?;
        let parsed =
            config::parse(scope.config(), &self.environment).map_err(|e| e.into_core(&name))?;
        let http =
            stepstack_cloud_http::http_client(parsed.ca_certificates.as_deref()).map_err(|e| {
                AzureError::InvalidConfig {
                    method: scope.config().auth_method.clone(),
                    reason: format!("`ca_certificate` cannot be used: {e}"),
                }
                .into_core(&name)
            })?;
        let auth = AzureAuth::new(
            http,
            parsed.clone(),
            scope.config().expires_at,
            self.environment.clone(),
        );
        Ok(AzureConnector {
            subscription: OnceCell::new_with(parsed.subscription_id.clone()),
            scope,
            parsed,
            auth: Arc::new(auth),
            environment: self.environment.clone(),
        })
    }
}

impl Default for AzureConnectorFlavor {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ClusterConnectorFlavor for AzureConnectorFlavor {
    type Connector = AzureConnector;

    fn type_spec(&self) -> &ConnectorTypeSpec {
        &self.spec
    }

    fn new_connector(&self, config: ConnectorConfig) -> Result<AzureConnector> {
        self.build_connector(config)
    }

    async fn find_configuration(&self, request: &AutoConfigureRequest) -> Result<ConnectorConfig> {
        crate::auto::auto_config(&self.environment, request)
            .await
            .map_err(|e| e.into_core(&request.name))
    }
}

/// A connector to the AKS clusters of one subscription.
#[derive(Debug)]
pub struct AzureConnector {
    scope: ConnectorScope,
    parsed: Parsed,
    /// The configured subscription, or the single one the identity sees (found once).
    subscription: OnceCell<String>,
    auth: Arc<AzureAuth>,
    environment: Arc<AzureEnvironment>,
}

impl AzureConnector {
    /// The subscription whose clusters this connector lists: the configured one, or
    /// (once the connector has been used) the single subscription the identity sees.
    pub fn subscription_id(&self) -> Option<&str> {
        self.subscription.get().map(String::as_str)
    }

    /// The resource group the connector is limited to, if any.
    pub fn resource_group(&self) -> Option<&str> {
        self.parsed.resource_group.as_deref()
    }

    fn name(&self) -> &str {
        self.scope.name()
    }

    fn core_error(&self, error: AzureError) -> Error {
        let error = error.into_core(self.name());
        match self.subscription_id() {
            Some(subscription) => error.with_context("subscription", subscription.to_owned()),
            None => error,
        }
    }

    /// The subscription: the configured one, else the single one the identity sees
    /// (`GET {management}/subscriptions`), looked up once.
    async fn subscription(&self) -> AzureResult<&str> {
        self.subscription
            .get_or_try_init(|| self.discover_subscription())
            .await
            .map(String::as_str)
    }

    async fn discover_subscription(&self) -> AzureResult<String> {
        let mut url = format!(
            "{}/subscriptions?api-version={SUBSCRIPTIONS_API_VERSION}",
            self.parsed.management_endpoint
        );
        let mut subscriptions = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self.arm_call(http::Method::GET, &url).await?;
            if response.status != 200 {
                let (code, message) = arm_error_parts(&response);
                return Err(AzureError::SubscriptionList {
                    endpoint: self.parsed.management_endpoint.clone(),
                    status: response.status,
                    code,
                    message,
                });
            }
            let page: SubscriptionList = response.json(&url)?;
            subscriptions.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => url = next,
                None => break,
            }
        }
        let described = |list: &[Subscription]| {
            list.iter()
                .map(|s| match &s.display_name {
                    Some(name) => format!("{} ({name})", s.subscription_id),
                    None => s.subscription_id.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match subscriptions.as_slice() {
            [one] => {
                tracing::info!(connector = %self.name(), subscription = %one.subscription_id, "using the only subscription the identity sees");
                Ok(one.subscription_id.clone())
            }
            [] => Err(AzureError::NoSubscription {
                endpoint: self.parsed.management_endpoint.clone(),
            }),
            several => Err(AzureError::SeveralSubscriptions {
                count: several.len(),
                subscriptions: described(several),
            }),
        }
    }

    fn http(&self) -> &HttpClient {
        self.auth.http()
    }

    /// The ARM URL of `path` (below the subscription) with the api-version.
    async fn arm_url(&self, path: &str) -> AzureResult<String> {
        Ok(format!(
            "{}/subscriptions/{}{path}?api-version={ARM_API_VERSION}",
            self.parsed.management_endpoint,
            self.subscription().await?
        ))
    }

    /// A call to ARM with the cached token; on 401 once more with a new one.
    async fn arm_call(&self, method: http::Method, url: &str) -> AzureResult<HttpResponse> {
        let scope = self.parsed.management_scope.clone();
        let mut retried = false;
        loop {
            let token = self.auth.current(&scope).await?;
            let request =
                stepstack_cloud_http::bearer_request(method.clone(), url, &token.value, &[])?;
            let response = stepstack_cloud_http::send(self.http(), request, url).await?;
            if response.status == 401 && !retried && !self.auth.tokens_are_given() {
                tracing::debug!(connector = %self.name(), "ARM rejected the access token; fetching a new one");
                self.auth.invalidate(&scope).await;
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }

    fn arm_error(&self, response: &HttpResponse, action: &'static str) -> AzureError {
        let subscription = self.subscription_id().unwrap_or_default().to_owned();
        let (code, message) = arm_error_parts(response);
        match response.status {
            401 => AzureError::ArmUnauthenticated {
                subscription,
                code,
                message,
            },
            403 => AzureError::ArmDenied {
                subscription,
                action,
                code,
                message,
            },
            status => AzureError::Arm {
                subscription,
                status,
                code,
                message,
            },
        }
    }

    /// Every cluster the connector may use: the subscription's, or its resource group's.
    async fn list_clusters(&self) -> AzureResult<Vec<ManagedCluster>> {
        let path = match &self.parsed.resource_group {
            Some(group) => {
                format!(
                    "/resourceGroups/{group}/providers/Microsoft.ContainerService/managedClusters"
                )
            }
            None => "/providers/Microsoft.ContainerService/managedClusters".to_owned(),
        };
        let mut url = self.arm_url(&path).await?;
        let mut clusters = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self.arm_call(http::Method::GET, &url).await?;
            if response.status != 200 {
                return Err(self.arm_error(&response, "list AKS clusters"));
            }
            let page: ClusterList = response.json(&url)?;
            clusters.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(clusters)
    }

    /// The cluster `id` names: `resource-group/name` (or a bare name with a configured
    /// resource group) is fetched directly; otherwise a bare name must be unique.
    async fn find_cluster(&self, id: &str) -> AzureResult<ManagedCluster> {
        let cluster = ClusterRef::parse(id)?;
        let subscription = self.subscription().await?.to_owned();
        if let (Some(group), Some(configured)) =
            (&cluster.resource_group, &self.parsed.resource_group)
            && !group.eq_ignore_ascii_case(configured)
        {
            return Err(AzureError::OutsideResourceGroup {
                cluster: cluster.name,
                group: group.clone(),
                configured: configured.clone(),
            });
        }
        if let Some(group) = cluster
            .resource_group
            .as_ref()
            .or(self.parsed.resource_group.as_ref())
        {
            let url = self.arm_url(&format!(
                "/resourceGroups/{group}/providers/Microsoft.ContainerService/managedClusters/{}",
                cluster.name
            ))
            .await?;
            let response = self.arm_call(http::Method::GET, &url).await?;
            return match response.status {
                200 => Ok(response.json(&url)?),
                404 => Err(AzureError::ClusterNotFound {
                    cluster: cluster.name.clone(),
                    where_: format!("resource group `{group}`"),
                    subscription,
                    available: String::new(),
                }),
                _ => Err(self.arm_error(&response, "read AKS clusters")),
            };
        }
        let all = self.list_clusters().await?;
        let mut matching: Vec<ManagedCluster> = all
            .iter()
            .filter(|c| c.name == cluster.name)
            .cloned()
            .collect();
        match matching.len() {
            1 => Ok(matching.remove(0)),
            0 => Err(AzureError::ClusterNotFound {
                cluster: cluster.name.clone(),
                where_: "any resource group".to_owned(),
                subscription,
                available: if all.is_empty() {
                    "; the subscription has no AKS clusters this identity can see".to_owned()
                } else {
                    format!("; clusters found: {}", aks::listing_ids(&all).join(", "))
                },
            }),
            _ => {
                let mut groups: Vec<String> = matching
                    .iter()
                    .map(ManagedCluster::resource_group)
                    .collect();
                groups.sort();
                Err(AzureError::AmbiguousCluster {
                    example: format!("{}/{}", groups[0], cluster.name),
                    cluster: cluster.name,
                    subscription,
                    groups: groups.join(", "),
                })
            }
        }
    }

    /// `POST …/managedClusters/{name}/{action}`: a credential kubeconfig.
    async fn credentials(
        &self,
        cluster: &ManagedCluster,
        action: &str,
        which: &'static str,
    ) -> AzureResult<kube::config::Kubeconfig> {
        let url = self.arm_url(&format!(
            "/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{}/{action}",
            cluster.resource_group(),
            cluster.name
        ))
        .await?;
        let response = self.arm_call(http::Method::POST, &url).await?;
        if response.status == 403 && which == "admin" {
            let (_, message) = arm_error_parts(&response);
            return Err(AzureError::AdminCredentialsDisabled {
                cluster: cluster.name.clone(),
                message,
            });
        }
        if response.status != 200 {
            return Err(self.arm_error(&response, "read AKS cluster credentials"));
        }
        let results: CredentialResults = response.json(&url)?;
        aks::decode_kubeconfig(results, &cluster.name, which)
    }

    /// The connection to `cluster`.
    async fn connection_for(&self, cluster: &ManagedCluster) -> AzureResult<ClusterConnection> {
        if self.parsed.use_admin_credentials {
            let kubeconfig = self
                .credentials(cluster, "listClusterAdminCredential", "admin")
                .await?;
            let config = kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|_| AzureError::BadKubeconfig {
                cluster: cluster.name.clone(),
                which: "admin",
                reason: "kube cannot build a client configuration from it".to_owned(),
            })?;
            tracing::debug!(connector = %self.name(), cluster = %cluster.name, "connecting to an AKS cluster with admin credentials");
            return Ok(ClusterConnection::new(config));
        }
        if let Credentials::Tokens {
            kubernetes: None, ..
        } = &self.parsed.credentials
        {
            return Err(AzureError::NoKubernetesToken {
                scope: AKS_SERVER_APP_SCOPE.to_owned(),
                app: auth::AKS_SERVER_APP_ID.to_owned(),
            });
        }
        // The user kubeconfig gives the server and CA; its exec (kubelogin) user is not used.
        let kubeconfig = self
            .credentials(cluster, "listClusterUserCredential", "user")
            .await?;
        let (server, ca) = aks::server_and_ca(&kubeconfig, &cluster.name)?;
        let url: http::Uri = server.parse().map_err(|_| AzureError::BadKubeconfig {
            cluster: cluster.name.clone(),
            which: "user",
            reason: format!("its server `{server}` is not a URL"),
        })?;
        let mut config = kube::Config::new(url);
        if let Some(ca) = &ca {
            let certs = stepstack_cloud_http::pem_certificates(ca).map_err(|e| {
                AzureError::BadKubeconfig {
                    cluster: cluster.name.clone(),
                    which: "user",
                    reason: format!("its CA cannot be used: {e}"),
                }
            })?;
            config.root_cert = Some(certs);
        }
        tracing::debug!(connector = %self.name(), cluster = %cluster.name, location = %cluster.location, local_accounts_disabled = ?cluster.properties.disable_local_accounts, %server, "connecting to an AKS cluster with an Entra ID token");
        if self.auth.tokens_are_given() {
            // A given token cannot be renewed: the connection expires with it.
            let token = self.auth.fetch(AKS_SERVER_APP_SCOPE).await?;
            config.auth_info.token = Some(token.value);
            return Ok(
                ClusterConnection::new(config).with_expires_at(self.scope.config().expires_at)
            );
        }
        let current = self.auth.current(AKS_SERVER_APP_SCOPE).await?;
        Ok(ClusterConnection::new(config)
            .with_token_source(Arc::new(
                IssuedTokenSource::new(self.auth.clone(), AKS_SERVER_APP_SCOPE, self.name())
                    .with_context("subscription", self.subscription().await?),
            ))
            .with_expires_at(current.expires_at))
    }

    /// Writes a kubeconfig context for cluster `id` with a current Entra ID token.
    async fn login(&self, id: &str) -> AzureResult<String> {
        let path = self
            .environment
            .login_kubeconfig_path()
            .ok_or(AzureError::NoLoginPath)?;
        let cluster = self.find_cluster(id).await?;
        let kubeconfig = self
            .credentials(&cluster, "listClusterUserCredential", "user")
            .await?;
        let (server, ca) = aks::server_and_ca(&kubeconfig, &cluster.name)?;
        let token: AccessToken = self.auth.current(AKS_SERVER_APP_SCOPE).await?;
        let context = format!("aks_{}_{}", cluster.resource_group(), cluster.name);
        crate::login::write_context(&path, &context, &server, ca.as_deref(), token.value.clone())
            .await?;
        tracing::info!(connector = %self.name(), %context, path = %path.display(), "updated the local kubeconfig");
        let expiry = token
            .expires_at
            .map(|t| format!("; its Entra ID token expires at {t}, log in again then"))
            .unwrap_or_default();
        Ok(format!(
            "updated the kubeconfig {} with AKS cluster `{}` in resource group `{}`; the current context is now `{context}`{expiry}",
            path.display(),
            cluster.name,
            cluster.resource_group()
        ))
    }
}

/// A page of `GET /subscriptions`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionList {
    #[serde(default)]
    value: Vec<Subscription>,
    #[serde(default)]
    next_link: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    subscription_id: String,
    #[serde(default)]
    display_name: Option<String>,
}

/// ARM's `error.code` and `error.message` (or the start of the body).
fn arm_error_parts(response: &HttpResponse) -> (String, String) {
    let value = response.json_value();
    let code = value["error"]["code"]
        .as_str()
        .unwrap_or("(no code)")
        .to_owned();
    let message = value["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| response.excerpt());
    (code, message)
}

#[async_trait]
impl ResourceVerifier for AzureConnector {
    async fn verify_resource(
        &self,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> Result<Vec<String>> {
        let result = match (resource_type, resource_id) {
            (None, _) => self
                .auth
                .current(&self.parsed.management_scope)
                .await
                .map(|_| Vec::new()),
            (Some(_), None) => self
                .list_clusters()
                .await
                .map(|clusters| aks::listing_ids(&clusters)),
            (Some(_), Some(id)) => self.find_cluster(id).await.map(|_| vec![id.to_owned()]),
        };
        result.map_err(|e| not_found_as_denied(self.core_error(e)))
    }
}

#[async_trait]
impl ClusterConnector for AzureConnector {
    fn scope(&self) -> &ConnectorScope {
        &self.scope
    }

    fn resource_ids(&self) -> &dyn ResourceIds {
        &AksIds
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
