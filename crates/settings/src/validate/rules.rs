//! Kubernetes rules checked on typed settings (after the structural walk).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration, Volume};

use crate::error::{IssueKind, Path, ValidationReport};
use crate::pod_settings::KubernetesPodSettings;
use crate::quantity::parse_quantity;
use crate::step_operator::KubernetesStepOperatorSettings;
use crate::validate::affinity::check_affinity;
use crate::validate::k8s_names::{
    check_dns1123_label, check_dns1123_subdomain, check_label_value, check_qualified_name,
};

/// Label keys that stepstack sets on every Job and pod.
pub const RESERVED_LABEL_KEYS: [&str; 5] = [
    "pipeline",
    "run",
    "step",
    "stepstack.dev/step-run-id",
    "app.kubernetes.io/managed-by",
];

/// Label-key prefix reserved for stepstack.
pub const RESERVED_LABEL_PREFIX: &str = "stepstack.dev/";

/// Whether `key` is a label key that users may not set.
pub fn is_reserved_label_key(key: &str) -> bool {
    RESERVED_LABEL_KEYS.contains(&key) || key.starts_with(RESERVED_LABEL_PREFIX)
}

pub(crate) fn check_settings(
    s: &KubernetesStepOperatorSettings,
    path: &Path,
    r: &mut ValidationReport,
) {
    if let Some(ps) = &s.pod_settings {
        check_pod_settings(ps, &path.key("pod_settings"), r);
    }
    if let Some(sa) = &s.service_account_name
        && let Err(e) = check_dns1123_subdomain(sa)
    {
        r.push(
            path.key("service_account_name").to_string(),
            IssueKind::InvalidValue,
            e,
        );
    }
    if let Some(ttl) = s.ttl_seconds_after_finished
        && i32::try_from(ttl).is_err()
    {
        r.push(
            path.key("ttl_seconds_after_finished").to_string(),
            IssueKind::InvalidValue,
            format!("must be at most {}", i32::MAX),
        );
    }
    if s.api_request_timeout == Some(0) {
        r.push(
            path.key("api_request_timeout").to_string(),
            IssueKind::InvalidValue,
            "must be at least 1 second",
        );
    }
    if s.retry.backoff < 1.0 || !s.retry.backoff.is_finite() {
        r.push(
            path.key("retry").key("backoff").to_string(),
            IssueKind::InvalidValue,
            "must be a finite number of at least 1",
        );
    }
    if s.pod_count > MAX_INDEXED_POD_COUNT {
        r.push(
            path.key("pod_count").to_string(),
            IssueKind::InvalidValue,
            format!(
                "must be at most {MAX_INDEXED_POD_COUNT}: the pods run as an Indexed Job, and Kubernetes refuses \
                 {INDEXED_COMPLETIONS_SOFT_LIMIT} or more completions with a parallelism above {INDEXED_HIGH_COMPLETIONS_PARALLELISM}"
            ),
        );
    }
    let csc = s
        .pod_settings
        .as_ref()
        .and_then(|p| p.container_security_context.as_ref());
    let privileged = s.privileged || csc.and_then(|c| c.privileged).unwrap_or(false);
    if privileged && csc.and_then(|c| c.allow_privilege_escalation) == Some(false) {
        r.push(
            path.key("pod_settings")
                .key("container_security_context")
                .key("allowPrivilegeEscalation")
                .to_string(),
            IssueKind::InvalidValue,
            "cannot be false when the container is privileged (Kubernetes refuses the pair); \
             drop one of them",
        );
    }
}

/// The most pods of one step: `completions` and `parallelism` of its Indexed Job both
/// equal `pod_count`, and the API server refuses completions of at least
/// 100,000 with a parallelism above 10,000 (`pkg/apis/batch/validation`).
pub const MAX_INDEXED_POD_COUNT: u32 = INDEXED_COMPLETIONS_SOFT_LIMIT - 1;
const INDEXED_COMPLETIONS_SOFT_LIMIT: u32 = 100_000;
const INDEXED_HIGH_COMPLETIONS_PARALLELISM: u32 = 10_000;

/// The pod DNS policies the API server accepts.
const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];

fn check_dns_policy(
    args: &BTreeMap<String, serde_json::Value>,
    path: &Path,
    r: &mut ValidationReport,
) {
    let Some(policy) = args.get("dnsPolicy").and_then(|v| v.as_str()) else {
        return;
    };
    let p = path.key("additional_pod_spec_args");
    if !DNS_POLICIES.contains(&policy) {
        r.push(
            p.key("dnsPolicy").to_string(),
            IssueKind::InvalidValue,
            format!(
                "unsupported value `{policy}`; supported values: {}",
                DNS_POLICIES.join(", ")
            ),
        );
    } else if policy == "None" {
        let nameservers = args
            .get("dnsConfig")
            .and_then(|c| c.get("nameservers"))
            .and_then(|n| n.as_array())
            .is_some_and(|n| !n.is_empty());
        if !nameservers {
            r.push(
                p.key("dnsConfig").key("nameservers").to_string(),
                IssueKind::MissingField,
                "dnsPolicy None needs at least one nameserver in dnsConfig.nameservers",
            );
        }
    }
}

pub(crate) fn check_pod_settings(
    ps: &KubernetesPodSettings,
    path: &Path,
    r: &mut ValidationReport,
) {
    check_label_map(&ps.node_selectors, &path.key("node_selectors"), false, r);
    check_dns_policy(&ps.additional_pod_spec_args, path, r);
    check_label_map(&ps.labels, &path.key("labels"), true, r);
    for key in ps.annotations.keys() {
        if let Err(e) = check_qualified_name(key) {
            r.push(
                path.key("annotations").key(key).to_string(),
                IssueKind::InvalidValue,
                format!("invalid annotation key: {e}"),
            );
        }
    }
    let annotation_bytes: usize = ps.annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if annotation_bytes > MAX_ANNOTATION_BYTES {
        r.push(
            path.key("annotations").to_string(),
            IssueKind::InvalidValue,
            format!(
                "the annotations total {annotation_bytes} bytes; Kubernetes accepts at most {MAX_ANNOTATION_BYTES} (256 KiB) per object; \
                 keep large data in a ConfigMap or volume instead"
            ),
        );
    }
    if let Some(affinity) = &ps.affinity {
        check_affinity(affinity, &path.key("affinity"), r);
    }
    for (i, t) in ps.tolerations.iter().enumerate() {
        check_toleration(t, &path.key("tolerations").index(i), r);
    }
    if let Some(res) = &ps.resources {
        check_resources(res, &path.key("resources"), r);
    }
    let declared = check_volumes(&ps.volumes, &path.key("volumes"), r);
    let mut mount_paths = BTreeSet::new();
    for (i, m) in ps.volume_mounts.iter().enumerate() {
        let p = path.key("volume_mounts").index(i);
        if !m.name.is_empty() && !declared.contains(m.name.as_str()) {
            let known = if declared.is_empty() {
                "no volumes are declared in pod_settings.volumes".to_string()
            } else {
                format!(
                    "declared volumes: {}",
                    declared.iter().copied().collect::<Vec<_>>().join(", ")
                )
            };
            r.push(
                p.key("name").to_string(),
                IssueKind::InvalidValue,
                format!(
                    "volume mount names no declared volume `{}`; {known}",
                    m.name
                ),
            );
        }
        if m.mount_path.is_empty() {
            r.push(
                p.key("mountPath").to_string(),
                IssueKind::InvalidValue,
                "must not be empty",
            );
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            r.push(
                p.key("mountPath").to_string(),
                IssueKind::InvalidValue,
                format!("`{}` is mounted twice", m.mount_path),
            );
        }
    }
    for (i, name) in ps.image_pull_secrets.iter().enumerate() {
        if let Err(e) = check_dns1123_subdomain(name) {
            r.push(
                path.key("image_pull_secrets").index(i).to_string(),
                IssueKind::InvalidValue,
                format!("invalid secret name: {e}"),
            );
        }
    }
    if let Some(s) = &ps.scheduler_name
        && let Err(e) = check_dns1123_subdomain(s)
    {
        r.push(
            path.key("scheduler_name").to_string(),
            IssueKind::InvalidValue,
            e,
        );
    }
    let mut env_names = BTreeMap::new();
    for (i, env) in ps.env.iter().enumerate() {
        let p = path.key("env").index(i);
        if let Err(problem) = check_env_var_name(&env.name) {
            r.push(p.key("name").to_string(), IssueKind::InvalidValue, problem);
        } else if let Some(first) = env_names.insert(env.name.as_str(), i) {
            r.push(
                p.key("name").to_string(),
                IssueKind::InvalidValue,
                format!(
                    "`{}` is also set by env[{first}]; Kubernetes would silently keep only the last one, so set it once",
                    env.name
                ),
            );
        }
        if env.value.is_some() && env.value_from.is_some() {
            r.push(
                p.to_string(),
                IssueKind::InvalidValue,
                "set either value or valueFrom, not both",
            );
        }
    }
    for (i, source) in ps.env_from.iter().enumerate() {
        let p = path.key("env_from").index(i);
        match (&source.config_map_ref, &source.secret_ref) {
            (Some(_), Some(_)) => r.push(
                p.to_string(),
                IssueKind::InvalidValue,
                "set either configMapRef or secretRef, not both",
            ),
            (None, None) => r.push(
                p.to_string(),
                IssueKind::InvalidValue,
                "set configMapRef or secretRef",
            ),
            _ => {}
        }
    }
}

/// The most bytes (keys plus values) the annotations of one object may hold.
const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// Environment variable names: any printable ASCII except `=` (the API server's rule
/// since relaxed environment variable validation became the default).
fn check_env_var_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(bad) = name.chars().find(|c| *c == '=' || !(' '..='~').contains(c)) {
        return Err(format!(
            "`{}` contains {bad:?}; environment variable names are printable ASCII without '='",
            name.escape_default()
        ));
    }
    Ok(())
}

/// Checks the keys and values of a label map (labels, node selectors, `matchLabels`);
/// `reserved` refuses the keys stepstack sets itself.
pub(crate) fn check_label_map(
    map: &BTreeMap<String, String>,
    path: &Path,
    reserved: bool,
    r: &mut ValidationReport,
) {
    for (key, value) in map {
        let p = path.key(key);
        if reserved && is_reserved_label_key(key) {
            r.push(
                p.to_string(),
                IssueKind::ReservedLabel,
                format!("label key `{key}` is reserved by stepstack (it identifies the step's Jobs and pods); choose another key"),
            );
            continue;
        }
        if let Err(e) = check_qualified_name(key) {
            r.push(
                p.to_string(),
                IssueKind::InvalidValue,
                format!("invalid label key: {e}"),
            );
        }
        if let Err(e) = check_label_value(value) {
            r.push(
                p.to_string(),
                IssueKind::InvalidValue,
                format!("invalid label value `{value}`: {e}"),
            );
        }
    }
}

fn check_toleration(t: &Toleration, path: &Path, r: &mut ValidationReport) {
    let key = t.key.as_deref().unwrap_or("");
    let operator = t.operator.as_deref().unwrap_or("Equal");
    if !key.is_empty()
        && let Err(e) = check_qualified_name(key)
    {
        r.push(
            path.key("key").to_string(),
            IssueKind::InvalidValue,
            format!("invalid taint key: {e}"),
        );
    }
    if key.is_empty() && operator != "Exists" {
        r.push(
            path.key("operator").to_string(),
            IssueKind::InvalidValue,
            "must be Exists when key is empty",
        );
    }
    if operator == "Exists" && t.value.as_deref().is_some_and(|v| !v.is_empty()) {
        r.push(
            path.key("value").to_string(),
            IssueKind::InvalidValue,
            "must be empty when operator is Exists",
        );
    }
    if operator == "Equal"
        && let Some(v) = &t.value
        && let Err(e) = check_label_value(v)
    {
        r.push(path.key("value").to_string(), IssueKind::InvalidValue, e);
    }
    if t.toleration_seconds.is_some() && t.effect.as_deref() != Some("NoExecute") {
        r.push(
            path.key("tolerationSeconds").to_string(),
            IssueKind::InvalidValue,
            "only allowed with effect NoExecute",
        );
    }
}

/// Whether a resource name is an extended resource (e.g. `nvidia.com/gpu`).
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.starts_with("kubernetes.io/") && !name.contains(".kubernetes.io/")
}

pub(crate) fn check_resources(res: &ResourceRequirements, path: &Path, r: &mut ValidationReport) {
    let mut parsed: [BTreeMap<&str, f64>; 2] = [BTreeMap::new(), BTreeMap::new()];
    for (slot, (field, map)) in [("requests", &res.requests), ("limits", &res.limits)]
        .into_iter()
        .enumerate()
    {
        for (name, q) in map.iter().flatten() {
            let p = path.key(field).key(name);
            if let Err(e) = check_qualified_name(name) {
                r.push(
                    p.to_string(),
                    IssueKind::InvalidValue,
                    format!("invalid resource name: {e}"),
                );
                continue;
            }
            match parse_quantity(&q.0) {
                Err(e) => r.push(
                    p.to_string(),
                    IssueKind::InvalidValue,
                    format!("invalid quantity `{}`: {e}", q.0),
                ),
                Ok(v) if v.value() < 0.0 => r.push(
                    p.to_string(),
                    IssueKind::InvalidValue,
                    format!("must not be negative, found `{}`", q.0),
                ),
                Ok(v) if is_extended(name) && v.value().fract() != 0.0 => r.push(
                    p.to_string(),
                    IssueKind::InvalidValue,
                    format!(
                        "extended resource `{name}` must be a whole number, found `{}`",
                        q.0
                    ),
                ),
                Ok(v) => {
                    parsed[slot].insert(name.as_str(), v.value());
                }
            }
        }
    }
    let [requests, limits] = parsed;
    for (name, request) in &requests {
        let Some(limit) = limits.get(name) else {
            if is_extended(name) {
                r.push(
                    path.key("limits").key(name).to_string(),
                    IssueKind::MissingField,
                    format!(
                        "extended resource `{name}` cannot be overcommitted: set its limit (equal to the request)"
                    ),
                );
            }
            continue;
        };
        let req_s = &res
            .requests
            .as_ref()
            .map(|m| m[*name].0.clone())
            .unwrap_or_default();
        let lim_s = &res
            .limits
            .as_ref()
            .map(|m| m[*name].0.clone())
            .unwrap_or_default();
        if is_extended(name) && request != limit {
            r.push(
                path.key("requests").key(name).to_string(),
                IssueKind::InvalidValue,
                format!("extended resource `{name}` request {req_s} must equal its limit {lim_s}"),
            );
        } else if request > limit {
            r.push(
                path.key("requests").key(name).to_string(),
                IssueKind::InvalidValue,
                format!("request {req_s} is above the limit {lim_s}; lower the request or raise the limit"),
            );
        }
    }
}

fn check_volumes<'a>(
    volumes: &'a [Volume],
    path: &Path,
    r: &mut ValidationReport,
) -> BTreeSet<&'a str> {
    let mut names = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = path.index(i);
        if let Err(e) = check_dns1123_label(&v.name) {
            r.push(
                p.key("name").to_string(),
                IssueKind::InvalidValue,
                format!("invalid volume name: {e}"),
            );
        }
        if !names.insert(v.name.as_str()) {
            r.push(
                p.key("name").to_string(),
                IssueKind::InvalidValue,
                format!("volume `{}` is declared twice", v.name),
            );
        }
        let sources = serde_json::to_value(v)
            .ok()
            .and_then(|j| {
                j.as_object().map(|o| {
                    o.keys()
                        .filter(|k| *k != "name")
                        .cloned()
                        .collect::<Vec<_>>()
                })
            })
            .unwrap_or_default();
        if sources.len() > 1 {
            r.push(
                p.to_string(),
                IssueKind::InvalidValue,
                format!(
                    "a volume has exactly one source, found {}",
                    sources.join(", ")
                ),
            );
        }
        if let Some(pvc) = &v.persistent_volume_claim
            && let Err(e) = check_dns1123_subdomain(&pvc.claim_name)
        {
            r.push(
                p.key("persistentVolumeClaim").key("claimName").to_string(),
                IssueKind::InvalidValue,
                e,
            );
        }
        if let Some(cm) = &v.config_map
            && let Err(e) = check_dns1123_subdomain(&cm.name)
        {
            r.push(
                p.key("configMap").key("name").to_string(),
                IssueKind::InvalidValue,
                e,
            );
        }
        if let Some(secret) = &v.secret
            && let Some(name) = &secret.secret_name
            && let Err(e) = check_dns1123_subdomain(name)
        {
            r.push(
                p.key("secret").key("secretName").to_string(),
                IssueKind::InvalidValue,
                e,
            );
        }
    }
    names
}
