//! `login`: writes a kubeconfig context for a GKE cluster (server, CA, the current access
//! token) and makes it current, as ZenML's GKE login does.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use secrecy::SecretString;

/// Why the kubeconfig could not be written.
#[derive(Debug)]
pub(crate) struct WriteError {
    pub(crate) path: PathBuf,
    pub(crate) reason: String,
}

/// The entries of context `name`: `server`, the CA (PEM) when verified against it, and
/// the bearer token.
pub(crate) fn entries(
    name: &str,
    server: &str,
    ca_pem: Option<&str>,
    token: SecretString,
) -> Kubeconfig {
    let cluster = Cluster {
        server: Some(server.to_owned()),
        certificate_authority_data: ca_pem
            .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem)),
        ..Default::default()
    };
    let user = AuthInfo {
        token: Some(token),
        ..Default::default()
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

/// Merges `new` into the kubeconfig at `path` (entries with the same names replaced,
/// others kept as written) and writes it through a temporary file and a rename.
pub(crate) fn write(path: &Path, new: Kubeconfig) -> Result<(), WriteError> {
    let fail = |reason: String| WriteError {
        path: path.to_owned(),
        reason,
    };
    let target = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(path)
            .map_err(|e| fail(format!("cannot resolve the symlink: {e}")))?,
        _ => path.to_owned(),
    };
    let mut kubeconfig = match std::fs::read_to_string(&target) {
        Ok(text) if text.trim().is_empty() => Kubeconfig::default(),
        Ok(text) => Kubeconfig::from_yaml(&text)
            .map_err(|e| fail(format!("it is not a valid kubeconfig: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Kubeconfig::default(),
        Err(e) => return Err(fail(e.to_string())),
    };
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
    kubeconfig.current_context = new.current_context;
    kubeconfig
        .api_version
        .get_or_insert_with(|| "v1".to_owned());
    kubeconfig.kind.get_or_insert_with(|| "Config".to_owned());
    let yaml = serde_norway::to_string(&kubeconfig)
        .map_err(|e| fail(format!("cannot serialize it: {e}")))?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    // Mode 0600 on Unix; removed on drop unless persisted, so nothing is left behind.
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
