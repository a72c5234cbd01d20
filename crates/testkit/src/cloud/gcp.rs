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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use base64::Engine as _;
use http::{HeaderMap, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use parking_lot::{Mutex, RwLock};
use rand::Rng as _;
use ring::signature::{self, KeyPair as _, RsaKeyPair};
use tokio_util::sync::CancellationToken;

use crate::server::auth::{TokenValidator, UserInfo};

/// The OAuth2 scope the `gcp` connector asks for.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The grant type of the service-account JWT flow.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The longest lifetime of a self-signed JWT assertion Google accepts.
const MAX_ASSERTION_LIFETIME: i64 = 3600;

/// How far in the future an assertion's `iat` may be (clock skew).
const MAX_IAT_SKEW: i64 = 300;

/// Pre-generated 2048-bit RSA keys (PKCS#8 PEM) the fake hands out as service-account
/// keys: `ring`, the RSA implementation already in the build, cannot generate RSA keys,
/// and generating them with a pure-Rust bignum crate takes many seconds in debug builds.
/// Each key handed out gets a fresh random key id; signatures are verified for real.
pub(crate) const KEY_POOL: [&str; 2] = [
    "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC0ohQKRgk7VNN/
w18Qss/bXCrL90KsFuPM9mH99A5B7jDWaxSe7N2f1rL6THiNruMcRsjqvxuXiM01
w9zv9Dwcp0aygmddZaPHvQ7brFnFVpBawOwkj/Q6pnOgw+zc5eixhfSCOA2mnENq
SjNhaJaZ74zKmx4fH3jQAv8s+/XFuwOT1E7FjLsdG4X9Cleni6M0z5Dm4LE+Xrxy
VjuMs1lNm3uPClya9fvT3MnR5/U/3vAOf6kP33obQS/Sffs7+/bX2YfOB8bEbzgV
S0wMYZYkIk3X2jObM3RKwMePGrpuCM3FTnXTsrKPu3diLbkAv4Bswrnp0QbO8eKz
i0VgbvlvAgMBAAECggEAL1HgXxqe04Cy0V8MmfLF+gjIm1tAh5WNgsWuwRj83S+5
coplwgZ6PqO/ikubLz6391Hh04FSCJ4JaELRr7izQKxfnGcGDhUQ1UQFTu31LHmz
Ylr04dUmXXD6jIyXEf1Wup7FgZGOne2EyaT7ldKQ1W3IW9FMEEot24xVbeLprS0S
heTHVKsUQQolnKPtOSHFurk26dd21qcaRyI7ZHfKiPQSrAjdheInF2soZO6Su0tQ
HHwCd8pdvukD+ulDTFDazEhwQN85TwCRjL2btP+13zaCxt5Nvk+2s16qV/9HNnWO
9mRtbdCRtbTTuLaTq255ZdyP9Ahtp+2IXEPL51QtXQKBgQDhUBFkmEOOo+0j1s9F
hrNeL8gJ5zUv1bRrGyE6cL+uVc6io1wkZRN1j5okJNAvpTQbbeGDvOLADVwEGNst
dIYbTRdEeHBloy2/45m2jpk3IIrST44VvUTGImUzMIcRrLGyad+uicuMSNAI21Ce
5cPwTUi3Mm0ABWDAZOuJARTwLQKBgQDNPCy0hTXGj+oeUn5Z9hhOnW2sXWrbJi2L
FICeJi99qDu7OUT/wO12S73xGizLQ89VjRrY8gX0xvl1eecQOp2w0eNss0rl5tvI
cM9JmZ2In9idNAx/QbARlzGDKsn6GUvfYNbxL2BQ8NpHFid63OnSRzcQFxOZ3zUd
HwDVfPx1iwKBgQCuWiE7cMBGbv+gzidSq+u9JMhtMWds/rhAcZwC9yC9LVVbcYJp
/3VRcbBb68jWNcbeuubZ5J6q8yuTWBCzWgo0sjEhIPoJDH7okJ1wMWTKzfneyQUw
OWgw0ojxVcoPmU1gvKEFFUhX5Dhnwh7e9vnqyENO0EycyYyXFQFW4WlseQKBgCh0
MgOrNjxbZbRwYkNtRMFKOrH8//EOh2+grPF/aWEFZjCzSyx2ZNgqedgqZqXySc39
MEuO+SmUhttnGeqTAz41QPTOKndCmBPcWJ+TTf/+Mf5aohP7aK8u9C18o69OiSwQ
tI153yxVLVFRxpprLROrwejEA7MS0i9ZSxrJtiGdAoGAKrHnmRg9EZmpw9UtJy7T
JgpYWGhudGca8vCXBLmWjwRmwmPWR9/qTvaZ+NqOd9FTavRcZQGf9EwsgOnbCSwe
kvR6rCZYdp19RAUFEPCHqO/riaDjBuIZj38G8iGCpMJF3glQbOSAIrYtGpE/15GF
lbmLFJxUFiNboUC+cnQXliM=
-----END PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDCdv2Lv/uX4m36
2tnroBqtDNSMT+iBNR6Dcdv9T6WoDxETmgznrkk91esbPtgFYOweeyK9V+v3KpZC
K1cYOI9MXoA448bRk7u0Ccm/yRn+GSM8qYnLgA2TadbjKiWD9K+N5cfgYniy0cZz
ruLifjU/O/dntOZ5sEp4BzPbNv7c0hPM729VpCyxU/edcT/NFBspskDP3//edp1Z
hhMHV/jsJklmgqdyZAjpAn2iuIeMgwo1mBu3nftr2LWmakonPM74IHtaWVT+VnHt
upO3battAK2fznNWq1ezXzePLFTPt1O7e///mCwTrz66Ff2XZgim6AyXRFK6S4XD
x4BfEskTAgMBAAECggEAPmFrPgwsyfEhtInFxBcM15w5BnWPsPr4OdQpbJ3DFyEW
KkKNhzhaWFKp44iKRVdtBu4bG7/7esMXhkxe2O8z0Jyz5wvyOEJ6wOsu462//8nS
iuAbysLeF/6opyBa/nRcaFlgf7M24q32Sh+8ukkgDZPP7l2SXVDW4p/024pNwUm3
V1I8rxIvwHO3CciSS8KtYMoN66lXXa7SiN/4xOKj9QAu6rqCmABxaVG/Msa1wDoW
h6QuP9n7MsW1pZMEI6ap9Xk9O6DMbydmPdzTxZ8rvdh3zKE2dlkfORf3gaEcH5OR
K3cbTeA4fGR4PJ0DozixhYhL1wHoRKQuMRA/5XNUWQKBgQDg3xZqNGLnpF9YPeqF
UsQeQdui6SZH1mKE5eCXvAGEhYbq/4MgiqO/fcDabCK9GQHx9Hin0sdfUazSCItp
kuEqygrpZu7FyIcU7eCTvw/kxM3Qqn0qro9AtVeNhFsTM97qisH368MnQP8qZ+an
SfNy84OAORqTOpYOEYr5Z2KbLQKBgQDdYl0eGfl/9LFpNAKLa9iplX3DhRkgXXAd
keBG9WxKS/Pwo4BL2iL6O+KpZ6848oOIe3FVR7nfAaXWjBJdnlI+zbx/d7I1fVcu
qYboVDHffGtYUty2ACSxLTbLbLntiqeuWykgW+C6lWzXe6g9qlGQQTv7Unz/8h6q
+76UXbSdPwKBgQDewD388G201l9YEuU4MjdxXX2LD/dKm/Q1f10OET9Tnc17BaZH
2u2/53rdItb6iEYj/i5y19mE82wFFk+7QbLoZwGOGNeXdj9RHR4kXNQKomTaObgJ
Sqc+yyOyXJS3Hd/IZ7EivBkxzjG1OP0DY77TdKMjpe1MQHGZ+Ai5a48C9QKBgQDO
GGtdwYqfT1n1+YBA8TZzsYKyCW95zOK59HrZNFMK26iOJngipUGYuTVqxea+2i4P
WfQJE0v7StprYF0coG4qn3dTJ0hVOYl3HEVGdlMzne2E/ScRnBKMiu4O9PomJMWz
sJQZ1s7ghIkeFbVrKurho4lGj+VklK9uOAyUrKOfGwKBgGvVoDQTA3M5q4DEWu1G
j7IXVxk+R3w+cu1ykSSl00Z/aE/sR0qqzhhfBy2PYOLkG1T4QCa+gKvpRDQaHcAZ
uSKQm1MClLbejRu5JnJPM1Aev2TK3TCQ6NXK+AFMbwWLVx8eQl4jpjc3mrzFjvYK
P8z7Sd/FK78rKTF/CG0o7nFF
-----END PRIVATE KEY-----",
];

/// Options of [`FakeGcp::start`].
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

    fn to_json(&self, project: &str) -> serde_json::Value {
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

struct IssuedToken {
    principal: String,
    expires_at: Timestamp,
}

struct UserAccount {
    client_id: String,
    client_secret: String,
    email: String,
}

struct GcpState {
    endpoint: String,
    options: RwLock<FakeGcpOptions>,
    /// Service account email → (key id → RSAPublicKey DER).
    keys: RwLock<HashMap<String, HashMap<String, Vec<u8>>>>,
    users: RwLock<HashMap<String, UserAccount>>,
    impersonation: RwLock<HashSet<(String, String)>>,
    /// (audience, subject token) → federated principal.
    federated: RwLock<HashMap<(String, String), String>>,
    metadata_identity: RwLock<Option<String>>,
    tokens: RwLock<HashMap<String, IssuedToken>>,
    clusters: RwLock<BTreeMap<(String, String), FakeGkeCluster>>,
    calls: Mutex<Vec<GcpCall>>,
    next_key: Mutex<usize>,
}

impl GcpState {
    fn token_url(&self) -> String {
        format!("{}/token", self.endpoint)
    }

    fn record(&self, kind: &str, principal: Option<&str>, error: Option<u16>) {
        self.calls.lock().push(GcpCall {
            kind: kind.to_owned(),
            principal: principal.map(str::to_owned),
            error,
        });
    }

    /// Issues an access token for `principal` living `lifetime` (capped by the fake's
    /// token lifetime).
    fn issue(&self, principal: &str, lifetime: Option<Duration>) -> (String, Timestamp, u64) {
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

    fn principal_of(&self, token: &str) -> Option<String> {
        let tokens = self.tokens.read();
        let issued = tokens.get(token)?;
        (Timestamp::now() < issued.expires_at).then(|| issued.principal.clone())
    }
}

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
            .fallback(handle)
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

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn random_digits(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|i| char::from(b'0' + rng.random_range(u8::from(i == 0)..10)))
        .collect()
}

/// The DER of a PEM block's content.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap_or_default()
}

/// The RSAPublicKey DER of a PKCS#8 private key from the pool.
pub(crate) fn public_key_der(pem: &str) -> Vec<u8> {
    RsaKeyPair::from_pkcs8(&pem_der(pem))
        .map(|k| k.public_key().as_ref().to_vec())
        .unwrap_or_default()
}

/// An error response in Google's JSON API shape.
fn api_error(status: u16, message: &str) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        _ => "INTERNAL",
    };
    json_response(
        code,
        serde_json::json!({"error": {"code": status, "message": message, "status": name}}),
    )
}

/// An error response of the OAuth2 token endpoint.
fn oauth_error(status: u16, error: &str, description: &str) -> Response<Body> {
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        serde_json::json!({"error": error, "error_description": description}),
    )
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(value.to_string()))
        .unwrap_or_default()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn handle(State(state): State<Arc<GcpState>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(_) => return api_error(400, "unreadable body"),
    };
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();
    if method == http::Method::POST && path == "/token" {
        return token(&state, &body);
    }
    if method == http::Method::POST && path == "/v1/token" {
        return token_exchange(&state, &body);
    }
    if path.starts_with("/computeMetadata/v1/") {
        return metadata(&state, &path, &parts.headers);
    }
    if method == http::Method::POST
        && let Some(target) = path
            .strip_prefix("/v1/projects/-/serviceAccounts/")
            .and_then(|rest| rest.strip_suffix(":generateAccessToken"))
    {
        return generate_access_token(&state, target, &parts.headers, &body);
    }
    if method == http::Method::GET && path.starts_with("/v1/projects/") {
        return clusters(&state, &path, &parts.headers);
    }
    api_error(404, &format!("no fake Google API at {method} {path}"))
}

fn token(state: &GcpState, body: &[u8]) -> Response<Body> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    match form.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER_GRANT) => match check_assertion(state, form.get("assertion")) {
            Ok(principal) => {
                let (token, _, seconds) = state.issue(&principal, None);
                state.record("jwt-bearer", Some(&principal), None);
                json_response(
                    StatusCode::OK,
                    serde_json::json!({"access_token": token, "expires_in": seconds, "token_type": "Bearer"}),
                )
            }
            Err(description) => {
                state.record("jwt-bearer", None, Some(400));
                oauth_error(400, "invalid_grant", &description)
            }
        },
        Some("refresh_token") => {
            let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
            let users = state.users.read();
            let Some(user) = users.get(get("refresh_token")) else {
                state.record("refresh_token", None, Some(400));
                return oauth_error(400, "invalid_grant", "Bad Request");
            };
            if user.client_id != get("client_id") || user.client_secret != get("client_secret") {
                state.record("refresh_token", Some(&user.email), Some(401));
                return oauth_error(401, "invalid_client", "Unauthorized");
            }
            let email = user.email.clone();
            drop(users);
            let (token, _, seconds) = state.issue(&email, None);
            state.record("refresh_token", Some(&email), None);
            json_response(
                StatusCode::OK,
                serde_json::json!({"access_token": token, "expires_in": seconds, "token_type": "Bearer", "scope": CLOUD_PLATFORM_SCOPE}),
            )
        }
        other => oauth_error(
            400,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {}", other.unwrap_or_default()),
        ),
    }
}

/// Checks a service-account JWT assertion and returns the service account's email.
fn check_assertion(state: &GcpState, assertion: Option<&String>) -> Result<String, String> {
    let assertion = assertion.ok_or("Missing required parameter: assertion")?;
    let mut parts = assertion.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(
            "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe".into(),
        );
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decode = |part: &str| -> Result<serde_json::Value, String> {
        let bytes = b64
            .decode(part)
            .map_err(|_| "Invalid JWT: not base64url".to_owned())?;
        serde_json::from_slice(&bytes).map_err(|_| "Invalid JWT: not JSON".to_owned())
    };
    let header = decode(header)?;
    let claims = decode(claims)?;
    if header["alg"] != "RS256" {
        return Err("Invalid JWT: alg must be RS256".into());
    }
    let email = claims["iss"]
        .as_str()
        .ok_or("Invalid JWT: no iss")?
        .to_owned();
    let keys = state.keys.read();
    let account_keys = keys
        .get(&email)
        .ok_or_else(|| format!("Invalid grant: account not found ({email})"))?;
    let candidates: Vec<&Vec<u8>> = match header["kid"].as_str() {
        Some(kid) => account_keys.get(kid).into_iter().collect(),
        None => account_keys.values().collect(),
    };
    if candidates.is_empty() {
        return Err("Invalid JWT Signature.".into());
    }
    let signed = &assertion[..assertion.len() - signature.len() - 1];
    let signature = b64
        .decode(signature)
        .map_err(|_| "Invalid JWT Signature.".to_owned())?;
    let verified = candidates.iter().any(|public| {
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public)
            .verify(signed.as_bytes(), &signature)
            .is_ok()
    });
    if !verified {
        return Err("Invalid JWT Signature.".into());
    }
    if claims["aud"] != state.token_url().as_str() {
        return Err(format!(
            "Invalid JWT: audience must be {}",
            state.token_url()
        ));
    }
    let scopes = claims["scope"].as_str().unwrap_or_default();
    if !scopes.split(' ').any(|s| s == CLOUD_PLATFORM_SCOPE) {
        return Err("Invalid JWT: the scope must include cloud-platform".into());
    }
    let now = Timestamp::now().as_second();
    let iat = claims["iat"].as_i64().ok_or("Invalid JWT: no iat")?;
    let exp = claims["exp"].as_i64().ok_or("Invalid JWT: no exp")?;
    if exp <= now || iat > now + MAX_IAT_SKEW || exp - iat > MAX_ASSERTION_LIFETIME || exp <= iat {
        return Err(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".into(),
        );
    }
    Ok(email)
}

fn metadata(state: &GcpState, path: &str, headers: &HeaderMap) -> Response<Body> {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return Response::builder()
            .status(StatusCode::FORBIDDEN)
            .body(Body::from("Missing required header: Metadata-Flavor"))
            .unwrap_or_default();
    }
    match path {
        "/computeMetadata/v1/project/project-id" => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/text")
            .body(Body::from(state.options.read().project_id.clone()))
            .unwrap_or_default(),
        "/computeMetadata/v1/instance/service-accounts/default/token" => {
            let Some(email) = state.metadata_identity.read().clone() else {
                state.record("metadata", None, Some(404));
                return api_error(404, "no service account is attached to this instance");
            };
            let (token, _, seconds) = state.issue(&email, None);
            state.record("metadata", Some(&email), None);
            json_response(
                StatusCode::OK,
                serde_json::json!({"access_token": token, "expires_in": seconds, "token_type": "Bearer"}),
            )
        }
        _ => api_error(404, "no such metadata"),
    }
}

/// STS token exchange (workload identity federation): an external subject token for a
/// federated access token.
fn token_exchange(state: &GcpState, body: &[u8]) -> Response<Body> {
    let kind = "token-exchange";
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" {
        state.record(kind, None, Some(400));
        return oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type must be token-exchange",
        );
    }
    if get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token"
        || get("subject_token_type").is_empty()
        || !get("scope").split(' ').any(|s| s == CLOUD_PLATFORM_SCOPE)
    {
        state.record(kind, None, Some(400));
        return oauth_error(
            400,
            "invalid_request",
            "requested_token_type, subject_token_type and scope are required",
        );
    }
    let principal = state
        .federated
        .read()
        .get(&(get("audience").to_owned(), get("subject_token").to_owned()))
        .cloned();
    let Some(principal) = principal else {
        state.record(kind, None, Some(400));
        return oauth_error(
            400,
            "invalid_grant",
            "The audience or subject token is invalid.",
        );
    };
    let (token, _, seconds) = state.issue(&principal, None);
    state.record(kind, Some(&principal), None);
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": seconds,
        }),
    )
}

fn generate_access_token(
    state: &GcpState,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let kind = "generateAccessToken";
    let Some(caller) = bearer(headers).and_then(|t| state.principal_of(t)) else {
        state.record(kind, None, Some(401));
        return api_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    };
    let allowed = state
        .impersonation
        .read()
        .contains(&(caller.clone(), target.to_owned()));
    if !allowed {
        state.record(kind, Some(&caller), Some(403));
        return api_error(
            403,
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        );
    }
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let scopes: Vec<&str> = request["scope"]
        .as_array()
        .map(|s| s.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if !scopes.contains(&CLOUD_PLATFORM_SCOPE) {
        state.record(kind, Some(&caller), Some(400));
        return api_error(400, "Request contains an invalid argument: scope");
    }
    let lifetime = match request["lifetime"].as_str() {
        None => Duration::from_secs(3600),
        Some(text) => match text
            .strip_suffix('s')
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| (1..=3600).contains(s))
        {
            Some(seconds) => Duration::from_secs(seconds),
            None => {
                state.record(kind, Some(&caller), Some(400));
                return api_error(
                    400,
                    "Request contains an invalid argument: lifetime must be between 1s and 3600s",
                );
            }
        },
    };
    let (token, expires_at, _) = state.issue(target, Some(lifetime));
    state.record(kind, Some(target), None);
    json_response(
        StatusCode::OK,
        serde_json::json!({"accessToken": token, "expireTime": expires_at.to_string()}),
    )
}

fn clusters(state: &GcpState, path: &str, headers: &HeaderMap) -> Response<Body> {
    // projects/{project}/locations/{location}/clusters[/{name}]
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let (project, location, name) = match segments.as_slice() {
        ["projects", project, "locations", location, "clusters"] => (*project, *location, None),
        ["projects", project, "locations", location, "clusters", name] => {
            (*project, *location, Some(*name))
        }
        _ => return api_error(404, &format!("no fake Google API at GET {path}")),
    };
    let kind = if name.is_some() {
        "getCluster"
    } else {
        "listClusters"
    };
    let Some(caller) = bearer(headers).and_then(|t| state.principal_of(t)) else {
        state.record(kind, None, Some(401));
        return api_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    };
    if project != state.options.read().project_id {
        state.record(kind, Some(&caller), Some(403));
        return api_error(
            403,
            &format!("Permission denied on resource project {project}."),
        );
    }
    let clusters = state.clusters.read();
    let in_location = |c: &&FakeGkeCluster| location == "-" || c.location == location;
    match name {
        None => {
            let list: Vec<serde_json::Value> = clusters
                .values()
                .filter(in_location)
                .map(|c| c.to_json(project))
                .collect();
            state.record(kind, Some(&caller), None);
            if list.is_empty() {
                json_response(StatusCode::OK, serde_json::json!({}))
            } else {
                json_response(StatusCode::OK, serde_json::json!({"clusters": list}))
            }
        }
        Some(name) => match clusters.get(&(location.to_owned(), name.to_owned())) {
            Some(cluster) => {
                state.record(kind, Some(&caller), None);
                json_response(StatusCode::OK, cluster.to_json(project))
            }
            None => {
                state.record(kind, Some(&caller), Some(404));
                api_error(
                    404,
                    &format!("Not found: projects/{project}/locations/{location}/clusters/{name}."),
                )
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_keys_parse_and_differ() {
        let a = public_key_der(KEY_POOL[0]);
        let b = public_key_der(KEY_POOL[1]);
        assert!(!a.is_empty() && !b.is_empty());
        assert_ne!(a, b);
    }

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
