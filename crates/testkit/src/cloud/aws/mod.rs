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
//!
//! The fake is split by job: [`FakeAws`] here is its public face; `state` holds the
//! options, records and shared state; `sigv4` the SigV4 primitives; `verify` the request
//! and EKS token verification; `handlers` the HTTP routes (EKS, STS dispatch) and `sts`
//! the STS actions that answer with identities and temporary credentials.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use crate::server::auth::{TokenValidator, UserInfo};

mod handlers;
mod sigv4;
mod state;
mod sts;
mod verify;

pub use state::{AccessKey, AwsCall, AwsFault, CallerIdentity, FakeAwsOptions, FakeEksCluster};
pub use verify::{EKS_TOKEN_MAX_AGE, EKS_TOKEN_PREFIX};

use state::AwsState;

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
            .fallback(handlers::handle)
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
        let result = verify::validate_eks_token(&self.state, token, cluster_name);
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
            let result = verify::validate_eks_token(&fake.state, token, &cluster);
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

#[cfg(test)]
mod tests;
