//! The configuration of each auth method: typed structs (whose JSON Schemas the connector
//! type publishes), the credential files they carry, and their parsing.

use std::fmt;

use base64::Engine as _;
use schemars::JsonSchema;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use stepstack_core::ConnectorConfig;

use crate::error::{GcpError, GcpResult};

/// The connector type id.
pub const CONNECTOR_TYPE: &str = "gcp";

/// Auth method ids.
pub(crate) const SERVICE_ACCOUNT: &str = "service-account";
pub(crate) const USER_ACCOUNT: &str = "user-account";
pub(crate) const OAUTH2_TOKEN: &str = "oauth2-token";
pub(crate) const EXTERNAL_ACCOUNT: &str = "external-account";
pub(crate) const IMPERSONATION: &str = "impersonation";
pub(crate) const IMPLICIT: &str = "implicit";

/// Google's OAuth2 token endpoint.
pub const DEFAULT_TOKEN_ENDPOINT: &str = "https://oauth2.googleapis.com/token";
/// The IAM Service Account Credentials API.
pub const DEFAULT_IAM_CREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
/// The GKE (Kubernetes Engine) API.
pub const DEFAULT_CONTAINER_ENDPOINT: &str = "https://container.googleapis.com";

/// Endpoint overrides every auth method takes, so fakes (or private endpoints) can be used.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct Endpoints {
    /// The OAuth2 token endpoint (default: the key's `token_uri`, else
    /// `https://oauth2.googleapis.com/token`).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The IAM Credentials API base URL (default `https://iamcredentials.googleapis.com`).
    #[serde(default)]
    pub iam_credentials_endpoint: Option<String>,
    /// The GKE API base URL (default `https://container.googleapis.com`).
    #[serde(default)]
    pub container_endpoint: Option<String>,
}

/// Configuration of the `service-account` auth method: a service-account key file.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
pub struct ServiceAccountConfig {
    /// The service-account key file (JSON), raw or base64-encoded.
    #[schemars(with = "String")]
    pub service_account_json: SecretString,
    /// The project whose clusters are listed (default: the key's `project_id`).
    #[serde(default)]
    pub project_id: Option<String>,
    /// Endpoint overrides.
    #[serde(flatten)]
    pub endpoints: Endpoints,
}

/// Configuration of the `user-account` auth method: a user's `authorized_user` credentials
/// (client id, client secret, refresh token), as `gcloud auth application-default login`
/// writes them.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
pub struct UserAccountConfig {
    /// The `authorized_user` credentials file (JSON), raw or base64-encoded.
    #[schemars(with = "String")]
    pub user_account_json: SecretString,
    /// The project whose clusters are listed (default: the file's `quota_project_id`).
    #[serde(default)]
    pub project_id: Option<String>,
    /// Endpoint overrides.
    #[serde(flatten)]
    pub endpoints: Endpoints,
}

/// Configuration of the `oauth2-token` auth method: an access token (e.g. from `gcloud
/// auth print-access-token`); its expiry is the connector's `expires_at`.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
pub struct OAuth2TokenConfig {
    /// The OAuth2 access token.
    #[schemars(with = "String")]
    pub token: SecretString,
    /// The project whose clusters are listed.
    pub project_id: String,
    /// The account the token belongs to (informational).
    #[serde(default)]
    pub service_account_email: Option<String>,
    /// Endpoint overrides.
    #[serde(flatten)]
    pub endpoints: Endpoints,
}

/// Configuration of the `external-account` auth method (workload identity federation).
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
pub struct ExternalAccountConfig {
    /// The `external_account` credentials configuration (JSON), raw or base64-encoded.
    #[schemars(with = "String")]
    pub external_account_json: SecretString,
    /// The project whose clusters are listed.
    pub project_id: String,
    /// Endpoint overrides.
    #[serde(flatten)]
    pub endpoints: Endpoints,
}

/// Configuration of the `impersonation` auth method: a source service-account key that
/// impersonates `target_principal` through the IAM Credentials API.
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
pub struct ImpersonationConfig {
    /// The source service-account key file (JSON), raw or base64-encoded.
    #[schemars(with = "String")]
    pub service_account_json: SecretString,
    /// The email of the service account to impersonate.
    pub target_principal: String,
    /// The project whose clusters are listed (default: the source key's `project_id`).
    #[serde(default)]
    pub project_id: Option<String>,
    /// Endpoint overrides.
    #[serde(flatten)]
    pub endpoints: Endpoints,
}

/// Configuration of the `implicit` auth method: the machine's application default
/// credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file, the metadata server).
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
pub struct ImplicitConfig {
    /// The project whose clusters are listed.
    pub project_id: String,
    /// Endpoint overrides.
    #[serde(flatten)]
    pub endpoints: Endpoints,
}

/// The JSON Schema of `T`, as a value.
pub(crate) fn schema_of<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|_| serde_json::json!({"type": "object"}))
}

/// A service-account key file. `Debug` hides the private key.
#[derive(Clone, Deserialize)]
pub(crate) struct ServiceAccountKey {
    pub(crate) client_email: String,
    pub(crate) private_key: SecretString,
    #[serde(default)]
    pub(crate) private_key_id: Option<String>,
    #[serde(default)]
    pub(crate) project_id: Option<String>,
    #[serde(default)]
    pub(crate) token_uri: Option<String>,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key", &"[HIDDEN]")
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

/// An `authorized_user` credentials file. `Debug` hides the secrets.
#[derive(Clone, Deserialize)]
pub(crate) struct UserAccountKey {
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) refresh_token: SecretString,
    #[serde(default)]
    pub(crate) quota_project_id: Option<String>,
    #[serde(default)]
    pub(crate) token_uri: Option<String>,
}

impl fmt::Debug for UserAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserAccountKey")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[HIDDEN]")
            .field("refresh_token", &"[HIDDEN]")
            .finish_non_exhaustive()
    }
}

/// Default STS endpoint of workload identity federation.
pub(crate) const DEFAULT_STS_ENDPOINT: &str = "https://sts.googleapis.com/v1/token";

/// An `external_account` credentials configuration (workload identity federation).
#[derive(Clone, Deserialize)]
pub(crate) struct ExternalAccountKey {
    pub(crate) audience: String,
    pub(crate) subject_token_type: String,
    #[serde(default)]
    pub(crate) token_url: Option<String>,
    #[serde(default)]
    pub(crate) service_account_impersonation_url: Option<String>,
    pub(crate) credential_source: CredentialSource,
}

impl fmt::Debug for ExternalAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalAccountKey")
            .field("audience", &self.audience)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

/// Where the external subject token comes from.
#[derive(Clone, Deserialize)]
pub(crate) struct CredentialSource {
    #[serde(default)]
    pub(crate) file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub(crate) url: Option<String>,
    #[serde(default)]
    pub(crate) headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) format: Option<SourceFormat>,
    #[serde(default)]
    pub(crate) executable: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) environment_id: Option<String>,
}

/// How the subject token is stored: plain text, or a JSON field.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SourceFormat {
    #[serde(rename = "type", default)]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) subject_token_field_name: Option<String>,
}

/// How the connector gets access tokens.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    ServiceAccount(ServiceAccountKey),
    UserAccount(UserAccountKey),
    Token(SecretString),
    Impersonation {
        source: ServiceAccountKey,
        target: String,
        lifetime: u64,
    },
    Implicit,
    ExternalAccount(Box<ExternalAccountKey>),
}

/// A parsed connector configuration.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) credentials: Credentials,
    pub(crate) project_id: String,
    pub(crate) endpoints: Endpoints,
}

impl Parsed {
    /// The token endpoint: the override, else the key's `token_uri`, else Google's.
    pub(crate) fn token_endpoint(&self) -> String {
        let from_key = match &self.credentials {
            Credentials::ServiceAccount(key) | Credentials::Impersonation { source: key, .. } => {
                key.token_uri.clone()
            }
            Credentials::UserAccount(key) => key.token_uri.clone(),
            _ => None,
        };
        self.endpoints
            .token_endpoint
            .clone()
            .or(from_key)
            .unwrap_or_else(|| DEFAULT_TOKEN_ENDPOINT.to_owned())
    }

    pub(crate) fn iam_endpoint(&self) -> String {
        base(
            &self.endpoints.iam_credentials_endpoint,
            DEFAULT_IAM_CREDENTIALS_ENDPOINT,
        )
    }

    pub(crate) fn container_endpoint(&self) -> String {
        base(
            &self.endpoints.container_endpoint,
            DEFAULT_CONTAINER_ENDPOINT,
        )
    }
}

fn base(value: &Option<String>, default: &str) -> String {
    value
        .as_deref()
        .unwrap_or(default)
        .trim_end_matches('/')
        .to_owned()
}

/// Deserializes the values and secrets of `config` as `T`, refusing keys that are not in
/// `T`'s schema.
fn typed<T: DeserializeOwned + JsonSchema>(config: &ConnectorConfig) -> GcpResult<T> {
    use secrecy::ExposeSecret;
    let method = config.auth_method.clone();
    let schema = schema_of::<T>();
    let known: Vec<&str> = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut object = serde_json::Map::new();
    for (key, value) in &config.values {
        object.insert(key.clone(), value.clone());
    }
    for (key, value) in &config.secrets {
        object.insert(
            key.clone(),
            serde_json::Value::String(value.expose_secret().to_owned()),
        );
    }
    if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(GcpError::InvalidConfig {
            method,
            reason: format!(
                "unknown field `{unknown}`; expected one of: {}",
                known.join(", ")
            ),
        });
    }
    // The error names the field but never echoes a value (values may be secrets).
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| {
        let reason = e.to_string();
        let reason = reason
            .split(" at line")
            .next()
            .unwrap_or_default()
            .to_owned();
        GcpError::InvalidConfig {
            method,
            reason: if reason.contains('`') || reason.starts_with("missing field") {
                reason
            } else {
                "a field has the wrong type".to_owned()
            },
        }
    })
}

/// Credentials JSON given raw or base64-encoded.
pub(crate) fn decode_json(field: &'static str, text: &str) -> GcpResult<serde_json::Value> {
    let text = text.trim();
    let bytes = if text.starts_with('{') {
        text.as_bytes().to_vec()
    } else {
        let compact: String = text.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&compact))
            .map_err(|_| GcpError::InvalidCredentialsJson {
                field,
                reason: "it is neither JSON nor base64".to_owned(),
            })?
    };
    serde_json::from_slice(&bytes).map_err(|e| GcpError::InvalidCredentialsJson {
        field,
        reason: format!("not JSON (line {}, column {})", e.line(), e.column()),
    })
}

/// A credentials file of the expected `type`.
pub(crate) fn credentials_file<T: DeserializeOwned>(
    field: &'static str,
    json: serde_json::Value,
    expected_type: &str,
) -> GcpResult<T> {
    let actual = json
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("(none)");
    if actual != expected_type {
        return Err(GcpError::InvalidCredentialsJson {
            field,
            reason: format!("its type is `{actual}`, expected `{expected_type}`"),
        });
    }
    serde_json::from_value(json).map_err(|e| GcpError::InvalidCredentialsJson {
        field,
        reason: e
            .to_string()
            .split(" at line")
            .next()
            .unwrap_or_default()
            .to_owned(),
    })
}

fn service_account_key(field: &'static str, secret: &SecretString) -> GcpResult<ServiceAccountKey> {
    use secrecy::ExposeSecret;
    credentials_file(
        field,
        decode_json(field, secret.expose_secret())?,
        "service_account",
    )
}

/// Parses the configuration of `config.auth_method`: the typed fields, the credentials
/// file it carries and the project (configured, else from the credentials file).
pub(crate) fn parse(config: &ConnectorConfig) -> GcpResult<Parsed> {
    let missing_project = |hint| GcpError::MissingProject { hint };
    let parsed = match config.auth_method.as_str() {
        SERVICE_ACCOUNT => {
            let c: ServiceAccountConfig = typed(config)?;
            let key = service_account_key("service_account_json", &c.service_account_json)?;
            let project_id = c
                .project_id
                .or_else(|| key.project_id.clone())
                .ok_or(missing_project(" (the key has no `project_id`)"))?;
            Parsed {
                credentials: Credentials::ServiceAccount(key),
                project_id,
                endpoints: c.endpoints,
            }
        }
        USER_ACCOUNT => {
            use secrecy::ExposeSecret;
            let c: UserAccountConfig = typed(config)?;
            let key: UserAccountKey = credentials_file(
                "user_account_json",
                decode_json("user_account_json", c.user_account_json.expose_secret())?,
                "authorized_user",
            )?;
            let project_id = c
                .project_id
                .or_else(|| key.quota_project_id.clone())
                .ok_or(missing_project(" (the file has no `quota_project_id`)"))?;
            Parsed {
                credentials: Credentials::UserAccount(key),
                project_id,
                endpoints: c.endpoints,
            }
        }
        OAUTH2_TOKEN => {
            let c: OAuth2TokenConfig = typed(config)?;
            Parsed {
                credentials: Credentials::Token(c.token),
                project_id: c.project_id,
                endpoints: c.endpoints,
            }
        }
        EXTERNAL_ACCOUNT => {
            use secrecy::ExposeSecret;
            let c: ExternalAccountConfig = typed(config)?;
            let json = decode_json(
                "external_account_json",
                c.external_account_json.expose_secret(),
            )?;
            let key: ExternalAccountKey =
                credentials_file("external_account_json", json, "external_account")?;
            Parsed {
                credentials: Credentials::ExternalAccount(Box::new(key)),
                project_id: c.project_id,
                endpoints: c.endpoints,
            }
        }
        IMPERSONATION => {
            let c: ImpersonationConfig = typed(config)?;
            let key = service_account_key("service_account_json", &c.service_account_json)?;
            let project_id = c
                .project_id
                .or_else(|| key.project_id.clone())
                .ok_or(missing_project(" (the source key has no `project_id`)"))?;
            if c.target_principal.trim().is_empty() {
                return Err(GcpError::InvalidConfig {
                    method: config.auth_method.clone(),
                    reason: "`target_principal` is empty; give the email of the service account to impersonate".to_owned(),
                });
            }
            Parsed {
                credentials: Credentials::Impersonation {
                    source: key,
                    target: c.target_principal.trim().to_owned(),
                    lifetime: config.expiration_seconds.unwrap_or(3600),
                },
                project_id,
                endpoints: c.endpoints,
            }
        }
        IMPLICIT => {
            let c: ImplicitConfig = typed(config)?;
            Parsed {
                credentials: Credentials::Implicit,
                project_id: c.project_id,
                endpoints: c.endpoints,
            }
        }
        other => {
            return Err(GcpError::InvalidConfig {
                method: other.to_owned(),
                reason: "unknown auth method".to_owned(),
            });
        }
    };
    if parsed.project_id.trim().is_empty() {
        return Err(missing_project(""));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = r#"{"type":"service_account","project_id":"p1","private_key_id":"k","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n","client_email":"sa@p1.iam.gserviceaccount.com","token_uri":"https://oauth2.googleapis.com/token"}"#;

    #[test]
    fn keys_are_accepted_raw_or_base64_and_project_comes_from_the_key() {
        for text in [
            KEY.to_owned(),
            base64::engine::general_purpose::STANDARD.encode(KEY),
        ] {
            let config = ConnectorConfig::new("g", "gcp", SERVICE_ACCOUNT)
                .with_secret("service_account_json", text);
            let parsed = parse(&config).unwrap();
            assert_eq!(parsed.project_id, "p1");
            assert_eq!(parsed.token_endpoint(), DEFAULT_TOKEN_ENDPOINT);
            assert_eq!(parsed.container_endpoint(), DEFAULT_CONTAINER_ENDPOINT);
            let debug = format!("{parsed:?}");
            assert!(!debug.contains("AAAA"), "{debug}");
        }
    }

    #[test]
    fn unknown_fields_wrong_types_and_bad_json_are_refused_without_echoing_secrets() {
        let config = ConnectorConfig::new("g", "gcp", SERVICE_ACCOUNT)
            .with_secret("service_account_json", KEY)
            .with_value("region", "x");
        let err = parse(&config).unwrap_err().to_string();
        assert!(err.contains("unknown field `region`"), "{err}");
        let config = ConnectorConfig::new("g", "gcp", SERVICE_ACCOUNT)
            .with_secret("service_account_json", "not-json-secret!!");
        let err = parse(&config).unwrap_err().to_string();
        assert!(!err.contains("not-json-secret"), "{err}");
        let config = ConnectorConfig::new("g", "gcp", USER_ACCOUNT)
            .with_secret("user_account_json", KEY)
            .with_value("project_id", "p");
        let err = parse(&config).unwrap_err().to_string();
        assert!(err.contains("expected `authorized_user`"), "{err}");
        let config = ConnectorConfig::new("g", "gcp", OAUTH2_TOKEN).with_secret("token", "t");
        let err = parse(&config).unwrap_err().to_string();
        assert!(err.contains("project_id"), "{err}");
    }
}
