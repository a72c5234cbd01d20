//! Volumes as local directories.
//!
//! A container can't see real mount points, so every pod gets a root directory
//! (`<runtime root>/pods/<namespace>/<pod>-<uid prefix>/`) which is also each
//! container's working directory (or `<pod root>/<workingDir>` when `workingDir` is set).
//! Each volume is a directory under `<pod root>/.volumes/<name>/` (a `hostPath` volume is
//! the host path itself), and each `volumeMount` is a symlink at `<pod root>/<mountPath>`
//! pointing to the volume (or to its `subPath`). So a container that mounts a volume at
//! `/data` finds it at `./data` relative to its working directory, or at
//! `$TESTKIT_POD_ROOT/data`.
//!
//! Supported: `emptyDir`, `hostPath` (types `""`, `Directory`, `DirectoryOrCreate`,
//! `File`, `FileOrCreate`), `configMap` and `secret` (all keys or `items`), `projected`
//! (configMap, secret and serviceAccountToken sources) and `downwardAPI` (fieldRef
//! items). Any other volume type is an empty directory.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};

use super::env::{Lookup, Source, field_value};

/// Joins a container path (`/data/x`) under `root`, dropping `..` and the leading `/`.
pub(crate) fn under_root(root: &Path, container_path: &str) -> PathBuf {
    let mut out = root.to_path_buf();
    for c in Path::new(container_path).components() {
        if let Component::Normal(part) = c {
            out.push(part);
        }
    }
    out
}

fn mount_error(volume: &str, detail: &str) -> String {
    format!("MountVolume.SetUp failed for volume \"{volume}\" : {detail}")
}

fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    kind: &str,
    optional: bool,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let pairs: Vec<(String, &Vec<u8>)> = match items {
        Some(items) => {
            let mut out = Vec::new();
            for it in items {
                match data.get(&it.key) {
                    Some(v) => out.push((it.path.clone(), v)),
                    None if optional => {}
                    None => {
                        let what = if kind == "secret" { "secret" } else { "config" };
                        return Err(format!(
                            "{kind} references non-existent {what} key: {}",
                            it.key
                        ));
                    }
                }
            }
            out
        }
        None => data.iter().map(|(k, v)| (k.clone(), v)).collect(),
    };
    for (path, value) in pairs {
        let target = under_root(dir, &path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&target, value).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Sets up every volume of the pod; returns each volume's local directory (or file).
/// `Err` is the `FailedMount` message; the kubelet retries.
pub(crate) fn prepare(
    pod: &Pod,
    root: &Path,
    lookup: &dyn Lookup,
    pod_ip: &str,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut out = BTreeMap::new();
    let volumes: &[Volume] = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    for v in volumes {
        let dir = root.join(".volumes").join(&v.name);
        let io = |e: std::io::Error| mount_error(&v.name, &e.to_string());
        if let Some(hp) = &v.host_path {
            let path = PathBuf::from(&hp.path);
            match hp.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" | "" if !path.exists() => {
                    std::fs::create_dir_all(&path).map_err(io)?;
                }
                "Directory" if !path.is_dir() => {
                    return Err(mount_error(
                        &v.name,
                        &format!("hostPath type check failed: {} is not a directory", hp.path),
                    ));
                }
                "FileOrCreate" if !path.exists() => {
                    if let Some(p) = path.parent() {
                        std::fs::create_dir_all(p).map_err(io)?;
                    }
                    std::fs::write(&path, b"").map_err(io)?;
                }
                "File" if !path.is_file() => {
                    return Err(mount_error(
                        &v.name,
                        &format!("hostPath type check failed: {} is not a file", hp.path),
                    ));
                }
                _ => {}
            }
            out.insert(v.name.clone(), path);
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        if let Some(cm) = &v.config_map {
            let optional = cm.optional.unwrap_or(false);
            match lookup.data(Source::ConfigMap, &cm.name) {
                Some(data) => write_items(&dir, &data, cm.items.as_ref(), "configmap", optional)
                    .map_err(|e| mount_error(&v.name, &e))?,
                None if optional => {}
                None => {
                    return Err(mount_error(
                        &v.name,
                        &format!("configmap \"{}\" not found", cm.name),
                    ));
                }
            }
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let optional = s.optional.unwrap_or(false);
            match lookup.data(Source::Secret, &name) {
                Some(data) => write_items(&dir, &data, s.items.as_ref(), "secret", optional)
                    .map_err(|e| mount_error(&v.name, &e))?,
                None if optional => {}
                None => {
                    return Err(mount_error(
                        &v.name,
                        &format!("secret \"{name}\" not found"),
                    ));
                }
            }
        } else if let Some(p) = &v.projected {
            for src in p.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    let optional = cm.optional.unwrap_or(false);
                    match lookup.data(Source::ConfigMap, &cm.name) {
                        Some(data) => {
                            write_items(&dir, &data, cm.items.as_ref(), "configmap", optional)
                                .map_err(|e| mount_error(&v.name, &e))?
                        }
                        None if optional => {}
                        None => {
                            return Err(mount_error(
                                &v.name,
                                &format!("configmap \"{}\" not found", cm.name),
                            ));
                        }
                    }
                }
                if let Some(s) = &src.secret {
                    let optional = s.optional.unwrap_or(false);
                    match lookup.data(Source::Secret, &s.name) {
                        Some(data) => {
                            write_items(&dir, &data, s.items.as_ref(), "secret", optional)
                                .map_err(|e| mount_error(&v.name, &e))?
                        }
                        None if optional => {}
                        None => {
                            return Err(mount_error(
                                &v.name,
                                &format!("secret \"{}\" not found", s.name),
                            ));
                        }
                    }
                }
                if let Some(t) = &src.service_account_token {
                    std::fs::write(under_root(&dir, &t.path), b"testkit-projected-token")
                        .map_err(io)?;
                }
            }
        } else if let Some(d) = &v.downward_api {
            for item in d.items.iter().flatten() {
                if let Some(f) = &item.field_ref {
                    let value = field_value(pod, &f.field_path, pod_ip, pod_ip).unwrap_or_default();
                    let target = under_root(&dir, &item.path);
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent).map_err(io)?;
                    }
                    std::fs::write(target, value).map_err(io)?;
                }
            }
        }
        out.insert(v.name.clone(), dir);
    }
    Ok(out)
}

/// Creates the container's mount symlinks under the pod root. A mount of an unknown
/// volume is an error (real validation rejects such pods).
pub(crate) fn mount(
    container: &Container,
    root: &Path,
    volumes: &BTreeMap<String, PathBuf>,
) -> Result<(), String> {
    for m in container.volume_mounts.iter().flatten() {
        let Some(source) = volumes.get(&m.name) else {
            return Err(format!(
                "volumeMount \"{}\" refers to an unknown volume",
                m.name
            ));
        };
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let p = under_root(source, sub);
                if !p.exists() {
                    std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
                }
                p
            }
            None => source.clone(),
        };
        let target = under_root(root, &m.mount_path);
        if target == root {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        match std::fs::read_link(&target) {
            Ok(existing) if existing == source => continue,
            Ok(_) => {
                std::fs::remove_file(&target).map_err(|e| e.to_string())?;
            }
            Err(_) if target.exists() => {
                tracing::warn!(path = %target.display(), "mount path exists and is not a mount; leaving it");
                continue;
            }
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&source, &target).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fake;
    impl Lookup for Fake {
        fn data(&self, source: Source, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
            match (source, name) {
                (Source::ConfigMap, "cfg") => {
                    Some([("app.yaml".to_string(), b"a: 1".to_vec())].into())
                }
                (Source::Secret, "creds") => Some([("token".to_string(), b"t".to_vec())].into()),
                _ => None,
            }
        }
    }

    #[test]
    fn volumes_and_mounts() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host");
        let root = tmp.path().join("pod");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {
                "containers": [{"name": "main", "image": "x", "volumeMounts": [
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "cfg", "mountPath": "/etc/app"},
                    {"name": "creds", "mountPath": "/var/run/creds"},
                    {"name": "host", "mountPath": "/host"},
                    {"name": "scratch", "mountPath": "/sub", "subPath": "inner"},
                    {"name": "info", "mountPath": "/etc/podinfo"},
                ]}],
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "cfg", "configMap": {"name": "cfg"}},
                    {"name": "creds", "secret": {"secretName": "creds", "items": [{"key": "token", "path": "dir/tok"}]}},
                    {"name": "host", "hostPath": {"path": host.to_str().unwrap(), "type": "DirectoryOrCreate"}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                ]
            }
        }))
        .unwrap();
        let vols = prepare(&pod, &root, &Fake, "127.0.0.1").unwrap();
        mount(&pod.spec.as_ref().unwrap().containers[0], &root, &vols).unwrap();
        // Mounting twice is fine.
        mount(&pod.spec.as_ref().unwrap().containers[0], &root, &vols).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/app/app.yaml")).unwrap(),
            "a: 1"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("var/run/creds/dir/tok")).unwrap(),
            "t"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/podinfo/labels")).unwrap(),
            "a=\"b\""
        );
        std::fs::write(root.join("scratch/f"), "x").unwrap();
        assert!(root.join(".volumes/scratch/f").exists());
        std::fs::write(root.join("host/h"), "x").unwrap();
        assert!(host.join("h").exists());
        assert!(root.join(".volumes/scratch/inner").is_dir());
    }

    #[test]
    fn missing_config_map_is_a_mount_error() {
        let tmp = tempfile::tempdir().unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [], "volumes": [{"name": "c", "configMap": {"name": "gone"}}]}
        }))
        .unwrap();
        let e = prepare(&pod, tmp.path(), &Fake, "").unwrap_err();
        assert_eq!(
            e,
            "MountVolume.SetUp failed for volume \"c\" : configmap \"gone\" not found"
        );
        assert_eq!(
            under_root(Path::new("/r"), "/../../etc/x"),
            PathBuf::from("/r/etc/x")
        );
    }
}
