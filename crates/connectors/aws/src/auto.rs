//! `auto_configure`: a connector configuration from the local AWS configuration, as the
//! AWS CLI reads it (environment variables, then the profile in the shared credentials
//! and config files).

use std::collections::BTreeMap;
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use stepstack_core::{AutoConfigureRequest, ConnectorConfig, Error, ErrorKind, Result};

use crate::CONNECTOR_TYPE;
use crate::config::{FEDERATION_TOKEN, IAM_ROLE, IMPLICIT, SECRET_KEY, SESSION_TOKEN, STS_TOKEN};
use crate::environment::AwsEnvironment;

/// `[section] key = value` files; keys lowercased.
type Ini = BTreeMap<String, BTreeMap<String, String>>;

fn read_ini(path: Option<&Path>) -> Result<Ini> {
    let Some(path) = path else {
        return Ok(Ini::new());
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ini::new()),
        Err(e) => {
            return Err(Error::new(
                ErrorKind::InvalidSettings,
                format!(
                    "could not read the AWS configuration file {}",
                    path.display()
                ),
            )
            .with_source(e));
        }
    };
    let mut ini = Ini::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_owned();
            ini.entry(name.clone()).or_default();
            section = Some(name);
            continue;
        }
        if let (Some(section), Some((k, v))) = (&section, line.split_once('=')) {
            ini.entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    Ok(ini)
}

/// The settings of profile `name`: config-file `[profile name]` (or `[default]`)
/// overlaid with credentials-file `[name]`.
fn profile(config: &Ini, credentials: &Ini, name: &str) -> Option<BTreeMap<String, String>> {
    let config_section = if name == "default" {
        config
            .get("default")
            .or_else(|| config.get("profile default"))
    } else {
        config.get(&format!("profile {name}"))
    };
    let credentials_section = credentials.get(name);
    if config_section.is_none() && credentials_section.is_none() {
        return None;
    }
    let mut merged = config_section.cloned().unwrap_or_default();
    if let Some(c) = credentials_section {
        merged.extend(c.clone());
    }
    Some(merged)
}

struct Keys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

fn keys_of(section: &BTreeMap<String, String>) -> Option<Keys> {
    Some(Keys {
        access_key_id: section.get("aws_access_key_id")?.clone(),
        secret_access_key: section.get("aws_secret_access_key")?.clone(),
        session_token: section
            .get("aws_session_token")
            .or_else(|| section.get("aws_security_token"))
            .cloned(),
    })
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidSettings, message).with_context("connector_type", CONNECTOR_TYPE)
}

/// Builds an `aws` connector configuration from `env` for `request` (at time `now`).
///
/// Hints in `request.values`: `profile_name`, `region`, `endpoint_url`, `role_arn`.
/// Without an explicit auth method: a session token gives `sts-token`, a profile with a
/// role gives `iam-role`, and a long-lived key gives `session-token` (as ZenML does, so
/// the stored key is only used to issue temporary credentials).
pub(crate) fn auto_configure(
    env: &AwsEnvironment,
    request: &AutoConfigureRequest,
    now: Timestamp,
) -> Result<ConnectorConfig> {
    let hint = |k: &str| {
        request
            .values
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let explicit_profile = hint("profile_name");
    let profile_name = explicit_profile
        .or(env.var("AWS_PROFILE"))
        .or(env.var("AWS_DEFAULT_PROFILE"))
        .unwrap_or("default")
        .to_owned();
    let config_file = env.file("AWS_CONFIG_FILE", "config");
    let credentials_file = env.file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config = read_ini(config_file.as_deref())?;
    let credentials = read_ini(credentials_file.as_deref())?;
    let section = profile(&config, &credentials, &profile_name);
    if explicit_profile.is_some() && section.is_none() {
        return Err(invalid(format!(
            "AWS profile `{profile_name}` is not in {} or {}; give an existing profile",
            config_file
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "~/.aws/config".into()),
            credentials_file
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "~/.aws/credentials".into()),
        )));
    }
    let section = section.unwrap_or_default();
    let region = hint("region")
        .or(env.var("AWS_REGION"))
        .or(env.var("AWS_DEFAULT_REGION"))
        .or(section.get("region").map(String::as_str))
        .ok_or_else(|| {
            invalid(format!(
                "no AWS region is configured (AWS_REGION, AWS_DEFAULT_REGION or `region` of profile `{profile_name}`); pass region=<id>"
            ))
        })?
        .to_owned();
    let endpoint_url = hint("endpoint_url")
        .or(env.var("AWS_ENDPOINT_URL"))
        .or(section.get("endpoint_url").map(String::as_str))
        .map(str::to_owned);
    let role_arn = hint("role_arn")
        .or(section.get("role_arn").map(String::as_str))
        .map(str::to_owned);

    // Keys: the environment wins unless a profile was named explicitly (as in the AWS
    // CLI); a role profile takes the keys of its source profile.
    let env_keys = match (
        env.var("AWS_ACCESS_KEY_ID"),
        env.var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(a), Some(s)) if explicit_profile.is_none() => Some(Keys {
            access_key_id: a.to_owned(),
            secret_access_key: s.to_owned(),
            session_token: env.var("AWS_SESSION_TOKEN").map(str::to_owned),
        }),
        _ => None,
    };
    let keys = env_keys.or_else(|| keys_of(&section)).or_else(|| {
        section
            .get("source_profile")
            .and_then(|source| profile(&config, &credentials, source))
            .and_then(|s| keys_of(&s))
    });

    let method = match request.auth_method.as_deref() {
        Some(m) => m.to_owned(),
        None => match &keys {
            Some(k) if k.session_token.is_some() => STS_TOKEN.to_owned(),
            Some(_) if role_arn.is_some() => IAM_ROLE.to_owned(),
            Some(_) => SESSION_TOKEN.to_owned(),
            None => {
                return Err(invalid(format!(
                    "no AWS credentials found in the environment or profile `{profile_name}`; configure them (aws configure) or use the `implicit` auth method"
                )));
            }
        },
    };

    let mut out = ConnectorConfig::new(request.name.clone(), CONNECTOR_TYPE, method.clone())
        .with_value("region", region);
    if let Some(url) = endpoint_url {
        out = out.with_value("endpoint_url", url);
    }
    match method.as_str() {
        IMPLICIT => {
            if profile_name != "default" {
                out = out.with_value("profile_name", profile_name.clone());
            }
            if let Some(role) = role_arn.filter(|_| hint("role_arn").is_some()) {
                out = out.with_value("role_arn", role);
            }
        }
        SECRET_KEY | SESSION_TOKEN | FEDERATION_TOKEN | IAM_ROLE | STS_TOKEN => {
            let keys = keys.ok_or_else(|| {
                invalid(format!(
                    "auth method `{method}` needs an access key, and none was found in the environment or profile `{profile_name}`"
                ))
            })?;
            match (method.as_str(), &keys.session_token) {
                (STS_TOKEN, None) => {
                    return Err(invalid(format!(
                        "auth method `{STS_TOKEN}` needs temporary credentials with a session token, but profile `{profile_name}` has a long-lived key; use `{SESSION_TOKEN}` to get temporary ones"
                    )));
                }
                (SECRET_KEY | SESSION_TOKEN | FEDERATION_TOKEN | IAM_ROLE, Some(_)) => {
                    return Err(invalid(format!(
                        "auth method `{method}` needs a long-lived access key, but the local credentials are temporary (they have a session token); use `{STS_TOKEN}`"
                    )));
                }
                _ => {}
            }
            out = out
                .with_secret("aws_access_key_id", keys.access_key_id)
                .with_secret("aws_secret_access_key", keys.secret_access_key);
            if let Some(token) = keys.session_token {
                out = out.with_secret("aws_session_token", token);
                // The expiry of temporary credentials is not in the files; use the one the
                // CLI exports when there is one, else assume the usual hour (as ZenML does).
                out.expires_at = env
                    .var("AWS_CREDENTIAL_EXPIRATION")
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .or_else(|| now.checked_add(SignedDuration::from_secs(3600)).ok());
            }
            if method == IAM_ROLE {
                let role = role_arn.ok_or_else(|| {
                    invalid(format!(
                        "auth method `{IAM_ROLE}` needs a role: pass role_arn=<arn> or use a profile with `role_arn`"
                    ))
                })?;
                out = out.with_value("role_arn", role);
            }
        }
        _ => {}
    }
    if let Some(t) = &request.resource_type {
        out = out.with_resource_types([t.clone()]);
    }
    if let Some(id) = &request.resource_id {
        out = out.with_resource_id(id.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn now() -> Timestamp {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    fn request() -> AutoConfigureRequest {
        AutoConfigureRequest::new("auto")
    }

    #[test]
    fn environment_keys_give_a_session_token_connector_by_default() {
        let env = AwsEnvironment::from_vars([
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_REGION", "eu-central-1"),
        ]);
        let c = auto_configure(&env, &request(), now()).unwrap();
        assert_eq!(c.auth_method, SESSION_TOKEN);
        assert_eq!(c.str_value("region"), Some("eu-central-1"));
        assert_eq!(
            c.secret("aws_access_key_id").unwrap().expose_secret(),
            "AKIAENV"
        );
        let mut r = request();
        r.auth_method = Some(SECRET_KEY.into());
        assert_eq!(
            auto_configure(&env, &r, now()).unwrap().auth_method,
            SECRET_KEY
        );
    }

    #[test]
    fn profiles_from_files_with_session_tokens_and_roles() {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir_all(&aws).unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = us-west-2\n\n[profile deployer]\nrole_arn = arn:aws:iam::123456789012:role/deployer\nsource_profile = default\nregion = eu-west-1\n\n[profile temp]\nregion = ap-south-1\nendpoint_url = http://127.0.0.1:5000\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = filesecret\n\n[temp]\naws_access_key_id = ASIATEMP\naws_secret_access_key = tempsecret\naws_session_token = tok\n",
        )
        .unwrap();
        let env = AwsEnvironment::default().with_home(dir.path());
        let c = auto_configure(&env, &request(), now()).unwrap();
        assert_eq!(c.auth_method, SESSION_TOKEN);
        assert_eq!(c.str_value("region"), Some("us-west-2"));

        let env_role =
            AwsEnvironment::from_vars([("AWS_PROFILE", "deployer")]).with_home(dir.path());
        let c = auto_configure(&env_role, &request(), now()).unwrap();
        assert_eq!(c.auth_method, IAM_ROLE);
        assert_eq!(
            c.str_value("role_arn"),
            Some("arn:aws:iam::123456789012:role/deployer")
        );
        assert_eq!(
            c.secret("aws_access_key_id").unwrap().expose_secret(),
            "AKIAFILE"
        );
        assert_eq!(c.str_value("region"), Some("eu-west-1"));

        let mut r = request();
        r.values.insert("profile_name".into(), "temp".into());
        let c = auto_configure(&env, &r, now()).unwrap();
        assert_eq!(c.auth_method, STS_TOKEN);
        assert_eq!(c.str_value("endpoint_url"), Some("http://127.0.0.1:5000"));
        assert_eq!(c.expires_at, Some("2030-01-01T01:00:00Z".parse().unwrap()));

        r.values.insert("profile_name".into(), "missing".into());
        let err = auto_configure(&env, &r, now()).unwrap_err();
        assert!(err.message().contains("profile `missing`"), "{err}");

        let mut r = request();
        r.auth_method = Some(SECRET_KEY.into());
        r.values.insert("profile_name".into(), "temp".into());
        let err = auto_configure(&env, &r, now()).unwrap_err();
        assert!(err.message().contains("temporary"), "{err}");
    }

    #[test]
    fn missing_region_or_credentials_are_explained() {
        let env =
            AwsEnvironment::from_vars([("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "B")]);
        let err = auto_configure(&env, &request(), now()).unwrap_err();
        assert!(err.message().contains("no AWS region"), "{err}");
        let env = AwsEnvironment::from_vars([("AWS_REGION", "eu-west-1")]);
        let err = auto_configure(&env, &request(), now()).unwrap_err();
        assert!(err.message().contains("no AWS credentials"), "{err}");
        let mut r = request();
        r.auth_method = Some(IMPLICIT.into());
        let c = auto_configure(&env, &r, now()).unwrap();
        assert_eq!(c.auth_method, IMPLICIT);
        assert!(c.secrets.is_empty());
    }
}
