//! `configure_local_client` (login): a kubeconfig context for an EKS cluster.

use std::path::Path;

use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use secrecy::SecretString;

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
pub(crate) fn write_login(path: &Path, entry: LoginEntry) -> AwsResult<()> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        AwsError::Kubeconfig(format!(
            "could not {what} the kubeconfig {}: {e}",
            path.display()
        ))
    };
    let mut config = if path.exists() {
        Kubeconfig::read_from(path).map_err(|e| fail("read", &e))?
    } else {
        Kubeconfig::default()
    };
    let name = entry.name.clone();
    config.clusters.retain(|c| c.name != name);
    config.clusters.push(NamedCluster {
        name: name.clone(),
        cluster: Some(Cluster {
            server: Some(entry.server),
            certificate_authority_data: entry.certificate_authority_data,
            ..Default::default()
        }),
        ..Default::default()
    });
    config.auth_infos.retain(|a| a.name != name);
    config.auth_infos.push(NamedAuthInfo {
        name: name.clone(),
        auth_info: Some(AuthInfo {
            token: Some(entry.token),
            ..Default::default()
        }),
        ..Default::default()
    });
    config.contexts.retain(|c| c.name != name);
    config.contexts.push(NamedContext {
        name: name.clone(),
        context: Some(Context {
            cluster: name.clone(),
            user: Some(name.clone()),
            ..Default::default()
        }),
        ..Default::default()
    });
    config.current_context = Some(name);
    if config.api_version.is_none() {
        config.api_version = Some("v1".into());
        config.kind = Some("Config".into());
    }
    let yaml = serde_norway::to_string(&config).map_err(|e| fail("serialize", &e))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| fail("create the directory of", &e))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail("write", &e))?;
    std::io::Write::write_all(&mut file, yaml.as_bytes()).map_err(|e| fail("write", &e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail("protect", &e))?;
    }
    file.persist(path).map_err(|e| fail("replace", &e.error))?;
    Ok(())
}
