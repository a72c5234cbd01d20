//! A fake Google Cloud for the `gcp` connector: the OAuth2 token endpoint, the IAM
//! Credentials `generateAccessToken` call, the GCE metadata server's token and the GKE
//! clusters API, all on one plain-HTTP address on 127.0.0.1 (point the connector's
//! endpoint overrides at [`FakeGcp::endpoint_url`]).
//!
//! Served, with the wire formats Google's clients parse:
//! - `POST /token` (oauth2.googleapis.com): the JWT-bearer grant of service-account keys
//!   (RS256 signature verified against the key the fake handed out, `aud` = this token
//!   URL, `scope`, `iat`/`exp` checked) and the `refresh_token` grant of user accounts;
//!   errors as `{"error": "invalid_grant", "error_description": …}`.
//! - `POST /v1/token` (sts.googleapis.com): the workload identity federation token
//!   exchange of a registered external subject token ([`FakeGcp::add_workload_identity`]).
//! - `POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken`
//!   (iamcredentials.googleapis.com): impersonation, allowed per (caller, target) pair.
//! - `GET /computeMetadata/v1/instance/service-accounts/default/token` (the metadata
//!   server; needs `Metadata-Flavor: Google`) and `GET /computeMetadata/v1/project/project-id`.
//! - `GET /v1/projects/{project}/locations/{location}/clusters` (`-` = every location) and
//!   `GET /v1/projects/{project}/locations/{location}/clusters/{name}`
//!   (container.googleapis.com); errors as `{"error": {"code", "message", "status"}}`.
//!
//! Every API call needs a bearer token the fake issued that has not expired (401
//! otherwise). Access tokens are opaque and live [`FakeGcp::set_token_lifetime`] (1 h by
//! default); [`FakeGcp::expire_tokens`] ends every token issued so far.
//! [`FakeGcp::token_validator`] plugs the fake's tokens into the emulated cluster, as
//! GKE accepts Google access tokens.
//!
//! The fake is split by job: [`FakeGcp`] here is its public face; `state` holds the
//! options, records and shared state; `verify` checks service-account JWT assertions;
//! `handlers` serves the HTTP routes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use parking_lot::{Mutex, RwLock};
use rand::Rng as _;
use tokio_util::sync::CancellationToken;

use super::keys::{KEY_POOL, public_key_der};
use crate::server::auth::{TokenValidator, UserInfo};

mod handlers;
mod state;
mod verify;

pub use state::{CLOUD_PLATFORM_SCOPE, FakeGcpOptions, FakeGkeCluster, GcpCall, JWT_BEARER_GRANT};

use state::{GcpState, UserAccount, random_hex};

/// A running fake Google Cloud. Dropping it stops the server.
pub struct FakeGcp {
    state: Arc<GcpState>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for FakeGcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGcp")
            .field("endpoint", &self.state.endpoint)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeGcp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl FakeGcp {
    /// Starts the fake on a free port of 127.0.0.1 (call within a Tokio runtime).
    pub async fn start(options: FakeGcpOptions) -> std::io::Result<FakeGcp> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let endpoint = format!("http://127.0.0.1:{}", addr.port());
        let state = Arc::new(GcpState {
            endpoint: endpoint.clone(),
            options: RwLock::new(options),
            keys: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            impersonation: RwLock::new(HashSet::new()),
            federated: RwLock::new(HashMap::new()),
            metadata_identity: RwLock::new(None),
            tokens: RwLock::new(HashMap::new()),
            clusters: RwLock::new(BTreeMap::new()),
            calls: Mutex::new(Vec::new()),
            next_key: Mutex::new(0),
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
                tracing::warn!(error = %e, "the fake Google endpoint stopped");
            }
        });
        tracing::info!(%endpoint, "fake Google endpoint started");
        Ok(FakeGcp { state, shutdown })
    }

    /// The base URL of every fake API (token, IAM credentials, container, metadata).
    pub fn endpoint_url(&self) -> &str {
        &self.state.endpoint
    }

    /// The OAuth2 token URL (`{endpoint}/token`), the `token_uri` of issued keys.
    pub fn token_url(&self) -> String {
        self.state.token_url()
    }

    /// The metadata server host (`127.0.0.1:PORT`), as `GCE_METADATA_HOST` takes it.
    pub fn metadata_host(&self) -> String {
        self.state.endpoint.trim_start_matches("http://").to_owned()
    }

    /// The project the fake serves.
    pub fn project_id(&self) -> String {
        self.state.options.read().project_id.clone()
    }

    /// Creates service account `email` with a new key and returns the key file (JSON),
    /// as `gcloud iam service-accounts keys create` writes it.
    pub fn add_service_account(&self, email: &str) -> String {
        let pem = {
            let mut next = self.state.next_key.lock();
            let pem = KEY_POOL[*next % KEY_POOL.len()];
            *next += 1;
            pem
        };
        let key_id = random_hex(20);
        let public = public_key_der(pem);
        self.state
            .keys
            .write()
            .entry(email.to_owned())
            .or_default()
            .insert(key_id.clone(), public);
        self.key_json(email, &key_id, pem)
    }

    /// A key file for existing service account `email` with a known key id but signed by
    /// another private key: the fake refuses its assertions (invalid signature).
    pub fn forged_service_account_key(&self, email: &str) -> Option<String> {
        let keys = self.state.keys.read();
        let (key_id, public) = keys.get(email)?.iter().next()?;
        let pem = KEY_POOL.iter().find(|pem| public_key_der(pem) != *public)?;
        Some(self.key_json(email, key_id, pem))
    }

    fn key_json(&self, email: &str, key_id: &str, pem: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": self.project_id(),
            "private_key_id": key_id,
            "private_key": format!("{pem}\n"),
            "client_email": email,
            "client_id": random_digits(21),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_url(),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        })
        .to_string()
    }

    /// Creates user account `email` and returns its `authorized_user` credentials file
    /// (JSON with client id, client secret and refresh token), as `gcloud auth
    /// application-default login` writes it.
    pub fn add_user_account(&self, email: &str) -> String {
        let client_id = format!("{}.apps.googleusercontent.com", random_digits(12));
        let client_secret = format!("GOCSPX-{}", random_hex(14));
        let refresh_token = format!("1//fake-{}", random_hex(24));
        self.state.users.write().insert(
            refresh_token.clone(),
            UserAccount {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                email: email.to_owned(),
            },
        );
        serde_json::json!({
            "type": "authorized_user",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
            "quota_project_id": self.project_id(),
            "universe_domain": "googleapis.com",
        })
        .to_string()
    }

    /// The STS token-exchange URL of workload identity federation (`{endpoint}/v1/token`).
    pub fn sts_url(&self) -> String {
        format!("{}/v1/token", self.state.endpoint)
    }

    /// The `generateAccessToken` URL of service account `email`, as an `external_account`
    /// file's `service_account_impersonation_url` names it.
    pub fn impersonation_url(&self, email: &str) -> String {
        format!(
            "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
            self.state.endpoint
        )
    }

    /// Accepts `subject_token` (an external identity's token, e.g. an OIDC token) for the
    /// workload identity pool provider `audience`, and returns the federated principal
    /// (`principal://iam.googleapis.com/…/subject/<subject>`) its exchanged tokens carry.
    pub fn add_workload_identity(
        &self,
        audience: &str,
        subject: &str,
        subject_token: &str,
    ) -> String {
        let pool = audience
            .trim_start_matches("//iam.googleapis.com/")
            .split("/providers/")
            .next()
            .unwrap_or_default()
            .to_owned();
        let principal = format!("principal://iam.googleapis.com/{pool}/subject/{subject}");
        self.state.federated.write().insert(
            (audience.to_owned(), subject_token.to_owned()),
            principal.clone(),
        );
        principal
    }

    /// Lets `source` impersonate service account `target` (the token creator role).
    pub fn allow_impersonation(&self, source: &str, target: &str) {
        self.state
            .impersonation
            .write()
            .insert((source.to_owned(), target.to_owned()));
    }

    /// Makes the metadata server hand out tokens of service account `email` (`None`: no
    /// service account attached, 404).
    pub fn set_metadata_identity(&self, email: Option<&str>) {
        *self.state.metadata_identity.write() = email.map(str::to_owned);
    }

    /// Adds (or replaces) a GKE cluster.
    pub fn add_cluster(&self, cluster: FakeGkeCluster) {
        self.state
            .clusters
            .write()
            .insert((cluster.location.clone(), cluster.name.clone()), cluster);
    }

    /// Removes the cluster `name` in `location`.
    pub fn remove_cluster(&self, location: &str, name: &str) {
        self.state
            .clusters
            .write()
            .remove(&(location.to_owned(), name.to_owned()));
    }

    /// Sets how long tokens issued from now on live.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.options.write().token_lifetime = lifetime;
    }

    /// Ends every token issued so far (as if they had expired).
    pub fn expire_tokens(&self) {
        let past = Timestamp::now() - SignedDuration::from_secs(1);
        for token in self.state.tokens.write().values_mut() {
            token.expires_at = past;
        }
    }

    /// Issues an access token for `principal` directly (what `gcloud auth
    /// print-access-token` would print), for the `oauth2-token` method.
    pub fn issue_token(&self, principal: &str) -> (String, Timestamp) {
        let (token, expires_at, _) = self.state.issue(principal, None);
        (token, expires_at)
    }

    /// The principal of `token` if the fake issued it and it has not expired.
    pub fn token_principal(&self, token: &str) -> Option<String> {
        self.state.principal_of(token)
    }

    /// How many access tokens the fake has issued.
    pub fn issued_tokens(&self) -> usize {
        self.state.tokens.read().len()
    }

    /// The emulated cluster's token validator: accepts exactly the unexpired tokens this
    /// fake issued, as user `<principal email>` in group `system:authenticated`.
    pub fn token_validator(&self) -> TokenValidator {
        let state = Arc::downgrade(&self.state);
        Arc::new(move |token: &str| {
            let principal = state.upgrade()?.principal_of(token)?;
            Some(UserInfo::new(
                principal,
                vec!["system:authenticated".to_owned()],
            ))
        })
    }

    /// Every request answered so far.
    pub fn calls(&self) -> Vec<GcpCall> {
        self.state.calls.lock().clone()
    }

    /// How many successful requests of `kind` were answered.
    pub fn count(&self, kind: &str) -> usize {
        self.state
            .calls
            .lock()
            .iter()
            .filter(|c| c.kind == kind && c.error.is_none())
            .count()
    }
}

fn random_digits(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|i| char::from(b'0' + rng.random_range(u8::from(i == 0)..10)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_expire_and_unknown_ones_are_refused() {
        let fake = FakeGcp::start(FakeGcpOptions::default()).await.unwrap();
        let (token, _) = fake.issue_token("sa@p.iam.gserviceaccount.com");
        let validate = fake.token_validator();
        assert_eq!(
            validate(&token).map(|u| u.name),
            Some("sa@p.iam.gserviceaccount.com".to_owned())
        );
        assert!(validate("ya29.other").is_none());
        fake.expire_tokens();
        assert!(validate(&token).is_none());
        assert!(fake.token_principal(&token).is_none());
    }
}
