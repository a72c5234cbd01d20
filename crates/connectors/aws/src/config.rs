//! The configuration of each auth method: typed structs (whose JSON Schemas the
//! connector type publishes) and their parsing into [`Settings`].

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use stepstack_core::ConnectorConfig;

use crate::eks::is_region;
use crate::error::{AwsError, AwsResult};

/// Auth method ids.
pub(crate) const IMPLICIT: &str = "implicit";
pub(crate) const SECRET_KEY: &str = "secret-key";
pub(crate) const STS_TOKEN: &str = "sts-token";
pub(crate) const IAM_ROLE: &str = "iam-role";
pub(crate) const SESSION_TOKEN: &str = "session-token";
pub(crate) const FEDERATION_TOKEN: &str = "federation-token";

/// Configuration of the `secret-key` and `session-token` auth methods: a long-lived
/// access key.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyConfig {
    /// The AWS region, e.g. `eu-west-1`; EKS cluster ARNs must be in it.
    pub region: String,
    /// Send every AWS call (STS, EKS) to this URL instead of AWS, e.g. an emulator.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The access key id (`AKIA…`).
    #[schemars(with = "String")]
    pub aws_access_key_id: SecretString,
    /// The secret access key.
    #[schemars(with = "String")]
    pub aws_secret_access_key: SecretString,
}

/// Configuration of the `sts-token` auth method: temporary credentials with a session
/// token; set the connector's `expires_at` to their expiry.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StsTokenConfig {
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// Send every AWS call to this URL instead of AWS, e.g. an emulator.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The temporary access key id (`ASIA…`).
    #[schemars(with = "String")]
    pub aws_access_key_id: SecretString,
    /// The temporary secret access key.
    #[schemars(with = "String")]
    pub aws_secret_access_key: SecretString,
    /// The session token.
    #[schemars(with = "String")]
    pub aws_session_token: SecretString,
}

/// Configuration of the `iam-role` auth method: assume a role with a long-lived key.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IamRoleConfig {
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// Send every AWS call to this URL instead of AWS, e.g. an emulator.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The access key id of the identity that assumes the role.
    #[schemars(with = "String")]
    pub aws_access_key_id: SecretString,
    /// Its secret access key.
    #[schemars(with = "String")]
    pub aws_secret_access_key: SecretString,
    /// The role to assume, e.g. `arn:aws:iam::123456789012:role/eks-deployer`.
    pub role_arn: String,
    /// Managed policies that further restrict the session.
    #[serde(default)]
    pub policy_arns: Option<Vec<String>>,
    /// An inline session policy (JSON). Without this and `policy_arns`, a policy scoped
    /// to the requested resource is generated.
    #[serde(default)]
    pub policy: Option<String>,
}

/// Configuration of the `federation-token` auth method: a federated user's token.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationTokenConfig {
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// Send every AWS call to this URL instead of AWS, e.g. an emulator.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The access key id of the IAM user that issues the token.
    #[schemars(with = "String")]
    pub aws_access_key_id: SecretString,
    /// Its secret access key.
    #[schemars(with = "String")]
    pub aws_secret_access_key: SecretString,
    /// Managed policies of the federated session.
    #[serde(default)]
    pub policy_arns: Option<Vec<String>>,
    /// An inline session policy (JSON). Without this and `policy_arns`, a policy scoped
    /// to the requested resource is generated.
    #[serde(default)]
    pub policy: Option<String>,
}

/// Configuration of the `implicit` auth method: the machine's own AWS credentials
/// (environment, shared config and credentials files, profiles, instance roles).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImplicitConfig {
    /// The AWS region, e.g. `eu-west-1` (required: never taken from the environment).
    pub region: String,
    /// Send every AWS call to this URL instead of AWS, e.g. an emulator.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The profile of the shared AWS config files to use (default: `AWS_PROFILE` or `default`).
    #[serde(default)]
    pub profile_name: Option<String>,
    /// A role to assume with the ambient credentials.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// Managed policies that restrict the assumed role's session.
    #[serde(default)]
    pub policy_arns: Option<Vec<String>>,
    /// An inline session policy (JSON) for the assumed role.
    #[serde(default)]
    pub policy: Option<String>,
}

/// A long-lived or temporary access key. `Debug` hides it.
#[derive(Clone)]
pub(crate) struct StaticKeys {
    pub(crate) access_key_id: SecretString,
    pub(crate) secret_access_key: SecretString,
    pub(crate) session_token: Option<SecretString>,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &"[HIDDEN]")
            .field("secret_access_key", &"[HIDDEN]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[HIDDEN]"),
            )
            .finish()
    }
}

/// A connector's configuration, parsed and checked for its auth method.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) auth_method: String,
    pub(crate) region: String,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) profile_name: Option<String>,
    pub(crate) keys: Option<StaticKeys>,
    pub(crate) role_arn: Option<String>,
    pub(crate) policy_arns: Vec<String>,
    pub(crate) policy: Option<String>,
}

impl Settings {
    /// Parses `config` for its auth method. Errors name the connector and the field.
    pub(crate) fn parse(config: &ConnectorConfig) -> AwsResult<Settings> {
        let mut object = serde_json::Map::new();
        for (k, v) in &config.values {
            object.insert(k.clone(), v.clone());
        }
        for (k, v) in &config.secrets {
            object.insert(
                k.clone(),
                serde_json::Value::String(v.expose_secret().to_owned()),
            );
        }
        let value = serde_json::Value::Object(object);
        let method = config.auth_method.as_str();
        let bad = |e: serde_json::Error| {
            AwsError::Config(format!(
                "the configuration of auth method `{method}` is invalid: {}",
                redact_serde_error(&e)
            ))
        };
        let keys = |ak: SecretString, sk: SecretString, st: Option<SecretString>| StaticKeys {
            access_key_id: ak,
            secret_access_key: sk,
            session_token: st,
        };
        let settings = match method {
            SECRET_KEY | SESSION_TOKEN => {
                let c: SecretKeyConfig = serde_json::from_value(value).map_err(bad)?;
                Settings::new(method, c.region, c.endpoint_url).with_keys(keys(
                    c.aws_access_key_id,
                    c.aws_secret_access_key,
                    None,
                ))
            }
            STS_TOKEN => {
                let c: StsTokenConfig = serde_json::from_value(value).map_err(bad)?;
                Settings::new(method, c.region, c.endpoint_url).with_keys(keys(
                    c.aws_access_key_id,
                    c.aws_secret_access_key,
                    Some(c.aws_session_token),
                ))
            }
            IAM_ROLE => {
                let c: IamRoleConfig = serde_json::from_value(value).map_err(bad)?;
                let mut s = Settings::new(method, c.region, c.endpoint_url).with_keys(keys(
                    c.aws_access_key_id,
                    c.aws_secret_access_key,
                    None,
                ));
                s.role_arn = Some(c.role_arn);
                s.policy_arns = c.policy_arns.unwrap_or_default();
                s.policy = c.policy;
                s
            }
            FEDERATION_TOKEN => {
                let c: FederationTokenConfig = serde_json::from_value(value).map_err(bad)?;
                let mut s = Settings::new(method, c.region, c.endpoint_url).with_keys(keys(
                    c.aws_access_key_id,
                    c.aws_secret_access_key,
                    None,
                ));
                s.policy_arns = c.policy_arns.unwrap_or_default();
                s.policy = c.policy;
                s
            }
            IMPLICIT => {
                let c: ImplicitConfig = serde_json::from_value(value).map_err(bad)?;
                let mut s = Settings::new(method, c.region, c.endpoint_url);
                s.profile_name = c.profile_name;
                s.role_arn = c.role_arn;
                s.policy_arns = c.policy_arns.unwrap_or_default();
                s.policy = c.policy;
                s
            }
            other => {
                return Err(AwsError::Config(format!(
                    "connector type `aws` has no auth method `{other}`; use one of: {IMPLICIT}, {SECRET_KEY}, {STS_TOKEN}, {IAM_ROLE}, {SESSION_TOKEN}, {FEDERATION_TOKEN}"
                )));
            }
        };
        settings.check()?;
        Ok(settings)
    }

    fn new(method: &str, region: String, endpoint_url: Option<String>) -> Self {
        Settings {
            auth_method: method.to_owned(),
            region: region.trim().to_owned(),
            endpoint_url: endpoint_url
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            profile_name: None,
            keys: None,
            role_arn: None,
            policy_arns: Vec::new(),
            policy: None,
        }
    }

    fn with_keys(mut self, keys: StaticKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    fn check(&self) -> AwsResult<()> {
        if !is_region(&self.region) {
            return Err(AwsError::Config(format!(
                "`{}` is not an AWS region id; set `region` to one such as eu-west-1",
                self.region
            )));
        }
        if let Some(url) = &self.endpoint_url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    return Err(AwsError::Config(format!(
                        "`endpoint_url` `{url}` is not an http(s) URL; set it to e.g. http://127.0.0.1:5000 or remove it"
                    )));
                }
            }
        }
        if let Some(keys) = &self.keys {
            if keys.access_key_id.expose_secret().trim().is_empty() {
                return Err(AwsError::Config(
                    "`aws_access_key_id` is empty; set the access key id".into(),
                ));
            }
            if keys.secret_access_key.expose_secret().is_empty() {
                return Err(AwsError::Config(
                    "`aws_secret_access_key` is empty; set the secret access key".into(),
                ));
            }
        }
        if let Some(role) = &self.role_arn
            && !(role.starts_with("arn:") && role.contains(":role/"))
        {
            return Err(AwsError::Config(format!(
                "`role_arn` `{role}` is not an IAM role ARN; expected arn:aws:iam::<account>:role/<name>"
            )));
        }
        for arn in &self.policy_arns {
            if !arn.starts_with("arn:") {
                return Err(AwsError::Config(format!(
                    "`policy_arns` entry `{arn}` is not an ARN; expected arn:aws:iam::<account>:policy/<name>"
                )));
            }
        }
        if let Some(policy) = &self.policy
            && serde_json::from_str::<serde_json::Value>(policy).is_err()
        {
            return Err(AwsError::Config(
                "`policy` is not a JSON document; give an IAM policy as JSON".into(),
            ));
        }
        Ok(())
    }
}

/// A serde error message without any quoted value (values could be secrets).
fn redact_serde_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    // serde_json quotes offending values as `invalid type: string "…"`; keep the shape only.
    let mut out = String::new();
    let mut in_quotes = false;
    for c in text.chars() {
        if c == '"' {
            in_quotes = !in_quotes;
            if in_quotes {
                out.push_str("\"…");
            } else {
                out.push('"');
            }
            continue;
        }
        if !in_quotes {
            out.push(c);
        }
    }
    out.split(" at line ").next().unwrap_or(&out).to_owned()
}

/// The JSON Schema of `T` as a value.
pub(crate) fn schema_of<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|_| serde_json::json!({"type": "object"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(method: &str) -> ConnectorConfig {
        ConnectorConfig::new("aws-eu", "aws", method)
            .with_value("region", "eu-west-1")
            .with_secret("aws_access_key_id", "AKIDEXAMPLE")
            .with_secret("aws_secret_access_key", "s3cr3t-value")
    }

    #[test]
    fn each_method_parses_its_fields() {
        let s = Settings::parse(&base(SECRET_KEY)).unwrap();
        assert_eq!(s.region, "eu-west-1");
        assert!(s.keys.is_some());
        let s = Settings::parse(
            &base(IAM_ROLE).with_value("role_arn", "arn:aws:iam::123456789012:role/deployer"),
        )
        .unwrap();
        assert_eq!(
            s.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/deployer")
        );
        let err = Settings::parse(&base(STS_TOKEN)).unwrap_err();
        assert!(err.to_string().contains("aws_session_token"), "{err}");
        let s = Settings::parse(
            &ConnectorConfig::new("x", "aws", IMPLICIT)
                .with_value("region", "us-east-1")
                .with_value("profile_name", "dev"),
        )
        .unwrap();
        assert_eq!(s.profile_name.as_deref(), Some("dev"));
        assert!(s.keys.is_none());
    }

    #[test]
    fn bad_values_are_refused_without_showing_secrets() {
        let err = Settings::parse(&base(SECRET_KEY).with_value("region", "Europe")).unwrap_err();
        assert!(err.to_string().contains("not an AWS region"), "{err}");
        let err =
            Settings::parse(&base(SECRET_KEY).with_value("endpoint_url", "ftp://x")).unwrap_err();
        assert!(err.to_string().contains("endpoint_url"), "{err}");
        let err = Settings::parse(&base(SECRET_KEY).with_value("role_arn", "x")).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `role_arn`"),
            "{err}"
        );
        let err = Settings::parse(&base(IAM_ROLE).with_value("role_arn", "nope")).unwrap_err();
        assert!(err.to_string().contains("not an IAM role ARN"), "{err}");
        let debug = format!("{:?}", Settings::parse(&base(SECRET_KEY)).unwrap());
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("AKIDEXAMPLE"),
            "{debug}"
        );
        let err = Settings::parse(
            &base(SECRET_KEY).with_value("region", serde_json::json!(["s3cr3t-value"])),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
}
