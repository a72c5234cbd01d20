//! The crate's own errors, mapped to [`stepstack_core::Error`] at the trait boundary.

use stepstack_core::connector::ConnectorError;
use stepstack_core::{Error, ErrorKind};

/// What went wrong inside the AWS connector. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AwsError {
    /// The configuration is incomplete or invalid.
    #[error("{0}")]
    Config(String),
    /// AWS answered with an error code.
    #[error("{context}: AWS error {code}: {message}")]
    Service {
        /// What the connector was doing, e.g. "listing the EKS clusters in region eu-west-1".
        context: String,
        /// The AWS error code, e.g. `InvalidClientTokenId`.
        code: String,
        /// AWS's message.
        message: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// AWS could not be reached or answered something unreadable.
    #[error("{context}: {detail}")]
    Transport {
        /// What the connector was doing.
        context: String,
        /// The cause, flattened.
        detail: String,
    },
    /// Signing the EKS token failed.
    #[error("could not sign the EKS token: {0}")]
    Signing(String),
    /// A cluster exists but cannot be used yet (no endpoint).
    #[error("{0}")]
    ClusterNotReady(String),
    /// The local kubeconfig could not be read or written.
    #[error("{0}")]
    Kubeconfig(String),
    /// AWS answered something the connector cannot use (an unreadable endpoint).
    #[error("{0}")]
    UnexpectedAnswer(String),
    /// The cluster's `certificateAuthority.data` is unreadable: tokens still work, but
    /// nothing can verify the API server's certificate.
    #[error(
        "the certificate authority of EKS cluster `{cluster}` in region {region} is unreadable ({why}), so the API server's certificate cannot be verified; check it with `aws eks describe-cluster --name {cluster} --region {region}`"
    )]
    UnreadableCa {
        /// The cluster's name.
        cluster: String,
        /// The connector's region.
        region: String,
        /// What is wrong with the data (never the data).
        why: &'static str,
    },
}

impl AwsError {
    /// The stepstack error kind.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            AwsError::Config(_) => ErrorKind::InvalidSettings,
            AwsError::Service { code, .. } => kind_of_code(code),
            AwsError::Transport { .. } => ErrorKind::Unavailable,
            AwsError::Signing(_) => ErrorKind::Internal,
            AwsError::ClusterNotReady(_) => ErrorKind::Unavailable,
            AwsError::UnexpectedAnswer(_) => ErrorKind::Internal,
            // The cluster's answer, not stepstack, is at fault: like an unreachable one.
            AwsError::UnreadableCa { .. } => ErrorKind::Unavailable,
            AwsError::Kubeconfig(_) => ErrorKind::InvalidSettings,
        }
    }

    /// The AWS error code, if AWS answered with one.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            AwsError::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl ConnectorError for AwsError {
    /// The core error, naming the connector and, when AWS answered with one, its error
    /// code; the connector adds its region.
    fn into_core(self, connector: &str) -> Error {
        let kind = self.kind();
        let mut message = self.to_string();
        if let AwsError::Service { hint, .. } = &self
            && !hint.is_empty()
        {
            message.push_str("; ");
            message.push_str(hint);
        }
        if let AwsError::Transport { .. } = &self {
            message.push_str(
                "; check that AWS (or the connector's `endpoint_url`) is reachable from this machine",
            );
        }
        let mut error = Error::new(kind, message).with_context("connector", connector.to_owned());
        if let Some(code) = self.code() {
            error = error.with_context("aws_error_code", code.to_owned());
        }
        error
    }
}

/// How an AWS error code maps to an error kind.
pub(crate) fn kind_of_code(code: &str) -> ErrorKind {
    match code {
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "InvalidSignatureException"
        | "UnrecognizedClientException"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidAccessKeyId"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "AuthFailure"
        | "InvalidToken"
        | "CredentialsNotLoaded" => ErrorKind::Unauthenticated,
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "RegionDisabledException" => ErrorKind::PermissionDenied,
        "ResourceNotFoundException" | "NoSuchEntity" | "NotFoundException" => ErrorKind::NotFound,
        "ValidationError"
        | "InvalidParameterException"
        | "InvalidParameterValue"
        | "MalformedPolicyDocument"
        | "PackedPolicyTooLarge"
        | "InvalidRequestException" => ErrorKind::InvalidSettings,
        "Throttling"
        | "ThrottlingException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "ServerException"
        | "InternalFailure"
        | "RequestTimeout" => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// A hint for an AWS error code.
pub(crate) fn hint_for_code(code: &str) -> &'static str {
    match kind_of_code(code) {
        ErrorKind::Unauthenticated => {
            "check the connector's access key, secret key and session token (or renew expired credentials)"
        }
        ErrorKind::PermissionDenied => {
            "grant the connector's IAM identity the permission, or widen the session policy"
        }
        ErrorKind::NotFound => "check the name and the connector's region",
        ErrorKind::InvalidSettings => "fix the connector configuration",
        ErrorKind::Unavailable => "retry later",
        _ => "",
    }
}

/// Turns an SDK error into an [`AwsError`] with `context` ("listing … in region …").
///
/// An error response without a readable code keeps the HTTP status and the start of the
/// body, so the cause stays visible (e.g. an emulator answering in another format).
pub(crate) fn from_sdk<E>(
    context: impl Into<String>,
    err: aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::http::Response,
    >,
) -> AwsError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let context = context.into();
    match &err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let raw = service.raw();
            let status = raw.status().as_u16();
            let (code, message) = match inner.code() {
                Some(code) => (
                    code.to_owned(),
                    inner.message().unwrap_or("(no message)").to_owned(),
                ),
                None => {
                    let body = raw
                        .body()
                        .bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    let code = code_in_body(&body).unwrap_or_else(|| format!("HTTP{status}"));
                    let excerpt: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
                    let excerpt: String = excerpt.chars().take(300).collect();
                    (code, format!("HTTP {status}: {excerpt}"))
                }
            };
            let hint = hint_for_code(&code);
            AwsError::Service {
                context,
                code,
                message,
                hint,
            }
        }
        _ => AwsError::Transport {
            context,
            detail: stepstack_core::error_chain(&err),
        },
    }
}

/// The `<Code>` of an XML error body, if any.
fn code_in_body(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    let code = body[start..end].trim();
    (!code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
        .then(|| code.to_owned())
}

pub(crate) type AwsResult<T> = Result<T, AwsError>;
