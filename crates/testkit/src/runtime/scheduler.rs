//! The scheduler's decisions: which nodes a pod fits on, and the real-style
//! "0/N nodes are available: …" message when it fits nowhere.
//!
//! The filters run in the default scheduler's order and stop at the first that fails
//! for a node (`NodeUnschedulable`, `TaintToleration`, `NodeAffinity`, `NodeResourcesFit`),
//! except that resource fit reports every insufficient resource, as the real plugin does.
//! The loop that applies the decisions lives in `mod.rs` (`schedule_pending`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration,
};

use serde_json::{Value, json};

use super::quantity::{Resources, parse_milli};
use crate::error::ApiError;
use crate::store::{ListFilter, ResourceKind, Store, now_rfc3339};

/// Why one node cannot take a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Misfit {
    /// `spec.unschedulable` is set.
    Unschedulable,
    /// A NoSchedule/NoExecute taint the pod doesn't tolerate.
    Taint { key: String, value: String },
    /// nodeSelector or required node affinity doesn't match.
    Affinity,
    /// Not enough of these resources (`cpu`, `memory`, `nvidia.com/gpu`, `pods`).
    Insufficient(Vec<String>),
}

impl Misfit {
    /// The reason strings the real scheduler counts.
    fn reasons(&self) -> Vec<String> {
        match self {
            Misfit::Unschedulable => vec!["node(s) were unschedulable".into()],
            Misfit::Taint { key, value } => {
                vec![format!("node(s) had untolerated taint {{{key}: {value}}}")]
            }
            Misfit::Affinity => vec!["node(s) didn't match Pod's node affinity/selector".into()],
            Misfit::Insufficient(rs) => rs
                .iter()
                .map(|r| {
                    if r == "pods" {
                        "Too many pods".to_string()
                    } else {
                        format!("Insufficient {r}")
                    }
                })
                .collect(),
        }
    }

    /// Whether evicting lower-priority pods could help (only for resource shortages).
    fn preemption_could_help(&self) -> bool {
        matches!(self, Misfit::Insufficient(_))
    }
}

/// The effective resource requests of a pod: for each container, its requests, or its
/// limits where it has no request (as API defaulting does); summed over containers, then
/// raised to the largest init container; plus `spec.overhead`; plus one `pods`.
pub(crate) fn pod_requests(spec: &PodSpec) -> Resources {
    fn container_requests(c: &k8s_openapi::api::core::v1::Container) -> Resources {
        let Some(res) = &c.resources else {
            return Resources::default();
        };
        let mut r = Resources::from_quantities(res.limits.as_ref());
        let req = Resources::from_quantities(res.requests.as_ref());
        for (k, v) in req.0 {
            r.0.insert(k, v);
        }
        r
    }
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c));
    }
    for c in spec.init_containers.iter().flatten() {
        total.max_with(&container_requests(c));
    }
    total.add(&Resources::from_quantities(spec.overhead.as_ref()));
    total.0.insert("pods".into(), 1000);
    total
}

/// Whether a toleration tolerates a taint.
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" | "" => {
            key == taint.key
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// The first NoSchedule/NoExecute taint of the node that the pod doesn't tolerate.
fn untolerated_taint<'a>(spec: &PodSpec, node: &'a Node) -> Option<&'a Taint> {
    let taints = node.spec.as_ref()?.taints.as_ref()?;
    let tolerations: &[Toleration] = spec.tolerations.as_deref().unwrap_or(&[]);
    taints.iter().find(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

/// Whether one node-selector requirement holds for a value (label or field).
fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values: &[String] = req.values.as_deref().unwrap_or(&[]);
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value, values.first()) else {
                return false;
            };
            let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches (its expressions and fields are ANDed; an
/// empty term matches nothing).
fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(name);
            requirement_matches(r, value)
        })
}

/// Whether the pod's nodeSelector and required node affinity match the node.
fn affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or("");
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, labels, name)),
    }
}

/// Checks whether `pod` fits on `node`, given the summed requests of the pods already
/// bound there.
pub(crate) fn check_node(pod: &Pod, node: &Node, used: &Resources) -> Result<(), Misfit> {
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        return Err(Misfit::Unschedulable);
    }
    if let Some(t) = untolerated_taint(spec, node) {
        return Err(Misfit::Taint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
        });
    }
    if !affinity_matches(spec, node) {
        return Err(Misfit::Affinity);
    }
    let alloc =
        Resources::from_quantities(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
    let want = pod_requests(spec);
    let mut short = Vec::new();
    // The real plugin reports pods first, then cpu, memory, then extended resources.
    let mut names: Vec<&String> = want.0.keys().collect();
    names.sort_by_key(|n| match n.as_str() {
        "pods" => (0, n.as_str()),
        "cpu" => (1, n.as_str()),
        "memory" => (2, n.as_str()),
        "ephemeral-storage" => (3, n.as_str()),
        other => (4, other),
    });
    for name in names {
        let need = want.get(name);
        if need <= 0 {
            continue;
        }
        if used.get(name).saturating_add(need) > alloc.get(name) {
            short.push(name.clone());
        }
    }
    if short.is_empty() {
        Ok(())
    } else {
        Err(Misfit::Insufficient(short))
    }
}

/// Picks the node for a pod: among the nodes it fits, the one with the most free CPU
/// (then by name, so the choice is deterministic). On failure returns the message for
/// the `PodScheduled=False` condition and the `FailedScheduling` event.
pub(crate) fn choose_node(
    pod: &Pod,
    nodes: &[Node],
    used: &BTreeMap<String, Resources>,
) -> Result<String, String> {
    let none = Resources::default();
    let mut best: Option<(i128, String)> = None;
    let mut misfits = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let node_used = used.get(&name).unwrap_or(&none);
        match check_node(pod, node, node_used) {
            Ok(()) => {
                let alloc_cpu = node
                    .status
                    .as_ref()
                    .and_then(|s| s.allocatable.as_ref())
                    .and_then(|a| a.get("cpu"))
                    .and_then(|q| parse_milli(&q.0))
                    .unwrap_or(0);
                let free = alloc_cpu - node_used.get("cpu");
                let better = match &best {
                    None => true,
                    Some((f, n)) => free > *f || (free == *f && name < *n),
                };
                if better {
                    best = Some((free, name));
                }
            }
            Err(m) => misfits.push(m),
        }
    }
    match best {
        Some((_, name)) => Ok(name),
        None => Err(unschedulable_message(nodes.len(), &misfits)),
    }
}

/// "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match Pod's
/// node affinity/selector. preemption: 0/2 nodes are available: 1 No preemption victims
/// found for incoming pod, 1 Preemption is not helpful for scheduling."
pub(crate) fn unschedulable_message(total: usize, misfits: &[Misfit]) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".into();
    }
    fn histogram(items: impl Iterator<Item = String>) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in items {
            *counts.entry(r).or_default() += 1;
        }
        let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        parts.join(", ")
    }
    let first = histogram(misfits.iter().flat_map(Misfit::reasons));
    let second = histogram(misfits.iter().map(|m| {
        if m.preemption_could_help() {
            "No preemption victims found for incoming pod".to_string()
        } else {
            "Preemption is not helpful for scheduling".to_string()
        }
    }));
    format!(
        "0/{total} nodes are available: {first}. preemption: 0/{total} nodes are available: {second}."
    )
}

/// The requests of the pods bound to each node and not finished, kept up to date from
/// the store's change feed (and by the scheduler's own bindings), so a scheduling pass
/// doesn't re-read every pod.
#[derive(Debug, Default)]
pub(crate) struct BoundPods {
    pods: Mutex<HashMap<String, (String, Resources)>>,
}

impl BoundPods {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Resources)>> {
        self.pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, uid: &str, node: &str, req: Resources) {
        self.lock().insert(uid.to_string(), (node.to_string(), req));
    }

    /// Takes a pod change into account.
    pub(crate) fn observe(&self, pod: &Value, deleted: bool) {
        let Some(uid) = pod.pointer("/metadata/uid").and_then(Value::as_str) else {
            return;
        };
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let terminal = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        match node {
            Some(node) if !deleted && !terminal => {
                if self.lock().contains_key(uid) {
                    return;
                }
                let req = pod
                    .get("spec")
                    .and_then(|s| serde_json::from_value::<PodSpec>(s.clone()).ok())
                    .map(|spec| pod_requests(&spec))
                    .unwrap_or_default();
                self.insert(uid, node, req);
            }
            // `spec.nodeName` never goes away once set: an unbound state is an older
            // event than the scheduler's own binding.
            None if !deleted && !terminal => {}
            _ => {
                self.lock().remove(uid);
            }
        }
    }

    /// Rebuilds from a full list of pods.
    pub(crate) fn reset(&self, pods: &[Value]) {
        self.lock().clear();
        for p in pods {
            self.observe(p, false);
        }
    }

    /// The summed requests per node.
    fn usage(&self) -> BTreeMap<String, Resources> {
        let mut used: BTreeMap<String, Resources> = BTreeMap::new();
        for (node, req) in self.lock().values() {
            used.entry(node.clone()).or_default().add(req);
        }
        used
    }
}

/// One scheduling pass over every pending pod without a node, oldest first: binds the
/// pods that fit, marks the rest `PodScheduled=False`/`Unschedulable` (with a
/// `FailedScheduling` event when the message changes).
pub(crate) fn schedule_pass(store: &Store, bound: &BoundPods) {
    let filter = ListFilter::default();
    // Cheap check first: most passes find nothing to schedule.
    let unbound = ListFilter::fields("spec.nodeName=").unwrap_or_default();
    let (candidates, _) = store.list(ResourceKind::Pod, None, &unbound);
    let mut pending: Vec<(String, Value)> = Vec::new();
    for p in candidates {
        let terminal = matches!(
            p.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        let unassigned = p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        let ours = p
            .pointer("/spec/schedulerName")
            .and_then(Value::as_str)
            .is_none_or(|s| s.is_empty() || s == "default-scheduler");
        if !terminal && unassigned && ours && p.pointer("/metadata/deletionTimestamp").is_none() {
            let created = p
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            pending.push((created, p));
        }
    }
    if pending.is_empty() {
        return;
    }
    let (node_objs, _) = store.list(ResourceKind::Node, None, &filter);
    let nodes: Vec<Node> = node_objs
        .into_iter()
        .filter_map(|n| serde_json::from_value(n).ok())
        .collect();
    // What the bound, unfinished pods use.
    let mut used = bound.usage();
    pending.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, raw) in pending {
        let Ok(pod) = serde_json::from_value::<Pod>(raw.clone()) else {
            tracing::debug!("skipping a pod that doesn't parse");
            continue;
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let now = now_rfc3339();
        match choose_node(&pod, &nodes, &used) {
            Ok(node) => {
                let bound_obj = store.modify(ResourceKind::Pod, Some(&ns), &name, |p| {
                    if p.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str())
                        || p.pointer("/spec/nodeName")
                            .and_then(Value::as_str)
                            .is_some_and(|n| !n.is_empty())
                    {
                        return Err(ApiError::conflict("pods", &name));
                    }
                    p["spec"]["nodeName"] = json!(node);
                    set_scheduled(
                        p,
                        json!({"type": "PodScheduled", "status": "True",
                        "lastProbeTime": null, "lastTransitionTime": now}),
                    );
                    Ok(())
                });
                if let Ok(obj) = bound_obj {
                    let req = pod.spec.as_ref().map(pod_requests).unwrap_or_default();
                    used.entry(node.clone()).or_default().add(&req);
                    bound.insert(&uid, &node, req);
                    let _ = store.record_event_from(
                        "default-scheduler",
                        None,
                        &ns,
                        &obj,
                        "Normal",
                        "Scheduled",
                        &format!("Successfully assigned {ns}/{name} to {node}"),
                    );
                }
            }
            Err(message) => {
                let mut changed = false;
                let res = store.modify(ResourceKind::Pod, Some(&ns), &name, |p| {
                    if p.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str()) {
                        return Err(ApiError::conflict("pods", &name));
                    }
                    let current = p
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .and_then(|cs| {
                            cs.iter()
                                .find(|c| c.get("type") == Some(&json!("PodScheduled")))
                        });
                    if current.is_some_and(|c| {
                        c.get("status") == Some(&json!("False"))
                            && c.get("message") == Some(&json!(message))
                    }) {
                        return Ok(());
                    }
                    changed = true;
                    set_scheduled(
                        p,
                        json!({"type": "PodScheduled", "status": "False",
                        "reason": "Unschedulable", "message": message,
                        "lastProbeTime": null, "lastTransitionTime": now}),
                    );
                    Ok(())
                });
                if let Ok(obj) = res
                    && changed
                {
                    let _ = store.record_event_from(
                        "default-scheduler",
                        None,
                        &ns,
                        &obj,
                        "Warning",
                        "FailedScheduling",
                        &message,
                    );
                }
            }
        }
    }
}

/// Replaces (or adds) the pod's `PodScheduled` condition.
fn set_scheduled(pod: &mut Value, cond: Value) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    if !pod["status"].get("conditions").is_some_and(Value::is_array) {
        pod["status"]["conditions"] = json!([]);
    }
    if let Some(cs) = pod["status"]["conditions"].as_array_mut() {
        cs.retain(|c| c.get("type") != Some(&json!("PodScheduled")));
        cs.push(cond);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::nodes::NodeConfig;
    use serde_json::json;

    fn node(cfg: &NodeConfig) -> Node {
        serde_json::from_value(cfg.to_object("2026-01-01T00:00:00Z")).unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}))
            .unwrap()
    }

    fn main_container(resources: serde_json::Value) -> serde_json::Value {
        json!([{"name": "main", "image": "busybox", "resources": resources}])
    }

    #[test]
    fn node_selector_and_affinity_operators() {
        let n = node(
            &NodeConfig::new("n1")
                .with_label("zone", "a")
                .with_label("gen", "5"),
        );
        let none = Resources::default();
        let ok = |spec| check_node(&pod(spec), &n, &none);
        assert!(ok(json!({"containers": [], "nodeSelector": {"zone": "a"}})).is_ok());
        assert_eq!(
            ok(json!({"containers": [], "nodeSelector": {"zone": "b"}})),
            Err(Misfit::Affinity)
        );
        let aff = |exprs: serde_json::Value, fields: serde_json::Value| {
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": exprs, "matchFields": fields}]}}}})
        };
        let cases = [
            (
                json!([{"key": "zone", "operator": "In", "values": ["a", "b"]}]),
                true,
            ),
            (
                json!([{"key": "zone", "operator": "NotIn", "values": ["a"]}]),
                false,
            ),
            (
                json!([{"key": "missing", "operator": "NotIn", "values": ["a"]}]),
                true,
            ),
            (json!([{"key": "zone", "operator": "Exists"}]), true),
            (json!([{"key": "zone", "operator": "DoesNotExist"}]), false),
            (
                json!([{"key": "gen", "operator": "Gt", "values": ["4"]}]),
                true,
            ),
            (
                json!([{"key": "gen", "operator": "Lt", "values": ["4"]}]),
                false,
            ),
            (
                json!([{"key": "zone", "operator": "Gt", "values": ["4"]}]),
                false,
            ),
            (
                json!([{"key": "zone", "operator": "Bogus", "values": ["a"]}]),
                false,
            ),
        ];
        for (exprs, want) in cases {
            assert_eq!(ok(aff(exprs.clone(), json!([]))).is_ok(), want, "{exprs}");
        }
        let field =
            |name: &str| json!([{"key": "metadata.name", "operator": "In", "values": [name]}]);
        assert!(ok(aff(json!([]), field("n1"))).is_ok());
        assert!(ok(aff(json!([]), field("n2"))).is_err());
        // An empty term matches nothing.
        assert!(ok(aff(json!([]), json!([]))).is_err());
    }

    #[test]
    fn taints_and_tolerations() {
        let n = node(&NodeConfig::gpu("g1", "a100", 4));
        let none = Resources::default();
        let p = |tol: serde_json::Value| pod(json!({"containers": [], "tolerations": tol}));
        assert_eq!(
            check_node(&p(json!([])), &n, &none),
            Err(Misfit::Taint {
                key: "nvidia.com/gpu".into(),
                value: "present".into()
            })
        );
        for tol in [
            json!([{"key": "nvidia.com/gpu", "operator": "Exists"}]),
            json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
            json!([{"operator": "Exists"}]),
        ] {
            assert!(check_node(&p(tol.clone()), &n, &none).is_ok(), "{tol}");
        }
        for tol in [
            json!([{"key": "nvidia.com/gpu", "value": "absent"}]),
            json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}]),
        ] {
            assert!(check_node(&p(tol.clone()), &n, &none).is_err(), "{tol}");
        }
        // PreferNoSchedule never blocks.
        let soft = node(&NodeConfig::new("s").with_taint("k", "v", "PreferNoSchedule"));
        assert!(check_node(&p(json!([])), &soft, &none).is_ok());
    }

    #[test]
    fn resource_fit_counts_limits_as_requests_and_used() {
        let n = node(&NodeConfig::new("n1"));
        let mut used = Resources::default();
        let p = pod(
            json!({"containers": main_container(json!({"limits": {"cpu": "6", "memory": "1Gi"}}))}),
        );
        assert!(check_node(&p, &n, &used).is_ok());
        used.0.insert("cpu".into(), 3000);
        assert_eq!(
            check_node(&p, &n, &used),
            Err(Misfit::Insufficient(vec!["cpu".into()]))
        );
        let gpu =
            pod(json!({"containers": main_container(json!({"limits": {"nvidia.com/gpu": "1"}}))}));
        assert_eq!(
            check_node(&gpu, &n, &Resources::default()),
            Err(Misfit::Insufficient(vec!["nvidia.com/gpu".into()]))
        );
        let reqs = pod_requests(gpu.spec.as_ref().unwrap());
        assert_eq!(reqs.get("nvidia.com/gpu"), 1000);
        assert_eq!(reqs.get("pods"), 1000);
    }

    #[test]
    fn message_is_real_style() {
        let nodes = vec![
            node(&NodeConfig::new("node-1")),
            node(&NodeConfig::gpu("gpu-1", "a100", 4).with_label("pool", "gpu")),
        ];
        // Tolerates the GPU taint, wants 8 GPUs and the pool=gpu label.
        let p = pod(json!({
            "containers": main_container(json!({"limits": {"nvidia.com/gpu": "8"}})),
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        }));
        let msg = choose_node(&p, &nodes, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            msg,
            "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        let plain = pod(json!({"containers": main_container(json!({}))}));
        assert_eq!(
            choose_node(&plain, &nodes, &BTreeMap::new()),
            Ok("node-1".into())
        );
        let sel = pod(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert_eq!(
            choose_node(&sel, &nodes[..1], &BTreeMap::new()).unwrap_err(),
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            choose_node(&sel, &[], &BTreeMap::new()).unwrap_err(),
            "no nodes available to schedule pods"
        );
    }
}
