//! Server-side defaulting applied on create, as the real API server does.

use serde_json::{Value, json};

fn set_default(obj: &mut Value, field: &str, v: Value) {
    if obj.get(field).is_none_or(Value::is_null) {
        obj[field] = v;
    }
}

fn image_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    set_default(c, "imagePullPolicy", json!(image_pull_policy(&image)));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if p.is_object() {
                set_default(p, "protocol", json!("TCP"));
            }
        }
    }
}

/// Applies the API server's pod-spec defaults (also used for Job templates).
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(spec, "priority", json!(0));
    if spec.get("serviceAccountName").is_none_or(Value::is_null) {
        let sa = spec
            .get("serviceAccount")
            .cloned()
            .unwrap_or(json!("default"));
        spec["serviceAccountName"] = sa;
    }
    let sa = spec["serviceAccountName"].clone();
    set_default(spec, "serviceAccount", sa);
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
    if spec.get("tolerations").is_none_or(Value::is_null) {
        spec["tolerations"] = json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]);
    }
}

fn qos_class(spec: &Value) -> &'static str {
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut all_guaranteed = !containers.is_empty();
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty()) {
            any = true;
        }
        let guaranteed = ["cpu", "memory"].iter().all(|r| {
            let l = lim.and_then(|m| m.get(*r));
            let q = req.and_then(|m| m.get(*r)).or(l);
            l.is_some() && q == l
        });
        all_guaranteed &= guaranteed;
    }
    if all_guaranteed {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}

/// Applies the kind's defaults to a new object. `counter` numbers Service cluster IPs.
pub(super) fn apply(kind: super::ResourceKind, obj: &mut Value, counter: u32) {
    use super::ResourceKind as K;
    match kind {
        K::Namespace => {
            let name = obj["metadata"]["name"].clone();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            set_default(obj, "spec", json!({"finalizers": ["kubernetes"]}));
            if obj
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                obj["status"] = json!({"phase": "Active"});
            }
        }
        K::Pod => {
            set_default(obj, "spec", json!({}));
            default_pod_spec(&mut obj["spec"]);
            // Containers' limits imply requests.
            if let Some(cs) = obj["spec"]
                .get_mut("containers")
                .and_then(Value::as_array_mut)
            {
                for c in cs {
                    if let Some(lim) = c
                        .pointer("/resources/limits")
                        .and_then(Value::as_object)
                        .cloned()
                    {
                        for (k, v) in lim {
                            if c.pointer(&format!("/resources/requests/{}", k.replace('/', "~1")))
                                .is_none()
                            {
                                c["resources"]["requests"][k] = v;
                            }
                        }
                    }
                }
            }
            let qos = qos_class(&obj["spec"]);
            if !obj.get("status").is_some_and(Value::is_object) {
                obj["status"] = json!({});
            }
            set_default(&mut obj["status"], "phase", json!("Pending"));
            set_default(&mut obj["status"], "qosClass", json!(qos));
        }
        K::Job => {
            set_default(obj, "spec", json!({}));
            let uid = obj["metadata"]["uid"].clone();
            let name = obj["metadata"]["name"].clone();
            let spec = &mut obj["spec"];
            if !spec.is_object() {
                return;
            }
            set_default(spec, "parallelism", json!(1));
            if spec.get("completions").is_none_or(Value::is_null)
                && spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
            {
                // Indexed jobs require completions; validation reports it.
            } else if spec.get("completions").is_none_or(Value::is_null)
                && spec["parallelism"] == json!(1)
            {
                spec["completions"] = json!(1);
            }
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            if spec
                .get("backoffLimitPerIndex")
                .is_some_and(|v| !v.is_null())
            {
                set_default(spec, "backoffLimit", json!(i32::MAX));
            } else {
                set_default(spec, "backoffLimit", json!(6));
            }
            let manual = spec
                .get("manualSelector")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !spec.get("template").is_some_and(Value::is_object) {
                spec["template"] = json!({});
            }
            let tpl = &mut spec["template"];
            if !tpl.get("metadata").is_some_and(Value::is_object) {
                tpl["metadata"] = json!({});
            }
            if !manual {
                for (k, v) in [
                    ("batch.kubernetes.io/controller-uid", &uid),
                    ("batch.kubernetes.io/job-name", &name),
                    ("controller-uid", &uid),
                    ("job-name", &name),
                ] {
                    tpl["metadata"]["labels"][k] = v.clone();
                }
            }
            set_default(tpl, "spec", json!({}));
            default_pod_spec(&mut tpl["spec"]);
            if !manual {
                spec["selector"] =
                    json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
            }
            set_default(obj, "status", json!({}));
        }
        K::Service => {
            set_default(obj, "spec", json!({}));
            let spec = &mut obj["spec"];
            if !spec.is_object() {
                return;
            }
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                let ip = format!("10.96.{}.{}", (counter / 250) % 250, counter % 250 + 2);
                set_default(spec, "clusterIP", json!(ip));
            }
            let cip = spec["clusterIP"].clone();
            set_default(spec, "clusterIPs", json!([cip]));
            set_default(spec, "ipFamilies", json!(["IPv4"]));
            set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
            set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if !p.is_object() {
                        continue;
                    }
                    set_default(p, "protocol", json!("TCP"));
                    let port = p.get("port").cloned().unwrap_or(Value::Null);
                    set_default(p, "targetPort", port);
                }
            }
            set_default(obj, "status", json!({"loadBalancer": {}}));
        }
        K::Secret => {
            if obj
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                obj["type"] = json!("Opaque");
            }
            if let Some(sd) = obj.get("stringData").and_then(Value::as_object).cloned() {
                use base64::Engine as _;
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                }
                if let Some(m) = obj.as_object_mut() {
                    m.remove("stringData");
                }
            }
        }
        K::Node | K::ConfigMap | K::ServiceAccount | K::Event => {}
    }
}
