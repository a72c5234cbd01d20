//! Turning a connector's settings into AWS credentials, per auth method, and the SDK
//! configuration every AWS call of the connector uses (region, endpoint URL, HTTP client).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::SdkConfig;
use aws_types::region::Region;
use secrecy::ExposeSecret;
use stepstack_core::connector::KUBERNETES_CLUSTER;
use tokio::sync::Mutex;

use crate::config::{
    FEDERATION_TOKEN, IAM_ROLE, IMPLICIT, SECRET_KEY, SESSION_TOKEN, STS_TOKEN, Settings,
};
use crate::eks::Partition;
use crate::environment::AwsEnvironment;
use crate::error::{AwsError, AwsResult, from_sdk};
use stepstack_core::error_chain;

/// Credentials are renewed when they have less than this left (or a quarter of their
/// lifetime, if that is shorter).
const RENEW_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The HTTP client of every AWS call: hyper with rustls on ring, HTTP and HTTPS.
pub(crate) fn http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Issues the credentials of one connector and caches temporary ones per resource scope
/// (their session policy depends on it), renewing them before they expire.
pub(crate) struct CredentialProvider {
    connector: String,
    settings: Settings,
    expiration_seconds: Option<u64>,
    /// The expiry of `sts-token` credentials (the connector's `expires_at`).
    expires_at: Option<SystemTime>,
    http: SharedHttpClient,
    /// Where `implicit` finds ambient credentials.
    environment: AwsEnvironment,
    cache: Mutex<HashMap<String, Cached>>,
}

#[derive(Clone)]
struct Cached {
    credentials: Credentials,
    issued_at: SystemTime,
}

impl CredentialProvider {
    pub(crate) fn new(
        connector: String,
        settings: Settings,
        expiration_seconds: Option<u64>,
        expires_at: Option<SystemTime>,
        environment: AwsEnvironment,
    ) -> Self {
        CredentialProvider {
            connector,
            settings,
            expiration_seconds,
            expires_at,
            http: http_client(),
            environment,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn connector_name(&self) -> &str {
        &self.connector
    }

    pub(crate) fn region(&self) -> &str {
        &self.settings.region
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The SDK configuration for calls made with `credentials`.
    pub(crate) fn sdk_config(&self, credentials: Credentials) -> SdkConfig {
        let mut builder = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.settings.region.clone()))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .http_client(self.http.clone())
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(url) = &self.settings.endpoint_url {
            builder = builder.endpoint_url(url.clone());
        }
        builder.build()
    }

    /// The credentials for `resource_type`/`resource_id` (which scope the generated
    /// session policy of `iam-role` and `federation-token`).
    pub(crate) async fn credentials(
        &self,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> AwsResult<Credentials> {
        let key = format!(
            "{}|{}",
            resource_type.unwrap_or_default(),
            resource_id.unwrap_or_default()
        );
        let mut cache = self.cache.lock().await;
        let now = SystemTime::now();
        if let Some(cached) = cache.get(&key)
            && is_fresh(cached, now)
        {
            return Ok(cached.credentials.clone());
        }
        let credentials = self.issue(resource_type, resource_id).await?;
        cache.insert(
            key,
            Cached {
                credentials: credentials.clone(),
                issued_at: now,
            },
        );
        Ok(credentials)
    }

    async fn issue(
        &self,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> AwsResult<Credentials> {
        let s = &self.settings;
        let duration = self.expiration_seconds.unwrap_or(3600);
        match s.auth_method.as_str() {
            SECRET_KEY | STS_TOKEN => self.static_credentials(),
            SESSION_TOKEN => {
                let sts = aws_sdk_sts::Client::new(&self.sdk_config(self.static_credentials()?));
                let out = sts
                    .get_session_token()
                    .duration_seconds(clamp_i32(duration))
                    .send()
                    .await
                    .map_err(|e| {
                        from_sdk(
                            format!(
                                "could not get a session token from STS in region {}",
                                s.region
                            ),
                            e,
                        )
                    })?;
                convert(out.credentials(), "GetSessionToken")
            }
            FEDERATION_TOKEN => {
                let sts = aws_sdk_sts::Client::new(&self.sdk_config(self.static_credentials()?));
                let policy = self.session_policy(resource_type, resource_id);
                let out = sts
                    .get_federation_token()
                    .name(session_name(&self.connector, 32))
                    .duration_seconds(clamp_i32(duration))
                    .set_policy(policy)
                    .set_policy_arns(policy_arns(&s.policy_arns))
                    .send()
                    .await
                    .map_err(|e| {
                        from_sdk(
                            format!(
                                "could not get a federation token from STS in region {}",
                                s.region
                            ),
                            e,
                        )
                    })?;
                convert(out.credentials(), "GetFederationToken")
            }
            IAM_ROLE => {
                let base = self.static_credentials()?;
                self.assume_role(base, duration, resource_type, resource_id)
                    .await
            }
            IMPLICIT => {
                let base = self.ambient_credentials().await?;
                if s.role_arn.is_some() {
                    self.assume_role(base, duration, resource_type, resource_id)
                        .await
                } else {
                    Ok(base)
                }
            }
            other => Err(AwsError::Config(format!(
                "connector type `aws` has no auth method `{other}`"
            ))),
        }
    }

    fn static_credentials(&self) -> AwsResult<Credentials> {
        let keys = self.settings.keys.as_ref().ok_or_else(|| {
            AwsError::Config(format!(
                "auth method `{}` needs `aws_access_key_id` and `aws_secret_access_key`",
                self.settings.auth_method
            ))
        })?;
        Ok(Credentials::new(
            keys.access_key_id.expose_secret().trim(),
            keys.secret_access_key.expose_secret(),
            keys.session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            self.expires_at,
            "stepstack-aws-connector",
        ))
    }

    async fn ambient_credentials(&self) -> AwsResult<Credentials> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.settings.region.clone()))
            .http_client(self.http.clone());
        let mut profile = self.settings.profile_name.clone();
        let env = &self.environment;
        if !env.is_process() {
            // An injected environment (tests, embedding programs): its variables and
            // files replace the process's, in the SDK's order (keys first, then profile).
            if profile.is_none()
                && let Some((key, secret, token)) = env.keys()
            {
                return Ok(Credentials::new(key, secret, token, None, "environment"));
            }
            use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
            let mut files = EnvConfigFiles::builder()
                .include_default_config_file(false)
                .include_default_credentials_file(false);
            if let Some(path) = env.config_file().filter(|p| p.is_file()) {
                files = files.with_file(EnvConfigFileKind::Config, path);
            }
            if let Some(path) = env.credentials_file().filter(|p| p.is_file()) {
                files = files.with_file(EnvConfigFileKind::Credentials, path);
            }
            loader = loader.empty_test_environment().profile_files(files.build());
            profile = profile.or_else(|| env.profile().map(str::to_owned));
        }
        if let Some(profile) = &profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &self.settings.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let config = loader.load().await;
        let provider = config.credentials_provider().ok_or_else(|| {
            AwsError::Config(
                "no AWS credentials were found in the local environment; configure a profile or the AWS_* variables".into(),
            )
        })?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| AwsError::Service {
                context: format!(
                    "could not load the local AWS credentials{}",
                    self.settings
                        .profile_name
                        .as_deref()
                        .map(|p| format!(" of profile `{p}`"))
                        .unwrap_or_default()
                ),
                code: "CredentialsNotLoaded".into(),
                message: error_chain(&e),
                hint: "configure the profile or the AWS_* environment variables of this machine",
            })
    }

    async fn assume_role(
        &self,
        base: Credentials,
        duration: u64,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> AwsResult<Credentials> {
        let s = &self.settings;
        let role = s.role_arn.clone().unwrap_or_default();
        let sts = aws_sdk_sts::Client::new(&self.sdk_config(base));
        let out = sts
            .assume_role()
            .role_arn(&role)
            .role_session_name(session_name(&self.connector, 64))
            .duration_seconds(clamp_i32(duration))
            .set_policy(self.session_policy(resource_type, resource_id))
            .set_policy_arns(policy_arns(&s.policy_arns))
            .send()
            .await
            .map_err(|e| from_sdk(format!("could not assume role {role}"), e))?;
        convert(out.credentials(), "AssumeRole")
    }

    /// The inline session policy: the configured one, or, when neither a policy nor
    /// policy ARNs are configured, one that allows only what the connector needs on the
    /// requested resource.
    pub(crate) fn session_policy(
        &self,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> Option<String> {
        let s = &self.settings;
        if s.policy.is_some() || !s.policy_arns.is_empty() {
            return s.policy.clone();
        }
        scoped_policy(&s.region, resource_type, resource_id)
    }
}

/// A session policy scoped to one resource type (and id), as ZenML generates it.
pub(crate) fn scoped_policy(
    region: &str,
    resource_type: Option<&str>,
    resource_id: Option<&str>,
) -> Option<String> {
    match resource_type {
        Some(KUBERNETES_CLUSTER) => {
            let partition = Partition::of_region(region).arn_name();
            let cluster = resource_id.unwrap_or("*");
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Action": ["eks:ListClusters", "eks:DescribeCluster"],
                    "Resource": format!("arn:{partition}:eks:{region}:*:cluster/{cluster}"),
                }]
            });
            Some(policy.to_string())
        }
        _ => None,
    }
}

fn policy_arns(arns: &[String]) -> Option<Vec<aws_sdk_sts::types::PolicyDescriptorType>> {
    if arns.is_empty() {
        return None;
    }
    Some(
        arns.iter()
            .map(|a| {
                aws_sdk_sts::types::PolicyDescriptorType::builder()
                    .arn(a)
                    .build()
            })
            .collect(),
    )
}

/// A role session or federated user name from the connector's name: `[\w+=,.@-]`,
/// at most `max` characters, at least 2.
pub(crate) fn session_name(connector: &str, max: usize) -> String {
    let cleaned: String = format!("stepstack-{connector}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    cleaned
}

fn clamp_i32(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn convert(
    credentials: Option<&aws_sdk_sts::types::Credentials>,
    action: &str,
) -> AwsResult<Credentials> {
    let c = credentials.ok_or_else(|| AwsError::Transport {
        context: format!("STS {action}"),
        detail: "the answer carried no credentials".into(),
    })?;
    let expiry = SystemTime::try_from(*c.expiration()).ok();
    Ok(Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        expiry,
        "stepstack-aws-connector",
    ))
}

fn is_fresh(cached: &Cached, now: SystemTime) -> bool {
    let Some(expiry) = cached.credentials.expiry() else {
        return true;
    };
    let lifetime = expiry
        .duration_since(cached.issued_at)
        .unwrap_or(Duration::ZERO);
    let margin = RENEW_MARGIN.min(lifetime / 4);
    match expiry.checked_sub(margin) {
        Some(renew_at) => now < renew_at,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_session_policy_is_scoped_to_the_cluster() {
        let policy = scoped_policy("eu-west-1", Some(KUBERNETES_CLUSTER), Some("prod")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&policy).unwrap();
        assert_eq!(
            v["Statement"][0]["Resource"],
            "arn:aws:eks:eu-west-1:*:cluster/prod"
        );
        let policy = scoped_policy("cn-north-1", Some(KUBERNETES_CLUSTER), None).unwrap();
        assert!(
            policy.contains("arn:aws-cn:eks:cn-north-1:*:cluster/*"),
            "{policy}"
        );
        assert_eq!(scoped_policy("eu-west-1", None, None), None);
    }

    #[test]
    fn session_names_are_valid() {
        assert_eq!(session_name("aws eu/prod", 64), "stepstack-aws-eu-prod");
        assert_eq!(session_name(&"x".repeat(80), 32).len(), 32);
    }

    #[test]
    fn credentials_are_renewed_before_they_expire() {
        let now = SystemTime::now();
        let cached = |lifetime: u64| Cached {
            credentials: Credentials::new(
                "a",
                "b",
                None,
                Some(now + Duration::from_secs(lifetime)),
                "t",
            ),
            issued_at: now,
        };
        assert!(is_fresh(&cached(3600), now + Duration::from_secs(3000)));
        assert!(!is_fresh(&cached(3600), now + Duration::from_secs(3301)));
        assert!(!is_fresh(&cached(900), now + Duration::from_secs(700)));
        let forever = Cached {
            credentials: Credentials::new("a", "b", None, None, "t"),
            issued_at: now,
        };
        assert!(is_fresh(&forever, now + Duration::from_secs(1_000_000)));
    }
}
