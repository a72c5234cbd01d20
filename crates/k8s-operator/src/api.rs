//! Raw Kubernetes API calls with the operator's retry rules.
//!
//! Requests go through the `kube::Client` built from the cluster connection (so token
//! refresh and the one retry on 401 still apply), but the response is read here so the
//! `Retry-After` header of a 429 is honoured. Transient failures (429, 5xx, timeouts,
//! dropped connections) are retried with exponential backoff and jitter up to
//! `max_retries`; every other 4xx is returned at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use kube::client::Body;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

/// The longest `Retry-After` the operator honours; longer values are capped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The first backoff delay of a retried API call.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The largest backoff delay of a retried API call.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Request timeout when the settings give none.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests (not streams) one operator has in flight at most. HTTP/1.1 needs a
/// connection per request in flight, and each costs a TLS session and buffers (about
/// 40 KB here, more on the API server): a thousand steps submitted at once would
/// otherwise open a thousand connections and keep them in the pool.
pub(crate) const MAX_CONCURRENT_REQUESTS: usize = 32;

/// How one API call is made: its timeout and how often a transient failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallPolicy {
    /// Timeout of one request (until the whole answer is read; for streams, until the
    /// headers arrive).
    pub(crate) timeout: Duration,
    /// Retries after the first attempt.
    pub(crate) max_retries: u32,
}

impl CallPolicy {
    /// The policy of `api_request_timeout` (seconds) and `max_api_retries`.
    pub(crate) fn new(timeout_seconds: Option<u64>, max_retries: u32) -> Self {
        CallPolicy {
            timeout: timeout_seconds
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            max_retries,
        }
    }
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy::new(None, 3)
    }
}

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The API server answered with an error status.
    #[error("{op}: the API server answered {code} {reason}: {message}")]
    Status {
        /// What was being done, e.g. `create Job ml/trainer-1234`.
        op: String,
        /// HTTP status code.
        code: u16,
        /// The Status reason (`NotFound`, `AlreadyExists`, `Invalid`, …).
        reason: String,
        /// The Status message.
        message: String,
        /// How long the server asked us to wait.
        retry_after: Option<Duration>,
    },
    /// No answer within the request timeout.
    #[error("{op}: no answer from the API server within {after:?}")]
    Timeout {
        /// What was being done.
        op: String,
        /// The timeout.
        after: Duration,
    },
    /// The connection failed or was dropped. The message says what failed; the
    /// client's error is the source (never both, so a chain never repeats it).
    #[error("{op}: could not reach the API server")]
    Transport {
        /// What was being done.
        op: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The answer was not what the API promises (the decoder's error is the source).
    #[error("{op}: could not decode the API server's answer")]
    Decode {
        /// What was being done.
        op: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
}

impl ApiError {
    /// The HTTP status code, if the server answered.
    pub(crate) fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The Status reason, if the server answered.
    pub(crate) fn reason(&self) -> Option<&str> {
        match self {
            ApiError::Status { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The Status message, if the server answered.
    pub(crate) fn status_message(&self) -> Option<&str> {
        match self {
            ApiError::Status { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether repeating the call may succeed: 429, 5xx, timeouts and transport errors.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ApiError::Status { code, .. } => *code == 429 || *code >= 500,
            ApiError::Timeout { .. } | ApiError::Transport { .. } => true,
            ApiError::Decode { .. } => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
            _ => None,
        }
    }

    /// Maps the error into the contracts' error, by status code.
    pub(crate) fn into_core(self) -> stepstack_core::Error {
        use stepstack_core::ErrorKind;
        let kind = match &self {
            ApiError::Status { code, .. } => match *code {
                401 => ErrorKind::Unauthenticated,
                403 => ErrorKind::PermissionDenied,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                400 | 422 => ErrorKind::InvalidSettings,
                429 | 410 => ErrorKind::Unavailable,
                c if c >= 500 => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            ApiError::Timeout { .. } => ErrorKind::Timeout,
            ApiError::Transport { .. } => ErrorKind::Unavailable,
            ApiError::Decode { .. } => ErrorKind::Internal,
        };
        let message = match &self {
            ApiError::Status { code: 401, op, .. } => format!(
                "{op}: the cluster rejected the credentials; refresh them (re-run the connector's login or check the kubeconfig)"
            ),
            ApiError::Status {
                code: 403,
                op,
                message,
                ..
            } => format!(
                "{op}: permission denied: {message}; grant the identity this permission in the namespace"
            ),
            ApiError::Transport { op, .. } => {
                format!(
                    "{op}: could not reach the API server; check the cluster address and the network"
                )
            }
            other => other.to_string(),
        };
        let reason = self.reason().map(str::to_owned);
        let mut err = stepstack_core::Error::new(kind, message);
        if let Some(reason) = reason {
            err = err.with_context("api_reason", reason);
        }
        // The message already says all this error says: only a deeper cause (the
        // client's or the decoder's error) becomes the source, so the chain the CLI
        // prints holds every clause once.
        match self {
            ApiError::Transport { source, .. } => err.with_source(source),
            ApiError::Decode { source, .. } => err.with_source(source),
            ApiError::Status { .. } | ApiError::Timeout { .. } => err,
        }
    }
}

/// One API request: what it does (for messages), method, path and body.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    op: String,
    method: Method,
    path: String,
    body: Vec<u8>,
    content_type: Option<&'static str>,
}

impl Call {
    /// A GET of `path`.
    pub(crate) fn get(op: impl Into<String>, path: impl Into<String>) -> Self {
        Call {
            op: op.into(),
            method: Method::GET,
            path: path.into(),
            body: Vec::new(),
            content_type: None,
        }
    }

    /// A POST of `body` as JSON.
    pub(crate) fn post(
        op: impl Into<String>,
        path: impl Into<String>,
        body: &impl serde::Serialize,
    ) -> Self {
        Call {
            op: op.into(),
            method: Method::POST,
            path: path.into(),
            body: serde_json::to_vec(body).unwrap_or_default(),
            content_type: Some("application/json"),
        }
    }

    /// A DELETE with `body` (DeleteOptions) as JSON.
    pub(crate) fn delete(
        op: impl Into<String>,
        path: impl Into<String>,
        body: &impl serde::Serialize,
    ) -> Self {
        Call {
            op: op.into(),
            method: Method::DELETE,
            path: path.into(),
            body: serde_json::to_vec(body).unwrap_or_default(),
            content_type: Some("application/json"),
        }
    }

    /// A JSON merge patch.
    pub(crate) fn merge_patch(
        op: impl Into<String>,
        path: impl Into<String>,
        body: &serde_json::Value,
    ) -> Self {
        Call {
            op: op.into(),
            method: Method::PATCH,
            path: path.into(),
            body: serde_json::to_vec(body).unwrap_or_default(),
            content_type: Some("application/merge-patch+json"),
        }
    }

    /// What the call does, for messages.
    pub(crate) fn op(&self) -> &str {
        &self.op
    }

    fn build(&self) -> Result<http::Request<Body>, ApiError> {
        let mut builder = http::Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(http::header::ACCEPT, "application/json");
        if let Some(ct) = self.content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        builder
            .body(Body::from(self.body.clone()))
            .map_err(|e| ApiError::Transport {
                op: self.op.clone(),
                source: kube::Error::HttpError(e),
            })
    }
}

/// A client that makes [`Call`]s with a [`CallPolicy`]. Clones share the limit of
/// [`MAX_CONCURRENT_REQUESTS`].
#[derive(Clone)]
pub(crate) struct Api {
    client: kube::Client,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    pub(crate) fn new(client: kube::Client) -> Self {
        Api {
            client,
            in_flight: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
        }
    }

    /// The underlying client (for watches).
    pub(crate) fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Makes the call, retrying transient failures, and decodes the answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        call: &Call,
        policy: CallPolicy,
    ) -> Result<T, ApiError> {
        let bytes = self.bytes(call, policy).await?;
        serde_json::from_slice(&bytes).map_err(|source| ApiError::Decode {
            op: call.op.clone(),
            source,
        })
    }

    /// Makes the call, retrying transient failures, and returns the raw answer.
    pub(crate) async fn bytes(&self, call: &Call, policy: CallPolicy) -> Result<Bytes, ApiError> {
        retrying(call, policy, || self.once(call, policy.timeout)).await
    }

    /// Opens a streamed answer (logs), retrying transient failures until the headers
    /// arrive; the timeout covers only the headers.
    pub(crate) async fn stream(&self, call: &Call, policy: CallPolicy) -> Result<Body, ApiError> {
        retrying(call, policy, || self.open(call, policy.timeout)).await
    }

    async fn once(&self, call: &Call, timeout: Duration) -> Result<Bytes, ApiError> {
        // Held until the whole answer is read, not across retry delays. The semaphore is
        // never closed, so this always yields a permit.
        let _permit = self.in_flight.acquire().await.ok();
        let fut = async {
            let response = self.send(call).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect_bytes()
                .await
                .map_err(|source| ApiError::Transport {
                    op: call.op.clone(),
                    source,
                })?;
            if status.is_success() {
                Ok(body)
            } else {
                Err(status_error(&call.op, status, &headers, &body))
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::Timeout {
                op: call.op.clone(),
                after: timeout,
            }),
        }
    }

    async fn open(&self, call: &Call, timeout: Duration) -> Result<Body, ApiError> {
        let fut = async {
            let response = self.send(call).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response.into_body());
            }
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            Err(status_error(&call.op, status, &headers, &body))
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::Timeout {
                op: call.op.clone(),
                after: timeout,
            }),
        }
    }

    async fn send(&self, call: &Call) -> Result<http::Response<Body>, ApiError> {
        let request = call.build()?;
        self.client
            .send(request)
            .await
            .map_err(|source| ApiError::Transport {
                op: call.op.clone(),
                source,
            })
    }
}

async fn retrying<T, F, Fut>(call: &Call, policy: CallPolicy, mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut retries = 0u32;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if err.is_transient() && retries < policy.max_retries => {
                let delay = err.retry_after().unwrap_or_else(|| backoff_delay(retries));
                retries += 1;
                tracing::debug!(
                    op = call.op(),
                    retry = retries,
                    max_retries = policy.max_retries,
                    delay_ms = delay.as_millis() as u64,
                    error = %stepstack_core::error_chain(&err),
                    "transient API error; retrying"
                );
                tokio::time::sleep(delay).await;
            }
            Err(err) => {
                if err.is_transient() {
                    tracing::warn!(op = call.op(), retries, error = %stepstack_core::error_chain(&err), "API call failed after all retries");
                }
                return Err(err);
            }
        }
    }
}

/// Exponential backoff with jitter: the `retry`-th delay is a random value between half
/// and all of `100 ms × 2^retry`, capped at 5 s.
pub(crate) fn backoff_delay(retry: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(retry.min(16)))
        .min(MAX_BACKOFF);
    crate::retry::jitter(base)
}

fn status_error(op: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ApiError {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct StatusBody {
        reason: String,
        message: String,
        details: Option<Details>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    struct Details {
        retry_after_seconds: Option<u64>,
    }
    let parsed: StatusBody = serde_json::from_slice(body).unwrap_or_default();
    let header_retry = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let retry_after = header_retry
        .or(parsed.details.as_ref().and_then(|d| d.retry_after_seconds))
        .map(Duration::from_secs);
    let message = if parsed.message.is_empty() {
        String::from_utf8_lossy(body)
            .trim()
            .chars()
            .take(500)
            .collect()
    } else {
        parsed.message
    };
    let reason = if parsed.reason.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("Unknown")
            .replace(' ', "")
    } else {
        parsed.reason
    };
    ApiError::Status {
        op: op.to_owned(),
        code: status.as_u16(),
        reason,
        message,
        retry_after,
    }
}

/// Percent-encodes a query value.
pub(crate) fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_keep_reason_message_and_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "2".parse().unwrap());
        let err = status_error(
            "create Job ml/x",
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            br#"{"kind":"Status","reason":"TooManyRequests","message":"slow down","code":429}"#,
        );
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(err.reason(), Some("TooManyRequests"));

        let err = status_error(
            "get Job ml/x",
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            b"not json",
        );
        assert!(!err.is_transient());
        assert_eq!(err.reason(), Some("NotFound"));
        assert_eq!(err.status_message(), Some("not json"));
        assert_eq!(err.into_core().kind(), stepstack_core::ErrorKind::NotFound);

        let err = status_error(
            "x",
            StatusCode::SERVICE_UNAVAILABLE,
            &HeaderMap::new(),
            br#"{"reason":"ServiceUnavailable","details":{"retryAfterSeconds":1}}"#,
        );
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn other_client_errors_are_not_retried() {
        for code in [400u16, 401, 403, 404, 409, 410, 422] {
            let err = status_error(
                "x",
                StatusCode::from_u16(code).unwrap(),
                &HeaderMap::new(),
                b"{}",
            );
            assert!(!err.is_transient(), "{code}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for retry in 0..20 {
            let d = backoff_delay(retry);
            assert!(d <= MAX_BACKOFF, "{retry}: {d:?}");
            let base = FIRST_BACKOFF
                .saturating_mul(2u32.saturating_pow(retry.min(16)))
                .min(MAX_BACKOFF);
            assert!(d >= base / 2, "{retry}: {d:?}");
        }
    }
}
