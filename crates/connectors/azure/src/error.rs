//! The connector's own errors, mapped into `stepstack_core::Error` at the trait boundary.
//! No variant carries a secret value (client secrets, access tokens, kubeconfigs).

use std::path::PathBuf;

use stepstack_cloud_http::HttpError;
use stepstack_core::connector::ConnectorError;
use stepstack_core::{Error, ErrorKind};

/// What can go wrong in the Azure connector.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AzureError {
    #[error("the configuration of auth method `{method}` is invalid: {reason}")]
    InvalidConfig { method: String, reason: String },

    #[error(
        "`subscription_id` is not set and the identity sees no Azure subscription at {endpoint}; set `subscription_id` (or AZURE_SUBSCRIPTION_ID for the implicit method), and make sure the identity has a role (e.g. Reader) on that subscription"
    )]
    NoSubscription { endpoint: String },

    #[error(
        "`subscription_id` is not set and the identity sees {count} Azure subscriptions: {subscriptions}; set `subscription_id` to the one whose AKS clusters the connector should use"
    )]
    SeveralSubscriptions { count: usize, subscriptions: String },

    #[error(
        "`subscription_id` is not set, and listing the subscriptions the identity sees at {endpoint} failed (HTTP {status}, {code}): {message}; set `subscription_id`"
    )]
    SubscriptionList {
        endpoint: String,
        status: u16,
        code: String,
        message: String,
    },

    #[error(
        "Microsoft Entra ID ({endpoint}) refused the client-credentials grant of `{client_id}` in tenant `{tenant}` for scope `{scope}`: {reason}"
    )]
    TokenRejected {
        endpoint: String,
        tenant: String,
        client_id: String,
        scope: String,
        /// The OAuth2 `error`, the first sentence of the AADSTS description, and what to
        /// check for the kind of client credential used.
        reason: String,
    },

    #[error(
        "`client_certificate` of auth method `{method}` cannot be used: {reason}; give the PEM that holds both the application's certificate and its unencrypted RSA private key (`openssl pkcs12 -in cert.pfx -nodes` converts a PFX file)"
    )]
    InvalidClientCertificate { method: String, reason: String },

    #[error(
        "Azure Resource Manager rejected the access token for subscription `{subscription}` (HTTP 401, {code}): {message}"
    )]
    ArmUnauthenticated {
        subscription: String,
        code: String,
        message: String,
    },

    #[error(
        "the identity may not {action} in subscription `{subscription}` (HTTP 403, {code}): {message}; grant it the `Azure Kubernetes Service Cluster User Role` (and Reader) on the cluster or its resource group"
    )]
    ArmDenied {
        subscription: String,
        action: &'static str,
        code: String,
        message: String,
    },

    #[error(
        "Azure Resource Manager failed for subscription `{subscription}` (HTTP {status}, {code}): {message}"
    )]
    Arm {
        subscription: String,
        status: u16,
        code: String,
        message: String,
    },

    #[error(
        "AKS cluster `{cluster}` not found or not accessible in {where_} of subscription `{subscription}`{available}"
    )]
    ClusterNotFound {
        cluster: String,
        where_: String,
        subscription: String,
        available: String,
    },

    #[error(
        "the AKS cluster name `{cluster}` is ambiguous in subscription `{subscription}`: it exists in resource groups {groups}; name one as `resource-group/name`, e.g. `{example}`"
    )]
    AmbiguousCluster {
        cluster: String,
        subscription: String,
        groups: String,
        example: String,
    },

    #[error(
        "`{id}` is not an AKS cluster id: give the cluster name (`my-cluster`) or `resource-group/name` (`my-rg/my-cluster`)"
    )]
    InvalidResourceId { id: String },

    #[error(
        "AKS cluster `{cluster}` belongs to resource group `{group}`, but the connector is limited to resource group `{configured}`"
    )]
    OutsideResourceGroup {
        cluster: String,
        group: String,
        configured: String,
    },

    #[error("the {which} kubeconfig of AKS cluster `{cluster}` cannot be used: {reason}")]
    BadKubeconfig {
        cluster: String,
        which: &'static str,
        reason: String,
    },

    #[error(
        "AKS cluster `{cluster}` refuses admin credentials (HTTP 403): {message}; its local accounts are disabled, so unset `use_admin_credentials` to connect with an Entra ID token"
    )]
    AdminCredentialsDisabled { cluster: String, message: String },

    #[error(
        "auth method `access-token` has no token for the AKS server application (scope `{scope}`), which AKS clusters need; set the `kubernetes_token` secret (`az account get-access-token --resource {app}`) or use `service-principal`"
    )]
    NoKubernetesToken { scope: String, app: String },

    #[error(
        "found no Azure credentials ({tried}); set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH), run on Azure with workload identity or a managed identity, or log in with `az login`"
    )]
    NoCredentials { tried: String },

    #[error("the managed identity endpoint {endpoint} gave no token: {reason}")]
    ManagedIdentity { endpoint: String, reason: String },

    #[error(
        "the Azure CLI (`{program}`) gave no access token: {reason}; run `az login` (and `az account set --subscription …`)"
    )]
    AzureCli { program: String, reason: String },

    #[error("could not read {what} {}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("could not update the kubeconfig {}: {reason}", path.display())]
    WriteKubeconfig { path: PathBuf, reason: String },

    #[error("no kubeconfig path to write to; set KUBECONFIG or HOME")]
    NoLoginPath,

    /// A failure of the shared REST plumbing (unreachable endpoint, unexpected answer).
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl AzureError {
    pub(crate) fn kind(&self) -> ErrorKind {
        use AzureError::*;
        match self {
            InvalidConfig { .. }
            | InvalidClientCertificate { .. }
            | NoSubscription { .. }
            | SeveralSubscriptions { .. }
            | InvalidResourceId { .. }
            | AmbiguousCluster { .. }
            | NoKubernetesToken { .. }
            | NoLoginPath => ErrorKind::InvalidSettings,
            TokenRejected { .. } | ArmUnauthenticated { .. } => ErrorKind::Unauthenticated,
            SubscriptionList { status: 401, .. } => ErrorKind::Unauthenticated,
            SubscriptionList { status: 403, .. } => ErrorKind::PermissionDenied,
            SubscriptionList { status, .. } if *status >= 500 => ErrorKind::Unavailable,
            SubscriptionList { .. } => ErrorKind::Internal,
            ArmDenied { .. } | AdminCredentialsDisabled { .. } | OutsideResourceGroup { .. } => {
                ErrorKind::PermissionDenied
            }
            Arm { status, .. } if *status >= 500 => ErrorKind::Unavailable,
            Arm { .. } | BadKubeconfig { .. } | WriteKubeconfig { .. } => ErrorKind::Internal,
            ClusterNotFound { .. } | NoCredentials { .. } | ReadFile { .. } => ErrorKind::NotFound,
            ManagedIdentity { .. } | AzureCli { .. } => ErrorKind::Unauthenticated,
            Http(error) => error.kind(),
        }
    }
}

impl ConnectorError for AzureError {
    /// The core error, naming the connector (and the cluster when known).
    fn into_core(self, connector: &str) -> Error {
        let mut error = Error::new(self.kind(), self.to_string())
            .with_context("connector", connector.to_owned());
        match &self {
            AzureError::ClusterNotFound { cluster, .. }
            | AzureError::AmbiguousCluster { cluster, .. }
            | AzureError::BadKubeconfig { cluster, .. }
            | AzureError::AdminCredentialsDisabled { cluster, .. }
            | AzureError::OutsideResourceGroup { cluster, .. } => {
                error = error.with_context("cluster", cluster.clone());
            }
            _ => {}
        }
        // The cause is the source, not part of the message, so it is printed once.
        if let AzureError::ReadFile { source, .. } = self {
            error = error.with_source(source);
        }
        error
    }
}

/// Shorthand for this crate's fallible results.
pub(crate) type AzureResult<T> = Result<T, AzureError>;
