//! Kubeconfig documents for the emulated cluster.

use base64::Engine as _;
use serde_json::json;

/// Credentials of one user of the cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct UserCredentials {
    /// The user name.
    pub name: String,
    /// A bearer token, for token users.
    pub token: Option<String>,
    /// A PEM client certificate, for certificate users.
    pub client_cert_pem: Option<String>,
    /// The PEM private key of the client certificate.
    pub client_key_pem: Option<String>,
    /// A password for HTTP basic auth (the user name is `name`), for password users.
    pub password: Option<String>,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials")
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("client_cert", &self.client_cert_pem.is_some())
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The name of the cluster and context entries in generated kubeconfigs.
pub const CONTEXT_NAME: &str = "stepstack-testkit";

/// Renders a kubeconfig YAML document for `user` against `server`.
pub fn render(server: &str, ca_pem: &str, user: &UserCredentials, namespace: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut auth = serde_json::Map::new();
    if let Some(t) = &user.token {
        auth.insert("token".into(), json!(t));
    }
    if let Some(p) = &user.password {
        auth.insert("username".into(), json!(user.name));
        auth.insert("password".into(), json!(p));
    }
    if let (Some(c), Some(k)) = (&user.client_cert_pem, &user.client_key_pem) {
        auth.insert("client-certificate-data".into(), json!(b64(c)));
        auth.insert("client-key-data".into(), json!(b64(k)));
    }
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": CONTEXT_NAME, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user.name, "user": auth}],
        "contexts": [{"name": CONTEXT_NAME, "context": {"cluster": CONTEXT_NAME, "user": user.name, "namespace": namespace}}],
        "current-context": CONTEXT_NAME,
    });
    serde_norway::to_string(&doc).unwrap_or_default()
}
