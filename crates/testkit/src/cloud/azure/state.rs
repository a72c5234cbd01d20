//! The fake's data: the scopes it serves, its options, the applications, tokens and
//! clusters it knows (with their ARM and kubeconfig renderings), the record of answered
//! calls, and the state the handlers share.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use parking_lot::{Mutex, RwLock};
use rand::Rng as _;

/// The application id of the AKS server application ("Azure Kubernetes Service AAD
/// Server"), whose `/.default` scope AKS clusters accept tokens for.
pub const AKS_SERVER_APP_ID: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// The scope of tokens for the AKS server application.
pub const AKS_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/// The scope of tokens for Azure Resource Manager.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// The `client_assertion_type` of a certificate's JWT client assertion.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The user the emulated cluster sees for a static admin credential.
pub const CLUSTER_ADMIN_USER: &str = "clusterAdmin";

/// Options of [`FakeAzure::start`](super::FakeAzure::start).
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

    pub(super) fn to_json(&self, subscription: &str) -> serde_json::Value {
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

    pub(super) fn kubeconfig(&self, user: &str, user_entry: serde_json::Value) -> String {
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
    /// cluster checked through
    /// [`FakeAzure::aks_token_validator`](super::FakeAzure::aks_token_validator) (401
    /// when the fake issued it but it expired or is for another scope).
    pub kind: String,
    /// The client id (or, for tokens, the requested scope's principal) when known.
    pub principal: Option<String>,
    /// `None` on success, else the HTTP status returned.
    pub error: Option<u16>,
}

/// The credentials of a registered application.
#[derive(Default)]
pub(super) struct FakePrincipal {
    pub(super) secret: Option<String>,
    /// x5t (base64url SHA-1 of the certificate DER) → RSAPublicKey DER.
    pub(super) certificates: HashMap<String, Vec<u8>>,
    /// Federated tokens (workload identity) the application trusts → their expiry.
    pub(super) federated_tokens: HashMap<String, Timestamp>,
}

/// A client certificate made by
/// [`FakeAzure::add_client_certificate`](super::FakeAzure::add_client_certificate).
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

pub(super) struct IssuedToken {
    pub(super) principal: String,
    pub(super) scope: String,
    pub(super) expires_at: Timestamp,
}

pub(super) struct AzureState {
    pub(super) endpoint: String,
    pub(super) ca_pem: String,
    pub(super) options: RwLock<FakeAzureOptions>,
    /// client id → its credentials.
    pub(super) principals: RwLock<HashMap<String, FakePrincipal>>,
    /// How many client certificates were made (each takes the next key of the pool).
    pub(super) certificates_made: Mutex<usize>,
    pub(super) tokens: RwLock<HashMap<String, IssuedToken>>,
    pub(super) admin_tokens: RwLock<HashMap<String, String>>,
    /// The principal of the machine's managed identity, if it has one.
    pub(super) managed_identity: RwLock<Option<String>>,
    /// The `IDENTITY_HEADER` secret of the App Service identity endpoint.
    pub(super) identity_header: String,
    /// The subscriptions `GET /subscriptions` lists: (id, display name).
    pub(super) subscriptions: RwLock<Vec<(String, String)>>,
    /// (resource group lower-case, name) → cluster.
    pub(super) clusters: RwLock<BTreeMap<(String, String), FakeAksCluster>>,
    pub(super) calls: Mutex<Vec<AzureCall>>,
}

impl AzureState {
    pub(super) fn record(&self, kind: &str, principal: Option<&str>, error: Option<u16>) {
        self.calls.lock().push(AzureCall {
            kind: kind.to_owned(),
            principal: principal.map(str::to_owned),
            error,
        });
    }

    pub(super) fn issue(&self, principal: &str, scope: &str) -> (String, Timestamp, u64) {
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

    pub(super) fn token_endpoint(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.endpoint)
    }

    /// The principal of an unexpired token issued for `scope`.
    pub(super) fn principal_of(&self, token: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.read();
        let issued = tokens.get(token)?;
        (Timestamp::now() < issued.expires_at && issued.scope == scope)
            .then(|| issued.principal.clone())
    }
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
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
}
