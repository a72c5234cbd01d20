//! Kubeconfig handling with kube's own types: reading and merging local files
//! (KUBECONFIG rules), reducing a kubeconfig to one context, building the entries a
//! connector stands for, and writing them into a user's kubeconfig atomically.

use std::path::{Path, PathBuf};

use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Auth, Identity, Parsed, base64_of};
use crate::error::{KResult, KubeConnectorError};

/// The file name of the service-account token in the in-cluster directory.
pub(crate) const SA_TOKEN: &str = "token";
/// The file name of the cluster CA in the in-cluster directory.
pub(crate) const SA_CA: &str = "ca.crt";
/// The file name of the pod's namespace in the in-cluster directory.
pub(crate) const SA_NAMESPACE: &str = "namespace";

/// The kubeconfig files that exist among `paths`, merged by kubectl's rules (the first
/// file to set a value or a named entry wins). `None` when no file exists.
pub(crate) fn read_merged(paths: &[PathBuf]) -> KResult<Option<Kubeconfig>> {
    let mut merged: Option<Kubeconfig> = None;
    for path in paths.iter().filter(|p| p.is_file()) {
        let next = Kubeconfig::read_from(path).map_err(|e| KubeConnectorError::ReadKubeconfig {
            path: path.clone(),
            reason: crate::config::kubeconfig_problem(&e),
        })?;
        merged = Some(match merged {
            None => next,
            Some(m) => m
                .merge(next)
                .map_err(|e| KubeConnectorError::ReadKubeconfig {
                    path: path.clone(),
                    reason: crate::config::kubeconfig_problem(&e),
                })?,
        });
    }
    Ok(merged)
}

/// The names of `kubeconfig`'s contexts, for messages.
pub(crate) fn context_names(kubeconfig: &Kubeconfig) -> String {
    let names: Vec<&str> = kubeconfig
        .contexts
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

/// `kubeconfig` reduced to the context `context`, its cluster and its user, with
/// `context` as the current context.
pub(crate) fn reduce(kubeconfig: &Kubeconfig, context: &str) -> KResult<Kubeconfig> {
    let named_context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)
        .ok_or_else(|| KubeConnectorError::UnknownContext {
            context: context.to_owned(),
            available: context_names(kubeconfig),
        })?;
    let ctx = named_context.context.clone().unwrap_or_default();
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .ok_or_else(|| KubeConnectorError::DanglingReference {
            context: context.to_owned(),
            what: "cluster",
            name: ctx.cluster.clone(),
        })?;
    let user = match &ctx.user {
        Some(user) => Some(
            kubeconfig
                .auth_infos
                .iter()
                .find(|u| &u.name == user)
                .ok_or_else(|| KubeConnectorError::DanglingReference {
                    context: context.to_owned(),
                    what: "user",
                    name: user.clone(),
                })?,
        ),
        None => None,
    };
    Ok(Kubeconfig {
        clusters: vec![cluster.clone()],
        auth_infos: user.cloned().into_iter().collect(),
        contexts: vec![named_context.clone()],
        current_context: Some(context.to_owned()),
        api_version: Some("v1".to_owned()),
        kind: Some("Config".to_owned()),
        ..Default::default()
    })
}

/// Replaces file references in a one-context kubeconfig by their content (CA, client
/// certificate and key), so the kubeconfig works on another machine.
pub(crate) fn inline_files(kubeconfig: &mut Kubeconfig) -> KResult<()> {
    for named in &mut kubeconfig.clusters {
        if let Some(cluster) = &mut named.cluster
            && cluster.certificate_authority_data.is_none()
            && let Some(path) = cluster.certificate_authority.take()
        {
            let pem = read_secret_file(Path::new(&path), "the certificate authority")?;
            cluster.certificate_authority_data = Some(base64_of(&pem));
        }
    }
    for named in &mut kubeconfig.auth_infos {
        if let Some(user) = &mut named.auth_info {
            if user.client_certificate_data.is_none()
                && let Some(path) = user.client_certificate.take()
            {
                let pem = read_secret_file(Path::new(&path), "the client certificate")?;
                user.client_certificate_data = Some(base64_of(&pem));
            }
            if user.client_key_data.is_none()
                && let Some(path) = user.client_key.take()
            {
                let pem = read_secret_file(Path::new(&path), "the client key")?;
                user.client_key_data = Some(SecretString::from(base64_of(&pem)));
            }
        }
    }
    Ok(())
}

/// Reads a file whose content is secret.
pub(crate) fn read_secret_file(path: &Path, what: &'static str) -> KResult<SecretString> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|source| KubeConnectorError::ReadFile {
            what,
            path: path.to_owned(),
            source,
        })
}

/// The cluster, user and context (all named `name`) that a connector stands for, with
/// `name` as the current context. `in_cluster_dir` is where the `in-cluster` method finds
/// the service account's files.
pub(crate) fn entries(parsed: &Parsed, name: &str, in_cluster_dir: &Path) -> Kubeconfig {
    let target = &parsed.target;
    let (cluster, user) = match &parsed.auth {
        Auth::Kubeconfig { kubeconfig, .. } => {
            let cluster = kubeconfig
                .clusters
                .first()
                .and_then(|c| c.cluster.clone())
                .unwrap_or_default();
            let user = kubeconfig
                .auth_infos
                .first()
                .and_then(|u| u.auth_info.clone())
                .unwrap_or_default();
            (cluster, user)
        }
        auth => {
            let mut cluster = Cluster {
                server: Some(target.server.clone()),
                ..Default::default()
            };
            if target.insecure {
                // kubectl refuses a CA together with insecure-skip-tls-verify.
                cluster.insecure_skip_tls_verify = Some(true);
            } else if let Some(ca) = &target.ca_pem {
                cluster.certificate_authority_data = Some(base64_of(ca));
            }
            let mut user = AuthInfo::default();
            match auth {
                Auth::Token { token, identity } => {
                    user.token = token.clone();
                    if let Some(identity) = identity {
                        set_identity(&mut user, identity);
                    }
                }
                Auth::ClientCertificate(identity) => set_identity(&mut user, identity),
                Auth::Password { username, password } => {
                    user.username = Some(username.expose_secret().to_owned());
                    user.password = Some(password.clone());
                }
                Auth::InCluster => {
                    cluster.certificate_authority_data = None;
                    cluster.certificate_authority = Some(path_string(&in_cluster_dir.join(SA_CA)));
                    user.token_file = Some(path_string(&in_cluster_dir.join(SA_TOKEN)));
                }
                Auth::Kubeconfig { .. } => {}
            }
            (cluster, user)
        }
    };
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: name.to_owned(),
            cluster: Some(cluster),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: name.to_owned(),
            auth_info: Some(user),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: name.to_owned(),
            context: Some(Context {
                cluster: name.to_owned(),
                user: Some(name.to_owned()),
                namespace: target.namespace.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        current_context: Some(name.to_owned()),
        api_version: Some("v1".to_owned()),
        kind: Some("Config".to_owned()),
        ..Default::default()
    }
}

fn set_identity(user: &mut AuthInfo, identity: &Identity) {
    user.client_certificate_data = Some(base64_of(&identity.certificate_pem));
    user.client_key_data = Some(SecretString::from(base64_of(&identity.key_pem)));
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Writes `entries` (one cluster, user and context) into the kubeconfig at `path`:
/// entries with the same names are replaced, everything else is kept, and the current
/// context is switched. The file is replaced atomically (a temporary file in the same
/// directory, then a rename); on error the original file is untouched and no temporary
/// file is left behind.
pub(crate) fn write_login(path: &Path, entries: Kubeconfig) -> KResult<()> {
    stepstack_core::connector::kubeconfig::write_login(path, entries).map_err(|e| {
        KubeConnectorError::WriteKubeconfig {
            path: e.path,
            reason: e.reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXISTING: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://other.example.com
    certificate-authority: relative/ca.crt
users:
- name: other
  user:
    token: other-token
contexts:
- name: other
  context:
    cluster: other
    user: other
    namespace: team
current-context: other
preferences: {}
"#;

    #[test]
    fn reduce_keeps_one_context_and_reports_missing_ones() {
        let full = Kubeconfig::from_yaml(EXISTING).unwrap();
        let reduced = reduce(&full, "other").unwrap();
        assert_eq!(reduced.contexts.len(), 1);
        assert_eq!(reduced.auth_infos.len(), 1);
        let err = reduce(&full, "prod").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the kubeconfig has no context `prod`; available contexts: other"
        );
    }
}
