//! Microsoft Entra ID access tokens over plain REST: the OAuth2 client-credentials grant
//! (`POST {authority}/{tenant}/oauth2/v2.0/token`) with a client secret, cached per scope.

use std::path::Path;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use stepstack_cloud_http::{HttpClient, HttpError, TokenCache, form_request, send};
use tokio::sync::Mutex;

use stepstack_cloud_http::TokenIssuer;

use crate::ambient::{self, ManagedIdentity};
use crate::certificate::{CLIENT_ASSERTION_TYPE, ClientCertificate};
use crate::config::{ClientCredentials, ClientProof, Credentials, IMPLICIT, Parsed};
use crate::environment::{AzureEnvironment, read_variable_file};
use crate::error::{AzureError, AzureResult};

pub(crate) use stepstack_cloud_http::AccessToken;

/// The application id of the AKS server application ("Azure Kubernetes Service AAD
/// Server"), the audience of tokens AKS clusters with Entra ID integration accept.
pub const AKS_SERVER_APP_ID: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// The token scope of the AKS server application.
pub const AKS_SERVER_APP_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/// A cached token is replaced this long before it expires.
const CACHE_MARGIN: SignedDuration = SignedDuration::from_secs(300);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// Issues Entra ID access tokens for one connector's credentials, cached per scope.
#[derive(Debug)]
pub(crate) struct AzureAuth {
    http: HttpClient,
    parsed: Parsed,
    /// The expiry of `access-token` tokens.
    token_expires_at: Option<Timestamp>,
    environment: Arc<AzureEnvironment>,
    cache: TokenCache<String>,
    /// The ambient source that gave the implicit method its last token.
    implicit_source: Mutex<Option<AmbientSource>>,
}

/// Where the implicit method found credentials that need probing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AmbientSource {
    ManagedIdentity,
    AzureCli,
}

/// Cluster connections refresh their tokens of the AKS server application through this.
#[async_trait::async_trait]
impl TokenIssuer for AzureAuth {
    type Error = AzureError;

    async fn issue(&self, scope: &str) -> AzureResult<AccessToken> {
        self.fetch(scope).await
    }
}

impl AzureAuth {
    pub(crate) fn new(
        http: HttpClient,
        parsed: Parsed,
        token_expires_at: Option<Timestamp>,
        environment: Arc<AzureEnvironment>,
    ) -> Self {
        AzureAuth {
            http,
            parsed,
            token_expires_at,
            environment,
            cache: TokenCache::new(CACHE_MARGIN),
            implicit_source: Mutex::new(None),
        }
    }

    pub(crate) fn http(&self) -> &HttpClient {
        &self.http
    }

    /// A token for `scope`: the cached one unless it expires within five minutes.
    pub(crate) async fn current(&self, scope: &str) -> AzureResult<AccessToken> {
        self.cache
            .get_or_fetch(&scope.to_owned(), || self.fetch(scope))
            .await
    }

    /// Forgets the cached token of `scope` (after an API rejected it).
    pub(crate) async fn invalidate(&self, scope: &str) {
        self.cache.invalidate(&scope.to_owned()).await;
    }

    /// Whether tokens are given (and cannot be renewed).
    pub(crate) fn tokens_are_given(&self) -> bool {
        matches!(self.parsed.credentials, Credentials::Tokens { .. })
    }

    /// A new token for `scope`, through the credentials' real HTTP path.
    pub(crate) async fn fetch(&self, scope: &str) -> AzureResult<AccessToken> {
        match &self.parsed.credentials {
            Credentials::Client(client) => self.client_credentials(client, scope).await,
            Credentials::Implicit {
                managed_identity_endpoint,
                azure_cli,
            } => {
                self.implicit(
                    scope,
                    managed_identity_endpoint.as_deref(),
                    azure_cli.as_deref(),
                )
                .await
            }
            Credentials::Tokens { arm, kubernetes } => {
                let value = if scope == AKS_SERVER_APP_SCOPE {
                    kubernetes.clone().ok_or(AzureError::NoKubernetesToken {
                        scope: AKS_SERVER_APP_SCOPE.to_owned(),
                        app: AKS_SERVER_APP_ID.to_owned(),
                    })?
                } else {
                    arm.clone()
                };
                Ok(AccessToken {
                    value,
                    expires_at: self.token_expires_at,
                })
            }
        }
    }

    /// The implicit method: the first ambient credentials found, in
    /// DefaultAzureCredential's order: the `AZURE_*` client secret or certificate, workload
    /// identity federation (`AZURE_FEDERATED_TOKEN_FILE`), a
    /// managed identity, the Azure CLI. Once the instance metadata service or the CLI has
    /// given a token, later tokens come from the same source (no probing again).
    async fn implicit(
        &self,
        scope: &str,
        managed_identity_endpoint: Option<&str>,
        azure_cli: Option<&Path>,
    ) -> AzureResult<AccessToken> {
        let env = &self.environment;
        if let Some(credentials) = env.client_secret_credentials() {
            return self.client_credentials(&credentials, scope).await;
        }
        if let Some((tenant_id, client_id, path)) = env.client_certificate_file() {
            let pem = read_variable_file("AZURE_CLIENT_CERTIFICATE_PATH", &path).await?;
            let certificate = ClientCertificate::from_pem(
                &SecretString::from(pem),
                env.client_certificate_password.as_ref(),
                IMPLICIT,
            )?;
            let credentials = ClientCredentials {
                tenant_id,
                client_id,
                proof: ClientProof::Certificate(Arc::new(certificate)),
            };
            return self.client_credentials(&credentials, scope).await;
        }
        if let Some(credentials) = env.federated_credentials() {
            return self.client_credentials(&credentials, scope).await;
        }
        let client_id = env.client_id.as_deref();
        if let (Some(url), Some(header)) = (&env.identity_endpoint, &env.identity_header) {
            let endpoint = ManagedIdentity::AppService { url, header };
            return ambient::managed_identity_token(&self.http, endpoint, scope, client_id).await;
        }
        let remembered = *self.implicit_source.lock().await;
        let mut tried = Vec::new();
        if remembered != Some(AmbientSource::AzureCli) {
            let endpoint = ManagedIdentity::Imds {
                url: managed_identity_endpoint.unwrap_or(ambient::DEFAULT_IMDS_ENDPOINT),
                probe: remembered.is_none(),
            };
            match ambient::managed_identity_token(&self.http, endpoint, scope, client_id).await {
                Ok(token) => {
                    *self.implicit_source.lock().await = Some(AmbientSource::ManagedIdentity);
                    return Ok(token);
                }
                Err(e) if remembered.is_some() => return Err(e),
                Err(e) => tried.push(e.to_string()),
            }
        }
        let program = azure_cli.unwrap_or(&env.azure_cli);
        match ambient::azure_cli_token(program, scope, env.tenant_id.as_deref()).await {
            Ok(cli) => {
                *self.implicit_source.lock().await = Some(AmbientSource::AzureCli);
                Ok(cli.token)
            }
            Err(e) if remembered.is_some() => Err(e),
            Err(e) => {
                tried.push(e.to_string());
                Err(AzureError::NoCredentials {
                    tried: format!(
                        "no AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE; {}",
                        tried.join("; ")
                    ),
                })
            }
        }
    }

    /// The OAuth2 client-credentials grant with a client secret or a client assertion
    /// signed by a certificate.
    async fn client_credentials(
        &self,
        credentials: &ClientCredentials,
        scope: &str,
    ) -> AzureResult<AccessToken> {
        let tenant = credentials.tenant_id.as_str();
        let client_id = credentials.client_id.as_str();
        let endpoint = format!("{}/{tenant}/oauth2/v2.0/token", self.parsed.authority_host);
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", client_id.to_owned()),
            ("scope", scope.to_owned()),
        ];
        let hint = match &credentials.proof {
            ClientProof::Certificate(certificate) => {
                let assertion =
                    certificate.assertion(client_id, &endpoint, Timestamp::now().as_second())?;
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()));
                form.push(("client_assertion", assertion));
                format!(
                    "check the tenant id and client id, that the certificate with thumbprint (x5t) `{}` is uploaded to the application's certificates and has not expired, and that the private key in `client_certificate` belongs to it",
                    certificate.thumbprint()
                )
            }
            ClientProof::FederatedTokenFile(token_file) => {
                // Read for every grant: the kubelet rotates the file.
                let token = read_variable_file("AZURE_FEDERATED_TOKEN_FILE", token_file).await?;
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()));
                form.push(("client_assertion", token.trim().to_owned()));
                format!(
                    "check that the application has a federated credential whose issuer and subject match the token in AZURE_FEDERATED_TOKEN_FILE ({}) — on AKS: workload identity enabled on the cluster, the pod labelled `azure.workload.identity/use: \"true\"` and its service account annotated with `azure.workload.identity/client-id` — and that the file is current",
                    token_file.display()
                )
            }
            ClientProof::Secret(secret) => {
                form.push(("client_secret", secret.expose_secret().to_owned()));
                "check the tenant id, client id and client secret (the secret's value, not its id) and that the secret has not expired".to_owned()
            }
        };
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let request = form_request(&endpoint, &form)?;
        let response = send(&self.http, request, &endpoint).await?;
        tracing::debug!(
            client_id,
            tenant,
            scope,
            status = response.status,
            "Entra ID client-credentials grant"
        );
        if !response.is_success() {
            let value = response.json_value();
            let Some(error) = value["error"].as_str().filter(|_| response.status < 500) else {
                return Err(HttpError::BadResponse {
                    endpoint,
                    status: response.status,
                    reason: response.excerpt(),
                }
                .into());
            };
            // AADSTS descriptions end in trace/correlation ids; keep the first sentence.
            let description = value["error_description"]
                .as_str()
                .map(|d| d.split(" Trace ID:").next().unwrap_or(d).trim())
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            return Err(AzureError::TokenRejected {
                endpoint,
                tenant: tenant.to_owned(),
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                reason: format!("{error}{description}; {hint}"),
            });
        }
        let parsed: TokenResponse = response.json(&endpoint)?;
        // Entra ID has sent `expires_in` both as a number and as a string.
        let seconds = match parsed.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        Ok(AccessToken::expiring_in(parsed.access_token, seconds))
    }
}
