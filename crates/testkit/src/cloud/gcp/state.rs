//! The fake's data: its options, the clusters, accounts and tokens it knows, the record
//! of answered calls, and the state the handlers share.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use parking_lot::{Mutex, RwLock};
use rand::Rng as _;

/// The OAuth2 scope the `gcp` connector asks for.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The grant type of the service-account JWT flow.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Options of [`FakeGcp::start`](super::FakeGcp::start).
#[derive(Debug, Clone)]
pub struct FakeGcpOptions {
    /// The project whose clusters the fake serves; other projects answer 403.
    pub project_id: String,
    /// How long issued access tokens live (`expires_in`).
    pub token_lifetime: Duration,
}

impl Default for FakeGcpOptions {
    fn default() -> Self {
        FakeGcpOptions {
            project_id: "stepstack-test".into(),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// A GKE cluster the fake lists.
#[derive(Debug, Clone)]
pub struct FakeGkeCluster {
    /// The cluster name.
    pub name: String,
    /// Its zone or region, e.g. `us-central1` or `europe-west1-b`.
    pub location: String,
    /// The IP endpoint, as GKE reports it (`HOST`, here with a port: `127.0.0.1:PORT`).
    pub endpoint: String,
    /// The cluster CA (PEM); the API returns it base64-encoded.
    pub ca_pem: String,
    /// The DNS endpoint (`gke-….location.gke.goog`), if the cluster has one.
    pub dns_endpoint: Option<String>,
    /// Whether the DNS endpoint accepts traffic from outside Google Cloud.
    pub allow_external_traffic: bool,
    /// `RUNNING`, `PROVISIONING`, …
    pub status: String,
}

impl FakeGkeCluster {
    /// A RUNNING cluster `name` in `location` served by the emulated `cluster`: its IP
    /// endpoint and CA are the emulator's; it also has a DNS endpoint that does not allow
    /// external traffic (so clients use the IP endpoint).
    pub fn for_cluster(name: &str, location: &str, cluster: &crate::Cluster) -> Self {
        let endpoint = cluster
            .url()
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned();
        let suffix: u64 = rand::rng().random();
        FakeGkeCluster {
            name: name.into(),
            location: location.into(),
            endpoint,
            ca_pem: cluster.ca_pem().to_owned(),
            dns_endpoint: Some(format!("gke-{suffix:016x}.{location}.gke.goog")),
            allow_external_traffic: false,
            status: "RUNNING".into(),
        }
    }

    /// Sets whether the DNS endpoint allows external traffic.
    pub fn with_external_dns(mut self, allow: bool) -> Self {
        self.allow_external_traffic = allow;
        self
    }

    pub(super) fn to_json(&self, project: &str) -> serde_json::Value {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        let mut endpoints = serde_json::json!({
            "ipEndpointsConfig": {
                "enabled": true,
                "enablePublicEndpoint": true,
                "publicEndpoint": self.endpoint,
            }
        });
        if let Some(dns) = &self.dns_endpoint {
            endpoints["dnsEndpointConfig"] = serde_json::json!({
                "endpoint": dns,
                "allowExternalTraffic": self.allow_external_traffic,
            });
        }
        serde_json::json!({
            "name": self.name,
            "location": self.location,
            "zone": self.location,
            "endpoint": self.endpoint,
            "status": self.status,
            "currentMasterVersion": "1.31.5-gke.1000000",
            "masterAuth": {"clusterCaCertificate": ca},
            "controlPlaneEndpointsConfig": endpoints,
            "selfLink": format!(
                "https://container.googleapis.com/v1/projects/{project}/locations/{}/clusters/{}",
                self.location, self.name
            ),
        })
    }
}

/// One request the fake answered, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpCall {
    /// `jwt-bearer`, `refresh_token`, `token-exchange`, `generateAccessToken`, `metadata`,
    /// `listClusters`,
    /// `getCluster`.
    pub kind: String,
    /// The principal the call was made as or for, when known.
    pub principal: Option<String>,
    /// `None` on success, else the HTTP status returned.
    pub error: Option<u16>,
}

pub(super) struct IssuedToken {
    pub(super) principal: String,
    pub(super) expires_at: Timestamp,
}

pub(super) struct UserAccount {
    pub(super) client_id: String,
    pub(super) client_secret: String,
    pub(super) email: String,
}

pub(super) struct GcpState {
    pub(super) endpoint: String,
    pub(super) options: RwLock<FakeGcpOptions>,
    /// Service account email → (key id → RSAPublicKey DER).
    pub(super) keys: RwLock<HashMap<String, HashMap<String, Vec<u8>>>>,
    pub(super) users: RwLock<HashMap<String, UserAccount>>,
    pub(super) impersonation: RwLock<HashSet<(String, String)>>,
    /// (audience, subject token) → federated principal.
    pub(super) federated: RwLock<HashMap<(String, String), String>>,
    pub(super) metadata_identity: RwLock<Option<String>>,
    pub(super) tokens: RwLock<HashMap<String, IssuedToken>>,
    pub(super) clusters: RwLock<BTreeMap<(String, String), FakeGkeCluster>>,
    pub(super) calls: Mutex<Vec<GcpCall>>,
    pub(super) next_key: Mutex<usize>,
}

impl GcpState {
    pub(super) fn token_url(&self) -> String {
        format!("{}/token", self.endpoint)
    }

    pub(super) fn record(&self, kind: &str, principal: Option<&str>, error: Option<u16>) {
        self.calls.lock().push(GcpCall {
            kind: kind.to_owned(),
            principal: principal.map(str::to_owned),
            error,
        });
    }

    /// Issues an access token for `principal` living `lifetime` (capped by the fake's
    /// token lifetime).
    pub(super) fn issue(
        &self,
        principal: &str,
        lifetime: Option<Duration>,
    ) -> (String, Timestamp, u64) {
        let configured = self.options.read().token_lifetime;
        let lifetime = lifetime.map_or(configured, |l| l.min(configured));
        let token = format!("ya29.fake-{}", random_hex(24));
        let seconds = lifetime.as_secs();
        let expires_at = Timestamp::now()
            + SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::from_secs(3600));
        self.tokens.write().insert(
            token.clone(),
            IssuedToken {
                principal: principal.to_owned(),
                expires_at,
            },
        );
        (token, expires_at, seconds)
    }

    pub(super) fn principal_of(&self, token: &str) -> Option<String> {
        let tokens = self.tokens.read();
        let issued = tokens.get(token)?;
        (Timestamp::now() < issued.expires_at).then(|| issued.principal.clone())
    }
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}
