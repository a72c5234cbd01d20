//! A container's environment: `envFrom`, `env` (plain values, `$(VAR)` references,
//! secret/config-map keys, downward API fields and resource fields), and the `$(VAR)`
//! expansion of `command` and `args`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::runtime::quantity::{Resources, parse_milli};

/// Where a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A ConfigMap (`data` and `binaryData`).
    ConfigMap,
    /// A Secret (`data`, decoded).
    Secret,
}

/// Looks up the key/value data of a config map or secret in the pod's namespace.
pub(crate) trait Lookup {
    /// The data, or `None` when the object doesn't exist.
    fn data(&self, source: Source, name: &str) -> Option<BTreeMap<String, Vec<u8>>>;
}

/// Why a container's config can't be built (`CreateContainerConfigError`).
pub(crate) type ConfigError = String;

fn not_found(source: Source, name: &str) -> String {
    match source {
        Source::ConfigMap => format!("configmap \"{name}\" not found"),
        Source::Secret => format!("secret \"{name}\" not found"),
    }
}

fn missing_key(source: Source, ns: &str, name: &str, key: &str) -> String {
    let kind = match source {
        Source::ConfigMap => "ConfigMap",
        Source::Secret => "Secret",
    };
    format!("couldn't find key {key} in {kind} {ns}/{name}")
}

/// Expands `$(NAME)` from `vars`; `$$(` is an escaped `$(`; unknown references stay as
/// written (as Kubernetes does).
pub(crate) fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward-API `fieldRef` path.
pub(crate) fn field_value(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<Option<String>> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(Some(
            map.and_then(|m| m.get(key)).cloned().unwrap_or_default(),
        ))
    };
    if let Some(v) = keyed("metadata.labels['", meta.labels.as_ref()) {
        return v;
    }
    if let Some(v) = keyed("metadata.annotations['", meta.annotations.as_ref()) {
        return v;
    }
    let fmt_map = |m: Option<&BTreeMap<String, String>>| {
        m.map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
    };
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => fmt_map(meta.labels.as_ref()),
        "metadata.annotations" => fmt_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        _ => return None,
    })
}

/// The value of a `resourceFieldRef` (`limits.cpu`, `requests.memory`, ...) with its
/// divisor, rounded up as the kubelet does. A missing limit falls back to the node's
/// allocatable amount.
fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    node_allocatable: &Resources,
) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let res = container.resources.as_ref();
    let list = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return None,
    };
    let amount = Resources::from_quantities(list).0.get(name).copied();
    let amount = match (amount, kind) {
        (Some(a), _) => a,
        (None, "limits") => node_allocatable.get(name),
        (None, _) => 0,
    };
    let divisor = divisor
        .and_then(parse_milli)
        .filter(|d| *d > 0)
        .unwrap_or(1000);
    let v = (amount + divisor - 1) / divisor;
    Some(
        v.max(if name == "cpu" && amount > 0 { 1 } else { 0 })
            .to_string(),
    )
}

/// Whether a name is a valid environment variable name (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// Builds the container's environment, in Kubernetes order (`envFrom` first, then `env`,
/// later entries overriding earlier ones).
pub(crate) fn resolve(
    pod: &Pod,
    container: &Container,
    lookup: &dyn Lookup,
    pod_ip: &str,
    host_ip: &str,
    node_allocatable: &Resources,
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |vars: &mut BTreeMap<String, String>, k: String, v: String| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (source, name, optional) = if let Some(cm) = &from.config_map_ref {
            (
                Source::ConfigMap,
                cm.name.clone(),
                cm.optional.unwrap_or(false),
            )
        } else if let Some(s) = &from.secret_ref {
            (Source::Secret, s.name.clone(), s.optional.unwrap_or(false))
        } else {
            continue;
        };
        match lookup.data(source, &name) {
            Some(data) => {
                for (k, v) in data {
                    let key = format!("{prefix}{k}");
                    if valid_env_name(&key) {
                        set(&mut vars, key, String::from_utf8_lossy(&v).into_owned());
                    }
                }
            }
            None if optional => {}
            None => return Err(not_found(source, &name)),
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(src) = &e.value_from {
            if let Some(r) = &src.config_map_key_ref {
                match key_value(lookup, Source::ConfigMap, ns, &r.name, &r.key, r.optional)? {
                    Some(v) => v,
                    None => continue,
                }
            } else if let Some(r) = &src.secret_key_ref {
                match key_value(lookup, Source::Secret, ns, &r.name, &r.key, r.optional)? {
                    Some(v) => v,
                    None => continue,
                }
            } else if let Some(f) = &src.field_ref {
                field_value(pod, &f.field_path, pod_ip, host_ip).unwrap_or_default()
            } else if let Some(r) = &src.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|c| !c.is_empty()) {
                    Some(name) => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.iter().find(|c| c.name == name))
                        .unwrap_or(container),
                    None => container,
                };
                resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    node_allocatable,
                )
                .unwrap_or_default()
            } else {
                String::new()
            }
        } else {
            expand(e.value.as_deref().unwrap_or(""), &vars)
        };
        set(&mut vars, e.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

fn key_value(
    lookup: &dyn Lookup,
    source: Source,
    ns: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, ConfigError> {
    let optional = optional.unwrap_or(false);
    match lookup.data(source, name) {
        None if optional => Ok(None),
        None => Err(not_found(source, name)),
        Some(data) => match data.get(key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if optional => Ok(None),
            None => Err(missing_key(source, ns, name, key)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fake;
    impl Lookup for Fake {
        fn data(&self, source: Source, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
            match (source, name) {
                (Source::ConfigMap, "cfg") => Some(
                    [
                        ("MODE".to_string(), b"fast".to_vec()),
                        ("bad name".into(), b"x".to_vec()),
                    ]
                    .into(),
                ),
                (Source::Secret, "creds") => {
                    Some([("token".to_string(), b"s3cret".to_vec())].into())
                }
                _ => None,
            }
        }
    }

    fn pod(env: serde_json::Value, env_from: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"app": "demo"}, "annotations": {"batch.kubernetes.io/job-completion-index": "2"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "default", "containers": [{
                "name": "main", "image": "busybox", "env": env, "envFrom": env_from,
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}]}
        }))
        .unwrap()
    }

    fn run(p: &Pod) -> Result<Vec<(String, String)>, String> {
        let c = &p.spec.as_ref().unwrap().containers[0];
        let mut alloc = Resources::default();
        alloc.0.insert("cpu".into(), 8000);
        resolve(p, c, &Fake, "127.0.0.1", "127.0.0.1", &alloc)
    }

    #[test]
    fn resolves_all_sources() {
        let p = pod(
            json!([
                {"name": "A", "value": "1"},
                {"name": "B", "value": "$(A)-$(MODE)-$$(A)-$(NOPE)"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IDX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
                {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
            ]),
            json!([{"configMapRef": {"name": "cfg"}}, {"prefix": "S_", "secretRef": {"name": "creds"}}]),
        );
        let env: BTreeMap<_, _> = run(&p).unwrap().into_iter().collect();
        assert_eq!(env["MODE"], "fast");
        assert!(!env.contains_key("bad name"));
        assert_eq!(env["S_token"], "s3cret");
        assert_eq!(env["B"], "1-fast-$(A)-$(NOPE)");
        assert_eq!(env["TOKEN"], "s3cret");
        assert_eq!(env["NAME"], "p");
        assert_eq!(env["APP"], "demo");
        assert_eq!(env["IDX"], "2");
        assert_eq!(env["NODE"], "node-1");
        assert_eq!(env["IP"], "127.0.0.1");
        assert_eq!(env["MEM"], "64");
        assert_eq!(env["CPU"], "1");
        assert_eq!(env["CPU_LIMIT"], "8");
        assert!(!env.contains_key("OPT"));
    }

    #[test]
    fn missing_sources_give_real_messages() {
        let e = run(&pod(
            json!([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]),
            json!([]),
        ))
        .unwrap_err();
        assert_eq!(e, "secret \"nope\" not found");
        let e = run(&pod(
            json!([{"name": "T", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]),
            json!([]),
        ))
        .unwrap_err();
        assert_eq!(e, "couldn't find key k in ConfigMap ns/cfg");
        let e = run(&pod(json!([]), json!([{"configMapRef": {"name": "gone"}}]))).unwrap_err();
        assert_eq!(e, "configmap \"gone\" not found");
        assert!(
            run(&pod(
                json!([]),
                json!([{"configMapRef": {"name": "gone", "optional": true}}])
            ))
            .is_ok()
        );
    }

    #[test]
    fn expansion_edge_cases() {
        let vars: BTreeMap<String, String> = [("X".to_string(), "y".to_string())].into();
        assert_eq!(expand("$(X)$(X", &vars), "y$(X");
        assert_eq!(expand("a$b$", &vars), "a$b$");
        assert_eq!(expand("$$$(X)", &vars), "$y");
        assert_eq!(expand("", &vars), "");
    }
}
