//! `configure_local_client` (login): a kubeconfig context for an EKS cluster.

use std::path::Path;

use secrecy::SecretString;
use stepstack_core::connector::kubeconfig;

use crate::error::{AwsError, AwsResult};

/// What goes into the kubeconfig for one cluster.
pub(crate) struct LoginEntry {
    /// The context, cluster and user name (the cluster ARN, as `aws eks update-kubeconfig`).
    pub(crate) name: String,
    pub(crate) server: String,
    /// Base64 PEM, as EKS returns it.
    pub(crate) certificate_authority_data: Option<String>,
    pub(crate) token: SecretString,
}

/// Adds (or replaces) the cluster, user and context `entry.name` in the kubeconfig at
/// `path` and makes it the current context. Other entries are kept; the file is replaced
/// atomically and is readable by its owner only.
pub(crate) async fn write_login(path: &Path, entry: LoginEntry) -> AwsResult<()> {
    let entries = kubeconfig::token_login(
        &entry.name,
        &entry.server,
        entry.certificate_authority_data,
        entry.token,
    );
    kubeconfig::write_login_async(path.to_owned(), entries)
        .await
        .map_err(|e| AwsError::Kubeconfig(e.to_string()))
}
