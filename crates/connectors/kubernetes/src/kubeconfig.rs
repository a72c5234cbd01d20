//! Kubeconfig handling with kube's own types: reading and merging local files
//! (KUBECONFIG rules), reducing a kubeconfig to one context, building the entries a
//! connector stands for, and writing them into a user's kubeconfig atomically.

use std::io::Write as _;
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
            reason: e.to_string(),
        })?;
        merged = Some(match merged {
            None => next,
            Some(m) => m
                .merge(next)
                .map_err(|e| KubeConnectorError::ReadKubeconfig {
                    path: path.clone(),
                    reason: e.to_string(),
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
    let fail = |reason: String| KubeConnectorError::WriteKubeconfig {
        path: path.to_owned(),
        reason,
    };
    // Replace the file a symlink points to, not the symlink.
    let target = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(path)
            .map_err(|e| fail(format!("cannot resolve the symlink: {e}")))?,
        _ => path.to_owned(),
    };
    let mut kubeconfig = match std::fs::read_to_string(&target) {
        Ok(text) if text.trim().is_empty() => Kubeconfig::default(),
        // Not `read_from`: it would rewrite the relative paths of other entries.
        Ok(text) => Kubeconfig::from_yaml(&text)
            .map_err(|e| fail(format!("it is not a valid kubeconfig: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Kubeconfig::default(),
        Err(e) => return Err(fail(e.to_string())),
    };
    upsert(&mut kubeconfig, entries);
    let yaml = serde_norway::to_string(&kubeconfig)
        .map_err(|e| fail(format!("cannot serialize it: {e}")))?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    // Created with mode 0600 on Unix; removed on drop unless persisted.
    let mut temp = tempfile::Builder::new()
        .prefix(".stepstack-kubeconfig-")
        .tempfile_in(&dir)
        .map_err(|e| {
            fail(format!(
                "cannot create a temporary file in {}: {e}",
                dir.display()
            ))
        })?;
    temp.write_all(yaml.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| fail(e.to_string()))?;
    temp.persist(&target)
        .map_err(|e| fail(e.error.to_string()))?;
    Ok(())
}

/// Puts the entries of `new` into `kubeconfig`, replacing those with the same names, and
/// makes `new`'s current context current.
pub(crate) fn upsert(kubeconfig: &mut Kubeconfig, new: Kubeconfig) {
    fn put<T>(list: &mut Vec<T>, items: Vec<T>, name: impl Fn(&T) -> &str) {
        for item in items {
            match list.iter_mut().find(|x| name(x) == name(&item)) {
                Some(slot) => *slot = item,
                None => list.push(item),
            }
        }
    }
    put(&mut kubeconfig.clusters, new.clusters, |c| &c.name);
    put(&mut kubeconfig.auth_infos, new.auth_infos, |u| &u.name);
    put(&mut kubeconfig.contexts, new.contexts, |c| &c.name);
    if new.current_context.is_some() {
        kubeconfig.current_context = new.current_context;
    }
    kubeconfig
        .api_version
        .get_or_insert_with(|| "v1".to_owned());
    kubeconfig.kind.get_or_insert_with(|| "Config".to_owned());
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

    fn new_entries(name: &str, server: &str) -> Kubeconfig {
        let cluster = NamedCluster {
            name: name.to_owned(),
            cluster: Some(Cluster {
                server: Some(server.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        Kubeconfig {
            clusters: vec![cluster],
            auth_infos: vec![NamedAuthInfo {
                name: name.to_owned(),
                auth_info: Some(AuthInfo::default()),
                ..Default::default()
            }],
            contexts: vec![NamedContext {
                name: name.to_owned(),
                context: Some(Context {
                    cluster: name.to_owned(),
                    user: Some(name.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            current_context: Some(name.to_owned()),
            ..Default::default()
        }
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn login_adds_and_updates_entries_keeping_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, EXISTING).unwrap();
        write_login(&path, new_entries("prod", "https://prod:6443")).unwrap();
        write_login(&path, new_entries("prod", "https://prod-2:6443")).unwrap();
        let written = Kubeconfig::from_yaml(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written.current_context.as_deref(), Some("prod"));
        assert_eq!(written.contexts.len(), 2);
        assert_eq!(written.clusters.len(), 2);
        let other = written.clusters.iter().find(|c| c.name == "other").unwrap();
        // The relative path of the other cluster is kept as written.
        assert_eq!(
            other
                .cluster
                .as_ref()
                .unwrap()
                .certificate_authority
                .as_deref(),
            Some("relative/ca.crt")
        );
        let other_ctx = written.contexts.iter().find(|c| c.name == "other").unwrap();
        assert_eq!(
            other_ctx.context.as_ref().unwrap().namespace.as_deref(),
            Some("team")
        );
        let prod = written.clusters.iter().find(|c| c.name == "prod").unwrap();
        assert_eq!(
            prod.cluster.as_ref().unwrap().server.as_deref(),
            Some("https://prod-2:6443")
        );
        assert_eq!(files_in(dir.path()), ["config"]);
    }

    #[test]
    fn login_creates_a_missing_file_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".kube").join("config");
        write_login(&path, new_entries("prod", "https://prod:6443")).unwrap();
        let written = Kubeconfig::read_from(&path).unwrap();
        assert_eq!(written.contexts.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the kubeconfig holds secrets: {mode:o}");
        }
    }

    #[test]
    fn a_broken_kubeconfig_is_left_alone_and_no_temporary_file_remains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "clusters: [oops").unwrap();
        let err = write_login(&path, new_entries("prod", "https://prod:6443")).unwrap_err();
        assert!(
            err.to_string().contains("is not a valid kubeconfig"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "clusters: [oops");
        assert_eq!(files_in(dir.path()), ["config"]);
    }

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
