//! Ambient credentials, for the implicit method and for `auto_configure`: a managed
//! identity (the instance metadata service, or the identity endpoint of App Service,
//! Functions and Container Apps) and the Azure CLI's login.

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use stepstack_cloud_http::{AccessToken, HttpClient, HttpError, send};

use crate::error::{AzureError, AzureResult};

/// The managed-identity token endpoint of the instance metadata service.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";

/// How long the first call to the instance metadata service may take: off Azure the
/// address does not answer at all, and the Azure CLI is tried next.
const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long `az account get-access-token` may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// A managed-identity token endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ManagedIdentity<'a> {
    /// The instance metadata service (VMs, AKS nodes): `Metadata: true`.
    Imds { url: &'a str, probe: bool },
    /// `IDENTITY_ENDPOINT` with `X-IDENTITY-HEADER: IDENTITY_HEADER`.
    AppService {
        url: &'a str,
        header: &'a SecretString,
    },
}

/// The resource of a `…/.default` scope, as managed-identity endpoints and old CLIs take it.
pub(crate) fn resource_of(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

#[derive(Deserialize)]
struct ManagedIdentityToken {
    access_token: String,
    /// Seconds since the epoch, as a string (IMDS) or a number.
    #[serde(default)]
    expires_on: Option<serde_json::Value>,
}

fn seconds(value: Option<&serde_json::Value>) -> Option<i64> {
    match value? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A token for `scope` from a managed identity (the user-assigned one of `client_id`, when
/// given).
pub(crate) async fn managed_identity_token(
    http: &HttpClient,
    endpoint: ManagedIdentity<'_>,
    scope: &str,
    client_id: Option<&str>,
) -> AzureResult<AccessToken> {
    let (base, api_version) = match endpoint {
        ManagedIdentity::Imds { url, .. } => (url, IMDS_API_VERSION),
        ManagedIdentity::AppService { url, .. } => (url, APP_SERVICE_API_VERSION),
    };
    let query = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("api-version", api_version)
            .append_pair("resource", resource_of(scope));
        if let Some(client_id) = client_id {
            query.append_pair("client_id", client_id);
        }
        query.finish()
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}{query}");
    let failed = |reason: String| AzureError::ManagedIdentity {
        endpoint: base.to_owned(),
        reason,
    };
    let mut request = http::Request::get(&url).header(http::header::ACCEPT, "application/json");
    request = match endpoint {
        ManagedIdentity::Imds { .. } => request.header("Metadata", "true"),
        ManagedIdentity::AppService { header, .. } => {
            let mut value = http::HeaderValue::from_str(header.expose_secret())
                .map_err(|_| failed("IDENTITY_HEADER is not a valid header value".to_owned()))?;
            value.set_sensitive(true);
            request.header("X-IDENTITY-HEADER", value)
        }
    };
    let request = request
        .body(Default::default())
        .map_err(|e| failed(format!("invalid URL: {e}")))?;
    let call = send(http, request, base);
    let response = match endpoint {
        ManagedIdentity::Imds { probe: true, .. } => tokio::time::timeout(IMDS_PROBE_TIMEOUT, call)
            .await
            .map_err(|_| {
                failed(format!(
                    "no answer within {IMDS_PROBE_TIMEOUT:?} (not on Azure?)"
                ))
            })?,
        _ => call.await,
    }
    .map_err(|e| match e {
        HttpError::Unreachable { reason, .. } => failed(reason),
        other => other.into(),
    })?;
    tracing::debug!(
        endpoint = base,
        scope,
        status = response.status,
        "managed-identity token"
    );
    if !response.is_success() {
        let value = response.json_value();
        let reason = value["error_description"]
            .as_str()
            .or(value["error"]["message"].as_str())
            .or(value["error"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| response.excerpt());
        return Err(failed(format!("HTTP {}: {reason}", response.status)));
    }
    let token: ManagedIdentityToken = response.json(base)?;
    Ok(AccessToken {
        value: SecretString::from(token.access_token),
        expires_at: seconds(token.expires_on.as_ref()).and_then(|s| Timestamp::from_second(s).ok()),
    })
}

/// A token from the Azure CLI, with the subscription and tenant of its login.
#[derive(Debug)]
pub(crate) struct CliToken {
    pub(crate) token: AccessToken,
    pub(crate) subscription: Option<String>,
    pub(crate) tenant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CliOutput {
    access_token: String,
    /// Seconds since the epoch (Azure CLI 2.54 and later).
    #[serde(default, rename = "expires_on")]
    expires_on: Option<serde_json::Value>,
    /// Local time, `2024-05-21 14:22:41.000000` (every version).
    #[serde(default, rename = "expiresOn")]
    expires_on_local: Option<String>,
    #[serde(default)]
    subscription: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
}

/// `az account get-access-token --scope SCOPE -o json [--tenant TENANT]` with `program`
/// as `az`.
pub(crate) async fn azure_cli_token(
    program: &Path,
    scope: &str,
    tenant: Option<&str>,
) -> AzureResult<CliToken> {
    let failed = |reason: String| AzureError::AzureCli {
        program: program.display().to_string(),
        reason,
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args([
            "account",
            "get-access-token",
            "--scope",
            scope,
            "-o",
            "json",
        ])
        .args(tenant.into_iter().flat_map(|t| ["--tenant", t]))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(CLI_TIMEOUT, command.output())
        .await
        .map_err(|_| failed(format!("it did not finish within {CLI_TIMEOUT:?}")))?
        .map_err(|e| {
            failed(if e.kind() == std::io::ErrorKind::NotFound {
                "it is not installed or not on PATH (install the Azure CLI, or set `azure_cli` to its path)".to_owned()
            } else {
                format!("it could not be started: {e}")
            })
        })?;
    if !output.status.success() {
        // az's errors go to stderr and hold no token.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason: String = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(300)
            .collect();
        return Err(failed(format!(
            "it exited with {}: {reason}",
            output.status
        )));
    }
    // The output holds the token: parse errors never quote it.
    let parsed: CliOutput = serde_json::from_slice(&output.stdout).map_err(|_| {
        failed("its output is not the JSON of `az account get-access-token`".to_owned())
    })?;
    let expires_at = seconds(parsed.expires_on.as_ref())
        .and_then(|s| Timestamp::from_second(s).ok())
        .or_else(|| parsed.expires_on_local.as_deref().and_then(local_time));
    tracing::debug!(program = %program.display(), scope, ?expires_at, "Azure CLI token");
    Ok(CliToken {
        token: AccessToken {
            value: SecretString::from(parsed.access_token),
            expires_at,
        },
        subscription: parsed.subscription.filter(|s| !s.is_empty()),
        tenant: parsed.tenant.filter(|s| !s.is_empty()),
    })
}

/// `expiresOn` of older CLIs: a local date and time without offset.
fn local_time(text: &str) -> Option<Timestamp> {
    let civil: jiff::civil::DateTime = text.trim().replacen(' ', "T", 1).parse().ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::system())
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_become_resources_and_expiries_parse() {
        assert_eq!(
            resource_of("https://management.azure.com/.default"),
            "https://management.azure.com"
        );
        assert_eq!(
            resource_of(crate::AKS_SERVER_APP_SCOPE),
            crate::AKS_SERVER_APP_ID
        );
        assert_eq!(
            seconds(Some(&serde_json::json!("1700000000"))),
            Some(1_700_000_000)
        );
        assert_eq!(
            seconds(Some(&serde_json::json!(1_700_000_000))),
            Some(1_700_000_000)
        );
        assert!(local_time("2024-05-21 14:22:41.000000").is_some());
        assert!(local_time("tomorrow").is_none());
    }
}
