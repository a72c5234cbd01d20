//! A table of bad inputs: each yields its exact path and message, all in one report.

use serde_json::json;
use stepstack_settings::{IssueKind, parse_settings};

const PREFIX: &str = "steps.trainer.settings.step_operator";

#[test]
fn every_problem_is_reported_together_with_its_path() {
    let doc = json!({
        "pod_count": "three",
        "pod_settings": {
            "node_selector": {"pool": "gpu"},
            "tolerations": [
                {"key": "gpu", "operator": "Exists", "effect": "NoExecute", "toleration_seconds": 30},
                {"key": "gpu", "operator": "Equals", "value": "present", "effect": "NoSchedule"}
            ],
            "resources": {
                "requests": {"cpu": 4},
                "limits": {"cpu": "2", "memory": "4GB"}
            },
            "labels": {"team name": "ml", "pipeline": "mine"},
            "volumes": [{"name": "data", "emptyDir": {}}],
            "volume_mounts": [{"name": "missing-vol", "mountPath": "/data"}],
            "host_ipc": "yes"
        }
    });
    let report = parse_settings(&doc, PREFIX).unwrap_err();
    let got: Vec<(String, String, IssueKind)> = report
        .issues
        .iter()
        .map(|i| (i.path.clone(), i.message.clone(), i.kind))
        .collect();
    let p = |s: &str| format!("{PREFIX}.{s}");
    let expected: Vec<(String, String, IssueKind)> = vec![
        (p("pod_count"), "expected an integer, found string \"three\"".into(), IssueKind::WrongType),
        (p("pod_settings.host_ipc"), "expected a boolean, found string \"yes\"".into(), IssueKind::WrongType),
        (p("pod_settings.node_selector"), "unknown field, did you mean node_selectors?".into(), IssueKind::UnknownField),
        (
            p("pod_settings.tolerations[0].toleration_seconds"),
            "unknown field, did you mean tolerationSeconds?".into(),
            IssueKind::UnknownField,
        ),
        (
            p("pod_settings.tolerations[1].operator"),
            "invalid value \"Equals\", expected one of \"Exists\", \"Equal\", did you mean Equal?".into(),
            IssueKind::InvalidValue,
        ),
        (
            p("pod_settings.labels[\"team name\"]"),
            "invalid label key: name part must consist of alphanumeric characters, '-', '_' or '.', and start and end with an alphanumeric character".into(),
            IssueKind::InvalidValue,
        ),
        (
            p("pod_settings.labels.pipeline"),
            "label key `pipeline` is reserved by stepstack (it identifies the step's Jobs and pods); choose another key".into(),
            IssueKind::ReservedLabel,
        ),
        (
            p("pod_settings.resources.limits.memory"),
            "invalid quantity `4GB`: has an unknown unit; use one of n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as 1e3".into(),
            IssueKind::InvalidValue,
        ),
        (
            p("pod_settings.resources.requests.cpu"),
            "request 4 is above the limit 2; lower the request or raise the limit".into(),
            IssueKind::InvalidValue,
        ),
        (
            p("pod_settings.volume_mounts[0].name"),
            "volume mount names no declared volume `missing-vol`; declared volumes: data".into(),
            IssueKind::InvalidValue,
        ),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected_sorted = expected.clone();
    expected_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got_sorted, expected_sorted, "full report:\n{report}");
}

#[test]
fn report_display_lists_every_problem() {
    let report = parse_settings(
        &json!({"pod_count": 0, "privileged": "no", "on_interrupt": "delet"}),
        "",
    )
    .unwrap_err();
    assert_eq!(
        report.to_string(),
        "invalid step-operator settings (3 problems)\n  \
         - on_interrupt: invalid value \"delet\", expected one of \"delete\", \"keep\", did you mean delete?\n  \
         - pod_count: must be at least 1, found 0\n  \
         - privileged: expected a boolean, found string \"no\""
    );
}

#[test]
fn more_kubernetes_rules() {
    let doc = json!({
        "service_account_name": "Bad_SA",
        "pod_settings": {
            "tolerations": [
                {"operator": "Equal", "value": "x"},
                {"key": "k", "operator": "Exists", "value": "v"},
                {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}
            ],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "gpu-type", "operator": "In"},
                    {"key": "zone", "operator": "Near", "values": ["a"]}
                ]}]
            }}},
            "volumes": [
                {"name": "Data", "emptyDir": {}},
                {"name": "two", "emptyDir": {}, "configMap": {"name": "c"}}
            ],
            "volume_mounts": [{"name": "two"}],
            "resources": {"requests": {"nvidia.com/gpu": "0.5"}, "limits": {"amd.com/gpu": 1}},
            "image_pull_secrets": ["Reg Cred"],
            "additional_pod_spec_args": {"priority_class_name": "high", "dnsPolicyy": "None"}
        }
    });
    let report = parse_settings(&doc, "").unwrap_err();
    let messages: Vec<String> = report.issues.iter().map(|i| i.to_string()).collect();
    let expect = [
        "pod_settings.additional_pod_spec_args.dnsPolicyy: unknown field, did you mean dnsPolicy?",
        "pod_settings.volume_mounts[0].mountPath: missing required field",
        "service_account_name: must be a DNS-1123 subdomain: lowercase alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character",
        "pod_settings.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values: must have at least one value for operator In or NotIn",
        "pod_settings.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].operator: invalid operator `Near`, expected one of In, NotIn, Exists, DoesNotExist, Gt, Lt",
        "pod_settings.tolerations[0].operator: must be Exists when key is empty",
        "pod_settings.tolerations[1].value: must be empty when operator is Exists",
        "pod_settings.tolerations[2].tolerationSeconds: only allowed with effect NoExecute",
        "pod_settings.resources.requests[\"nvidia.com/gpu\"]: extended resource `nvidia.com/gpu` must be a whole number, found `0.5`",
        "pod_settings.volumes[0].name: invalid volume name: must be a DNS-1123 label: lowercase alphanumeric characters or '-', starting and ending with an alphanumeric character",
        "pod_settings.volumes[1]: a volume has exactly one source, found configMap, emptyDir",
        "pod_settings.image_pull_secrets[0]: invalid secret name: must be a DNS-1123 subdomain: lowercase alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character",
    ];
    for e in expect {
        assert!(
            messages.iter().any(|m| m == e),
            "missing `{e}` in:\n{report}"
        );
    }
    assert_eq!(
        messages.len(),
        expect.len(),
        "unexpected extra issues:\n{report}"
    );
}

#[test]
fn pod_affinity_env_names_and_annotation_size() {
    let doc = json!({
        "pod_settings": {
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "gpu-memory", "operator": "Gt", "values": ["lots"]}
                    ]}]
                }},
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "not ok!"}},
                    "topologyKey": ""
                }]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 0,
                    "podAffinityTerm": {
                        "labelSelector": {"matchExpressions": [
                            {"key": "step", "operator": "Exists", "values": ["x"]},
                            {"key": "bad key", "operator": "In", "values": ["a"]}
                        ]},
                        "namespaces": ["ML"],
                        "topologyKey": "kubernetes.io/hostname"
                    }
                }]}
            },
            "env": [
                {"name": "EPOCHS", "value": "3"},
                {"name": "EPOCHS", "value": "4"},
                {"name": "BAD=NAME", "value": "x"},
                {"name": "caf\u{e9}", "value": "x"}
            ],
            "annotations": {"notes": "x".repeat(300 * 1024)}
        }
    });
    let report = parse_settings(&doc, "").unwrap_err();
    let messages: Vec<String> = report.issues.iter().map(|i| i.to_string()).collect();
    let node = "pod_settings.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]";
    let pod = "pod_settings.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]";
    let anti =
        "pod_settings.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]";
    let expect = [
        format!("{node}.values[0]: `lots` is not an integer; operators Gt and Lt compare integers"),
        format!("{pod}.topologyKey: must not be empty; name the node label that defines the topology, e.g. kubernetes.io/hostname"),
        format!("{pod}.labelSelector.matchLabels.app: invalid label value `not ok!`: must consist of alphanumeric characters, '-', '_' or '.', and start and end with an alphanumeric character"),
        format!("{anti}.weight: must be between 1 and 100"),
        format!("{anti}.podAffinityTerm.labelSelector.matchExpressions[0].values: must be empty for operator Exists or DoesNotExist"),
        format!("{anti}.podAffinityTerm.labelSelector.matchExpressions[1].key: invalid label key: name part must consist of alphanumeric characters, '-', '_' or '.', and start and end with an alphanumeric character"),
        format!("{anti}.podAffinityTerm.namespaces[0]: invalid namespace name: must be a DNS-1123 label: lowercase alphanumeric characters or '-', starting and ending with an alphanumeric character"),
        "pod_settings.env[1].name: `EPOCHS` is also set by env[0]; Kubernetes would silently keep only the last one, so set it once".to_owned(),
        "pod_settings.env[2].name: `BAD=NAME` contains '='; environment variable names are printable ASCII without '='".to_owned(),
        "pod_settings.env[3].name: `caf\\u{e9}` contains 'é'; environment variable names are printable ASCII without '='".to_owned(),
        "pod_settings.annotations: the annotations total 307205 bytes; Kubernetes accepts at most 262144 (256 KiB) per object; keep large data in a ConfigMap or volume instead".to_owned(),
    ];
    for e in &expect {
        assert!(
            messages.iter().any(|m| m == e),
            "missing `{e}` in:\n{report}"
        );
    }
    assert_eq!(
        messages.len(),
        expect.len(),
        "unexpected extra issues:\n{report}"
    );
}

#[test]
fn snake_case_pod_spec_args_are_canonicalised() {
    let s = parse_settings(
        &json!({"pod_settings": {"additional_pod_spec_args": {
            "priority_class_name": "high", "dns_policy": "Default", "runtimeClassName": "nvidia", "hostname": null
        }}}),
        "",
    )
    .unwrap();
    let args = &s.pod_settings.unwrap().additional_pod_spec_args;
    let keys: Vec<&str> = args.keys().map(String::as_str).collect();
    assert_eq!(keys, ["dnsPolicy", "priorityClassName", "runtimeClassName"]);
    let err = parse_settings(
        &json!({"pod_settings": {"additional_pod_spec_args": {"dns_policy": "Default", "dnsPolicy": "Default"}}}),
        "",
    )
    .unwrap_err();
    assert_eq!(err.issues.len(), 1, "{err}");
}

#[test]
fn deprecated_fields_and_floats_are_accepted() {
    let s = parse_settings(
        &json!({"pod_startup_timeout": 600, "pod_failure_backoff": 1.0, "api_request_timeout": 2.7}),
        "",
    )
    .unwrap();
    assert_eq!(s.pod_startup_timeout, Some(600));
    assert_eq!(s.api_request_timeout, Some(2));
    let err = parse_settings(&json!({"api_request_timeout": 0.5}), "").unwrap_err();
    assert_eq!(err.issues[0].path, "api_request_timeout");
}

#[test]
fn extended_resources_need_equal_limits() {
    let err = parse_settings(
        &json!({"pod_settings": {"resources": {
            "requests": {"nvidia.com/gpu": 1, "amd.com/gpu": 2},
            "limits": {"amd.com/gpu": 1}
        }}}),
        "",
    )
    .unwrap_err();
    let messages: Vec<String> = err.issues.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        messages,
        [
            "pod_settings.resources.requests[\"amd.com/gpu\"]: extended resource `amd.com/gpu` request 2 must equal its limit 1",
            "pod_settings.resources.limits[\"nvidia.com/gpu\"]: extended resource `nvidia.com/gpu` cannot be overcommitted: set its limit (equal to the request)",
        ]
    );
}
