//! A fake Azure for the `azure` connector: the Microsoft Entra ID token endpoint
//! (client-credentials grant with a client secret) and the Azure Resource Manager
//! `managedClusters` API of AKS, both on one HTTPS address on 127.0.0.1 (point the
//! connector's `authority_host` and `management_endpoint` at [`FakeAzure::endpoint_url`]
//! and make it trust [`FakeAzure::ca_pem`]). The certificate comes from a CA generated
//! per fake, as the emulated cluster's does.
//!
//! Served, with the wire formats Azure's clients parse:
//! - `POST /{tenant}/oauth2/v2.0/token`: `grant_type=client_credentials` with `client_id`,
//!   one `scope` ending in `/.default`, and either `client_secret` or a JWT
//!   `client_assertion` (certificate credentials, [`FakeAzure::add_client_certificate`]).
//!   The tenant, client and secret are checked; an assertion is verified for real: RS256
//!   signature with the public key of the certificate registered under its `x5t`, `aud` =
//!   the token endpoint, `iss` = `sub` = the client id, a `jti`, `nbf`..`exp` around now;
//!   or, as client assertion, a federated token of [`FakeAzure::add_federated_token`].
//!   Errors are AADSTS-shaped:
//!   `{"error", "error_description": "AADSTS…: …", "error_codes": […], "trace_id", …}`.
//! - `GET /metadata/identity/oauth2/token` (the instance metadata service, `Metadata: true`)
//!   and `GET /msi/token` (App Service, `X-IDENTITY-HEADER`): managed-identity tokens for
//!   `resource` (ARM or the AKS server application), see
//!   [`FakeAzure::set_managed_identity`];
//! - `GET /subscriptions` (the visible subscriptions, [`FakeAzure::set_visible_subscriptions`]),
//!   `GET /subscriptions/{sub}/providers/Microsoft.ContainerService/managedClusters`,
//!   `GET /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters`,
//!   `GET …/managedClusters/{name}`,
//!   `POST …/managedClusters/{name}/listClusterUserCredential` (a kubeconfig, base64 in
//!   `kubeconfigs[0].value`, with the cluster's server and CA and an `exec` user running
//!   `kubelogin`: the caller must bring its own Entra ID token) and
//!   `POST …/managedClusters/{name}/listClusterAdminCredential` (a static admin token;
//!   403 when the cluster has `disableLocalAccounts: true`). Every ARM call needs an
//!   unexpired token the fake issued for the ARM scope (401 `InvalidAuthenticationToken`
//!   otherwise); errors are `{"error": {"code", "message"}}`.
//!
//! [`FakeAzure::aks_token_validator`] plugs the fake into the emulated cluster: it accepts
//! tokens issued for the AKS server application scope (user = the client id) and the
//! static admin tokens of `listClusterAdminCredential` (user `clusterAdmin`, group
//! `system:masters`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use base64::Engine as _;
use http::{HeaderMap, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jiff::{SignedDuration, Timestamp};
use parking_lot::{Mutex, RwLock};
use rand::Rng as _;
use tokio_util::sync::CancellationToken;

use crate::server::auth::{TokenValidator, UserInfo};
use crate::server::tls::Pki;

/// The application id of the AKS server application ("Azure Kubernetes Service AAD
/// Server"), whose `/.default` scope AKS clusters accept tokens for.
pub const AKS_SERVER_APP_ID: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// The scope of tokens for the AKS server application.
pub const AKS_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/// The scope of tokens for Azure Resource Manager.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// The `client_assertion_type` of a certificate's JWT client assertion.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest lifetime of a client assertion Entra ID accepts.
const MAX_ASSERTION_LIFETIME: i64 = 3600;

/// Clock skew allowed on a client assertion's `nbf`.
const ASSERTION_SKEW: i64 = 300;

/// The user the emulated cluster sees for a static admin credential.
pub const CLUSTER_ADMIN_USER: &str = "clusterAdmin";

/// Options of [`FakeAzure::start`].
#[derive(Debug, Clone)]
pub struct FakeAzureOptions {
    /// The Entra ID tenant the fake issues tokens for; other tenants get AADSTS90002.
    pub tenant_id: String,
    /// The subscription whose clusters the fake serves; others answer 404.
    pub subscription_id: String,
    /// How long issued access tokens live (`expires_in`).
    pub token_lifetime: Duration,
}

impl Default for FakeAzureOptions {
    fn default() -> Self {
        FakeAzureOptions {
            tenant_id: "72f988bf-0000-4000-8000-000000000001".into(),
            subscription_id: "00000000-1111-4222-8333-444444444444".into(),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// An AKS cluster the fake lists.
#[derive(Debug, Clone)]
pub struct FakeAksCluster {
    /// The resource group holding it.
    pub resource_group: String,
    /// The cluster name.
    pub name: String,
    /// The Azure region, e.g. `westeurope`.
    pub location: String,
    /// The API server URL (`https://…`) written into the credential kubeconfigs.
    pub server: String,
    /// The cluster CA (PEM).
    pub ca_pem: String,
    /// `properties.disableLocalAccounts`: no admin credentials.
    pub disable_local_accounts: bool,
}

impl FakeAksCluster {
    /// Cluster `name` in `resource_group`, served by the emulated `cluster`, with local
    /// accounts enabled.
    pub fn for_cluster(resource_group: &str, name: &str, cluster: &crate::Cluster) -> Self {
        FakeAksCluster {
            resource_group: resource_group.into(),
            name: name.into(),
            location: "westeurope".into(),
            server: cluster.url().trim_end_matches('/').to_owned(),
            ca_pem: cluster.ca_pem().to_owned(),
            disable_local_accounts: false,
        }
    }

    /// Sets `disableLocalAccounts`.
    pub fn with_local_accounts_disabled(mut self, disabled: bool) -> Self {
        self.disable_local_accounts = disabled;
        self
    }

    fn id(&self, subscription: &str) -> String {
        format!(
            "/subscriptions/{subscription}/resourcegroups/{}/providers/Microsoft.ContainerService/managedClusters/{}",
            self.resource_group, self.name
        )
    }

    fn to_json(&self, subscription: &str) -> serde_json::Value {
        let host = self
            .server
            .trim_start_matches("https://")
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        serde_json::json!({
            "id": self.id(subscription),
            "location": self.location,
            "name": self.name,
            "type": "Microsoft.ContainerService/ManagedClusters",
            "properties": {
                "provisioningState": "Succeeded",
                "powerState": {"code": "Running"},
                "kubernetesVersion": "1.31.5",
                "dnsPrefix": format!("{}-dns", self.name),
                "fqdn": host,
                "disableLocalAccounts": self.disable_local_accounts,
                "aadProfile": {"managed": true, "enableAzureRBAC": true},
                "enableRBAC": true,
            },
        })
    }

    fn kubeconfig(&self, user: &str, user_entry: serde_json::Value) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        let value = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {
                "server": self.server,
                "certificate-authority-data": ca,
            }}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": user}}],
            "current-context": self.name,
            "preferences": {},
            "users": [{"name": user, "user": user_entry}],
        });
        serde_norway::to_string(&value).unwrap_or_default()
    }
}

/// One request the fake answered, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureCall {
    /// `token`, `managedIdentity`, `listSubscriptions`, `listClusters`, `getCluster`, `listClusterUserCredential`,
    /// `listClusterAdminCredential`, and `clusterToken` for a bearer token the emulated
    /// cluster checked through [`FakeAzure::aks_token_validator`] (401 when the fake
    /// issued it but it expired or is for another scope).
    pub kind: String,
    /// The client id (or, for tokens, the requested scope's principal) when known.
    pub principal: Option<String>,
    /// `None` on success, else the HTTP status returned.
    pub error: Option<u16>,
}

/// The credentials of a registered application.
#[derive(Default)]
struct FakePrincipal {
    secret: Option<String>,
    /// x5t (base64url SHA-1 of the certificate DER) → RSAPublicKey DER.
    certificates: HashMap<String, Vec<u8>>,
    /// Federated tokens (workload identity) the application trusts → their expiry.
    federated_tokens: HashMap<String, Timestamp>,
}

/// A client certificate made by [`FakeAzure::add_client_certificate`].
#[derive(Clone)]
pub struct FakeClientCertificate {
    /// The certificate and its private key in one PEM, as `client_certificate` takes it.
    pub pem: String,
    /// The certificate alone (PEM).
    pub certificate_pem: String,
    /// The private key alone (PKCS#8 PEM).
    pub private_key_pem: String,
    /// The thumbprint Entra ID shows: base64url SHA-1 of the certificate's DER (`x5t`).
    pub thumbprint: String,
}

impl std::fmt::Debug for FakeClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeClientCertificate")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

struct IssuedToken {
    principal: String,
    scope: String,
    expires_at: Timestamp,
}

struct AzureState {
    endpoint: String,
    ca_pem: String,
    options: RwLock<FakeAzureOptions>,
    /// client id → its credentials.
    principals: RwLock<HashMap<String, FakePrincipal>>,
    /// How many client certificates were made (each takes the next key of the pool).
    certificates_made: Mutex<usize>,
    tokens: RwLock<HashMap<String, IssuedToken>>,
    admin_tokens: RwLock<HashMap<String, String>>,
    /// The principal of the machine's managed identity, if it has one.
    managed_identity: RwLock<Option<String>>,
    /// The `IDENTITY_HEADER` secret of the App Service identity endpoint.
    identity_header: String,
    /// The subscriptions `GET /subscriptions` lists: (id, display name).
    subscriptions: RwLock<Vec<(String, String)>>,
    /// (resource group lower-case, name) → cluster.
    clusters: RwLock<BTreeMap<(String, String), FakeAksCluster>>,
    calls: Mutex<Vec<AzureCall>>,
}

impl AzureState {
    fn record(&self, kind: &str, principal: Option<&str>, error: Option<u16>) {
        self.calls.lock().push(AzureCall {
            kind: kind.to_owned(),
            principal: principal.map(str::to_owned),
            error,
        });
    }

    fn issue(&self, principal: &str, scope: &str) -> (String, Timestamp, u64) {
        let lifetime = self.options.read().token_lifetime;
        let token = format!("eyJ0eXAiOiJKV1QifQ.fake-{}", random_hex(24));
        let expires_at = Timestamp::now()
            + SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::from_secs(3600));
        self.tokens.write().insert(
            token.clone(),
            IssuedToken {
                principal: principal.to_owned(),
                scope: scope.to_owned(),
                expires_at,
            },
        );
        (token, expires_at, lifetime.as_secs())
    }

    fn token_endpoint(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.endpoint)
    }

    /// The principal of an unexpired token issued for `scope`.
    fn principal_of(&self, token: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.read();
        let issued = tokens.get(token)?;
        (Timestamp::now() < issued.expires_at && issued.scope == scope)
            .then(|| issued.principal.clone())
    }
}

/// A running fake Azure. Dropping it stops the server.
pub struct FakeAzure {
    state: Arc<AzureState>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for FakeAzure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAzure")
            .field("endpoint", &self.state.endpoint)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeAzure {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl FakeAzure {
    /// Starts the fake on a free port of 127.0.0.1 (call within a Tokio runtime).
    pub async fn start(options: FakeAzureOptions) -> std::io::Result<FakeAzure> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let endpoint = format!("https://127.0.0.1:{}", addr.port());
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let pki = Pki::generate().map_err(std::io::Error::other)?;
        let tls = pki.server_config().map_err(std::io::Error::other)?;
        let subscriptions = vec![(
            options.subscription_id.clone(),
            "Fake subscription".to_owned(),
        )];
        let state = Arc::new(AzureState {
            endpoint: endpoint.clone(),
            ca_pem: pki.ca_pem().to_owned(),
            subscriptions: RwLock::new(subscriptions),
            managed_identity: RwLock::new(None),
            identity_header: random_hex(16),
            options: RwLock::new(options),
            principals: RwLock::new(HashMap::new()),
            certificates_made: Mutex::new(0),
            tokens: RwLock::new(HashMap::new()),
            admin_tokens: RwLock::new(HashMap::new()),
            clusters: RwLock::new(BTreeMap::new()),
            calls: Mutex::new(Vec::new()),
        });
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, tls, state.clone(), shutdown.clone()));
        tracing::info!(%endpoint, "fake Azure endpoint started");
        Ok(FakeAzure { state, shutdown })
    }

    /// The base URL of the fake: the authority host and the management endpoint.
    pub fn endpoint_url(&self) -> &str {
        &self.state.endpoint
    }

    /// The CA (PEM) that signed the fake's TLS certificate (for 127.0.0.1 and localhost).
    pub fn ca_pem(&self) -> &str {
        &self.state.ca_pem
    }

    /// The tenant id.
    pub fn tenant_id(&self) -> String {
        self.state.options.read().tenant_id.clone()
    }

    /// The subscription id.
    pub fn subscription_id(&self) -> String {
        self.state.options.read().subscription_id.clone()
    }

    /// Registers service principal `client_id` (if new) and returns a new client secret
    /// for it, replacing its previous one.
    pub fn add_service_principal(&self, client_id: &str) -> String {
        let secret = format!("fake~{}", random_hex(16));
        self.state
            .principals
            .write()
            .entry(client_id.to_owned())
            .or_default()
            .secret = Some(secret.clone());
        secret
    }

    /// Registers service principal `client_id` (if new) and uploads a new self-signed
    /// client certificate to it. The certificates take the fake's 2048-bit RSA keys in
    /// turn (two in a row never share a key), so a test can pair one certificate with the
    /// other's key.
    pub fn add_client_certificate(&self, client_id: &str) -> FakeClientCertificate {
        let certificate = self.make_client_certificate(client_id);
        self.state
            .principals
            .write()
            .entry(client_id.to_owned())
            .or_default()
            .certificates
            .insert(
                certificate.thumbprint.clone(),
                super::gcp::public_key_der(&certificate.private_key_pem),
            );
        certificate
    }

    /// Registers service principal `client_id` (if new) and returns a federated token it
    /// trusts as client assertion, as AKS workload identity projects into pods
    /// (`AZURE_FEDERATED_TOKEN_FILE`). It expires with [`FakeAzure::expire_tokens`].
    pub fn add_federated_token(&self, client_id: &str) -> String {
        // A JWT's shape without an `x5t`: Entra ID matches it against federated
        // credentials, not certificates.
        let token = format!(
            "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZlZCJ9.eyJzdWIiOiJ7fSJ9.fed{}",
            random_hex(24)
        );
        let expires_at = Timestamp::now() + SignedDuration::from_secs(3600);
        self.state
            .principals
            .write()
            .entry(client_id.to_owned())
            .or_default()
            .federated_tokens
            .insert(token.clone(), expires_at);
        token
    }

    /// A client certificate for `client_id` that is not uploaded anywhere.
    pub fn unregistered_client_certificate(&self, client_id: &str) -> FakeClientCertificate {
        self.make_client_certificate(client_id)
    }

    fn make_client_certificate(&self, client_id: &str) -> FakeClientCertificate {
        let index = {
            let mut made = self.state.certificates_made.lock();
            *made += 1;
            *made - 1
        };
        let private_key_pem = super::gcp::KEY_POOL[index % super::gcp::KEY_POOL.len()].to_owned();
        let key = rcgen::KeyPair::from_pem(&private_key_pem).expect("the pool keys are RSA PKCS#8");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("no subject alternative names to check");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("{client_id}-{}", random_hex(4)),
        );
        let certificate = params
            .self_signed(&key)
            .expect("an RSA key signs its certificate");
        let digest =
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, certificate.der());
        let certificate_pem = certificate.pem();
        FakeClientCertificate {
            pem: format!("{private_key_pem}\n{certificate_pem}"),
            certificate_pem,
            private_key_pem,
            thumbprint: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
        }
    }

    /// The token endpoint of the fake's tenant (the `aud` of client assertions).
    pub fn token_endpoint(&self) -> String {
        self.state.token_endpoint(&self.tenant_id())
    }

    /// Sets the subscriptions `GET /subscriptions` lists, as (id, display name); at
    /// first it lists the fake's subscription. Only the fake's subscription serves
    /// clusters.
    pub fn set_visible_subscriptions(&self, subscriptions: Vec<(String, String)>) {
        *self.state.subscriptions.write() = subscriptions;
    }

    /// Gives the (emulated) machine a managed identity whose tokens name `principal` (its
    /// client id), or takes it away (`None`: the endpoints answer "Identity not found").
    pub fn set_managed_identity(&self, principal: Option<&str>) {
        *self.state.managed_identity.write() = principal.map(str::to_owned);
    }

    /// The instance metadata service's managed-identity token endpoint (`Metadata: true`).
    pub fn managed_identity_url(&self) -> String {
        format!("{}/metadata/identity/oauth2/token", self.state.endpoint)
    }

    /// The App Service style identity endpoint (`IDENTITY_ENDPOINT`), which wants
    /// [`FakeAzure::identity_header`] as `X-IDENTITY-HEADER`.
    pub fn identity_endpoint_url(&self) -> String {
        format!("{}/msi/token", self.state.endpoint)
    }

    /// The `IDENTITY_HEADER` secret of [`FakeAzure::identity_endpoint_url`].
    pub fn identity_header(&self) -> &str {
        &self.state.identity_header
    }

    /// Adds (or replaces) a cluster.
    pub fn add_cluster(&self, cluster: FakeAksCluster) {
        self.state.clusters.write().insert(
            (cluster.resource_group.to_lowercase(), cluster.name.clone()),
            cluster,
        );
    }

    /// Sets how long tokens issued from now on live.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.options.write().token_lifetime = lifetime;
    }

    /// Ends every token issued so far, federated tokens included (as if they had
    /// expired).
    pub fn expire_tokens(&self) {
        let past = Timestamp::now() - SignedDuration::from_secs(1);
        for token in self.state.tokens.write().values_mut() {
            token.expires_at = past;
        }
        for principal in self.state.principals.write().values_mut() {
            for expires_at in principal.federated_tokens.values_mut() {
                *expires_at = past;
            }
        }
    }

    /// Issues a token for `principal` and `scope` directly (what `az account
    /// get-access-token` would print), for the `access-token` method.
    pub fn issue_token(&self, principal: &str, scope: &str) -> (String, Timestamp) {
        let (token, expires_at, _) = self.state.issue(principal, scope);
        (token, expires_at)
    }

    /// The principal of `token` if the fake issued it for `scope` and it has not expired.
    pub fn token_principal(&self, token: &str, scope: &str) -> Option<String> {
        self.state.principal_of(token, scope)
    }

    /// How many tokens were issued for `scope`.
    pub fn issued_tokens(&self, scope: &str) -> usize {
        self.state
            .tokens
            .read()
            .values()
            .filter(|t| t.scope == scope)
            .count()
    }

    /// The emulated cluster's token validator: unexpired tokens issued for [`AKS_SCOPE`]
    /// (user = client id, group `system:authenticated`) and static admin tokens (user
    /// [`CLUSTER_ADMIN_USER`], group `system:masters`).
    pub fn aks_token_validator(&self) -> TokenValidator {
        let state = Arc::downgrade(&self.state);
        Arc::new(move |token: &str| {
            let state = state.upgrade()?;
            if state.admin_tokens.read().contains_key(token) {
                return Some(UserInfo::new(
                    CLUSTER_ADMIN_USER.to_owned(),
                    vec![
                        "system:masters".to_owned(),
                        "system:authenticated".to_owned(),
                    ],
                ));
            }
            let Some(principal) = state.principal_of(token, AKS_SCOPE) else {
                // A token the fake issued but that expired (or has another scope) is
                // recorded, so tests can see the client had to replace it.
                let known = state.tokens.read().get(token).map(|t| t.principal.clone());
                if let Some(principal) = known {
                    state.record("clusterToken", Some(&principal), Some(401));
                }
                return None;
            };
            state.record("clusterToken", Some(&principal), None);
            Some(UserInfo::new(
                principal,
                vec!["system:authenticated".to_owned()],
            ))
        })
    }

    /// Every request answered so far.
    pub fn calls(&self) -> Vec<AzureCall> {
        self.state.calls.lock().clone()
    }

    /// How many requests of `kind` were refused with HTTP `status`.
    pub fn refused(&self, kind: &str, status: u16) -> usize {
        self.state
            .calls
            .lock()
            .iter()
            .filter(|c| c.kind == kind && c.error == Some(status))
            .count()
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

/// Accepts TLS connections until `shutdown`, answering each request with [`handle`].
async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<AzureState>,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let state = state.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        handle(State(state), request.map(Body::new)).await,
                    )
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(value.to_string()))
        .unwrap_or_default()
}

/// An ARM error: `{"error": {"code", "message"}}`.
fn arm_error(status: u16, code: &str, message: &str) -> Response<Body> {
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

/// An Entra ID token endpoint error, AADSTS-shaped.
fn aad_error(status: u16, error: &str, code: u32, description: &str) -> Response<Body> {
    let trace = uuid::Uuid::new_v4().to_string();
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        serde_json::json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {trace} Timestamp: {}",
                Timestamp::now()
            ),
            "error_codes": [code],
            "timestamp": Timestamp::now().to_string(),
            "trace_id": trace,
            "correlation_id": trace,
        }),
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn handle(State(state): State<Arc<AzureState>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(_) => return arm_error(400, "InvalidRequestContent", "unreadable body"),
    };
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();
    if method == http::Method::POST
        && let Some(tenant) = path.strip_suffix("/oauth2/v2.0/token")
    {
        return token(&state, tenant.trim_start_matches('/'), &body);
    }
    if method == http::Method::GET
        && (path == "/metadata/identity/oauth2/token" || path == "/msi/token")
    {
        let query = parts.uri.query().unwrap_or_default();
        return managed_identity(&state, &path, query, &parts.headers);
    }
    if method == http::Method::GET && path.trim_end_matches('/') == "/subscriptions" {
        return subscriptions(
            &state,
            parts.uri.query().unwrap_or_default(),
            &parts.headers,
        );
    }
    if path.starts_with("/subscriptions/") {
        if !parts
            .uri
            .query()
            .unwrap_or_default()
            .contains("api-version=")
        {
            return arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        }
        return arm(&state, &method, &path, &parts.headers);
    }
    arm_error(
        404,
        "NotFound",
        &format!("no fake Azure API at {method} {path}"),
    )
}

fn token(state: &AzureState, tenant: &str, body: &[u8]) -> Response<Body> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let client_id = get("client_id").to_owned();
    let fail = |status, error, code, description: &str| {
        state.record("token", Some(&client_id), Some(status));
        aad_error(status, error, code, description)
    };
    if tenant != state.options.read().tenant_id {
        return fail(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    if get("grant_type") != "client_credentials" {
        return fail(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let principals = state.principals.read();
    let Some(principal) = principals.get(&client_id) else {
        drop(principals);
        return fail(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    };
    let checked = if let Some(assertion) = form.get("client_assertion") {
        if get("client_assertion_type") != CLIENT_ASSERTION_TYPE {
            Err((
                400,
                "invalid_request",
                AssertionError::new(
                    50027,
                    format!("client_assertion_type must be {CLIENT_ASSERTION_TYPE}."),
                ),
            ))
        } else if let Some(expires_at) = principal.federated_tokens.get(assertion) {
            if *expires_at <= Timestamp::now() {
                Err((
                    400,
                    "invalid_client",
                    AssertionError::new(
                        700024,
                        "Client assertion is not within its valid time range.".to_owned(),
                    ),
                ))
            } else {
                Ok(())
            }
        } else {
            verify_assertion(
                principal,
                &client_id,
                &state.token_endpoint(tenant),
                assertion,
                Timestamp::now().as_second(),
            )
            .map_err(|e| (401, "invalid_client", e))
        }
    } else {
        match (&principal.secret, form.get("client_secret")) {
            (_, None) => Err((
                401,
                "invalid_client",
                AssertionError::new(
                    7000216,
                    "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.".to_owned(),
                ),
            )),
            (Some(secret), Some(given)) if secret == given => Ok(()),
            _ => Err((
                401,
                "invalid_client",
                AssertionError::new(
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.".to_owned(),
                ),
            )),
        }
    };
    drop(principals);
    if let Err((status, error, e)) = checked {
        return fail(status, error, e.code, &e.description);
    }
    let scope = get("scope");
    if scope != ARM_SCOPE && scope != AKS_SCOPE {
        return fail(
            400,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }
    let (token, _, seconds) = state.issue(&client_id, scope);
    state.record("token", Some(&client_id), None);
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": seconds,
            "ext_expires_in": seconds,
            "access_token": token,
        }),
    )
}

/// Why a client assertion was refused: the AADSTS code and description.
#[derive(Debug)]
struct AssertionError {
    code: u32,
    description: String,
}

impl AssertionError {
    fn new(code: u32, description: String) -> Self {
        AssertionError { code, description }
    }
}

/// Checks a JWT client assertion as Entra ID does: RS256, signed by the key of a
/// certificate registered on the application (found by the header's `x5t`), `aud` the
/// token endpoint, `iss` = `sub` = the client id, `jti` present, and `now` within
/// `nbf`..`exp` (at most an hour apart).
fn verify_assertion(
    principal: &FakePrincipal,
    client_id: &str,
    token_endpoint: &str,
    assertion: &str,
    now: i64,
) -> Result<(), AssertionError> {
    let malformed = || AssertionError::new(50027, "JWT token is invalid or malformed.".to_owned());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = assertion.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let decode = |part: &str| -> Result<serde_json::Value, AssertionError> {
        let bytes = b64.decode(part).map_err(|_| malformed())?;
        serde_json::from_slice(&bytes).map_err(|_| malformed())
    };
    let header_json = decode(header)?;
    let claims_json = decode(claims)?;
    if header_json["alg"] != "RS256" {
        return Err(AssertionError::new(
            5002738,
            "Invalid JWT token. 'RS256' is the only supported signing algorithm for client assertions here.".to_owned(),
        ));
    }
    let Some(thumbprint) = header_json["x5t"].as_str() else {
        return Err(AssertionError::new(
            70021,
            "No matching federated identity record found for presented assertion.".to_owned(),
        ));
    };
    let Some(public_key) = principal.certificates.get(thumbprint) else {
        return Err(AssertionError::new(
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}']"
            ),
        ));
    };
    let signature = b64.decode(signature).map_err(|_| malformed())?;
    let signed = format!("{header}.{claims}");
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(signed.as_bytes(), &signature)
    .map_err(|_| {
        AssertionError::new(
            700027,
            "Client assertion failed signature validation.".to_owned(),
        )
    })?;
    if claims_json["aud"] != token_endpoint {
        return Err(AssertionError::new(
            700016,
            format!(
                "Invalid JWT token. The token's audience must be the token endpoint {token_endpoint}."
            ),
        ));
    }
    if claims_json["iss"] != client_id || claims_json["sub"] != client_id {
        return Err(AssertionError::new(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter."
                .to_owned(),
        ));
    }
    if claims_json["jti"].as_str().is_none_or(str::is_empty) {
        return Err(AssertionError::new(
            700023,
            "Client assertion contains no 'jti' claim.".to_owned(),
        ));
    }
    let exp = claims_json["exp"].as_i64().ok_or_else(malformed)?;
    let nbf = claims_json["nbf"].as_i64().unwrap_or(now);
    if exp <= now || nbf > now + ASSERTION_SKEW || exp - nbf > MAX_ASSERTION_LIFETIME {
        return Err(AssertionError::new(
            700024,
            "Client assertion is not within its valid time range.".to_owned(),
        ));
    }
    Ok(())
}

/// The managed-identity endpoints: IMDS (`Metadata: true`) and App Service
/// (`X-IDENTITY-HEADER`), `?api-version=…&resource=…[&client_id=…]`.
fn managed_identity(
    state: &AzureState,
    path: &str,
    query: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let fail = |status: u16, description: &str| {
        state.record("managedIdentity", None, Some(status));
        json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            serde_json::json!({"error": "invalid_request", "error_description": description}),
        )
    };
    let app_service = path == "/msi/token";
    if app_service {
        if header("x-identity-header") != Some(state.identity_header.as_str()) {
            return fail(401, "The X-IDENTITY-HEADER header is missing or wrong.");
        }
    } else if header("metadata") != Some("true") {
        return fail(400, "Required metadata header not specified");
    }
    if !params.contains_key("api-version") {
        return fail(400, "Required query variable 'api-version' is missing");
    }
    let resource = params
        .get("resource")
        .map(String::as_str)
        .unwrap_or_default();
    let scope = match resource.trim_end_matches('/') {
        "https://management.azure.com" => ARM_SCOPE,
        AKS_SERVER_APP_ID => AKS_SCOPE,
        _ => {
            return fail(
                400,
                &format!(
                    "AADSTS500011: The resource principal named {resource} was not found in the tenant."
                ),
            );
        }
    };
    let identity = state.managed_identity.read().clone();
    let Some(principal) =
        identity.filter(|p| params.get("client_id").is_none_or(|wanted| wanted == p))
    else {
        return fail(400, "Identity not found");
    };
    let (token, expires_at, seconds) = state.issue(&principal, scope);
    state.record("managedIdentity", Some(&principal), None);
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "access_token": token,
            "client_id": principal,
            "expires_in": seconds.to_string(),
            "expires_on": expires_at.as_second().to_string(),
            "ext_expires_in": seconds.to_string(),
            "not_before": Timestamp::now().as_second().to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}

/// `GET /subscriptions`: the visible subscriptions, for an ARM token.
fn subscriptions(state: &AzureState, query: &str, headers: &HeaderMap) -> Response<Body> {
    if !query.contains("api-version=") {
        return arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let Some(principal) = bearer(headers).and_then(|t| state.principal_of(t, ARM_SCOPE)) else {
        state.record("listSubscriptions", None, Some(401));
        return arm_error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid or has expired, or was not issued for https://management.azure.com.",
        );
    };
    let tenant = state.options.read().tenant_id.clone();
    let value: Vec<serde_json::Value> = state
        .subscriptions
        .read()
        .iter()
        .map(|(id, name)| {
            serde_json::json!({
                "id": format!("/subscriptions/{id}"),
                "authorizationSource": "RoleBased",
                "subscriptionId": id,
                "tenantId": tenant,
                "displayName": name,
                "state": "Enabled",
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
            })
        })
        .collect();
    state.record("listSubscriptions", Some(&principal), None);
    json_response(
        StatusCode::OK,
        serde_json::json!({"count": {"type": "Total", "value": value.len()}, "value": value}),
    )
}

fn arm(
    state: &AzureState,
    method: &http::Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let kind = match (method.as_str(), segments.len()) {
        ("GET", 5) | ("GET", 7) => "listClusters",
        ("GET", 8) => "getCluster",
        ("POST", 9) => segments[8],
        _ => "unknown",
    };
    let Some(principal) = bearer(headers).and_then(|t| state.principal_of(t, ARM_SCOPE)) else {
        state.record(kind, None, Some(401));
        return arm_error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid or has expired, or was not issued for https://management.azure.com.",
        );
    };
    let principal = Some(principal.as_str());
    let subscription = state.options.read().subscription_id.clone();
    if segments.get(1) != Some(&subscription.as_str()) {
        state.record(kind, principal, Some(404));
        return arm_error(
            404,
            "SubscriptionNotFound",
            &format!(
                "The subscription '{}' could not be found.",
                segments.get(1).unwrap_or(&"")
            ),
        );
    }
    let provider_at = |i: usize| {
        segments
            .get(i)
            .is_some_and(|s| s.eq_ignore_ascii_case("providers"))
            && segments
                .get(i + 1)
                .is_some_and(|s| s.eq_ignore_ascii_case("Microsoft.ContainerService"))
            && segments
                .get(i + 2)
                .is_some_and(|s| s.eq_ignore_ascii_case("managedClusters"))
    };
    let group = if segments.len() >= 7
        && segments[2].eq_ignore_ascii_case("resourceGroups")
        && provider_at(4)
    {
        Some(segments[3].to_lowercase())
    } else if segments.len() == 5 && provider_at(2) {
        None
    } else {
        state.record(kind, principal, Some(404));
        return arm_error(
            404,
            "InvalidResourceType",
            &format!("The resource type could not be found at {path}."),
        );
    };
    let clusters = state.clusters.read();
    if let Some(group) = &group
        && !clusters.keys().any(|(g, _)| g == group)
    {
        drop(clusters);
        state.record(kind, principal, Some(404));
        return arm_error(
            404,
            "ResourceGroupNotFound",
            &format!("Resource group '{}' could not be found.", segments[3]),
        );
    }
    if kind == "listClusters" {
        let value: Vec<serde_json::Value> = clusters
            .iter()
            .filter(|((g, _), _)| group.as_ref().is_none_or(|want| want == g))
            .map(|(_, c)| c.to_json(&subscription))
            .collect();
        drop(clusters);
        state.record(kind, principal, None);
        return json_response(StatusCode::OK, serde_json::json!({"value": value}));
    }
    let (Some(group), Some(name)) = (group, segments.get(7)) else {
        drop(clusters);
        state.record(kind, principal, Some(404));
        return arm_error(404, "NotFound", "unknown path");
    };
    let Some(cluster) = clusters.get(&(group, (*name).to_owned())).cloned() else {
        drop(clusters);
        state.record(kind, principal, Some(404));
        return arm_error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource 'Microsoft.ContainerService/managedClusters/{name}' under resource group '{}' was not found.",
                segments[3]
            ),
        );
    };
    drop(clusters);
    match kind {
        "getCluster" => {
            state.record(kind, principal, None);
            json_response(StatusCode::OK, cluster.to_json(&subscription))
        }
        "listClusterUserCredential" => {
            let user = format!("clusterUser_{}_{}", cluster.resource_group, cluster.name);
            let exec = serde_json::json!({"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "kubelogin",
                "args": ["get-token", "--login", "devicecode", "--server-id", AKS_SERVER_APP_ID,
                         "--environment", "AzurePublicCloud"],
                "env": null,
                "provideClusterInfo": false,
                "interactiveMode": "IfAvailable",
            }});
            state.record(kind, principal, None);
            credential_results("clusterUser", &cluster.kubeconfig(&user, exec))
        }
        "listClusterAdminCredential" => {
            if cluster.disable_local_accounts {
                state.record(kind, principal, Some(403));
                return arm_error(
                    403,
                    "BadRequest",
                    "Getting static credential is not allowed because this cluster is set to disable local accounts.",
                );
            }
            let token = random_hex(32);
            state
                .admin_tokens
                .write()
                .insert(token.clone(), cluster.name.clone());
            let user = format!("clusterAdmin_{}_{}", cluster.resource_group, cluster.name);
            state.record(kind, principal, None);
            credential_results(
                "clusterAdmin",
                &cluster.kubeconfig(&user, serde_json::json!({"token": token})),
            )
        }
        other => {
            state.record(other, principal, Some(404));
            arm_error(
                404,
                "InvalidResourceType",
                &format!("no action `{other}` on managedClusters"),
            )
        }
    }
}

fn credential_results(name: &str, kubeconfig: &str) -> Response<Body> {
    let value = base64::engine::general_purpose::STANDARD.encode(kubeconfig.as_bytes());
    json_response(
        StatusCode::OK,
        serde_json::json!({"kubeconfigs": [{"name": name, "value": value}]}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_against_their_scope() {
        let state = AzureState {
            endpoint: String::new(),
            ca_pem: String::new(),
            subscriptions: RwLock::new(Vec::new()),
            managed_identity: RwLock::new(None),
            identity_header: String::new(),
            options: RwLock::new(FakeAzureOptions::default()),
            principals: RwLock::new(HashMap::new()),
            certificates_made: Mutex::new(0),
            tokens: RwLock::new(HashMap::new()),
            admin_tokens: RwLock::new(HashMap::new()),
            clusters: RwLock::new(BTreeMap::new()),
            calls: Mutex::new(Vec::new()),
        };
        let (token, _, _) = state.issue("app", AKS_SCOPE);
        assert_eq!(
            state.principal_of(&token, AKS_SCOPE).as_deref(),
            Some("app")
        );
        assert_eq!(state.principal_of(&token, ARM_SCOPE), None);
    }

    /// An RS256 JWT over `header` and `claims`, signed with pool key `key`.
    fn sign(key: usize, header: serde_json::Value, claims: serde_json::Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let pem = super::super::gcp::KEY_POOL[key];
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        let mut signature = vec![0; pair.public().modulus_len()];
        pair.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .unwrap();
        format!("{input}.{}", b64.encode(signature))
    }

    #[test]
    fn client_assertions_are_verified_for_real() {
        let endpoint = "https://127.0.0.1:1/t/oauth2/v2.0/token";
        let mut principal = FakePrincipal::default();
        principal.certificates.insert(
            "thumb".into(),
            super::super::gcp::public_key_der(super::super::gcp::KEY_POOL[0]),
        );
        let now = 1_000_000;
        let claims = |aud: &str, sub: &str, nbf: i64, exp: i64| serde_json::json!({"aud": aud, "iss": "app", "sub": sub, "jti": "j", "nbf": nbf, "exp": exp});
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": "thumb"});
        let good = sign(0, header.clone(), claims(endpoint, "app", now, now + 600));
        verify_assertion(&principal, "app", endpoint, &good, now).unwrap();
        let code = |assertion: &str, now: i64| {
            verify_assertion(&principal, "app", endpoint, assertion, now)
                .unwrap_err()
                .code
        };
        // Signed by another key, or with an unknown thumbprint, or tampered with.
        assert_eq!(
            code(
                &sign(1, header.clone(), claims(endpoint, "app", now, now + 600)),
                now
            ),
            700027
        );
        let unknown = serde_json::json!({"alg": "RS256", "x5t": "other"});
        assert_eq!(
            code(
                &sign(0, unknown, claims(endpoint, "app", now, now + 600)),
                now
            ),
            700027
        );
        let mut tampered = good.clone();
        tampered.insert(tampered.find('.').unwrap() + 2, 'x');
        assert!(verify_assertion(&principal, "app", endpoint, &tampered, now).is_err());
        // Wrong audience, subject, expired, too long-lived.
        assert_eq!(
            code(
                &sign(
                    0,
                    header.clone(),
                    claims("https://elsewhere/token", "app", now, now + 600)
                ),
                now
            ),
            700016
        );
        assert_eq!(
            code(
                &sign(0, header.clone(), claims(endpoint, "other", now, now + 600)),
                now
            ),
            700021
        );
        assert_eq!(code(&good, now + 601), 700024);
        assert_eq!(
            code(
                &sign(0, header, claims(endpoint, "app", now, now + 7200)),
                now
            ),
            700024
        );
        assert_eq!(code("not.a.jwt", now), 50027);
    }
}
