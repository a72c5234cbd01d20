//! Object validation (422 Invalid with field causes), following the real API server's rules.

/// Why `key` is not a valid label key (qualified name with an optional DNS prefix), if it is not.
pub fn label_key_errors(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253 || !is_dns1123_subdomain(p))
    {
        return Some("prefix part must be a lowercase RFC 1123 subdomain".to_string());
    }
    if name.is_empty() || name.len() > 63 || !is_qualified_name_part(name) {
        return Some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string());
    }
    None
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Whether `s` is a DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 chars).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Whether `s` is a DNS-1123 subdomain (dot-separated labels, at most 253 chars).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

use serde_json::Value;

use crate::error::{ApiError, StatusCause};
use crate::store::ResourceKind;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

struct Errs(Vec<StatusCause>);

impl Errs {
    fn invalid(&mut self, field: &str, value: &Value, msg: &str) {
        self.0.push(StatusCause::new(
            field,
            "FieldValueInvalid",
            format!("Invalid value: {}: {msg}", short(value)),
        ));
    }
    fn required(&mut self, field: &str, msg: &str) {
        let m = if msg.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {msg}")
        };
        self.0
            .push(StatusCause::new(field, "FieldValueRequired", m));
    }
    fn not_supported(&mut self, field: &str, value: &Value, supported: &[&str]) {
        let s = supported
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(", ");
        self.0.push(StatusCause::new(
            field,
            "FieldValueNotSupported",
            format!("Unsupported value: {}: supported values: {s}", short(value)),
        ));
    }
    fn duplicate(&mut self, field: &str, value: &Value) {
        self.0.push(StatusCause::new(
            field,
            "FieldValueDuplicate",
            format!("Duplicate value: {}", short(value)),
        ));
    }
    fn forbidden(&mut self, field: &str, msg: &str) {
        self.0.push(StatusCause::new(
            field,
            "FieldValueForbidden",
            format!("Forbidden: {msg}"),
        ));
    }
    fn not_found(&mut self, field: &str, value: &Value) {
        self.0.push(StatusCause::new(
            field,
            "FieldValueNotFound",
            format!("Not found: {}", short(value)),
        ));
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) | Value::Array(_) => "{...}".to_string(),
        other => other.to_string(),
    }
}

fn label_value_ok(v: &str) -> bool {
    v.is_empty() || (v.len() <= 63 && is_qualified_name_part(v))
}

fn validate_meta(kind: ResourceKind, obj: &Value, e: &mut Errs) {
    let meta = &obj["metadata"];
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    let generate = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let label_kind = matches!(kind, ResourceKind::Namespace | ResourceKind::Service);
    let check = |n: &str| {
        if label_kind {
            is_dns1123_label(n)
        } else {
            is_dns1123_subdomain(n)
        }
    };
    let msg = if label_kind { LABEL_MSG } else { SUBDOMAIN_MSG };
    if !name.is_empty() {
        if !check(name) {
            e.invalid("metadata.name", &meta["name"], msg);
        }
    } else if !generate.is_empty() {
        let candidate = format!("{}x", generate.trim_end_matches('-'));
        if !check(&candidate) {
            e.invalid("metadata.generateName", &meta["generateName"], msg);
        }
    } else {
        e.required("metadata.name", "name or generateName is required");
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(m) = label_key_errors(k) {
                e.invalid("metadata.labels", &Value::String(k.clone()), &m);
            }
            match v.as_str() {
                Some(s) if label_value_ok(s) => {}
                _ => e.invalid("metadata.labels", v, LABEL_VALUE_MSG),
            }
        }
    }
    if let Some(ann) = meta.get("annotations").and_then(Value::as_object) {
        for k in ann.keys() {
            if let Some(m) = label_key_errors(k) {
                e.invalid("metadata.annotations", &Value::String(k.clone()), &m);
            }
        }
    }
}

fn validate_pod_spec(spec: &Value, path: &str, e: &mut Errs, job: bool) {
    let volumes: Vec<&str> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter_map(|x| x.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let mut seen_vol = std::collections::HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        if !is_dns1123_label(v) {
            e.invalid(
                &format!("{path}.volumes[{i}].name"),
                &Value::String(v.to_string()),
                LABEL_MSG,
            );
        }
        if !seen_vol.insert(*v) {
            e.duplicate(
                &format!("{path}.volumes[{i}].name"),
                &Value::String(v.to_string()),
            );
        }
    }
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        e.required(&format!("{path}.containers"), "");
    }
    let mut names = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let cp = format!("{path}.{list}[{i}]");
            match c.get("name").and_then(Value::as_str) {
                None | Some("") => e.required(&format!("{cp}.name"), ""),
                Some(n) => {
                    if !is_dns1123_label(n) {
                        e.invalid(&format!("{cp}.name"), &c["name"], LABEL_MSG);
                    }
                    if !names.insert(n.to_string()) {
                        e.duplicate(&format!("{cp}.name"), &c["name"]);
                    }
                }
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(|s| s.trim().is_empty())
            {
                e.required(&format!("{cp}.image"), "");
            }
            for (j, m) in c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let n = m.get("name").and_then(Value::as_str).unwrap_or_default();
                if !volumes.contains(&n) {
                    e.not_found(&format!("{cp}.volumeMounts[{j}].name"), &m["name"]);
                }
                if m.get("mountPath")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    e.required(&format!("{cp}.volumeMounts[{j}].mountPath"), "");
                }
            }
            // The API server refuses a privileged container that may not escalate.
            let sc = c.get("securityContext");
            if sc
                .and_then(|s| s.get("privileged"))
                .and_then(Value::as_bool)
                == Some(true)
                && sc
                    .and_then(|s| s.get("allowPrivilegeEscalation"))
                    .and_then(Value::as_bool)
                    == Some(false)
            {
                e.invalid(
                    &format!("{cp}.securityContext"),
                    &Value::String("privileged".into()),
                    "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                );
            }
            for (j, env) in c
                .get("env")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if env
                    .get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    e.required(&format!("{cp}.env[{j}].name"), "");
                }
            }
        }
    }
    if let Some(policy) = spec.get("dnsPolicy") {
        match policy.as_str() {
            Some("ClusterFirstWithHostNet" | "ClusterFirst" | "Default") => {}
            Some("None") => {
                let nameservers = spec
                    .get("dnsConfig")
                    .and_then(|c| c.get("nameservers"))
                    .and_then(Value::as_array)
                    .is_some_and(|n| !n.is_empty());
                if spec.get("dnsConfig").is_none_or(Value::is_null) {
                    e.required(
                        &format!("{path}.dnsConfig"),
                        "must provide `dnsConfig` when `dnsPolicy` is None",
                    );
                } else if !nameservers {
                    e.required(
                        &format!("{path}.dnsConfig.nameservers"),
                        "must provide at least one DNS nameserver when `dnsPolicy` is None",
                    );
                }
            }
            _ => e.not_supported(
                &format!("{path}.dnsPolicy"),
                policy,
                &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
            ),
        }
    }
    let rp = spec
        .get("restartPolicy")
        .cloned()
        .unwrap_or(Value::String("Always".into()));
    if job {
        if !matches!(rp.as_str(), Some("OnFailure" | "Never")) {
            e.not_supported(
                &format!("{path}.restartPolicy"),
                &rp,
                &["OnFailure", "Never"],
            );
        }
    } else if !matches!(rp.as_str(), Some("Always" | "OnFailure" | "Never")) {
        e.not_supported(
            &format!("{path}.restartPolicy"),
            &rp,
            &["Always", "OnFailure", "Never"],
        );
    }
    if let Some(ads) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && ads <= 0
    {
        e.invalid(
            &format!("{path}.activeDeadlineSeconds"),
            &spec["activeDeadlineSeconds"],
            "must be between 1 and 2147483647, inclusive",
        );
    }
}

fn non_negative(obj: &Value, field: &str, path: &str, e: &mut Errs) {
    if let Some(v) = obj.get(field).and_then(Value::as_i64)
        && v < 0
    {
        e.invalid(path, &obj[field], "must be greater than or equal to 0");
    }
}

/// An Indexed Job's parallelism limit (Kubernetes' `maxParallelismForIndexedJob`).
const MAX_PARALLELISM_FOR_INDEXED_JOB: i64 = 100_000;
/// Completions at or above which an Indexed Job's parallelism is held lower.
const COMPLETIONS_SOFT_LIMIT: i64 = 100_000;
/// The parallelism allowed with that many completions.
const PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS: i64 = 10_000;

fn validate_job(job: &Value, old: Option<&Value>, e: &mut Errs) {
    let spec = &job["spec"];
    let tpl = &spec["template"];
    if !tpl.get("spec").is_some_and(Value::is_object) {
        e.required("spec.template.spec.containers", "");
    } else {
        validate_pod_spec(&tpl["spec"], "spec.template.spec", e, true);
    }
    non_negative(spec, "parallelism", "spec.parallelism", e);
    non_negative(spec, "completions", "spec.completions", e);
    non_negative(spec, "backoffLimit", "spec.backoffLimit", e);
    if let Some(a) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && a <= 0
    {
        e.invalid(
            "spec.activeDeadlineSeconds",
            &spec["activeDeadlineSeconds"],
            "must be greater than 0",
        );
    }
    if let Some(m) = spec.get("completionMode") {
        match m.as_str() {
            Some("NonIndexed") => {}
            Some("Indexed") => {
                if spec.get("completions").is_none_or(Value::is_null) {
                    e.required("spec.completions", "when completion mode is Indexed");
                }
                // pkg/apis/batch/validation: the limits that keep .status.completedIndexes small.
                let completions = spec.get("completions").and_then(Value::as_i64);
                let parallelism = spec.get("parallelism").and_then(Value::as_i64);
                if let (Some(c), Some(p)) = (completions, parallelism)
                    && c >= COMPLETIONS_SOFT_LIMIT
                    && p > PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS
                {
                    e.invalid(
                        "spec.parallelism",
                        &spec["parallelism"],
                        &format!(
                            "must be less than or equal to {PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS} when completions are above {COMPLETIONS_SOFT_LIMIT}"
                        ),
                    );
                }
                if parallelism.is_some_and(|p| p > MAX_PARALLELISM_FOR_INDEXED_JOB) {
                    e.invalid(
                        "spec.parallelism",
                        &spec["parallelism"],
                        &format!(
                            "must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB} when completion mode is Indexed"
                        ),
                    );
                }
            }
            _ => e.not_supported("spec.completionMode", m, &["NonIndexed", "Indexed"]),
        }
    }
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        match spec.get("selector") {
            None | Some(Value::Null) => e.required("spec.selector", ""),
            Some(sel) => {
                if let Ok(s) = crate::selectors::LabelSelector::from_json(sel)
                    && !s.matches(tpl)
                {
                    e.invalid(
                        "spec.template.metadata.labels",
                        &tpl["metadata"]["labels"],
                        "`selector` does not match template `labels`",
                    );
                }
            }
        }
    }
    validate_label_map(
        tpl.pointer("/metadata/labels"),
        "spec.template.metadata.labels",
        e,
    );
    if let Some(old) = old {
        let os = &old["spec"];
        for (f, msg) in [
            ("template", "field is immutable"),
            ("completions", "field is immutable"),
            ("selector", "field is immutable"),
            ("completionMode", "field is immutable"),
        ] {
            if spec.get(f) != os.get(f)
                && !(f == "template" && job_template_only_defaults_differ(os.get(f), spec.get(f)))
            {
                e.invalid(
                    &format!("spec.{f}"),
                    spec.get(f).unwrap_or(&Value::Null),
                    msg,
                );
            }
        }
    }
}

fn job_template_only_defaults_differ(a: Option<&Value>, b: Option<&Value>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return false;
    };
    let mut a = a.clone();
    let mut b = b.clone();
    crate::store::default_pod_spec(&mut a["spec"]);
    crate::store::default_pod_spec(&mut b["spec"]);
    a == b
}

fn validate_label_map(labels: Option<&Value>, path: &str, e: &mut Errs) {
    if let Some(l) = labels.and_then(Value::as_object) {
        for (k, v) in l {
            if let Some(m) = label_key_errors(k) {
                e.invalid(path, &Value::String(k.clone()), &m);
            }
            if !v.as_str().is_some_and(label_value_ok) {
                e.invalid(path, v, LABEL_VALUE_MSG);
            }
        }
    }
}

fn pod_update_allowed(old: &Value, new: &Value) -> bool {
    let strip = |spec: &Value| {
        let mut s = spec.clone();
        for list in ["containers", "initContainers"] {
            if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    if let Some(m) = c.as_object_mut() {
                        m.remove("image");
                    }
                }
            }
        }
        if let Some(m) = s.as_object_mut() {
            m.remove("activeDeadlineSeconds");
            m.remove("tolerations");
            m.remove("terminationGracePeriodSeconds");
        }
        s
    };
    let mut a = old["spec"].clone();
    let mut b = new["spec"].clone();
    crate::store::default_pod_spec(&mut a);
    crate::store::default_pod_spec(&mut b);
    strip(&a) == strip(&b)
}

fn validate_data_keys(obj: &Value, field: &str, e: &mut Errs) {
    for f in [field, "binaryData", "stringData"] {
        if let Some(m) = obj.get(f).and_then(Value::as_object) {
            for k in m.keys() {
                let ok = !k.is_empty()
                    && k.len() <= 253
                    && k.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
                if !ok {
                    e.invalid(&format!("{f}[{k}]"), &Value::String(k.clone()), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')");
                }
            }
        }
    }
}

/// Validates an object for create (`old == None`) or update, returning 422 Invalid with
/// field causes in the real API server's wording.
pub fn validate(kind: ResourceKind, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let mut e = Errs(Vec::new());
    validate_meta(kind, obj, &mut e);
    match kind {
        ResourceKind::Pod => {
            if !obj.get("spec").is_some_and(Value::is_object) {
                e.required("spec.containers", "");
            } else {
                validate_pod_spec(&obj["spec"], "spec", &mut e, false);
            }
            if let Some(old) = old
                && !pod_update_allowed(old, obj)
            {
                e.forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)");
            }
        }
        ResourceKind::Job => validate_job(obj, old, &mut e),
        ResourceKind::Service => {
            let spec = &obj["spec"];
            let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
            let ports = spec.get("ports").and_then(Value::as_array);
            if ports.is_none_or(|p| p.is_empty())
                && !headless
                && spec.get("type").and_then(Value::as_str) != Some("ExternalName")
            {
                e.required("spec.ports", "");
            }
            for (i, p) in ports.into_iter().flatten().enumerate() {
                match p.get("port").and_then(Value::as_i64) {
                    Some(n) if (1..=65535).contains(&n) => {}
                    _ => e.invalid(
                        &format!("spec.ports[{i}].port"),
                        p.get("port").unwrap_or(&Value::Null),
                        "must be between 1 and 65535, inclusive",
                    ),
                }
            }
            if let Some(t) = spec.get("type")
                && !matches!(
                    t.as_str(),
                    Some("ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName")
                )
            {
                e.not_supported(
                    "spec.type",
                    t,
                    &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
                );
            }
        }
        ResourceKind::ConfigMap | ResourceKind::Secret => validate_data_keys(obj, "data", &mut e),
        ResourceKind::Event => {
            if obj.pointer("/involvedObject/name").is_none() && obj.get("regarding").is_none() {
                e.required("involvedObject", "");
            }
        }
        ResourceKind::Namespace | ResourceKind::Node | ResourceKind::ServiceAccount => {}
    }
    if e.0.is_empty() {
        Ok(())
    } else {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        Err(ApiError::invalid(&qualified_kind(kind), name, e.0))
    }
}

fn qualified_kind(kind: ResourceKind) -> String {
    if kind.group().is_empty() {
        kind.kind().to_string()
    } else {
        format!("{}.{}", kind.kind(), kind.group())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_labels() {
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("A"));
        assert!(label_key_errors("example.com/a_b").is_none());
        assert!(label_key_errors("-a").is_some());
        let pod = json!({"metadata": {"name": "Bad_Name", "labels": {"ok": "-bad"}}, "spec": {"containers": [{"name": "c"}]}});
        let err = validate(ResourceKind::Pod, &pod, None).unwrap_err();
        assert_eq!(err.code, 422);
        let fields: Vec<_> = err.causes().iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.name",
                "metadata.labels",
                "spec.containers[0].image"
            ]
        );
    }

    fn job_with(spec: Value, container: Value) -> Value {
        let mut pod = json!({"restartPolicy": "Never", "containers": [container]});
        if let (Some(p), Some(extra)) = (pod.as_object_mut(), spec.get("pod")) {
            p.extend(extra.as_object().cloned().unwrap_or_default());
        }
        let mut job_spec = json!({"template": {"spec": pod}});
        if let (Some(j), Some(extra)) = (job_spec.as_object_mut(), spec.get("job")) {
            j.extend(extra.as_object().cloned().unwrap_or_default());
        }
        json!({"metadata": {"name": "j"}, "spec": job_spec})
    }

    fn fields(job: &Value) -> Vec<String> {
        match validate(ResourceKind::Job, job, None) {
            Ok(()) => Vec::new(),
            Err(err) => err.causes().iter().map(|c| c.field.clone()).collect(),
        }
    }

    #[test]
    fn rules_a_real_api_server_enforces() {
        let c = json!({"name": "main", "image": "i"});
        // dnsPolicy must be one Kubernetes knows; None needs nameservers.
        let bogus = job_with(json!({"pod": {"dnsPolicy": "Bogus"}}), c.clone());
        assert_eq!(fields(&bogus), ["spec.template.spec.dnsPolicy"]);
        let err = validate(ResourceKind::Job, &bogus, None).unwrap_err();
        assert!(
            err.causes()[0]
                .message
                .starts_with("Unsupported value: \"Bogus\"")
        );
        assert!(
            fields(&job_with(
                json!({"pod": {"dnsPolicy": "ClusterFirst"}}),
                c.clone()
            ))
            .is_empty()
        );
        assert_eq!(
            fields(&job_with(json!({"pod": {"dnsPolicy": "None"}}), c.clone())),
            ["spec.template.spec.dnsConfig"]
        );
        // privileged with allowPrivilegeEscalation false.
        let sc = |p: bool, a: bool| json!({"name": "main", "image": "i", "securityContext": {"privileged": p, "allowPrivilegeEscalation": a}});
        assert_eq!(
            fields(&job_with(json!({}), sc(true, false))),
            ["spec.template.spec.containers[0].securityContext"]
        );
        assert!(fields(&job_with(json!({}), sc(true, true))).is_empty());
        assert!(fields(&job_with(json!({}), sc(false, false))).is_empty());
        // Indexed Jobs: parallelism at most 100000, and 10000 with 100000+ completions.
        let indexed = |n: i64| {
            job_with(
                json!({"job": {"completionMode": "Indexed", "completions": n, "parallelism": n}}),
                c.clone(),
            )
        };
        assert!(fields(&indexed(99_999)).is_empty());
        assert_eq!(fields(&indexed(100_000)), ["spec.parallelism"]);
        assert_eq!(
            fields(&indexed(2_147_483_647)),
            ["spec.parallelism", "spec.parallelism"]
        );
    }

    #[test]
    fn job_restart_policy() {
        let job = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let err = validate(ResourceKind::Job, &job, None).unwrap_err();
        assert_eq!(err.causes()[0].field, "spec.template.spec.restartPolicy");
        assert!(err.message.starts_with("Job.batch \"j\" is invalid"));
    }
}
