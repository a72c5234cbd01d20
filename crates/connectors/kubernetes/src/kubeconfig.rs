//! Kubeconfig files with kube's own types, below everything else of the connector:
//! reading and merging local files (KUBECONFIG rules), reducing a kubeconfig to one
//! context, inlining the files it names, and saying what is wrong with one without
//! quoting it. (The entries a connector stands for are built in `config`; `login` writes
//! them.)

use std::path::{Path, PathBuf};

use base64::Engine as _;
use kube::config::Kubeconfig;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{KubernetesError, KubernetesResult};

/// The file name of the service-account token in the in-cluster directory.
pub(crate) const SA_TOKEN: &str = "token";
/// The file name of the cluster CA in the in-cluster directory.
pub(crate) const SA_CA: &str = "ca.crt";
/// The file name of the pod's namespace in the in-cluster directory.
pub(crate) const SA_NAMESPACE: &str = "namespace";

/// The kubeconfig files that exist among `paths`, merged by kubectl's rules (the first
/// file to set a value or a named entry wins). `None` when no file exists.
pub(crate) fn read_merged(paths: &[PathBuf]) -> KubernetesResult<Option<Kubeconfig>> {
    let mut merged: Option<Kubeconfig> = None;
    for path in paths.iter().filter(|p| p.is_file()) {
        let next = Kubeconfig::read_from(path).map_err(|e| KubernetesError::ReadKubeconfig {
            path: path.clone(),
            reason: kubeconfig_problem(&e),
        })?;
        merged = Some(match merged {
            None => next,
            Some(m) => m.merge(next).map_err(|e| KubernetesError::ReadKubeconfig {
                path: path.clone(),
                reason: kubeconfig_problem(&e),
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
pub(crate) fn reduce(kubeconfig: &Kubeconfig, context: &str) -> KubernetesResult<Kubeconfig> {
    let named_context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)
        .ok_or_else(|| KubernetesError::UnknownContext {
            context: context.to_owned(),
            available: context_names(kubeconfig),
        })?;
    let ctx = named_context.context.clone().unwrap_or_default();
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .ok_or_else(|| KubernetesError::DanglingReference {
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
                .ok_or_else(|| KubernetesError::DanglingReference {
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
pub(crate) fn inline_files(kubeconfig: &mut Kubeconfig) -> KubernetesResult<()> {
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
pub(crate) fn read_secret_file(path: &Path, what: &'static str) -> KubernetesResult<SecretString> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|source| KubernetesError::ReadFile {
            what,
            path: path.to_owned(),
            source,
        })
}

/// Base64 of PEM text, as kubeconfig `*-data` fields hold it.
pub(crate) fn base64_of(pem: &SecretString) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem.expose_secret().as_bytes())
}

/// What is wrong with a kubeconfig, without quoting it: the YAML parser's messages show
/// the offending text and the lines around it (often the token line), so a parse error
/// is reduced to where it is. Other errors (a missing file, a bad URL) are kept.
pub(crate) fn kubeconfig_problem(error: &kube::config::KubeconfigError) -> String {
    use kube::config::KubeconfigError;
    let KubeconfigError::Parse(parse) = error else {
        return error.to_string();
    };
    let hidden = "the content is not shown because it holds credentials";
    match parse.location().filter(|l| l.line() > 0) {
        Some(at) => format!(
            "it is not valid kubeconfig YAML: the error is at line {}, column {} ({hidden})",
            at.line(),
            at.column()
        ),
        None => format!("it is not valid kubeconfig YAML ({hidden})"),
    }
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
