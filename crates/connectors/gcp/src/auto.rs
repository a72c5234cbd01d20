//! Auto-configuration: a new `gcp` connector from the application default credentials
//! (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's application-default login) or the
//! implicit method, with the project from the request, the environment or the file.

use stepstack_core::{AutoConfigureRequest, ConnectorConfig};

use crate::config::{
    self, CONNECTOR_TYPE, EXTERNAL_ACCOUNT, IMPLICIT, SERVICE_ACCOUNT, USER_ACCOUNT,
};
use crate::environment::GcpEnvironment;
use crate::error::{GcpError, GcpResult};

/// The `AutoConfigureRequest::values` keys copied into an auto-configured connector.
const AUTO_CONFIGURE_KEYS: [&str; 4] = [
    "project_id",
    "token_endpoint",
    "iam_credentials_endpoint",
    "container_endpoint",
];

/// The configuration auto-configuration finds for `request` in `env`.
pub(crate) async fn auto_config(
    env: &GcpEnvironment,
    request: &AutoConfigureRequest,
) -> GcpResult<ConnectorConfig> {
    let requested = request.auth_method.as_deref();
    let mut project = request
        .values
        .get("project_id")
        .cloned()
        .or_else(|| env.project.clone());
    let base = |method: &str| {
        let mut config = ConnectorConfig::new(request.name.clone(), CONNECTOR_TYPE, method);
        for key in AUTO_CONFIGURE_KEYS.iter().skip(1) {
            if let Some(value) = request.values.get(*key) {
                config = config.with_value(*key, value.clone());
            }
        }
        if let Some(resource_type) = &request.resource_type {
            config = config.with_resource_types([resource_type.clone()]);
        }
        if let Some(id) = &request.resource_id {
            config = config.with_resource_id(id.clone());
        }
        config
    };
    let adc = env.adc_path();
    let mut config = match (requested, adc) {
        (Some(IMPLICIT), _) => base(IMPLICIT),
        (requested, Some(path)) => {
            let text =
                tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|source| GcpError::ReadFile {
                        what: "the application default credentials",
                        path: path.clone(),
                        source,
                    })?;
            let json = config::decode_json("application default credentials", &text)?;
            let kind = json["type"].as_str().unwrap_or_default();
            let (method, field) = match kind {
                "service_account" => (SERVICE_ACCOUNT, "service_account_json"),
                "authorized_user" => (USER_ACCOUNT, "user_account_json"),
                "external_account" => (EXTERNAL_ACCOUNT, "external_account_json"),
                other => {
                    return Err(GcpError::InvalidCredentialsJson {
                        field: "application default credentials",
                        reason: format!("unknown credentials type `{other}`"),
                    });
                }
            };
            if let Some(requested) = requested
                && requested != method
            {
                return Err(GcpError::InvalidConfig {
                    method: requested.to_owned(),
                    reason: format!(
                        "the application default credentials at {} are `{kind}` credentials, which configure auth method `{method}`",
                        path.display()
                    ),
                });
            }
            project = project.or_else(|| {
                json["project_id"]
                    .as_str()
                    .or(json["quota_project_id"].as_str())
                    .map(str::to_owned)
            });
            base(method).with_secret(field, text.trim().to_owned())
        }
        (None, None) => {
            let looked_at = env
                .adc_candidates()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(GcpError::NoCredentials {
                looked_at: if looked_at.is_empty() {
                    "nowhere: GOOGLE_APPLICATION_CREDENTIALS, CLOUDSDK_CONFIG and HOME are unset"
                        .to_owned()
                } else {
                    looked_at
                },
            });
        }
        (Some(other), None) => {
            return Err(GcpError::InvalidConfig {
                method: other.to_owned(),
                reason: "there are no application default credentials to configure it from; configure it explicitly".to_owned(),
            });
        }
    };
    match project {
        Some(project) => config = config.with_value("project_id", project),
        None => {
            return Err(GcpError::MissingProject {
                hint: " (or pass `project_id`, or set GOOGLE_CLOUD_PROJECT)",
            });
        }
    }
    Ok(config)
}
