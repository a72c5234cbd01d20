//! The fake's data: its options, the access keys and clusters it knows, the record of
//! answered calls, the AWS error type, and the state the handlers share (with the fake's
//! movable clock).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};

use crate::server::auth::UserInfo;

/// Options of [`FakeAws::start`](super::FakeAws::start).
#[derive(Debug, Clone)]
pub struct FakeAwsOptions {
    /// The region the fake serves (requests signed for another region are refused).
    pub region: String,
    /// The 12-digit account id of every identity.
    pub account_id: String,
    /// How long presigned URLs stay valid after their `X-Amz-Date`; `None` honours each
    /// URL's `X-Amz-Expires` (60 s for EKS tokens). Real STS accepts presigned
    /// `GetCallerIdentity` for 15 minutes: use `Some(EKS_TOKEN_MAX_AGE)` to model that.
    pub presigned_max_age: Option<Duration>,
    /// The page size of `ListClusters` when the request sets no `maxResults`.
    pub default_page_size: usize,
}

impl Default for FakeAwsOptions {
    fn default() -> Self {
        FakeAwsOptions {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            presigned_max_age: None,
            default_page_size: 100,
        }
    }
}

/// An access key the fake accepts.
#[derive(Clone)]
pub struct AccessKey {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token temporary keys must send.
    pub session_token: Option<String>,
    /// The identity's ARN (`arn:aws:iam::…:user/x`, `arn:aws:sts::…:assumed-role/r/s`).
    pub arn: String,
    /// When a temporary key expires (fake clock).
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[HIDDEN]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[HIDDEN]"),
            )
            .field("arn", &self.arn)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An EKS cluster the fake describes.
#[derive(Debug, Clone)]
pub struct FakeEksCluster {
    /// The cluster name.
    pub name: String,
    /// The API server URL.
    pub endpoint: String,
    /// The API server's CA certificate (PEM).
    pub ca_pem: String,
    /// The Kubernetes version.
    pub version: String,
    /// `ACTIVE`, `CREATING`, …
    pub status: String,
}

impl FakeEksCluster {
    /// An ACTIVE cluster at `endpoint` whose CA is `ca_pem`.
    pub fn new(
        name: impl Into<String>,
        endpoint: impl Into<String>,
        ca_pem: impl Into<String>,
    ) -> Self {
        FakeEksCluster {
            name: name.into(),
            endpoint: endpoint.into(),
            ca_pem: ca_pem.into(),
            version: "1.31".into(),
            status: "ACTIVE".into(),
        }
    }
}

/// One request the fake answered, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCall {
    /// `eks` or `sts`.
    pub service: String,
    /// The action, e.g. `ListClusters`, `GetCallerIdentity`.
    pub action: String,
    /// The access key that signed it, if any was readable.
    pub access_key_id: Option<String>,
    /// `None` on success, else the AWS error code returned.
    pub error_code: Option<String>,
    /// Parameters worth asserting on (`Policy`, `RoleArn`, `DurationSeconds`, `presigned`).
    pub params: BTreeMap<String, String>,
}

/// An AWS error: HTTP status, code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsFault {
    /// The HTTP status.
    pub status: u16,
    /// The AWS error code.
    pub code: String,
    /// The message.
    pub message: String,
}

impl AwsFault {
    pub(super) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        AwsFault {
            status,
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The identity behind a verified request or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The ARN.
    pub arn: String,
    /// The account id.
    pub account: String,
    /// The access key that signed.
    pub access_key_id: String,
}

pub(super) struct AwsState {
    pub(super) options: RwLock<FakeAwsOptions>,
    pub(super) keys: RwLock<HashMap<String, AccessKey>>,
    pub(super) clusters: RwLock<BTreeMap<String, FakeEksCluster>>,
    pub(super) roles: RwLock<Vec<String>>,
    pub(super) identities: RwLock<HashMap<String, UserInfo>>,
    pub(super) calls: Mutex<Vec<AwsCall>>,
    pub(super) clock_offset: AtomicI64,
}

impl AwsState {
    pub(super) fn now(&self) -> SystemTime {
        let offset = self.clock_offset.load(Ordering::SeqCst);
        let now = SystemTime::now();
        if offset >= 0 {
            now + Duration::from_secs(offset.unsigned_abs())
        } else {
            now - Duration::from_secs(offset.unsigned_abs())
        }
    }

    pub(super) fn record(&self, call: AwsCall) {
        self.calls.lock().push(call);
    }
}
