//! `configure_local_client` (login): writes the cluster, user and context a connector
//! stands for into the user's kubeconfig and makes the context current.

use std::path::Path;

use kube::config::Kubeconfig;
use stepstack_core::connector::kubeconfig;

use crate::error::{KubernetesError, KubernetesResult};

/// Writes `entries` (one cluster, user and context) into the kubeconfig at `path`:
/// entries with the same names are replaced, everything else is kept, and the current
/// context is switched. The file is replaced atomically (a temporary file in the same
/// directory, then a rename); on error the original file is untouched and no temporary
/// file is left behind.
pub(crate) async fn write_context(path: &Path, entries: Kubeconfig) -> KubernetesResult<()> {
    kubeconfig::write_login_async(path.to_owned(), entries)
        .await
        .map_err(|e| KubernetesError::WriteKubeconfig {
            path: e.path,
            reason: e.reason,
        })
}
