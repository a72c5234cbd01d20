//! A run configuration, a component configuration and `--set` overrides, end to end.

mod common;

use serde_json::json;
use stepstack_settings::Format as FileFormat;
use stepstack_settings::{
    Layer, LoadedDocument, SettingsLayers, build_job, load_str, parse_config,
};

const RUN_CONFIG: &str = include_str!("fixtures/run-config.yaml");

fn component() -> serde_json::Value {
    json!({
        "kubernetes_namespace": "ml",
        "service_account_name": "runner",
        "pod_settings": {"labels": {"team": "ml"}, "image_pull_secrets": ["regcred"]}
    })
}

#[test]
fn trainer_gets_merged_settings_with_provenance() {
    let doc = load_str(RUN_CONFIG, FileFormat::Yaml, "run.yaml").unwrap();
    let config = parse_config(&component(), "component k8s:").unwrap();
    assert_eq!(config.kubernetes_namespace, "ml");
    let layers = SettingsLayers::new().with_component_config("component k8s: ", component());
    let effective = doc
        .add_layers("trainer", "kubernetes", "k8s", "run.yaml", layers)
        .with_override("pod_settings.node_selectors.zone=eu-west-1b")
        .unwrap()
        .resolve()
        .unwrap_or_else(|e| panic!("{e}"));
    let ps = effective.settings.pod_settings.clone().unwrap();
    assert_eq!(ps.node_selectors["pool"], "gpu");
    assert_eq!(ps.node_selectors["zone"], "eu-west-1b");
    assert_eq!(ps.labels["team"], "ml");
    assert_eq!(ps.tolerations.len(), 1);
    assert_eq!(
        effective.settings.service_account_name.as_deref(),
        Some("runner")
    );

    let layer = |p: &str| effective.source_of(p).unwrap().layer;
    assert_eq!(layer("pod_settings.node_selectors.pool"), Layer::Step);
    assert_eq!(
        layer("pod_settings.node_selectors.zone"),
        Layer::CommandLine
    );
    assert_eq!(
        layer("pod_settings.resources.limits.memory"),
        Layer::Pipeline
    );
    assert_eq!(layer("pod_settings.labels.team"), Layer::Component);
    assert_eq!(layer("pod_count"), Layer::FlavorDefaults);

    let resources = doc.resource_settings("trainer").unwrap();
    assert_eq!(resources.gpu_count, Some(1));
    assert_eq!(resources.memory.as_deref(), Some("4GB"));

    let mut input = common::launch();
    input.resources = resources;
    let job = serde_json::to_value(build_job(&effective.settings, &input).unwrap()).unwrap();
    let main = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        main["resources"],
        json!({
            "requests": {"cpu": "2", "memory": "4G", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}
        })
    );
    common::assert_valid_against_openapi::<k8s_openapi::api::batch::v1::Job>(&job);
}

#[test]
fn cross_layer_errors_point_at_the_step_that_caused_them() {
    let doc = load_str(RUN_CONFIG, FileFormat::Yaml, "run.yaml").unwrap();
    // The evaluator requests 16Gi against the pipeline's 8Gi limit.
    let err = doc
        .add_layers(
            "evaluator",
            "kubernetes",
            "k8s",
            "run.yaml",
            SettingsLayers::new(),
        )
        .resolve()
        .unwrap_err();
    assert_eq!(
        err.issues.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        [
            "steps.evaluator.settings.step_operator.pod_settings.resources.requests.memory: \
             request 16Gi is above the limit 8Gi; lower the request or raise the limit"
        ]
    );
}

#[test]
fn a_plain_settings_file_is_the_step_layer() {
    let doc = load_str(
        "pod_settings:\n  node_selectors:\n    pool: gpu\n  tolerations:\n    - key: gpu\n      efect: NoSchedule\n",
        FileFormat::Yaml,
        "settings.yaml")
    .unwrap();
    assert!(matches!(doc, LoadedDocument::Settings(_)));
    let err = doc
        .add_layers(
            "trainer",
            "kubernetes",
            "k8s",
            "settings.yaml",
            SettingsLayers::new(),
        )
        .resolve()
        .unwrap_err();
    assert_eq!(
        err.issues[0].to_string(),
        "settings.yaml: pod_settings.tolerations[0].efect: unknown field, did you mean effect?"
    );
    assert_eq!(
        doc.resource_settings("trainer").unwrap(),
        Default::default()
    );
}
