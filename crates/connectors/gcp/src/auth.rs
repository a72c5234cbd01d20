//! Google OAuth2 access tokens over plain REST: the service-account JWT-bearer grant
//! (RS256, signed with `ring`), the user-account refresh-token grant, IAM Credentials
//! `generateAccessToken` for impersonation, and the GCE metadata server.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use stepstack_cloud_http::{
    HttpClient, HttpResponse, RsaSigner, TokenCache, TokenIssuer, bearer_header, form_request, send,
};

use crate::config::{
    CredentialSource, Credentials, DEFAULT_STS_ENDPOINT, ExternalAccountKey, Parsed,
    ServiceAccountKey, UserAccountKey,
};
use crate::environment::GcpEnvironment;
use crate::error::{GcpError, GcpResult};

pub(crate) use stepstack_cloud_http::AccessToken;

/// The OAuth2 scope of every token the connector asks for.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A cached token is replaced this long before it expires.
const CACHE_MARGIN: SignedDuration = SignedDuration::from_secs(300);

/// Google's error message (`error.message`, or OAuth2's `error_description`), or the start
/// of the body.
pub(crate) fn error_message(response: &HttpResponse) -> String {
    let value = response.json_value();
    value["error"]["message"]
        .as_str()
        .or(value["error_description"].as_str())
        .or(value["error"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| response.excerpt())
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateAccessTokenResponse {
    access_token: String,
    expire_time: String,
}

/// Issues Google access tokens for one connector's credentials.
#[derive(Debug)]
pub(crate) struct GoogleAuth {
    http: HttpClient,
    parsed: Parsed,
    /// The expiry of an `oauth2-token` token.
    token_expires_at: Option<Timestamp>,
    environment: Arc<GcpEnvironment>,
    cache: TokenCache<()>,
}

impl GoogleAuth {
    pub(crate) fn new(
        http: HttpClient,
        parsed: Parsed,
        token_expires_at: Option<Timestamp>,
        environment: Arc<GcpEnvironment>,
    ) -> Self {
        GoogleAuth {
            http,
            parsed,
            token_expires_at,
            environment,
            cache: TokenCache::new(CACHE_MARGIN),
        }
    }

    pub(crate) fn http(&self) -> &HttpClient {
        &self.http
    }

    /// A token for API calls: the cached one unless it expires within five minutes.
    pub(crate) async fn current(&self) -> GcpResult<AccessToken> {
        self.cache.get_or_fetch(&(), || self.fetch()).await
    }

    /// Forgets the cached token (after an API rejected it).
    pub(crate) async fn invalidate(&self) {
        self.cache.invalidate(&()).await;
    }

    /// A new token, through the credentials' real HTTP path.
    pub(crate) async fn fetch(&self) -> GcpResult<AccessToken> {
        let token_endpoint = self.parsed.token_endpoint();
        match &self.parsed.credentials {
            Credentials::ServiceAccount(key) => self.jwt_grant(key, &token_endpoint).await,
            Credentials::UserAccount(key) => self.refresh_grant(key, &token_endpoint).await,
            Credentials::Token(token) => Ok(AccessToken {
                value: token.clone(),
                expires_at: self.token_expires_at,
            }),
            Credentials::Impersonation {
                source,
                target,
                lifetime,
            } => {
                let source_token = self.jwt_grant(source, &token_endpoint).await?;
                let endpoint = format!(
                    "{}/v1/projects/-/serviceAccounts/{target}:generateAccessToken",
                    self.parsed.iam_endpoint()
                );
                self.impersonate(
                    endpoint,
                    &source.client_email,
                    &source_token,
                    target,
                    *lifetime,
                )
                .await
            }
            Credentials::Implicit => self.implicit().await,
            Credentials::ExternalAccount(key) => self.external(key).await,
        }
    }

    async fn post_form(&self, endpoint: &str, form: &[(&str, &str)]) -> GcpResult<HttpResponse> {
        Ok(send(&self.http, form_request(endpoint, form)?, endpoint).await?)
    }

    fn token_response(
        response: HttpResponse,
        endpoint: &str,
        grant: &'static str,
        principal: &str,
    ) -> GcpResult<AccessToken> {
        if !response.is_success() {
            let value = response.json_value();
            if response.status >= 500 || value["error"].as_str().is_none() {
                return Err(GcpError::BadResponse {
                    endpoint: endpoint.to_owned(),
                    status: response.status,
                    reason: error_message(&response),
                });
            }
            return Err(GcpError::TokenRejected {
                endpoint: endpoint.to_owned(),
                grant,
                principal: principal.to_owned(),
                error: value["error"].as_str().unwrap_or_default().to_owned(),
                description: value["error_description"]
                    .as_str()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
            });
        }
        let parsed: TokenResponse = response.json(endpoint)?;
        Ok(AccessToken::expiring_in(
            parsed.access_token,
            parsed.expires_in,
        ))
    }

    /// The JWT-bearer grant of a service-account key.
    async fn jwt_grant(&self, key: &ServiceAccountKey, endpoint: &str) -> GcpResult<AccessToken> {
        let assertion = sign_assertion(key, endpoint, Timestamp::now().as_second())?;
        let response = self
            .post_form(
                endpoint,
                &[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)],
            )
            .await?;
        tracing::debug!(account = %key.client_email, endpoint, status = response.status, "service-account token grant");
        Self::token_response(response, endpoint, "JWT-bearer", &key.client_email)
    }

    /// The refresh-token grant of a user account.
    async fn refresh_grant(&self, key: &UserAccountKey, endpoint: &str) -> GcpResult<AccessToken> {
        let response = self
            .post_form(
                endpoint,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", &key.client_id),
                    ("client_secret", key.client_secret.expose_secret()),
                    ("refresh_token", key.refresh_token.expose_secret()),
                ],
            )
            .await?;
        tracing::debug!(client_id = %key.client_id, endpoint, status = response.status, "user-account token grant");
        Self::token_response(response, endpoint, "refresh-token", &key.client_id)
    }

    /// Workload identity federation: the external subject token exchanged at STS for a
    /// federated token, then (when configured) a service account's token for it.
    async fn external(&self, key: &ExternalAccountKey) -> GcpResult<AccessToken> {
        let subject_token = self.subject_token(&key.credential_source).await?;
        let endpoint = key
            .token_url
            .clone()
            .unwrap_or_else(|| DEFAULT_STS_ENDPOINT.to_owned());
        let response = self
            .post_form(
                &endpoint,
                &[
                    ("grant_type", TOKEN_EXCHANGE_GRANT),
                    ("audience", &key.audience),
                    ("scope", CLOUD_PLATFORM_SCOPE),
                    ("requested_token_type", ACCESS_TOKEN_TYPE),
                    ("subject_token", subject_token.expose_secret()),
                    ("subject_token_type", &key.subject_token_type),
                ],
            )
            .await?;
        tracing::debug!(audience = %key.audience, endpoint, status = response.status, "STS token exchange");
        let federated = Self::token_response(response, &endpoint, "token-exchange", &key.audience)?;
        let Some(url) = &key.service_account_impersonation_url else {
            return Ok(federated);
        };
        let target = url
            .rsplit_once("serviceAccounts/")
            .map(|(_, rest)| rest.trim_end_matches(":generateAccessToken"))
            .unwrap_or(url.as_str())
            .to_owned();
        self.impersonate(url.clone(), &key.audience, &federated, &target, 3600)
            .await
    }

    /// The external subject token from the credential source (a file or a URL).
    async fn subject_token(&self, source: &CredentialSource) -> GcpResult<SecretString> {
        let (text, origin) = if let Some(path) = &source.file {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| GcpError::ReadFile {
                    what: "the external subject token",
                    path: path.clone(),
                    source: e,
                })?;
            (text, path.display().to_string())
        } else if let Some(url) = &source.url {
            let mut request = http::Request::get(url);
            for (name, value) in &source.headers {
                request = request.header(name, value);
            }
            let request =
                request
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| GcpError::Unreachable {
                        endpoint: url.clone(),
                        reason: format!("invalid URL or header: {e}"),
                    })?;
            let response = send(&self.http, request, url).await?;
            if !(200..300).contains(&response.status) {
                return Err(GcpError::BadResponse {
                    endpoint: url.clone(),
                    status: response.status,
                    reason: "the credential source did not return a subject token".to_owned(),
                });
            }
            (
                String::from_utf8_lossy(&response.body).into_owned(),
                url.clone(),
            )
        } else {
            let what = if source.executable.is_some() {
                "executable-sourced external credentials"
            } else if source.environment_id.is_some() {
                "AWS-sourced external credentials"
            } else {
                "external credentials without a file or URL source"
            };
            return Err(GcpError::Unsupported {
                what: what.to_owned(),
                hint: "use a `file` or `url` credential source, or the `impersonation` method",
            });
        };
        let format = source.format.as_ref();
        if format.and_then(|f| f.kind.as_deref()) == Some("json") {
            let field = format
                .and_then(|f| f.subject_token_field_name.as_deref())
                .unwrap_or("access_token");
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            return value[field]
                .as_str()
                .map(|t| SecretString::from(t.to_owned()))
                .ok_or_else(|| GcpError::InvalidCredentialsJson {
                    field: "external_account_json",
                    reason: format!("the credential source {origin} has no JSON field `{field}`"),
                });
        }
        Ok(SecretString::from(text.trim().to_owned()))
    }

    /// IAM Credentials `generateAccessToken` at `endpoint` for `target`, as `source`.
    async fn impersonate(
        &self,
        endpoint: String,
        source: &str,
        source_token: &AccessToken,
        target: &str,
        lifetime: u64,
    ) -> GcpResult<AccessToken> {
        let body = serde_json::json!({
            "scope": [CLOUD_PLATFORM_SCOPE],
            "lifetime": format!("{lifetime}s"),
        });
        let request = http::Request::post(&endpoint)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::AUTHORIZATION,
                bearer_header(&source_token.value)?,
            )
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| GcpError::Unreachable {
                endpoint: endpoint.clone(),
                reason: format!("invalid URL: {e}"),
            })?;
        let response = send(&self.http, request, &endpoint).await?;
        tracing::debug!(
            source,
            target,
            status = response.status,
            "generateAccessToken"
        );
        match response.status {
            200..=299 => {
                let parsed: GenerateAccessTokenResponse = response.json(&endpoint)?;
                let expires_at = parsed.expire_time.parse::<Timestamp>().ok();
                Ok(AccessToken {
                    value: SecretString::from(parsed.access_token),
                    expires_at,
                })
            }
            status @ (401 | 403 | 404) => Err(GcpError::ImpersonationDenied {
                source_principal: source.to_owned(),
                target: target.to_owned(),
                status,
                message: error_message(&response),
            }),
            status => Err(GcpError::BadResponse {
                endpoint,
                status,
                reason: error_message(&response),
            }),
        }
    }

    /// Application default credentials: the credentials file, else the metadata server.
    async fn implicit(&self) -> GcpResult<AccessToken> {
        let Some(path) = self.environment.adc_path() else {
            return self.metadata_token().await;
        };
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|source| GcpError::ReadFile {
                what: "the application default credentials",
                path: path.clone(),
                source,
            })?;
        let json = crate::config::decode_json("application default credentials", &text)?;
        let kind = json["type"].as_str().unwrap_or_default().to_owned();
        let field = "application default credentials";
        match kind.as_str() {
            "service_account" => {
                let key: ServiceAccountKey =
                    crate::config::credentials_file(field, json, "service_account")?;
                let endpoint = self
                    .parsed
                    .endpoints
                    .token_endpoint
                    .clone()
                    .or(key.token_uri.clone())
                    .unwrap_or_else(|| crate::config::DEFAULT_TOKEN_ENDPOINT.to_owned());
                self.jwt_grant(&key, &endpoint).await
            }
            "authorized_user" => {
                let key: UserAccountKey =
                    crate::config::credentials_file(field, json, "authorized_user")?;
                let endpoint = self
                    .parsed
                    .endpoints
                    .token_endpoint
                    .clone()
                    .or(key.token_uri.clone())
                    .unwrap_or_else(|| crate::config::DEFAULT_TOKEN_ENDPOINT.to_owned());
                self.refresh_grant(&key, &endpoint).await
            }
            other => Err(GcpError::Unsupported {
                what: format!("application default credentials of type `{other}`"),
                hint: "use a service-account key or `gcloud auth application-default login`",
            }),
        }
    }

    async fn metadata_token(&self) -> GcpResult<AccessToken> {
        let endpoint = format!(
            "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
            self.environment.metadata_host
        );
        let url = format!(
            "{endpoint}?scopes={}",
            url::form_urlencoded::byte_serialize(CLOUD_PLATFORM_SCOPE.as_bytes())
                .collect::<String>()
        );
        let request = http::Request::get(&url)
            .header("Metadata-Flavor", "Google")
            .body(Full::new(Bytes::new()))
            .map_err(|e| GcpError::Unreachable {
                endpoint: endpoint.clone(),
                reason: format!("invalid metadata host: {e}"),
            })?;
        let response = send(&self.http, request, &endpoint).await?;
        if !(200..300).contains(&response.status) {
            return Err(GcpError::BadResponse {
                endpoint,
                status: response.status,
                reason: format!(
                    "{}; is a service account attached to this machine?",
                    error_message(&response)
                ),
            });
        }
        let parsed: TokenResponse = response.json(&endpoint)?;
        Ok(AccessToken::expiring_in(
            parsed.access_token,
            parsed.expires_in,
        ))
    }
}

/// Cluster connections refresh their tokens through this; every Google token of a
/// connector has the `cloud-platform` scope, whatever scope the source names.
#[async_trait::async_trait]
impl TokenIssuer for GoogleAuth {
    type Error = GcpError;

    async fn issue(&self, _scope: &str) -> GcpResult<AccessToken> {
        self.fetch().await
    }
}

/// The self-signed JWT assertion of the JWT-bearer grant: RS256 over
/// `{iss, scope, aud, iat, exp}`, valid for one hour from `now`.
pub(crate) fn sign_assertion(
    key: &ServiceAccountKey,
    audience: &str,
    now: i64,
) -> GcpResult<String> {
    let invalid = |reason: &str| GcpError::InvalidKey {
        account: key.client_email.clone(),
        reason: reason.to_owned(),
    };
    let signer = RsaSigner::from_pem(key.private_key.expose_secret())
        .map_err(|e| invalid(&e.to_string()))?;
    let mut header = serde_json::json!({});
    if let Some(kid) = &key.private_key_id {
        header["kid"] = serde_json::Value::String(kid.clone());
    }
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": CLOUD_PLATFORM_SCOPE,
        "aud": audience,
        "iat": now,
        "exp": now + 3600,
    });
    signer
        .sign_jwt(header, &claims)
        .map_err(|e| invalid(&e.to_string()))
}
