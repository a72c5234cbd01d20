//! `configure_local_client` (login): writes a kubeconfig context for a GKE cluster
//! (server, CA, the current access token) and makes it current, as ZenML's GKE login does.

use std::path::Path;

use base64::Engine as _;
use secrecy::SecretString;
use stepstack_core::connector::kubeconfig;

use crate::error::{GcpError, GcpResult};

/// Writes context `context` into the kubeconfig at `path`: `server`, the CA (PEM) when
/// the server is verified against it, and the bearer token.
pub(crate) async fn write_context(
    path: &Path,
    context: &str,
    server: &str,
    ca_pem: Option<&str>,
    token: SecretString,
) -> GcpResult<()> {
    let ca = ca_pem.map(|pem| base64::engine::general_purpose::STANDARD.encode(pem));
    let entries = kubeconfig::token_login(context, server, ca, token);
    kubeconfig::write_login_async(path.to_owned(), entries)
        .await
        .map_err(|e| GcpError::WriteKubeconfig {
            path: e.path,
            reason: e.reason,
        })
}
