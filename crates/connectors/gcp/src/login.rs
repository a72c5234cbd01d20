//! `login`: writes a kubeconfig context for a GKE cluster (server, CA, the current access
//! token) and makes it current, as ZenML's GKE login does.

use base64::Engine as _;
use kube::config::Kubeconfig;
use secrecy::SecretString;

/// The entries of context `name`: `server`, the CA (PEM) when verified against it, and
/// the bearer token.
pub(crate) fn entries(
    name: &str,
    server: &str,
    ca_pem: Option<&str>,
    token: SecretString,
) -> Kubeconfig {
    let ca = ca_pem.map(|pem| base64::engine::general_purpose::STANDARD.encode(pem));
    stepstack_core::connector::kubeconfig::token_login(name, server, ca, token)
}
