//! Node affinity, pod affinity and pod anti-affinity: the rules the API server checks
//! (label keys and values, operators and their value counts, weights, topology keys).

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelectorRequirement, PodAffinityTerm, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::error::{IssueKind, Path, ValidationReport};
use crate::validate::k8s_names::{check_dns1123_label, check_label_value, check_qualified_name};
use crate::validate::rules::check_label_map;

/// Checks `affinity` at `path`.
pub(crate) fn check_affinity(affinity: &Affinity, path: &Path, r: &mut ValidationReport) {
    if let Some(node) = &affinity.node_affinity {
        check_node_affinity(node, &path.key("nodeAffinity"), r);
    }
    if let Some(pod) = &affinity.pod_affinity {
        let p = path.key("podAffinity");
        check_pod_terms(
            pod.required_during_scheduling_ignored_during_execution
                .as_deref(),
            pod.preferred_during_scheduling_ignored_during_execution
                .as_deref(),
            &p,
            r,
        );
    }
    if let Some(anti) = &affinity.pod_anti_affinity {
        let p = path.key("podAntiAffinity");
        check_pod_terms(
            anti.required_during_scheduling_ignored_during_execution
                .as_deref(),
            anti.preferred_during_scheduling_ignored_during_execution
                .as_deref(),
            &p,
            r,
        );
    }
}

fn check_pod_terms(
    required: Option<&[PodAffinityTerm]>,
    preferred: Option<&[WeightedPodAffinityTerm]>,
    path: &Path,
    r: &mut ValidationReport,
) {
    let rp = path.key("requiredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in required.into_iter().flatten().enumerate() {
        check_pod_term(term, &rp.index(i), r);
    }
    let pp = path.key("preferredDuringSchedulingIgnoredDuringExecution");
    for (i, weighted) in preferred.into_iter().flatten().enumerate() {
        let p = pp.index(i);
        check_weight(weighted.weight, &p, r);
        check_pod_term(&weighted.pod_affinity_term, &p.key("podAffinityTerm"), r);
    }
}

fn check_pod_term(term: &PodAffinityTerm, path: &Path, r: &mut ValidationReport) {
    if term.topology_key.is_empty() {
        r.push(
            path.key("topologyKey").to_string(),
            IssueKind::InvalidValue,
            "must not be empty; name the node label that defines the topology, e.g. kubernetes.io/hostname",
        );
    } else if let Err(e) = check_qualified_name(&term.topology_key) {
        r.push(
            path.key("topologyKey").to_string(),
            IssueKind::InvalidValue,
            format!("invalid label key: {e}"),
        );
    }
    let selectors = [
        ("labelSelector", term.label_selector.as_ref()),
        ("namespaceSelector", term.namespace_selector.as_ref()),
    ];
    for (field, selector) in selectors {
        if let Some(selector) = selector {
            check_label_selector(selector, &path.key(field), r);
        }
    }
    for (i, namespace) in term.namespaces.iter().flatten().enumerate() {
        if let Err(e) = check_dns1123_label(namespace) {
            r.push(
                path.key("namespaces").index(i).to_string(),
                IssueKind::InvalidValue,
                format!("invalid namespace name: {e}"),
            );
        }
    }
}

fn check_label_selector(selector: &LabelSelector, path: &Path, r: &mut ValidationReport) {
    if let Some(labels) = &selector.match_labels {
        check_label_map(labels, &path.key("matchLabels"), false, r);
    }
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        check_selector_requirement(req, &path.key("matchExpressions").index(i), r);
    }
}

fn check_selector_requirement(
    req: &LabelSelectorRequirement,
    path: &Path,
    r: &mut ValidationReport,
) {
    if let Err(e) = check_qualified_name(&req.key) {
        r.push(
            path.key("key").to_string(),
            IssueKind::InvalidValue,
            format!("invalid label key: {e}"),
        );
    }
    let values = req.values.as_deref().unwrap_or_default();
    let problem = match req.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => {
            Some("must have at least one value for operator In or NotIn")
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            Some("must be empty for operator Exists or DoesNotExist")
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" => None,
        other => {
            r.push(
                path.key("operator").to_string(),
                IssueKind::InvalidValue,
                format!(
                    "invalid operator `{other}`, expected one of In, NotIn, Exists, DoesNotExist"
                ),
            );
            None
        }
    };
    if let Some(problem) = problem {
        r.push(
            path.key("values").to_string(),
            IssueKind::InvalidValue,
            problem,
        );
    }
    for (i, value) in values.iter().enumerate() {
        if let Err(e) = check_label_value(value) {
            r.push(
                path.key("values").index(i).to_string(),
                IssueKind::InvalidValue,
                format!("invalid label value `{value}`: {e}"),
            );
        }
    }
}

/// Preferred terms weigh 1 to 100.
fn check_weight(weight: i32, term: &Path, r: &mut ValidationReport) {
    if !(1..=100).contains(&weight) {
        r.push(
            term.key("weight").to_string(),
            IssueKind::InvalidValue,
            "must be between 1 and 100",
        );
    }
}

fn check_node_affinity(node: &NodeAffinity, p: &Path, r: &mut ValidationReport) {
    if let Some(required) = &node.required_during_scheduling_ignored_during_execution {
        let p = p.key("requiredDuringSchedulingIgnoredDuringExecution");
        if required.node_selector_terms.is_empty() {
            r.push(
                p.key("nodeSelectorTerms").to_string(),
                IssueKind::InvalidValue,
                "must have at least one term",
            );
        }
        for (i, term) in required.node_selector_terms.iter().enumerate() {
            let tp = p.key("nodeSelectorTerms").index(i);
            for (j, req) in term.match_expressions.iter().flatten().enumerate() {
                check_node_requirement(req, &tp.key("matchExpressions").index(j), r);
            }
        }
    }
    if let Some(preferred) = &node.preferred_during_scheduling_ignored_during_execution {
        let p = p.key("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, term) in preferred.iter().enumerate() {
            let tp = p.index(i);
            check_weight(term.weight, &tp, r);
            for (j, req) in term
                .preference
                .match_expressions
                .iter()
                .flatten()
                .enumerate()
            {
                check_node_requirement(
                    req,
                    &tp.key("preference").key("matchExpressions").index(j),
                    r,
                );
            }
        }
    }
}

fn check_node_requirement(req: &NodeSelectorRequirement, path: &Path, r: &mut ValidationReport) {
    if let Err(e) = check_qualified_name(&req.key) {
        r.push(
            path.key("key").to_string(),
            IssueKind::InvalidValue,
            format!("invalid label key: {e}"),
        );
    }
    let n = req.values.as_ref().map_or(0, Vec::len);
    let problem = match req.operator.as_str() {
        "In" | "NotIn" if n == 0 => Some("must have at least one value for operator In or NotIn"),
        "Exists" | "DoesNotExist" if n > 0 => {
            Some("must be empty for operator Exists or DoesNotExist")
        }
        "Gt" | "Lt" if n != 1 => Some("must have exactly one integer value for operator Gt or Lt"),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => None,
        _ => {
            r.push(
                path.key("operator").to_string(),
                IssueKind::InvalidValue,
                format!("invalid operator `{}`, expected one of In, NotIn, Exists, DoesNotExist, Gt, Lt", req.operator),
            );
            None
        }
    };
    if let Some(problem) = problem {
        r.push(
            path.key("values").to_string(),
            IssueKind::InvalidValue,
            problem,
        );
    } else if matches!(req.operator.as_str(), "Gt" | "Lt")
        && let Some(value) = req.values.iter().flatten().next()
        && value.parse::<i64>().is_err()
    {
        r.push(
            path.key("values").index(0).to_string(),
            IssueKind::InvalidValue,
            format!("`{value}` is not an integer; operators Gt and Lt compare integers"),
        );
    }
}
