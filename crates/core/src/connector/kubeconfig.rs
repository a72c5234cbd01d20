//! Writing a login into the user's kubeconfig, shared by every connector's
//! `configure_local_client`: the new cluster, user and context replace entries of the
//! same names, everything else stays as written, and the file is replaced atomically
//! (a temporary file in the same directory, then a rename), readable by its owner only.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use secrecy::SecretString;

/// Why a kubeconfig could not be written.
#[derive(Debug, thiserror::Error)]
#[error("could not write the kubeconfig {}: {reason}", path.display())]
pub struct KubeconfigWriteError {
    /// The kubeconfig file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// The cluster, user and context `name` for a bearer-token login, with `name` current.
/// `certificate_authority_data` is base64 PEM, as kubeconfigs hold it.
pub fn token_login(
    name: &str,
    server: &str,
    certificate_authority_data: Option<String>,
    token: SecretString,
) -> Kubeconfig {
    let cluster = Cluster {
        server: Some(server.to_owned()),
        certificate_authority_data,
        ..Default::default()
    };
    let user = AuthInfo {
        token: Some(token),
        ..Default::default()
    };
    single_context(name, cluster, user, None)
}

/// A kubeconfig of one cluster, user and context, all named `name`, with `name` current
/// and `namespace` (when given) as the context's namespace: what a login writes.
pub fn single_context(
    name: &str,
    cluster: Cluster,
    user: AuthInfo,
    namespace: Option<String>,
) -> Kubeconfig {
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
                namespace,
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

/// [`write_login`] on a blocking thread, for connectors' async `configure_local_client`;
/// a writer that panicked is reported as a failed write of `path`.
pub async fn write_login_async(
    path: PathBuf,
    entries: Kubeconfig,
) -> Result<(), KubeconfigWriteError> {
    let at = path.clone();
    tokio::task::spawn_blocking(move || write_login(&at, entries))
        .await
        .unwrap_or_else(|e| {
            Err(KubeconfigWriteError {
                path,
                reason: format!("the writer panicked: {e}"),
            })
        })
}

/// The kubeconfig a login writes, as kubectl picks the file it modifies: the first entry
/// of `KUBECONFIG` (the variable's value, `kubeconfig_var`), else `~/.kube/config`.
pub fn login_path(kubeconfig_var: Option<&OsStr>, home: Option<&Path>) -> Option<PathBuf> {
    match kubeconfig_var.filter(|v| !v.is_empty()) {
        Some(list) => std::env::split_paths(list).find(|p| !p.as_os_str().is_empty()),
        None => home.map(|h| h.join(".kube").join("config")),
    }
}

/// How long a login waits for another writer to release the kubeconfig's lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Merges `entries` into the kubeconfig at `path` (created if missing, following a
/// symlink to the real file) and replaces the file atomically; a file that is not a
/// valid kubeconfig is left untouched and no temporary file remains on any error.
///
/// The read-modify-write holds client-go's lock (`<file>.lock`, created exclusively),
/// so concurrent logins and `kubectl config` commands do not lose each other's entries.
pub fn write_login(path: &Path, entries: Kubeconfig) -> Result<(), KubeconfigWriteError> {
    write_login_waiting(path, entries, LOCK_WAIT)
}

fn write_login_waiting(
    path: &Path,
    entries: Kubeconfig,
    lock_wait: Duration,
) -> Result<(), KubeconfigWriteError> {
    let fail = |reason: String| KubeconfigWriteError {
        path: path.to_owned(),
        reason,
    };
    // Replace the file a symlink points to, not the symlink.
    let target = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(path)
            .map_err(|e| fail(format!("cannot resolve the symlink: {e}")))?,
        _ => path.to_owned(),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let _lock = KubeconfigLock::acquire(&target, lock_wait).map_err(fail)?;
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

/// client-go's kubeconfig lock: the file `<kubeconfig>.lock`, created exclusively while
/// the kubeconfig is rewritten and removed afterwards.
struct KubeconfigLock {
    path: PathBuf,
}

impl KubeconfigLock {
    fn acquire(kubeconfig: &Path, wait: Duration) -> Result<Self, String> {
        let mut name = kubeconfig.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let deadline = Instant::now() + wait;
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(KubeconfigLock { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "another process has been writing it for {}s (its lock file {} exists); \
                             if no kubectl or stepstack command is running, delete the lock file and try again",
                            wait.as_secs(),
                            path.display()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(format!(
                        "cannot create its lock file {}: {e}",
                        path.display()
                    ));
                }
            }
        }
    }
}

impl Drop for KubeconfigLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(lock = %self.path.display(), error = %e, "could not remove the kubeconfig lock file");
        }
    }
}

/// Puts the entries of `new` into `kubeconfig`, replacing those with the same names, and
/// makes `new`'s current context current.
pub fn upsert(kubeconfig: &mut Kubeconfig, new: Kubeconfig) {
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

    fn login(server: &str) -> Kubeconfig {
        token_login("prod", server, None, SecretString::from("t0ken"))
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
        write_login(&path, login("https://prod:6443")).unwrap();
        write_login(&path, login("https://prod-2:6443")).unwrap();
        let written = Kubeconfig::from_yaml(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written.current_context.as_deref(), Some("prod"));
        assert_eq!((written.contexts.len(), written.clusters.len()), (2, 2));
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
    fn login_creates_a_missing_file_and_directory_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".kube").join("config");
        write_login(&path, login("https://prod:6443")).unwrap();
        let written = Kubeconfig::read_from(&path).unwrap();
        assert_eq!(written.contexts.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the kubeconfig holds secrets: {mode:o}");
        }
    }

    #[tokio::test]
    async fn the_async_writer_writes_the_same_and_reports_the_same_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        write_login_async(path.clone(), login("https://prod:6443"))
            .await
            .unwrap();
        let written = Kubeconfig::read_from(&path).unwrap();
        assert_eq!(written.current_context.as_deref(), Some("prod"));
        std::fs::write(&path, "clusters: [oops").unwrap();
        let err = write_login_async(path.clone(), login("https://prod:6443"))
            .await
            .unwrap_err();
        assert_eq!(err.path, path);
        assert!(err.reason.contains("is not a valid kubeconfig"), "{err}");
    }

    #[test]
    fn a_broken_kubeconfig_is_left_alone_and_no_temporary_file_remains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "clusters: [oops").unwrap();
        let err = write_login(&path, login("https://prod:6443")).unwrap_err();
        assert!(
            err.to_string().contains("is not a valid kubeconfig"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "clusters: [oops");
        assert_eq!(files_in(dir.path()), ["config"]);
    }

    #[test]
    fn concurrent_logins_keep_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::thread::scope(|scope| {
            for i in 0..8 {
                let path = &path;
                scope.spawn(move || {
                    let name = format!("cluster-{i}");
                    let entries =
                        token_login(&name, "https://x:6443", None, SecretString::from("t"));
                    write_login(path, entries).unwrap();
                });
            }
        });
        let written = Kubeconfig::from_yaml(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut names: Vec<&str> = written.contexts.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        let expected: Vec<String> = (0..8).map(|i| format!("cluster-{i}")).collect();
        assert_eq!(names, expected);
        assert_eq!(files_in(dir.path()), ["config"], "the lock file is gone");
    }

    #[test]
    fn a_lock_held_by_another_writer_is_waited_for_then_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(dir.path().join("config.lock"), "").unwrap();
        let err = write_login_waiting(&path, login("https://prod:6443"), Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.lock"), "{err}");
        assert!(err.contains("delete the lock file"), "{err}");
        assert!(!path.exists(), "nothing was written");
        // The other writer's lock is not ours to remove.
        assert!(dir.path().join("config.lock").exists());
    }

    #[test]
    fn login_path_is_the_first_kubeconfig_entry_else_the_home_default() {
        let home = Path::new("/home/me");
        let list = std::env::join_paths(["", "/a/config", "/b/config"]).unwrap();
        assert_eq!(
            login_path(Some(&list), Some(home)),
            Some(PathBuf::from("/a/config"))
        );
        assert_eq!(
            login_path(Some(OsStr::new("")), Some(home)),
            Some(PathBuf::from("/home/me/.kube/config"))
        );
        assert_eq!(login_path(None, None), None);
    }
}
