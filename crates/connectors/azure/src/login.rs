//! `configure_local_client` (login): writes a kubeconfig context for an AKS cluster
//! (server, CA, a current Entra ID token) and makes it current, as `az aks
//! get-credentials` does, but with the token instead of the kubelogin exec plugin.

use std::path::Path;

use base64::Engine as _;
use secrecy::SecretString;
use stepstack_core::connector::kubeconfig;

use crate::error::{AzureError, AzureResult};

/// Writes context `context` into the kubeconfig at `path`: `server`, the CA (PEM) when
/// the server is verified against it, and the bearer token.
pub(crate) async fn write_context(
    path: &Path,
    context: &str,
    server: &str,
    ca_pem: Option<&str>,
    token: SecretString,
) -> AzureResult<()> {
    let ca = ca_pem.map(|pem| base64::engine::general_purpose::STANDARD.encode(pem));
    let entries = kubeconfig::token_login(context, server, ca, token);
    kubeconfig::write_login_async(path.to_owned(), entries)
        .await
        .map_err(|e| AzureError::WriteKubeconfig {
            path: e.path,
            reason: e.reason,
        })
}
