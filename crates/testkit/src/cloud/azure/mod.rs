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

//!
//! The fake is split by job: [`FakeAzure`] here is its public face; `state` holds the
//! options, records and shared state; `verify` checks client assertions; `handlers`
//! serves TLS and routes each request to `entra` (token endpoint, managed identity) or
//! `arm` (subscriptions, managedClusters), which answer in the shapes of `respond`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use super::keys::{KEY_POOL, public_key_der};
use crate::server::auth::{TokenValidator, UserInfo};
use crate::server::tls::Pki;

mod arm;
mod entra;
mod handlers;
mod respond;
mod state;
mod verify;

pub use state::{
    AKS_SCOPE, AKS_SERVER_APP_ID, ARM_SCOPE, AzureCall, CLIENT_ASSERTION_TYPE, CLUSTER_ADMIN_USER,
    FakeAksCluster, FakeAzureOptions, FakeClientCertificate,
};

use state::{AzureState, random_hex};

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
        tokio::spawn(handlers::serve(
            listener,
            tls,
            state.clone(),
            shutdown.clone(),
        ));
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
                public_key_der(&certificate.private_key_pem),
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
        let private_key_pem = KEY_POOL[index % KEY_POOL.len()].to_owned();
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
