//! The EKS bearer token, exactly as `aws eks get-token` and aws-iam-authenticator make
//! it: `k8s-aws-v1.` + unpadded base64url of a SigV4 query-presigned
//! `GET https://sts.<region>.<partition suffix>/?Action=GetCallerIdentity&Version=2011-06-15`
//! whose signed headers include `x-k8s-aws-id: <cluster name>`, with `X-Amz-Expires=60`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use stepstack_core::connector::ConnectorError as _;
use stepstack_core::{BearerToken, TokenSource};

use crate::credentials::CredentialProvider;
use crate::eks::sts_host;
use crate::error::{AwsError, AwsResult};

/// The prefix of EKS bearer tokens.
pub const EKS_TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// How long the EKS API server accepts a token after it was signed (aws-iam-authenticator
/// checks `X-Amz-Date` against 15 minutes, whatever `X-Amz-Expires` says).
pub const EKS_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The `X-Amz-Expires` of the presigned URL, as `aws eks get-token` sets it.
pub const PRESIGNED_URL_EXPIRES: Duration = Duration::from_secs(60);

/// Builds the EKS bearer token for `cluster_name` with `credentials`, signed at `time`
/// for `region`'s STS endpoint in its partition (`amazonaws.com`, `amazonaws.com.cn`, …).
///
/// Pure: the same inputs always give the same token.
pub fn eks_token(
    credentials: &Credentials,
    region: &str,
    cluster_name: &str,
    time: SystemTime,
) -> Result<String, EksTokenError> {
    build(credentials, region, cluster_name, time).map_err(|e| EksTokenError(e.to_string()))
}

/// Why an EKS token could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct EksTokenError(String);

pub(crate) fn build(
    credentials: &Credentials,
    region: &str,
    cluster_name: &str,
    time: SystemTime,
) -> AwsResult<String> {
    let host = sts_host(region);
    let url = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGNED_URL_EXPIRES);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| AwsError::Signing(e.to_string()))?
        .into();
    let headers = [("host", host.as_str()), ("x-k8s-aws-id", cluster_name)];
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| AwsError::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| AwsError::Signing(e.to_string()))?
        .into_parts();
    let mut request = http::Request::builder()
        .method("GET")
        .uri(url.as_str())
        .body(())
        .map_err(|e| AwsError::Signing(e.to_string()))?;
    instructions.apply_to_request_http1x(&mut request);
    let presigned = request.uri().to_string();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned.as_bytes());
    Ok(format!("{EKS_TOKEN_PREFIX}{encoded}"))
}

/// Issues EKS tokens for one cluster, getting (and renewing) the connector's AWS
/// credentials as needed. Each token expires 15 minutes after signing, or when the
/// credentials it was signed with expire, whichever is first.
pub(crate) struct EksTokenSource {
    pub(crate) provider: Arc<CredentialProvider>,
    pub(crate) cluster_name: String,
}

impl fmt::Debug for EksTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EksTokenSource")
            .field("connector", &self.provider.connector_name())
            .field("cluster", &self.cluster_name)
            .field("region", &self.provider.region())
            .finish()
    }
}

#[async_trait]
impl TokenSource for EksTokenSource {
    async fn token(&self) -> stepstack_core::Result<BearerToken> {
        let region = self.provider.region().to_owned();
        let connector = self.provider.connector_name().to_owned();
        let credentials = self
            .provider
            .credentials(
                Some(stepstack_core::connector::KUBERNETES_CLUSTER),
                Some(&self.cluster_name),
            )
            .await
            .map_err(|e| {
                e.into_core(&connector)
                    .with_context("region", region.clone())
            })?;
        let now = SystemTime::now();
        let token = build(&credentials, &region, &self.cluster_name, now).map_err(|e| {
            e.into_core(&connector)
                .with_context("region", region.clone())
                .with_context("cluster", self.cluster_name.clone())
        })?;
        let mut expires_at = now + EKS_TOKEN_LIFETIME;
        if let Some(expiry) = credentials.expiry()
            && expiry < expires_at
        {
            expires_at = expiry;
        }
        let expires_at = jiff::Timestamp::try_from(expires_at).ok();
        tracing::debug!(
            connector = %connector,
            cluster = %self.cluster_name,
            region = %region,
            expires_at = ?expires_at,
            "issued an EKS bearer token"
        );
        Ok(BearerToken::new(token, expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_decodes_to_a_presigned_get_caller_identity() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645);
        let token = eks_token(&creds, "cn-north-1", "beijing", time).unwrap();
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.strip_prefix(EKS_TOKEN_PREFIX).unwrap())
            .unwrap();
        let url = String::from_utf8(url).unwrap();
        assert!(
            url.starts_with("https://sts.cn-north-1.amazonaws.com.cn/?Action=GetCallerIdentity&Version=2011-06-15&"),
            "{url}"
        );
        assert!(
            url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
            "{url}"
        );
        assert!(!token.ends_with('='));
    }
}
