//! The `aws` connector type and its connectors.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use jiff::Timestamp;
use stepstack_core::connector::{
    AuthMethodSpec, ClusterConnector, ConnectorError as _, ConnectorScope, ConnectorTypeSpec,
    ExpirationBounds, ImplicitAuthGate, KUBERNETES_CLUSTER, ResourceIds, ResourceTypeSpec,
    ResourceVerifier,
};
use stepstack_core::{
    AutoConfigureRequest, ClusterConnection, ConnectorConfig, ConnectorFlavor, Error, ErrorKind,
    Result, ServiceConnector,
};

use crate::auto::auto_configure;
use crate::config::{
    FEDERATION_TOKEN, FederationTokenConfig, IAM_ROLE, IMPLICIT, IamRoleConfig, ImplicitConfig,
    SECRET_KEY, SESSION_TOKEN, STS_TOKEN, SecretKeyConfig, Settings, StsTokenConfig, schema_of,
};
use crate::credentials::CredentialProvider;
use crate::eks::AwsResourceIds;
use crate::environment::AwsEnvironment;
use crate::error::{AwsError, AwsResult, from_sdk};
use crate::token::EksTokenSource;
use crate::{AWS_GENERIC, CONNECTOR_TYPE};

const KEY_SECRETS: [&str; 2] = ["aws_access_key_id", "aws_secret_access_key"];

/// The description of the `aws` connector type.
pub fn connector_type_spec() -> ConnectorTypeSpec {
    let all = [
        IMPLICIT,
        SECRET_KEY,
        STS_TOKEN,
        IAM_ROLE,
        SESSION_TOKEN,
        FEDERATION_TOKEN,
    ];
    ConnectorTypeSpec::new(
        "AWS Service Connector",
        CONNECTOR_TYPE,
        "Reaches AWS with an access key, temporary credentials, an assumed IAM role or the machine's own credentials; lists EKS clusters and connects to them with STS-presigned bearer tokens that renew themselves.",
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "AWS Implicit Authentication",
            IMPLICIT,
            "The machine's own AWS credentials (environment variables, shared config and credentials files, profiles, instance or container roles), optionally used to assume a role. Disabled unless STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS is set.",
            schema_of::<ImplicitConfig>(),
        )
        .with_expiration(ExpirationBounds::new(Some(900), None, Some(3600)))
        .implicit(),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "AWS Secret Key",
            SECRET_KEY,
            "A long-lived IAM access key, used as it is.",
            schema_of::<SecretKeyConfig>(),
        )
        .with_secret_fields(KEY_SECRETS),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "AWS STS Token",
            STS_TOKEN,
            "Temporary credentials with a session token, used until the connector's expires_at.",
            schema_of::<StsTokenConfig>(),
        )
        .with_secret_fields(KEY_SECRETS.into_iter().chain(["aws_session_token"])),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "AWS IAM Role",
            IAM_ROLE,
            "Assumes an IAM role with a long-lived key; the session is limited to the requested resource by a generated session policy unless a policy or policy ARNs are configured.",
            schema_of::<IamRoleConfig>(),
        )
        .with_secret_fields(KEY_SECRETS)
        .with_expiration(ExpirationBounds::new(Some(900), None, Some(3600))),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "AWS Session Token",
            SESSION_TOKEN,
            "Temporary credentials from STS GetSessionToken for a long-lived key.",
            schema_of::<SecretKeyConfig>(),
        )
        .with_secret_fields(KEY_SECRETS)
        .with_expiration(ExpirationBounds::new(Some(900), Some(129_600), Some(43_200))),
    )
    .with_auth_method(
        AuthMethodSpec::new(
            "AWS Federation Token",
            FEDERATION_TOKEN,
            "Temporary credentials of a federated user from STS GetFederationToken, limited by a session policy (generated for the requested resource unless configured).",
            schema_of::<FederationTokenConfig>(),
        )
        .with_secret_fields(KEY_SECRETS)
        .with_expiration(ExpirationBounds::new(Some(900), Some(129_600), Some(43_200))),
    )
    .with_resource_type(ResourceTypeSpec::new(
        "EKS Kubernetes cluster",
        KUBERNETES_CLUSTER,
        "An EKS cluster in the connector's region, by name or ARN.",
        all,
        true,
    ))
    .with_resource_type(ResourceTypeSpec::new(
        "generic AWS resource",
        AWS_GENERIC,
        "The AWS account and region the credentials reach; its id is the region.",
        all,
        false,
    ))
    .with_auto_configuration(true)
}

/// The `aws` connector type: register it with [`crate::register`].
pub struct AwsConnectorFlavor {
    spec: ConnectorTypeSpec,
    environment: AwsEnvironment,
    gate: ImplicitAuthGate,
}

impl AwsConnectorFlavor {
    /// The flavor, reading the local AWS configuration and the implicit-auth gate from
    /// this process's environment.
    pub fn new() -> Self {
        AwsConnectorFlavor {
            spec: connector_type_spec(),
            environment: AwsEnvironment::from_process(),
            gate: ImplicitAuthGate::from_env(),
        }
    }

    /// Uses `environment` instead of the process's for `auto_configure` and for the
    /// ambient credentials of the `implicit` method (tests, embedding programs).
    pub fn with_environment(mut self, environment: AwsEnvironment) -> Self {
        self.environment = environment;
        self
    }

    /// Uses `gate` for implicit auth methods instead of reading the environment.
    pub fn with_implicit_gate(mut self, gate: ImplicitAuthGate) -> Self {
        self.gate = gate;
        self
    }

    /// Builds a connector, returning its concrete type.
    pub fn build_connector(&self, config: ConnectorConfig) -> Result<AwsConnector> {
        AwsConnector::new(&self.spec, config, self.gate, self.environment.clone())
    }
}

impl Default for AwsConnectorFlavor {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ConnectorFlavor for AwsConnectorFlavor {
    fn connector_type(&self) -> &ConnectorTypeSpec {
        &self.spec
    }

    fn build(&self, config: ConnectorConfig) -> Result<Arc<dyn ServiceConnector>> {
        Ok(Arc::new(self.build_connector(config)?))
    }

    async fn auto_configure(&self, request: AutoConfigureRequest) -> Result<ConnectorConfig> {
        let config = auto_configure(&self.environment, &request, Timestamp::now())?;
        // Check the result against the type (method, resource scope, expiry bounds).
        let connector = self.build_connector(config)?;
        Ok(connector.scope.config().clone())
    }
}

/// One configured `aws` connector.
#[derive(Debug)]
pub struct AwsConnector {
    scope: ConnectorScope,
    ids: AwsResourceIds,
    provider: Arc<CredentialProvider>,
    gate: ImplicitAuthGate,
    environment: AwsEnvironment,
}

impl std::fmt::Debug for CredentialProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialProvider")
            .field("connector", &self.connector_name())
            .field("settings", self.settings())
            .finish_non_exhaustive()
    }
}

impl AwsConnector {
    fn new(
        spec: &ConnectorTypeSpec,
        config: ConnectorConfig,
        gate: ImplicitAuthGate,
        environment: AwsEnvironment,
    ) -> Result<Self> {
        let name = config.name.clone();
        let region_hint = config.str_value("region").unwrap_or_default().to_owned();
        let settings = Settings::parse(&config)
            .map_err(|e| e.into_core(&name).with_context("region", region_hint))?;
        let ids = AwsResourceIds {
            region: settings.region.clone(),
        };
        let scope = ConnectorScope::new(spec, config, &ids)?;
        let expires_at = scope.config().expires_at.map(SystemTime::from);
        let provider = Arc::new(CredentialProvider::new(
            name,
            settings,
            scope.config().expiration_seconds,
            expires_at,
            environment.clone(),
        ));
        Ok(AwsConnector {
            scope,
            ids,
            provider,
            gate,
            environment,
        })
    }

    fn name(&self) -> &str {
        self.scope.name()
    }

    fn region(&self) -> &str {
        self.provider.region()
    }

    fn core_error(&self, e: AwsError) -> Error {
        e.into_core(self.name())
            .with_context("region", self.region().to_owned())
    }

    async fn caller_identity(
        &self,
        credentials: aws_credential_types::Credentials,
    ) -> AwsResult<String> {
        let sts = aws_sdk_sts::Client::new(&self.provider.sdk_config(credentials));
        let out = sts.get_caller_identity().send().await.map_err(|e| {
            from_sdk(
                format!(
                    "failed to verify AWS account access in region {}",
                    self.region()
                ),
                e,
            )
        })?;
        Ok(out.arn().unwrap_or_default().to_owned())
    }

    fn eks(&self, credentials: aws_credential_types::Credentials) -> aws_sdk_eks::Client {
        aws_sdk_eks::Client::new(&self.provider.sdk_config(credentials))
    }

    async fn list_clusters(&self, eks: &aws_sdk_eks::Client) -> AwsResult<Vec<String>> {
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = eks
                .list_clusters()
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| {
                    from_sdk(
                        format!(
                            "failed to list the EKS clusters in region {}",
                            self.region()
                        ),
                        e,
                    )
                })?;
            names.extend(out.clusters().iter().cloned());
            match out.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => break,
            }
        }
        names.sort();
        Ok(names)
    }

    async fn describe_cluster(
        &self,
        eks: &aws_sdk_eks::Client,
        name: &str,
    ) -> AwsResult<aws_sdk_eks::types::Cluster> {
        let out = eks
            .describe_cluster()
            .name(name)
            .send()
            .await
            .map_err(|e| {
                from_sdk(
                    format!(
                        "failed to fetch EKS cluster `{name}` in region {}",
                        self.region()
                    ),
                    e,
                )
            })?;
        out.cluster().cloned().ok_or_else(|| AwsError::Transport {
            context: format!("EKS DescribeCluster `{name}`"),
            detail: "the answer carried no cluster".into(),
        })
    }

    /// The connection to EKS cluster `name`: endpoint and CA from DescribeCluster, and a
    /// token source that presigns a fresh token whenever the client needs one.
    async fn cluster_connection(&self, name: &str) -> AwsResult<ClusterConnection> {
        let credentials = self
            .provider
            .credentials(Some(KUBERNETES_CLUSTER), Some(name))
            .await?;
        let cluster = self.describe_cluster(&self.eks(credentials), name).await?;
        if let Some(status) = cluster.status()
            && status.as_str() != "ACTIVE"
        {
            tracing::warn!(connector = %self.name(), cluster = %name, status = %status.as_str(), "the EKS cluster is not ACTIVE");
        }
        let endpoint = cluster.endpoint().filter(|e| !e.is_empty()).ok_or_else(|| {
            AwsError::ClusterNotReady(format!(
                "EKS cluster `{name}` in region {} has no API endpoint yet (status {}); wait until it is ACTIVE",
                self.region(),
                cluster.status().map(|s| s.as_str()).unwrap_or("unknown")
            ))
        })?;
        let uri: http::Uri = endpoint.parse().map_err(|_| {
            AwsError::UnexpectedAnswer(format!(
                "EKS cluster `{name}` reported an endpoint that is not a URL: `{endpoint}`"
            ))
        })?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".to_owned();
        // An unreadable CA does not stop the token (`service-connector token` needs only
        // that); it stops clients, which say why when one is built.
        let mut unreadable_ca = None;
        if let Some(data) = cluster.certificate_authority().and_then(|c| c.data()) {
            match crate::eks::ca_certificates(name, self.region(), data) {
                Ok(ders) => config.root_cert = Some(ders),
                Err(e) => unreadable_ca = Some(e),
            }
        }
        let source = EksTokenSource {
            provider: self.provider.clone(),
            cluster_name: name.to_owned(),
        };
        tracing::debug!(connector = %self.name(), cluster = %name, region = %self.region(), server = %endpoint, "connected to an EKS cluster");
        let mut connection = ClusterConnection::new(config)
            .with_token_source(Arc::new(source))
            .with_expires_at(self.scope.config().expires_at);
        if let Some(e) = unreadable_ca {
            tracing::debug!(connector = %self.name(), cluster = %name, error = %e, "the connection issues tokens but builds no client");
            connection = connection
                .with_client_refusal(&self.core_error(e).with_context("cluster", name.to_owned()));
        }
        Ok(connection)
    }
}

#[async_trait]
impl ResourceVerifier for AwsConnector {
    async fn verify_resource(
        &self,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> Result<Vec<String>> {
        let credentials = self
            .provider
            .credentials(resource_type, resource_id)
            .await
            .map_err(|e| self.core_error(e))?;
        let arn = self
            .caller_identity(credentials.clone())
            .await
            .map_err(|e| self.core_error(e))?;
        tracing::debug!(connector = %self.name(), identity = %arn, "verified the AWS identity");
        match resource_type {
            None => Ok(Vec::new()),
            Some(AWS_GENERIC) => Ok(vec![self.region().to_owned()]),
            Some(KUBERNETES_CLUSTER) => {
                let eks = self.eks(credentials);
                match resource_id {
                    None => self
                        .list_clusters(&eks)
                        .await
                        .map_err(|e| self.core_error(e)),
                    Some(name) => match self.describe_cluster(&eks, name).await {
                        Ok(_) => Ok(vec![name.to_owned()]),
                        // A cluster the credentials cannot see: report it as an
                        // authorization failure of this connector, naming the code.
                        Err(e) if e.kind() == ErrorKind::NotFound => {
                            let detail = match &e {
                                AwsError::Service { code, message, .. } => {
                                    format!("AWS error {code}: {message}")
                                }
                                other => other.to_string(),
                            };
                            let mut err = Error::new(
                                ErrorKind::PermissionDenied,
                                format!(
                                    "EKS cluster `{name}` does not exist in region {} or is not visible to these credentials ({detail}); check the cluster name and the connector's region",
                                    self.region(),
                                ),
                            )
                            .with_context("connector", self.name().to_owned())
                            .with_context("region", self.region().to_owned());
                            if let Some(code) = e.code() {
                                err = err.with_context("aws_error_code", code.to_owned());
                            }
                            Err(err)
                        }
                        Err(e) => Err(self.core_error(e)),
                    },
                }
            }
            Some(other) => Err(Error::new(
                ErrorKind::InvalidSettings,
                format!("connector type `aws` has no resource type `{other}`"),
            )),
        }
    }
}

#[async_trait]
impl ClusterConnector for AwsConnector {
    fn scope(&self) -> &ConnectorScope {
        &self.scope
    }

    fn resource_ids(&self) -> &dyn ResourceIds {
        &self.ids
    }

    fn implicit_gate(&self) -> ImplicitAuthGate {
        self.gate
    }

    async fn connect_cluster(&self, name: &str) -> Result<ClusterConnection> {
        self.cluster_connection(name)
            .await
            .map_err(|e| self.core_error(e).with_context("cluster", name.to_owned()))
    }

    async fn login_cluster(&self, name: &str) -> Result<String> {
        let path = self.environment.kubeconfig_path().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidSettings,
                "no kubeconfig to update: neither KUBECONFIG nor a home directory is set; set KUBECONFIG",
            )
            .with_context("connector", self.name().to_owned())
        })?;
        let (entry, expires_at) = self
            .login_entry(name)
            .await
            .map_err(|e| self.core_error(e).with_context("cluster", name.to_owned()))?;
        let context = entry.name.clone();
        crate::login::write_login(&path, entry)
            .await
            .map_err(|e| self.core_error(e))?;
        tracing::info!(connector = %self.name(), context = %context, path = %path.display(), "updated the local kubeconfig");
        Ok(format!(
            "updated the kubeconfig {} with EKS cluster `{name}`; the current context is now `{context}`. Its token expires at {expires_at} (EKS tokens last 15 minutes): run login again for a new one",
            path.display()
        ))
    }
}

impl AwsConnector {
    /// The kubeconfig entry of EKS cluster `name`, with a token valid for 15 minutes.
    async fn login_entry(&self, name: &str) -> AwsResult<(crate::login::LoginEntry, Timestamp)> {
        let credentials = self
            .provider
            .credentials(Some(KUBERNETES_CLUSTER), Some(name))
            .await?;
        let cluster = self
            .describe_cluster(&self.eks(credentials.clone()), name)
            .await?;
        let server = cluster
            .endpoint()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| {
                AwsError::ClusterNotReady(format!(
                    "EKS cluster `{name}` in region {} has no API endpoint yet; wait until it is ACTIVE",
                    self.region()
                ))
            })?
            .to_owned();
        let ca = cluster
            .certificate_authority()
            .and_then(|c| c.data())
            .map(str::to_owned);
        // kubectl verifies the API server with this CA: without a readable one the
        // context would not work, so nothing is written.
        if let Some(data) = &ca {
            crate::eks::ca_certificates(name, self.region(), data)?;
        }
        let now = SystemTime::now();
        let token = crate::token::build(&credentials, self.region(), name, now)?;
        let mut expires = now + crate::token::EKS_TOKEN_LIFETIME;
        if let Some(expiry) = credentials.expiry()
            && expiry < expires
        {
            expires = expiry;
        }
        let entry = crate::login::LoginEntry {
            name: cluster.arn().unwrap_or(name).to_owned(),
            server,
            certificate_authority_data: ca,
            token: token.into(),
        };
        Ok((
            entry,
            Timestamp::try_from(expires).unwrap_or_else(|_| Timestamp::now()),
        ))
    }
}
