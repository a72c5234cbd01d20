//! Property tests: no input panics, and whatever is accepted is accepted again and
//! builds a manifest.

mod common;

use proptest::prelude::*;
use serde_json::{Map, Value};
use stepstack_settings::{
    Layer, SettingsLayers, build_job, parse_config, parse_override, parse_settings,
};

const KEYS: &[&str] = &[
    "pod_settings",
    "pod_count",
    "privileged",
    "node_selectors",
    "affinity",
    "tolerations",
    "resources",
    "requests",
    "limits",
    "cpu",
    "memory",
    "nvidia.com/gpu",
    "labels",
    "annotations",
    "volumes",
    "volume_mounts",
    "name",
    "mountPath",
    "emptyDir",
    "configMap",
    "key",
    "operator",
    "effect",
    "value",
    "tolerationSeconds",
    "toleration_seconds",
    "env",
    "env_from",
    "image_pull_secrets",
    "host_ipc",
    "additional_pod_spec_args",
    "priority_class_name",
    "dnsPolicy",
    "nodeAffinity",
    "retry",
    "logs",
    "on_interrupt",
    "service_account_name",
    "ttl_seconds_after_finished",
    "kubernetes_namespace",
    "container_security_context",
    "runAsUser",
    "Exists",
    "",
    "x",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-zA-Z_./-]{0,12}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e20f64..1e20).prop_map(Value::from),
        "[ -~]{0,16}".prop_map(Value::String),
        proptest::sample::select(
            &[
                "Exists",
                "Equal",
                "NoExecute",
                "4Gi",
                "500m",
                "1e3",
                "delete",
                "{{ image }}"
            ][..]
        )
        .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn check(doc: &Value) {
    if let Ok(settings) = parse_settings(doc, "p") {
        // Accepted once, accepted again (normalisation is idempotent) …
        settings
            .validate()
            .unwrap_or_else(|e| panic!("re-validation failed: {e}\n{doc}"));
        // … and it builds a manifest or says why not, without panicking.
        let _ = build_job(&settings, &common::launch());
    }
    let _ = parse_config(doc, "");
    let _ = SettingsLayers::new()
        .with_layer(Layer::Pipeline, "settings.step_operator", doc.clone())
        .with_layer(Layer::Step, "steps.s.settings.step_operator", doc.clone())
        .resolve();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_documents_never_panic(doc in value()) {
        check(&doc);
    }

    #[test]
    fn random_pod_settings_never_panic(ps in value()) {
        check(&serde_json::json!({"pod_settings": ps}));
    }

    #[test]
    fn random_yaml_text_never_panics(text in "[ -~\n]{0,80}") {
        if let Ok(doc) = serde_norway::from_str::<Value>(&text) {
            check(&doc);
        }
        let _ = parse_override(&text);
    }
}

fn plausible() -> impl Strategy<Value = Value> {
    let label = prop_oneof![
        6 => "[a-z0-9][a-z0-9._-]{0,10}[a-z0-9]",
        1 => "[A-Z ]{1,3}",
        1 => Just("stepstack.dev/x".to_string()),
        1 => Just("pipeline".to_string()),
    ];
    let quantity = prop_oneof![
        6 => "[1-9][0-9]{0,3}(m|Mi|Gi|k|)",
        1 => "[0-9]\\.[0-9]",
        1 => "[a-z]{1,3}",
    ];
    let resource = proptest::sample::select(&["cpu", "memory", "nvidia.com/gpu"][..]);
    (
        proptest::collection::btree_map(label.clone(), label, 0..3),
        proptest::collection::btree_map(resource.clone(), quantity.clone(), 0..2),
        proptest::collection::btree_map(resource, quantity, 0..2),
        proptest::sample::select(&["Exists", "Exists", "Equal", "In"][..]),
        proptest::sample::select(&["NoSchedule", "NoExecute", "NoExecute", "Bad"][..]),
        0u32..4,
        proptest::sample::select(&["data", "data", "data", "Data", "other"][..]),
    )
        .prop_map(|(labels, requests, limits, op, effect, pod_count, mount)| {
            serde_json::json!({
                "pod_count": pod_count,
                "pod_settings": {
                    "labels": labels,
                    "node_selectors": {"pool": "gpu"},
                    "resources": {"requests": requests, "limits": limits},
                    "tolerations": [{"key": "gpu", "operator": op, "effect": effect}],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "volume_mounts": [{"name": mount, "mountPath": "/data"}],
                    "additional_pod_spec_args": {"priority_class_name": "high"}
                }
            })
        })
}

#[test]
fn plausible_documents_are_accepted_or_fully_explained() {
    use proptest::test_runner::{Config, TestRunner};
    let accepted = std::cell::Cell::new(0usize);
    let rejected = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    runner
        .run(&plausible(), |doc| {
            match parse_settings(&doc, "steps.s.settings.step_operator") {
                Ok(settings) => {
                    accepted.set(accepted.get() + 1);
                    settings.validate().unwrap();
                    // Either a manifest that the OpenAPI schema accepts, or a reason
                    // (e.g. an extended resource with a request but no limit).
                    if let Ok(job) = build_job(&settings, &common::launch()) {
                        let v = serde_json::to_value(&job).unwrap();
                        prop_assert!(
                            common::openapi_errors::<k8s_openapi::api::batch::v1::Job>(&v)
                                .is_empty()
                        );
                    }
                }
                Err(report) => {
                    rejected.set(rejected.get() + 1);
                    prop_assert!(!report.issues.is_empty());
                    for issue in &report.issues {
                        prop_assert!(
                            issue.path.starts_with("steps.s.settings.step_operator."),
                            "{}",
                            issue
                        );
                        prop_assert!(!issue.message.is_empty());
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    // Both branches are really exercised.
    assert!(accepted.get() >= 10, "accepted {}", accepted.get());
    assert!(rejected.get() >= 10, "rejected {}", rejected.get());
}
