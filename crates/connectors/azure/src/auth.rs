//! Microsoft Entra ID access tokens over plain REST: the OAuth2 client-credentials grant
//! (`POST {authority}/{tenant}/oauth2/v2.0/token`) with a client secret, cached per scope.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::{Credentials, Parsed};
use crate::environment::AzureEnvironment;
use crate::error::{AResult, AzureError};

/// The application id of the AKS server application ("Azure Kubernetes Service AAD
/// Server"), the audience of tokens AKS clusters with Entra ID integration accept.
pub const AKS_SERVER_APP_ID: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// The token scope of the AKS server application.
pub const AKS_SERVER_APP_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A cached token is replaced this long before it expires.
const CACHE_MARGIN: SignedDuration = SignedDuration::from_secs(300);

/// The HTTP client of every Azure call: HTTPS with the system roots, plain HTTP allowed
/// for local fakes.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The client: the system roots, or only the configured CA certificates (DER).
pub(crate) fn http_client(ca_certificates: Option<&[Vec<u8>]>) -> AResult<HttpClient> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let with_roots = |roots: rustls::RootCertStore| {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .map_err(|e| AzureError::InvalidConfig {
                method: "(any)".to_owned(),
                reason: format!("TLS cannot be set up: {e}"),
            })
    };
    let builder = if let Some(certs) = ca_certificates {
        let mut roots = rustls::RootCertStore::empty();
        for der in certs {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| AzureError::InvalidConfig {
                    method: "(any)".to_owned(),
                    reason: format!("`ca_certificate` is not a usable CA certificate: {e}"),
                })?;
        }
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(with_roots(roots)?)
    } else {
        match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "no system CA certificates; HTTPS calls to Azure will fail");
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(with_roots(rustls::RootCertStore::empty())?)
            }
        }
    };
    let connector = builder.https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// A response: status and body.
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

impl HttpResponse {
    /// The body as `T`, or a `BadResponse` error naming `endpoint`.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, endpoint: &str) -> AResult<T> {
        serde_json::from_slice(&self.body).map_err(|e| AzureError::BadResponse {
            endpoint: endpoint.to_owned(),
            status: self.status,
            reason: format!("the body is not the expected JSON: {e}"),
        })
    }

    /// ARM's `error.code` and `error.message` (or the start of the body).
    pub(crate) fn arm_error(&self) -> (String, String) {
        let value: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let code = value["error"]["code"]
            .as_str()
            .unwrap_or("(no code)")
            .to_owned();
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect()
            });
        (code, message)
    }
}

/// Sends `request`; `endpoint` names it in errors.
pub(crate) async fn send(
    client: &HttpClient,
    request: http::Request<Full<Bytes>>,
    endpoint: &str,
) -> AResult<HttpResponse> {
    let unreachable = |reason: String| AzureError::Unreachable {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
        .await
        .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
        .map_err(|e| unreachable(error_chain(&e)))?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| unreachable("the response body did not arrive in time".to_owned()))?
        .map_err(|e| unreachable(error_chain(&e)))?
        .to_bytes();
    Ok(HttpResponse { status, body })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// An `Authorization: Bearer …` header value, marked sensitive.
pub(crate) fn bearer_header(token: &SecretString) -> AResult<http::HeaderValue> {
    let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
        .map_err(|_| AzureError::InvalidConfig {
            method: "access-token".to_owned(),
            reason: "the token contains characters not allowed in an HTTP header".to_owned(),
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// An access token and its expiry. `Debug` hides the token.
#[derive(Clone)]
pub(crate) struct AccessToken {
    pub(crate) value: SecretString,
    pub(crate) expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[HIDDEN]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

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
    cache: Mutex<HashMap<String, AccessToken>>,
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
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn http(&self) -> &HttpClient {
        &self.http
    }

    /// A token for `scope`: the cached one unless it expires within five minutes.
    pub(crate) async fn current(&self, scope: &str) -> AResult<AccessToken> {
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.get(scope)
            && token
                .expires_at
                .is_none_or(|at| Timestamp::now() + CACHE_MARGIN < at)
        {
            return Ok(token.clone());
        }
        let token = self.fetch(scope).await?;
        cache.insert(scope.to_owned(), token.clone());
        Ok(token)
    }

    /// Forgets the cached token of `scope` (after an API rejected it).
    pub(crate) async fn invalidate(&self, scope: &str) {
        self.cache.lock().await.remove(scope);
    }

    /// Whether tokens are given (and cannot be renewed).
    pub(crate) fn tokens_are_given(&self) -> bool {
        matches!(self.parsed.credentials, Credentials::Tokens { .. })
    }

    /// A new token for `scope`, through the credentials' real HTTP path.
    pub(crate) async fn fetch(&self, scope: &str) -> AResult<AccessToken> {
        match &self.parsed.credentials {
            Credentials::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => {
                self.client_credentials(tenant_id, client_id, secret, scope)
                    .await
            }
            Credentials::Implicit => match self.environment.client_secret_credentials() {
                Some(Credentials::ClientSecret {
                    tenant_id,
                    client_id,
                    secret,
                }) => {
                    self.client_credentials(&tenant_id, &client_id, &secret, scope)
                        .await
                }
                _ => Err(AzureError::NoCredentials),
            },
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

    /// The OAuth2 client-credentials grant with a client secret.
    async fn client_credentials(
        &self,
        tenant: &str,
        client_id: &str,
        secret: &SecretString,
        scope: &str,
    ) -> AResult<AccessToken> {
        let endpoint = format!("{}/{tenant}/oauth2/v2.0/token", self.parsed.authority_host);
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", secret.expose_secret())
            .append_pair("scope", scope)
            .finish();
        let request = http::Request::post(&endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| AzureError::Unreachable {
                endpoint: endpoint.clone(),
                reason: format!("invalid URL: {e}"),
            })?;
        let response = send(&self.http, request, &endpoint).await?;
        tracing::debug!(
            client_id,
            tenant,
            scope,
            status = response.status,
            "Entra ID client-credentials grant"
        );
        if !(200..300).contains(&response.status) {
            let value: serde_json::Value =
                serde_json::from_slice(&response.body).unwrap_or_default();
            let Some(error) = value["error"].as_str().filter(|_| response.status < 500) else {
                return Err(AzureError::BadResponse {
                    endpoint,
                    status: response.status,
                    reason: String::from_utf8_lossy(&response.body)
                        .chars()
                        .take(200)
                        .collect(),
                });
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
                reason: format!("{error}{description}"),
            });
        }
        let parsed: TokenResponse = response.json(&endpoint)?;
        // Entra ID has sent `expires_in` both as a number and as a string.
        let seconds = match parsed.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        Ok(AccessToken {
            value: SecretString::from(parsed.access_token),
            expires_at: seconds.map(|s| Timestamp::now() + SignedDuration::from_secs(s)),
        })
    }
}
