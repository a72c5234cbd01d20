//! A fake AWS endpoint for the `aws` connector: EKS and STS on one plain-HTTP address on
//! 127.0.0.1 (point the connector's `endpoint_url` at [`FakeAws::endpoint_url`]).
//!
//! Served, with the wire formats the AWS SDKs parse:
//! - EKS `ListClusters` (`GET /clusters`, paginated with `maxResults`/`nextToken`) and
//!   `DescribeCluster` (`GET /clusters/{name}`): JSON, errors as `x-amzn-ErrorType` +
//!   `{"message": …}` (`UnrecognizedClientException`, `InvalidSignatureException`,
//!   `ResourceNotFoundException`, `InvalidParameterException`).
//! - STS (`POST /` with a form body, or `GET /?Action=…` presigned): `GetCallerIdentity`,
//!   `AssumeRole`, `GetSessionToken`, `GetFederationToken`; XML, errors as
//!   `<ErrorResponse>` (`InvalidClientTokenId`, `SignatureDoesNotMatch`, `ExpiredToken`,
//!   `AccessDenied`, `ValidationError`).
//!
//! Every request is authenticated for real: the SigV4 signature (Authorization header or
//! query-string presigning) is recomputed from the request with the configured secret
//! key (HMAC-SHA256, written from the SigV4 specification, independent of the AWS SDK),
//! the credential scope's service, region and date are checked, header-signed requests
//! must be within 15 minutes of the fake's clock, and presigned URLs expire after their
//! `X-Amz-Expires` (or [`FakeAwsOptions::presigned_max_age`]). The clock can be moved
//! with [`FakeAws::set_clock_offset`].
//!
//! [`FakeAws::validate_eks_token`] checks an EKS bearer token (`k8s-aws-v1.` + base64url
//! presigned STS URL) as aws-iam-authenticator and STS together do, and
//! [`FakeAws::eks_token_validator`] turns that into the emulated cluster's
//! [`crate::TokenValidator`], mapping IAM identities to cluster users like the
//! `aws-auth` ConfigMap.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Response, StatusCode};
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::server::auth::{TokenValidator, UserInfo};

/// The prefix of EKS bearer tokens.
pub const EKS_TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// How old an EKS token may be (aws-iam-authenticator's check of `X-Amz-Date`).
pub const EKS_TOKEN_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// How far a header-signed request's `X-Amz-Date` may be from the clock.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Options of [`FakeAws::start`].
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
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
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

struct AwsState {
    options: RwLock<FakeAwsOptions>,
    keys: RwLock<HashMap<String, AccessKey>>,
    clusters: RwLock<BTreeMap<String, FakeEksCluster>>,
    roles: RwLock<Vec<String>>,
    identities: RwLock<HashMap<String, UserInfo>>,
    calls: Mutex<Vec<AwsCall>>,
    clock_offset: AtomicI64,
}

impl AwsState {
    fn now(&self) -> SystemTime {
        let offset = self.clock_offset.load(Ordering::SeqCst);
        let now = SystemTime::now();
        if offset >= 0 {
            now + Duration::from_secs(offset.unsigned_abs())
        } else {
            now - Duration::from_secs(offset.unsigned_abs())
        }
    }

    fn record(&self, call: AwsCall) {
        self.calls.lock().push(call);
    }
}

/// A running fake AWS endpoint. Dropping it stops the server.
pub struct FakeAws {
    state: Arc<AwsState>,
    endpoint: String,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for FakeAws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAws")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl FakeAws {
    /// Starts the fake on a free port of 127.0.0.1 (call within a Tokio runtime).
    pub async fn start(options: FakeAwsOptions) -> std::io::Result<FakeAws> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AwsState {
            options: RwLock::new(options),
            keys: RwLock::new(HashMap::new()),
            clusters: RwLock::new(BTreeMap::new()),
            roles: RwLock::new(Vec::new()),
            identities: RwLock::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            clock_offset: AtomicI64::new(0),
        });
        let shutdown = CancellationToken::new();
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the fake AWS endpoint stopped");
            }
        });
        let endpoint = format!("http://127.0.0.1:{}", addr.port());
        tracing::info!(%endpoint, "fake AWS endpoint started");
        Ok(FakeAws {
            state,
            endpoint,
            shutdown,
        })
    }

    /// The URL to use as the connector's `endpoint_url`.
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint
    }

    /// The region the fake serves.
    pub fn region(&self) -> String {
        self.state.options.read().region.clone()
    }

    /// The account id of every identity.
    pub fn account_id(&self) -> String {
        self.state.options.read().account_id.clone()
    }

    /// Accepts a long-lived access key of the IAM user `arn:aws:iam::<account>:user/<user>`
    /// and returns that ARN.
    pub fn add_user_key(&self, user: &str, access_key_id: &str, secret_access_key: &str) -> String {
        let arn = format!("arn:aws:iam::{}:user/{user}", self.account_id());
        self.add_access_key(AccessKey {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            arn: arn.clone(),
            expires_at: None,
        });
        arn
    }

    /// Accepts an access key.
    pub fn add_access_key(&self, key: AccessKey) {
        self.state
            .keys
            .write()
            .insert(key.access_key_id.clone(), key);
    }

    /// Allows `AssumeRole` of `role_arn`.
    pub fn add_role(&self, role_arn: &str) {
        self.state.roles.write().push(role_arn.to_owned());
    }

    /// Adds (or replaces) an EKS cluster.
    pub fn add_cluster(&self, cluster: FakeEksCluster) {
        self.state
            .clusters
            .write()
            .insert(cluster.name.clone(), cluster);
    }

    /// Adds an EKS cluster `name` served by the emulated `cluster`.
    pub fn add_cluster_for(&self, name: &str, cluster: &crate::Cluster) {
        self.add_cluster(FakeEksCluster::new(name, cluster.url(), cluster.ca_pem()));
    }

    /// Forgets every access key.
    pub fn keys_clear(&self) {
        self.state.keys.write().clear();
    }

    /// Removes an EKS cluster.
    pub fn remove_cluster(&self, name: &str) {
        self.state.clusters.write().remove(name);
    }

    /// Moves the fake's clock by `seconds` (negative: into the past) from the real time.
    pub fn set_clock_offset(&self, seconds: i64) {
        self.state.clock_offset.store(seconds, Ordering::SeqCst);
    }

    /// The fake's current time.
    pub fn now(&self) -> SystemTime {
        self.state.now()
    }

    /// Changes how long presigned URLs stay valid (see [`FakeAwsOptions::presigned_max_age`]).
    pub fn set_presigned_max_age(&self, max_age: Option<Duration>) {
        self.state.options.write().presigned_max_age = max_age;
    }

    /// Maps an IAM identity (user or role ARN; an assumed-role session matches its role)
    /// to a cluster user, as the `aws-auth` ConfigMap does.
    pub fn map_identity(&self, arn: &str, user: UserInfo) {
        self.state.identities.write().insert(arn.to_owned(), user);
    }

    /// The requests answered so far.
    pub fn calls(&self) -> Vec<AwsCall> {
        self.state.calls.lock().clone()
    }

    /// How many answered requests had `action`.
    pub fn count(&self, action: &str) -> usize {
        self.state
            .calls
            .lock()
            .iter()
            .filter(|c| c.action == action)
            .count()
    }

    /// Checks an EKS bearer token for `cluster_name` as the EKS API server would
    /// (aws-iam-authenticator, then STS verifying the presigned `GetCallerIdentity`):
    /// the `k8s-aws-v1.` prefix, base64url, an STS host, path `/`,
    /// `Action=GetCallerIdentity`, `Version=2011-06-15`, a signed `host` and `x-k8s-aws-id`
    /// header whose value must be `cluster_name`, a date at most 15 minutes old, the URL's
    /// expiry and the signature against the configured keys.
    pub fn validate_eks_token(
        &self,
        token: &str,
        cluster_name: &str,
    ) -> Result<CallerIdentity, AwsFault> {
        let result = validate_eks_token(&self.state, token, cluster_name);
        self.state.record(AwsCall {
            service: "sts".into(),
            action: "GetCallerIdentity".into(),
            access_key_id: result.as_ref().ok().map(|c| c.access_key_id.clone()),
            error_code: result.as_ref().err().map(|e| e.code.clone()),
            params: BTreeMap::from([
                ("presigned".to_owned(), "eks-token".to_owned()),
                ("cluster".to_owned(), cluster_name.to_owned()),
            ]),
        });
        result
    }

    /// A token validator for the emulated cluster that serves EKS cluster
    /// `cluster_name`: valid EKS tokens authenticate as the user mapped with
    /// [`FakeAws::map_identity`] (plus `system:authenticated`); others are refused (401).
    pub fn eks_token_validator(&self, cluster_name: &str) -> TokenValidator {
        let fake = FakeAwsHandle {
            state: self.state.clone(),
        };
        let cluster = cluster_name.to_owned();
        Arc::new(move |token: &str| {
            if !token.starts_with(EKS_TOKEN_PREFIX) {
                return None;
            }
            let result = validate_eks_token(&fake.state, token, &cluster);
            fake.state.record(AwsCall {
                service: "sts".into(),
                action: "GetCallerIdentity".into(),
                access_key_id: result.as_ref().ok().map(|c| c.access_key_id.clone()),
                error_code: result.as_ref().err().map(|e| e.code.clone()),
                params: BTreeMap::from([
                    ("presigned".to_owned(), "eks-token".to_owned()),
                    ("cluster".to_owned(), cluster.clone()),
                ]),
            });
            match result {
                Ok(identity) => {
                    let user = fake.user_for(&identity.arn);
                    if user.is_none() {
                        tracing::debug!(arn = %identity.arn, "valid EKS token of an unmapped identity");
                    }
                    user
                }
                Err(e) => {
                    tracing::debug!(error = %e, "EKS token refused");
                    None
                }
            }
        })
    }
}

struct FakeAwsHandle {
    state: Arc<AwsState>,
}

impl FakeAwsHandle {
    fn user_for(&self, arn: &str) -> Option<UserInfo> {
        let identities = self.state.identities.read();
        let mut user = identities
            .get(arn)
            .or_else(|| role_of_assumed_role(arn).and_then(|role| identities.get(&role)))
            .cloned()?;
        if !user.groups.iter().any(|g| g == "system:authenticated") {
            user.groups.push("system:authenticated".into());
        }
        Some(user)
    }
}

/// `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION` → `arn:aws:iam::ACCT:role/ROLE`.
fn role_of_assumed_role(arn: &str) -> Option<String> {
    let (prefix, rest) = arn.split_once(":assumed-role/")?;
    let role = rest.split('/').next()?;
    let (partition, account) = prefix.strip_prefix("arn:")?.split_once(":sts::")?;
    Some(format!("arn:{partition}:iam::{account}:role/{role}"))
}

// ---------------------------------------------------------------------------------------
// SigV4

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// RFC 3986 encoding of everything but unreserved characters (and `/` when `keep_slash`).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Query parameters, percent-decoded, in order.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn canonical_query(params: &[(String, String)], skip_signature: bool) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !(skip_signature && k == "X-Amz-Signature"))
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    encoded.sort();
    encoded
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn normalize_header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

/// Compares in constant time.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn parse_amz_date(s: &str) -> Option<SystemTime> {
    // 20240102T030405Z
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes().get(8) != Some(&b'T') {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    let ts: jiff::Timestamp = text.parse().ok()?;
    Some(SystemTime::from(ts))
}

fn amz_date(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|ts| ts.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default()
}

/// What signing produced: the scope and the signed header names.
struct Signed<'a> {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    header: &'a dyn Fn(&str) -> Option<String>,
}

/// Error codes per service for the same failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Sts,
    Eks,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Sts => "sts",
            Service::Eks => "eks",
        }
    }
    fn unknown_key(self) -> AwsFault {
        match self {
            Service::Sts => AwsFault::new(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ),
            Service::Eks => AwsFault::new(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
        }
    }
    fn bad_signature(self, detail: &str) -> AwsFault {
        let message = format!(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. {detail}"
        );
        match self {
            Service::Sts => AwsFault::new(403, "SignatureDoesNotMatch", message.trim_end()),
            Service::Eks => AwsFault::new(403, "InvalidSignatureException", message.trim_end()),
        }
    }
    fn expired_token(self) -> AwsFault {
        match self {
            Service::Sts => AwsFault::new(
                403,
                "ExpiredToken",
                "The security token included in the request is expired",
            ),
            Service::Eks => AwsFault::new(
                403,
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ),
        }
    }
    fn missing_auth(self) -> AwsFault {
        match self {
            Service::Sts => AwsFault::new(
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            ),
            Service::Eks => AwsFault::new(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
        }
    }
}

/// Checks a signature over a request; returns the key that signed it.
#[allow(clippy::too_many_arguments)]
fn check_signature(
    state: &AwsState,
    service: Service,
    method: &str,
    raw_path: &str,
    canonical_query: &str,
    payload_hashes: &[String],
    signed: &Signed<'_>,
    session_token: Option<&str>,
) -> Result<AccessKey, AwsFault> {
    let key = state
        .keys
        .read()
        .get(&signed.access_key_id)
        .cloned()
        .ok_or_else(|| service.unknown_key())?;
    if key.session_token.as_deref() != session_token {
        return Err(service.unknown_key());
    }
    if let Some(expires) = key.expires_at
        && state.now() > expires
    {
        return Err(service.expired_token());
    }
    if signed.service != service.name() {
        return Err(service.bad_signature(&format!(
            "Credential should be scoped to correct service: '{}'.",
            service.name()
        )));
    }
    let region = state.options.read().region.clone();
    if signed.region != region {
        return Err(service.bad_signature(&format!(
            "Credential should be scoped to a valid region. (expected '{region}', got '{}')",
            signed.region
        )));
    }
    if !signed.amz_date.starts_with(&signed.date) {
        return Err(service.bad_signature(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.",
        ));
    }
    let mut canonical_headers = String::new();
    for name in &signed.signed_headers {
        let value = (signed.header)(name).ok_or_else(|| {
            service.bad_signature(&format!(
                "The signed header '{name}' is missing from the request."
            ))
        })?;
        canonical_headers.push_str(&format!("{name}:{}\n", normalize_header_value(&value)));
    }
    let canonical_uri = uri_encode(if raw_path.is_empty() { "/" } else { raw_path }, true);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        signed.date, signed.region, signed.service
    );
    let key_bytes = signing_key(
        &key.secret_access_key,
        &signed.date,
        &signed.region,
        &signed.service,
    );
    for payload_hash in payload_hashes {
        let canonical_request = format!(
            "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{}\n{payload_hash}",
            signed.signed_headers.join(";")
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            signed.amz_date,
            sha256_hex(canonical_request.as_bytes())
        );
        let expected = hex(&hmac(&key_bytes, string_to_sign.as_bytes()));
        if same(&expected, &signed.signature) {
            return Ok(key);
        }
    }
    Err(service.bad_signature(""))
}

fn parse_credential(credential: &str) -> Option<(String, String, String, String)> {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [key, date, region, service, "aws4_request"] => Some((
            (*key).to_owned(),
            (*date).to_owned(),
            (*region).to_owned(),
            (*service).to_owned(),
        )),
        _ => None,
    }
}

/// Verifies a query-string presigned request (`X-Amz-*` parameters).
fn verify_presigned(
    state: &AwsState,
    service: Service,
    method: &str,
    raw_path: &str,
    params: &[(String, String)],
    header: &dyn Fn(&str) -> Option<String>,
) -> Result<AccessKey, AwsFault> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("X-Amz-Algorithm").as_deref() != Some("AWS4-HMAC-SHA256") {
        return Err(service.missing_auth());
    }
    let (Some(credential), Some(date), Some(signed_headers), Some(signature)) = (
        get("X-Amz-Credential"),
        get("X-Amz-Date"),
        get("X-Amz-SignedHeaders"),
        get("X-Amz-Signature"),
    ) else {
        return Err(AwsFault::new(
            400,
            "AuthorizationQueryParametersError",
            "Query-string authentication requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        ));
    };
    let (access_key_id, scope_date, region, scope_service) = parse_credential(&credential)
        .ok_or_else(|| {
            AwsFault::new(
                400,
                "AuthorizationQueryParametersError",
                "Error parsing the X-Amz-Credential parameter.",
            )
        })?;
    let signed_at = parse_amz_date(&date).ok_or_else(|| {
        AwsFault::new(
            400,
            "AuthorizationQueryParametersError",
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        )
    })?;
    let expires: u64 = get("X-Amz-Expires")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| {
            AwsFault::new(
                400,
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be a number of seconds.",
            )
        })?;
    let max_age = state
        .options
        .read()
        .presigned_max_age
        .unwrap_or(Duration::from_secs(expires));
    let now = state.now();
    if signed_at > now + MAX_SKEW {
        return Err(service.bad_signature("Signature not yet current."));
    }
    if now > signed_at + max_age {
        return Err(AwsFault::new(
            403,
            if service == Service::Sts {
                "ExpiredToken"
            } else {
                "ExpiredTokenException"
            },
            format!(
                "Request has expired: signed at {date} for {} s, now {}",
                max_age.as_secs(),
                amz_date(now)
            ),
        ));
    }
    let signed = Signed {
        access_key_id,
        date: scope_date,
        region,
        service: scope_service,
        signed_headers: signed_headers.split(';').map(str::to_owned).collect(),
        signature,
        amz_date: date,
        header,
    };
    let session_token = get("X-Amz-Security-Token");
    let payloads = [sha256_hex(b""), "UNSIGNED-PAYLOAD".to_owned()];
    check_signature(
        state,
        service,
        method,
        raw_path,
        &canonical_query(params, true),
        &payloads,
        &signed,
        session_token.as_deref(),
    )
}

/// Verifies a request signed in the Authorization header.
fn verify_header_signed(
    state: &AwsState,
    service: Service,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<AccessKey, AwsFault> {
    let header = |name: &str| -> Option<String> {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    let Some(authorization) = header("authorization") else {
        return Err(service.missing_auth());
    };
    let Some(fields) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(AwsFault::new(
            400,
            "IncompleteSignature",
            "Unsupported authorization type",
        ));
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v.to_owned()),
            Some(("SignedHeaders", v)) => signed_headers = Some(v.to_owned()),
            Some(("Signature", v)) => signature = Some(v.to_owned()),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(AwsFault::new(
            400,
            "IncompleteSignature",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
        ));
    };
    let (access_key_id, scope_date, region, scope_service) = parse_credential(&credential)
        .ok_or_else(|| {
            AwsFault::new(
                400,
                "IncompleteSignature",
                "Authorization header's Credential is malformed.",
            )
        })?;
    let Some(date) = header("x-amz-date") else {
        return Err(AwsFault::new(
            400,
            "IncompleteSignature",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ));
    };
    let signed_at = parse_amz_date(&date).ok_or_else(|| {
        AwsFault::new(
            400,
            "IncompleteSignature",
            "X-Amz-Date is not in the ISO8601 basic format.",
        )
    })?;
    let now = state.now();
    let skew = match now.duration_since(signed_at) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > MAX_SKEW {
        return Err(service.bad_signature(&format!(
            "Signature expired: {date} is now earlier than {} ({} - 15 min.)",
            amz_date(now - MAX_SKEW),
            amz_date(now)
        )));
    }
    let signed = Signed {
        access_key_id,
        date: scope_date,
        region,
        service: scope_service,
        signed_headers: signed_headers.split(';').map(str::to_owned).collect(),
        signature,
        amz_date: date,
        header: &header,
    };
    let payload = header("x-amz-content-sha256").unwrap_or_else(|| sha256_hex(body));
    let params = parse_query(raw_query);
    check_signature(
        state,
        service,
        method,
        raw_path,
        &canonical_query(&params, false),
        &[payload],
        &signed,
        header("x-amz-security-token").as_deref(),
    )
}

/// The STS hosts EKS tokens may name (aws-iam-authenticator's list): the global host and
/// regional hosts of the partitions.
fn is_sts_host(host: &str) -> bool {
    if host == "sts.amazonaws.com" {
        return true;
    }
    let Some(rest) = host.strip_prefix("sts.") else {
        return false;
    };
    let Some((region, suffix)) = rest.split_once('.') else {
        return false;
    };
    let regional_suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    suffix == regional_suffix && region.split('-').count() >= 3
}

fn validate_eks_token(
    state: &AwsState,
    token: &str,
    cluster_name: &str,
) -> Result<CallerIdentity, AwsFault> {
    let reject = |m: String| AwsFault::new(401, "InvalidToken", m);
    let encoded = token.strip_prefix(EKS_TOKEN_PREFIX).ok_or_else(|| {
        reject(format!(
            "token is missing the expected \"{EKS_TOKEN_PREFIX}\" prefix"
        ))
    })?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| reject("token is not valid base64url".into()))?;
    let url = String::from_utf8(bytes).map_err(|_| reject("token is not a UTF-8 URL".into()))?;
    let parsed = url::Url::parse(&url).map_err(|_| reject("token does not hold a URL".into()))?;
    if parsed.scheme() != "https" {
        return Err(reject(format!(
            "unexpected scheme {:?} in pre-signed URL",
            parsed.scheme()
        )));
    }
    let host = parsed.host_str().unwrap_or_default().to_owned();
    if !is_sts_host(&host) || parsed.port().is_some() {
        return Err(reject(format!(
            "unexpected hostname {host:?} in pre-signed URL"
        )));
    }
    if parsed.path() != "/" {
        return Err(reject("unexpected path in pre-signed URL".into()));
    }
    let params = parse_query(parsed.query().unwrap_or_default());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    for (name, _) in &params {
        let allowed = matches!(name.as_str(), "Action" | "Version") || name.starts_with("X-Amz-");
        if !allowed {
            return Err(reject(format!("non-whitelisted query parameter {name:?}")));
        }
    }
    if get("Action") != Some("GetCallerIdentity") {
        return Err(reject(
            "unexpected action parameter in pre-signed URL".into(),
        ));
    }
    if get("Version") != Some("2011-06-15") {
        return Err(reject(
            "unexpected version parameter in pre-signed URL".into(),
        ));
    }
    let signed_headers: Vec<&str> = get("X-Amz-SignedHeaders")
        .unwrap_or_default()
        .split(';')
        .collect();
    if !signed_headers.contains(&"x-k8s-aws-id") {
        return Err(reject(
            "client did not sign the x-k8s-aws-id header in the pre-signed URL".into(),
        ));
    }
    if !signed_headers.contains(&"host") {
        return Err(reject(
            "client did not sign the host header in the pre-signed URL".into(),
        ));
    }
    let date = get("X-Amz-Date")
        .and_then(parse_amz_date)
        .ok_or_else(|| reject("X-Amz-Date parameter is missing or malformed".into()))?;
    if state.now() > date + EKS_TOKEN_MAX_AGE {
        return Err(reject(
            "X-Amz-Date parameter is expired (15 minute expiration)".into(),
        ));
    }
    let cluster = cluster_name.to_owned();
    let header = move |name: &str| -> Option<String> {
        match name {
            "host" => Some(host.clone()),
            "x-k8s-aws-id" => Some(cluster.clone()),
            _ => None,
        }
    };
    let key = verify_presigned(state, Service::Sts, "GET", "/", &params, &header)?;
    Ok(CallerIdentity {
        arn: key.arn,
        account: state.options.read().account_id.clone(),
        access_key_id: key.access_key_id,
    })
}

// ---------------------------------------------------------------------------------------
// HTTP

async fn handle(State(state): State<Arc<AwsState>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(_) => return sts_error(&AwsFault::new(400, "InvalidRequest", "unreadable body")),
    };
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    if path == "/clusters" || path.starts_with("/clusters/") {
        let result = eks(&state, &method, &path, &query, &parts.headers, &body);
        return match result {
            Ok(json) => json_response(StatusCode::OK, json),
            Err(fault) => eks_error(&fault),
        };
    }
    if path == "/" || path.is_empty() {
        return match sts(&state, &method, &query, &parts.headers, &body) {
            Ok(xml) => Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/xml")
                .body(Body::from(xml))
                .unwrap_or_default(),
            Err(fault) => sts_error(&fault),
        };
    }
    let fault = AwsFault::new(
        404,
        "UnknownOperationException",
        format!("no fake AWS operation at {method} {path}"),
    );
    eks_error(&fault)
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .unwrap_or_default()
}

fn eks_error(fault: &AwsFault) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_REQUEST))
        .header("content-type", "application/json")
        .header("x-amzn-errortype", fault.code.as_str())
        .body(Body::from(
            serde_json::json!({"message": fault.message}).to_string(),
        ))
        .unwrap_or_default()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn sts_error(fault: &AwsFault) -> Response<Body> {
    let kind = if fault.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    let xml = format!(
        "<ErrorResponse xmlns=\"{STS_NS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        xml_escape(&fault.code),
        xml_escape(&fault.message),
        request_id()
    );
    Response::builder()
        .status(StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_REQUEST))
        .header("content-type", "text/xml")
        .body(Body::from(xml))
        .unwrap_or_default()
}

fn eks(
    state: &AwsState,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, AwsFault> {
    let name = path.strip_prefix("/clusters/").map(percent_decode);
    let action = if name.is_some() {
        "DescribeCluster"
    } else {
        "ListClusters"
    };
    let auth = verify_header_signed(state, Service::Eks, method, path, query, headers, body);
    let result = auth.clone().and_then(|_| {
        if method != "GET" {
            return Err(AwsFault::new(
                405,
                "UnknownOperationException",
                format!("the fake EKS serves only GET, not {method}"),
            ));
        }
        match &name {
            Some(name) => describe_cluster(state, name),
            None => list_clusters(state, query),
        }
    });
    state.record(AwsCall {
        service: "eks".into(),
        action: action.into(),
        access_key_id: auth.ok().map(|k| k.access_key_id),
        error_code: result.as_ref().err().map(|e| e.code.clone()),
        params: name
            .map(|n| BTreeMap::from([("name".to_owned(), n)]))
            .unwrap_or_default(),
    });
    result
}

fn list_clusters(state: &AwsState, query: &str) -> Result<serde_json::Value, AwsFault> {
    let params = parse_query(query);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let page_size = match get("maxResults") {
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(AwsFault::new(
                    400,
                    "InvalidParameterException",
                    "maxResults must be between 1 and 100",
                ));
            }
        },
        None => state.options.read().default_page_size.max(1),
    };
    let start = match get("nextToken") {
        Some(t) => base64::engine::general_purpose::STANDARD
            .decode(&t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.strip_prefix("fake-eks:")
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .ok_or_else(|| {
                AwsFault::new(
                    400,
                    "InvalidParameterException",
                    "The nextToken is invalid.",
                )
            })?,
        None => 0,
    };
    let names: Vec<String> = state.clusters.read().keys().cloned().collect();
    let page: Vec<&String> = names.iter().skip(start).take(page_size).collect();
    let mut out = serde_json::json!({ "clusters": page });
    if start + page_size < names.len() {
        out["nextToken"] = serde_json::Value::String(
            base64::engine::general_purpose::STANDARD
                .encode(format!("fake-eks:{}", start + page_size)),
        );
    }
    Ok(out)
}

fn describe_cluster(state: &AwsState, name: &str) -> Result<serde_json::Value, AwsFault> {
    let cluster = state.clusters.read().get(name).cloned().ok_or_else(|| {
        AwsFault::new(
            404,
            "ResourceNotFoundException",
            format!("No cluster found for name: {name}."),
        )
    })?;
    let options = state.options.read().clone();
    Ok(serde_json::json!({
        "cluster": {
            "name": cluster.name,
            "arn": format!("arn:aws:eks:{}:{}:cluster/{}", options.region, options.account_id, cluster.name),
            "createdAt": 1_700_000_000.0,
            "version": cluster.version,
            "endpoint": cluster.endpoint,
            "roleArn": format!("arn:aws:iam::{}:role/eks-cluster", options.account_id),
            "status": cluster.status,
            "certificateAuthority": {
                "data": base64::engine::general_purpose::STANDARD.encode(cluster.ca_pem.as_bytes())
            },
            "platformVersion": "eks.1",
            "tags": {}
        }
    }))
}

fn sts(
    state: &AwsState,
    method: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, AwsFault> {
    let presigned = method == "GET" && query.contains("X-Amz-Signature=");
    let mut params: Vec<(String, String)> = parse_query(query);
    if method == "POST" {
        params.extend(
            url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let action = get("Action").unwrap_or_default();
    let auth = if presigned {
        let header = |name: &str| -> Option<String> {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let query_params = parse_query(query);
        verify_presigned(state, Service::Sts, method, "/", &query_params, &header)
    } else {
        verify_header_signed(state, Service::Sts, method, "/", query, headers, body)
    };
    let mut recorded = BTreeMap::new();
    for k in [
        "RoleArn",
        "RoleSessionName",
        "DurationSeconds",
        "Policy",
        "Name",
    ] {
        if let Some(v) = get(k) {
            recorded.insert(k.to_owned(), v);
        }
    }
    let arns: Vec<String> = params
        .iter()
        .filter(|(k, _)| k.starts_with("PolicyArns.member.") && k.ends_with(".arn"))
        .map(|(_, v)| v.clone())
        .collect();
    if !arns.is_empty() {
        recorded.insert("PolicyArns".into(), arns.join(","));
    }
    if presigned {
        recorded.insert("presigned".into(), "url".into());
    }
    let result = auth.clone().and_then(|key| match action.as_str() {
        "GetCallerIdentity" => Ok(caller_identity_xml(state, &key)),
        "AssumeRole" => assume_role(state, &key, &get),
        "GetSessionToken" => session_token(state, &key, &get),
        "GetFederationToken" => federation_token(state, &key, &get),
        "" => Err(AwsFault::new(400, "MissingAction", "Missing Action")),
        other => Err(AwsFault::new(
            400,
            "InvalidAction",
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    });
    state.record(AwsCall {
        service: "sts".into(),
        action,
        access_key_id: auth.ok().map(|k| k.access_key_id),
        error_code: result.as_ref().err().map(|e| e.code.clone()),
        params: recorded,
    });
    result
}

fn caller_identity_xml(state: &AwsState, key: &AccessKey) -> String {
    let account = state.options.read().account_id.clone();
    format!(
        "<GetCallerIdentityResponse xmlns=\"{STS_NS}\">\n  <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{account}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        xml_escape(&key.arn),
        xml_escape(&format!(
            "AIDA{}",
            &key.access_key_id.chars().skip(4).collect::<String>()
        )),
        request_id()
    )
}

fn random_upper(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn random_secret(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .chars()
        .take(n)
        .collect()
}

fn duration_param(
    get: &dyn Fn(&str) -> Option<String>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, AwsFault> {
    match get("DurationSeconds") {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(d) if (min..=max).contains(&d) => Ok(d),
            _ => Err(AwsFault::new(
                400,
                "ValidationError",
                format!(
                    "1 validation error detected: Value '{v}' at 'durationSeconds' failed to satisfy constraint: Member must have value between {min} and {max}"
                ),
            )),
        },
    }
}

fn check_policy(get: &dyn Fn(&str) -> Option<String>) -> Result<(), AwsFault> {
    if let Some(policy) = get("Policy")
        && serde_json::from_str::<serde_json::Value>(&policy).is_err()
    {
        return Err(AwsFault::new(
            400,
            "MalformedPolicyDocument",
            "The policy is not in the valid JSON format.",
        ));
    }
    Ok(())
}

/// Issues a temporary key for `arn` valid for `seconds` and returns its XML.
fn issue(state: &AwsState, arn: String, seconds: u64) -> (AccessKey, String) {
    let expires_at = state.now() + Duration::from_secs(seconds);
    let key = AccessKey {
        access_key_id: format!("ASIA{}", random_upper(16)),
        secret_access_key: random_secret(40),
        session_token: Some(format!("FQoGZXIvYXdzE{}", random_secret(120))),
        arn,
        expires_at: Some(expires_at),
    };
    state
        .keys
        .write()
        .insert(key.access_key_id.clone(), key.clone());
    let expiration = jiff::Timestamp::try_from(expires_at)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let xml = format!(
        "<Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{expiration}</Expiration>\n    </Credentials>",
        key.access_key_id,
        xml_escape(&key.secret_access_key),
        xml_escape(key.session_token.as_deref().unwrap_or_default()),
    );
    (key, xml)
}

fn assume_role(
    state: &AwsState,
    caller: &AccessKey,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<String, AwsFault> {
    let role_arn = get("RoleArn").ok_or_else(|| AwsFault::new(400, "ValidationError", "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null"))?;
    let session = get("RoleSessionName").ok_or_else(|| AwsFault::new(400, "ValidationError", "1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null"))?;
    let session_ok = (2..=64).contains(&session.len())
        && session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if !session_ok {
        return Err(AwsFault::new(
            400,
            "ValidationError",
            format!(
                "1 validation error detected: Value '{session}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
            ),
        ));
    }
    let seconds = duration_param(get, 3600, 900, 43_200)?;
    check_policy(get)?;
    if !state.roles.read().contains(&role_arn) {
        return Err(AwsFault::new(
            403,
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.arn
            ),
        ));
    }
    let (role_path, role_name) = match role_arn.split_once(":role/") {
        Some((prefix, name)) => (
            prefix.to_owned(),
            name.rsplit('/').next().unwrap_or(name).to_owned(),
        ),
        None => {
            return Err(AwsFault::new(
                400,
                "ValidationError",
                format!("{role_arn} is invalid"),
            ));
        }
    };
    let account = role_path.rsplit(':').next().unwrap_or_default().to_owned();
    let partition = role_path.split(':').nth(1).unwrap_or("aws").to_owned();
    let assumed = format!("arn:{partition}:sts::{account}:assumed-role/{role_name}/{session}");
    let (_, creds) = issue(state, assumed.clone(), seconds);
    Ok(format!(
        "<AssumeRoleResponse xmlns=\"{STS_NS}\">\n  <AssumeRoleResult>\n    {creds}\n    <AssumedRoleUser>\n      <AssumedRoleId>AROA{}:{}</AssumedRoleId>\n      <Arn>{}</Arn>\n    </AssumedRoleUser>\n  </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</AssumeRoleResponse>\n",
        random_upper(16),
        xml_escape(&session),
        xml_escape(&assumed),
        request_id()
    ))
}

fn session_token(
    state: &AwsState,
    caller: &AccessKey,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<String, AwsFault> {
    if caller.session_token.is_some() {
        return Err(AwsFault::new(
            403,
            "AccessDenied",
            "Cannot call GetSessionToken with session credentials",
        ));
    }
    let seconds = duration_param(get, 43_200, 900, 129_600)?;
    let (_, creds) = issue(state, caller.arn.clone(), seconds);
    Ok(format!(
        "<GetSessionTokenResponse xmlns=\"{STS_NS}\">\n  <GetSessionTokenResult>\n    {creds}\n  </GetSessionTokenResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</GetSessionTokenResponse>\n",
        request_id()
    ))
}

fn federation_token(
    state: &AwsState,
    caller: &AccessKey,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<String, AwsFault> {
    if caller.session_token.is_some() {
        return Err(AwsFault::new(
            403,
            "AccessDenied",
            "Cannot call GetFederationToken with session credentials",
        ));
    }
    let name = get("Name").unwrap_or_default();
    if !(2..=32).contains(&name.len())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err(AwsFault::new(
            400,
            "ValidationError",
            format!(
                "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must have length between 2 and 32"
            ),
        ));
    }
    let seconds = duration_param(get, 43_200, 900, 129_600)?;
    check_policy(get)?;
    let account = state.options.read().account_id.clone();
    let arn = format!("arn:aws:sts::{account}:federated-user/{name}");
    let (_, creds) = issue(state, arn.clone(), seconds);
    Ok(format!(
        "<GetFederationTokenResponse xmlns=\"{STS_NS}\">\n  <GetFederationTokenResult>\n    {creds}\n    <FederatedUser>\n      <FederatedUserId>{account}:{}</FederatedUserId>\n      <Arn>{}</Arn>\n    </FederatedUser>\n    <PackedPolicySize>6</PackedPolicySize>\n  </GetFederationTokenResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</GetFederationTokenResponse>\n",
        xml_escape(&name),
        xml_escape(&arn),
        request_id()
    ))
}

#[cfg(test)]
mod tests;
