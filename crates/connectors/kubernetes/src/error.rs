//! The connector's own errors, mapped into `stepstack_core::Error` at the trait boundary.
//! No variant carries a secret value: fields are named, never shown.

use std::path::PathBuf;

use stepstack_core::connector::ConnectorError;
use stepstack_core::{Error, ErrorKind};

/// What can go wrong in the Kubernetes connector.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KubernetesError {
    #[error("the configuration of auth method `{method}` is invalid: {reason}")]
    InvalidConfig { method: String, reason: String },

    #[error("`{field}` is required by auth method `{method}`; set it")]
    MissingField { field: &'static str, method: String },

    #[error("`{field}` is neither PEM nor base64-encoded PEM; give the content of the PEM file")]
    NotPem { field: &'static str },

    #[error("the server URL `{url}` is not valid: {reason}; give it as https://HOST[:PORT][/PATH]")]
    InvalidServer { url: String, reason: String },

    #[error("the stored kubeconfig is not valid: {reason}")]
    InvalidStoredKubeconfig { reason: String },

    /// A secret value that should hold a kubeconfig does not parse. `problem` says where
    /// (line and column), never what is there: the text around an error is often the
    /// token line.
    #[error("`{field}` is not a valid kubeconfig: {problem}")]
    InvalidKubeconfigValue {
        field: &'static str,
        problem: String,
    },

    #[error("could not read the kubeconfig {}: {reason}", path.display())]
    ReadKubeconfig { path: PathBuf, reason: String },

    #[error("no kubeconfig found (looked at {looked_at}); set KUBECONFIG or create ~/.kube/config")]
    NoKubeconfig { looked_at: String },

    #[error("the kubeconfig has no context `{context}`; available contexts: {available}")]
    UnknownContext { context: String, available: String },

    #[error(
        "the kubeconfig has no current context; name one with `kubernetes_context` (available: {available})"
    )]
    NoCurrentContext { available: String },

    #[error("context `{context}` names {what} `{name}`, which the kubeconfig does not define")]
    DanglingReference {
        context: String,
        what: &'static str,
        name: String,
    },

    #[error("could not read {what} from {}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("auth method `{method}` cannot be configured from this kubeconfig user: {reason}")]
    MethodDoesNotFit { method: String, reason: String },

    #[error(
        "could not build a client for cluster `{cluster}`: {reason}; check the server URL and certificates"
    )]
    BuildClient { cluster: String, reason: String },

    #[error(
        "the API server of cluster `{cluster}` rejected the credentials (401 Unauthorized); check the token, password or client certificate"
    )]
    Unauthorized { cluster: String },

    #[error(
        "the API server of cluster `{cluster}` refused the access review (403 Forbidden): {message}"
    )]
    ReviewForbidden { cluster: String, message: String },

    #[error("could not reach the API server of cluster `{cluster}` at {server}: {reason}")]
    Unreachable {
        cluster: String,
        server: String,
        reason: String,
    },

    #[error(
        "the identity may not {missing} in namespace `{namespace}` of cluster `{cluster}`; grant it with a Role and RoleBinding, e.g. `kubectl create role stepstack --verb=create,get --resource=jobs.batch,pods/log -n {namespace}`"
    )]
    MissingPermissions {
        missing: String,
        namespace: String,
        cluster: String,
    },

    #[error("could not update the kubeconfig {}: {reason}", path.display())]
    WriteKubeconfig { path: PathBuf, reason: String },

    #[error("no kubeconfig path to write to; set KUBECONFIG or HOME")]
    NoLoginPath,

    #[error("the in-cluster service-account {what} at {} could not be read; is this process running in a pod with a service account?", path.display())]
    InCluster {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl KubernetesError {
    fn kind(&self) -> ErrorKind {
        use KubernetesError::*;
        match self {
            InvalidConfig { .. }
            | MissingField { .. }
            | NotPem { .. }
            | InvalidServer { .. }
            | InvalidStoredKubeconfig { .. }
            | InvalidKubeconfigValue { .. }
            | ReadKubeconfig { .. }
            | UnknownContext { .. }
            | NoCurrentContext { .. }
            | DanglingReference { .. }
            | ReadFile { .. }
            | MethodDoesNotFit { .. }
            | BuildClient { .. }
            | NoLoginPath => ErrorKind::InvalidSettings,
            NoKubeconfig { .. } | InCluster { .. } => ErrorKind::NotFound,
            Unauthorized { .. } => ErrorKind::Unauthenticated,
            ReviewForbidden { .. } | MissingPermissions { .. } => ErrorKind::PermissionDenied,
            Unreachable { .. } => ErrorKind::Unavailable,
            WriteKubeconfig { .. } => ErrorKind::Internal,
        }
    }
}

impl ConnectorError for KubernetesError {
    /// The core error, naming the connector.
    fn into_core(self, connector: &str) -> Error {
        let kind = self.kind();
        let message = self.to_string();
        let error = Error::new(kind, message).with_context("connector", connector.to_owned());
        match self {
            KubernetesError::ReadFile { source, .. }
            | KubernetesError::InCluster { source, .. } => error.with_source(source),
            _ => error,
        }
    }
}

/// Shorthand for this crate's fallible results.
pub(crate) type KubernetesResult<T> = Result<T, KubernetesError>;
