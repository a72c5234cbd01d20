//! The connector's own errors, mapped into `stepstack_core::Error` at the trait boundary.
//! No variant carries a secret value (keys, refresh tokens, access tokens).

use std::path::PathBuf;

use stepstack_cloud_http::HttpError;
use stepstack_core::connector::ConnectorError;
use stepstack_core::{Error, ErrorKind};

/// What can go wrong in the GCP connector.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GcpError {
    #[error("the configuration of auth method `{method}` is invalid: {reason}")]
    InvalidConfig { method: String, reason: String },

    #[error("`{field}` is not valid credentials JSON (raw or base64-encoded): {reason}")]
    InvalidCredentialsJson { field: &'static str, reason: String },

    #[error("no project id: set `project_id` in the connector configuration{hint}")]
    MissingProject { hint: &'static str },

    #[error(
        "the private key of service account `{account}` cannot be used: {reason}; create a new key with `gcloud iam service-accounts keys create`"
    )]
    InvalidKey { account: String, reason: String },

    #[error(
        "the Google token endpoint {endpoint} refused the {grant} grant for `{principal}`: {error}{description}; check that the credentials are current and not revoked"
    )]
    TokenRejected {
        endpoint: String,
        grant: &'static str,
        principal: String,
        error: String,
        description: String,
    },

    #[error("could not reach {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },

    #[error("{endpoint} answered with an unexpected response (HTTP {status}): {reason}")]
    BadResponse {
        endpoint: String,
        status: u16,
        reason: String,
    },

    #[error(
        "`{source_principal}` may not impersonate service account `{target}` (HTTP {status}): {message}; grant it roles/iam.serviceAccountTokenCreator on the target"
    )]
    ImpersonationDenied {
        source_principal: String,
        target: String,
        status: u16,
        message: String,
    },

    #[error("Google rejected the access token for project `{project}` (HTTP 401): {message}")]
    ApiUnauthenticated { project: String, message: String },

    #[error(
        "the identity may not list GKE clusters of project `{project}` (HTTP 403): {message}; grant it roles/container.clusterViewer (or check the project id)"
    )]
    ApiDenied { project: String, message: String },

    #[error("the GKE API failed for project `{project}` (HTTP {status}): {message}")]
    Api {
        project: String,
        status: u16,
        message: String,
    },

    #[error(
        "GKE cluster `{cluster}` not found or not accessible in {where_} of project `{project}`{available}"
    )]
    ClusterNotFound {
        cluster: String,
        where_: String,
        project: String,
        available: String,
    },

    #[error(
        "the GKE cluster name `{cluster}` is ambiguous in project `{project}`: it exists in locations {locations}; name one as `location/name`, e.g. `{example}`"
    )]
    AmbiguousCluster {
        cluster: String,
        project: String,
        locations: String,
        example: String,
    },

    #[error(
        "`{id}` is not a GKE cluster id: give the cluster name (`my-cluster`) or `location/name` (`us-central1/my-cluster`)"
    )]
    InvalidResourceId { id: String },

    #[error(
        "GKE cluster `{cluster}` in `{location}` exposes no Kubernetes API endpoint this connector can use (no IP endpoint, and no DNS endpoint that allows external traffic)"
    )]
    NoEndpoint { cluster: String, location: String },

    #[error("the CA certificate of GKE cluster `{cluster}` cannot be read: {reason}")]
    BadCa { cluster: String, reason: String },

    #[error("could not read {what} {}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "no Google application default credentials found (looked at {looked_at}, and no auth method was asked for); run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
    )]
    NoCredentials { looked_at: String },

    #[error("could not update the kubeconfig {}: {reason}", path.display())]
    WriteKubeconfig { path: PathBuf, reason: String },

    #[error("no kubeconfig path to write to; set KUBECONFIG or HOME")]
    NoLoginPath,

    #[error("{what} is not supported by this build of the `gcp` connector; {hint}")]
    Unsupported { what: String, hint: &'static str },

    /// A failure of the shared REST plumbing (unreachable endpoint, unexpected answer).
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl GcpError {
    pub(crate) fn kind(&self) -> ErrorKind {
        use GcpError::*;
        match self {
            InvalidConfig { .. }
            | InvalidCredentialsJson { .. }
            | MissingProject { .. }
            | InvalidKey { .. }
            | InvalidResourceId { .. }
            | AmbiguousCluster { .. } => ErrorKind::InvalidSettings,
            TokenRejected { .. } | ApiUnauthenticated { .. } => ErrorKind::Unauthenticated,
            ImpersonationDenied { .. } | ApiDenied { .. } => ErrorKind::PermissionDenied,
            Unreachable { .. } => ErrorKind::Unavailable,
            Api { status, .. } | BadResponse { status, .. } if *status >= 500 => {
                ErrorKind::Unavailable
            }
            Api { .. } | BadResponse { .. } | NoEndpoint { .. } | BadCa { .. } => {
                ErrorKind::Internal
            }
            ClusterNotFound { .. } | NoCredentials { .. } | ReadFile { .. } => ErrorKind::NotFound,
            Unsupported { .. } => ErrorKind::Unsupported,
            Http(error) => error.kind(),
            WriteKubeconfig { .. } => ErrorKind::Internal,
            NoLoginPath => ErrorKind::InvalidSettings,
        }
    }
}

impl ConnectorError for GcpError {
    /// The core error, naming the connector (and the cluster or location when known).
    fn into_core(self, connector: &str) -> Error {
        let mut error = Error::new(self.kind(), self.to_string())
            .with_context("connector", connector.to_owned());
        match &self {
            GcpError::ClusterNotFound { cluster, .. }
            | GcpError::AmbiguousCluster { cluster, .. }
            | GcpError::BadCa { cluster, .. } => {
                error = error.with_context("cluster", cluster.clone());
            }
            GcpError::NoEndpoint { cluster, location } => {
                error = error
                    .with_context("cluster", cluster.clone())
                    .with_context("location", location.clone());
            }
            _ => {}
        }
        match self {
            GcpError::ReadFile { source, .. } => error.with_source(source),
            _ => error,
        }
    }
}

/// Shorthand for this crate's fallible results.
pub(crate) type GcpResult<T> = Result<T, GcpError>;
