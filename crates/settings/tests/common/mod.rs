//! Shared test helpers: the seed example in Rust, launch data, and a validator for
//! built manifests against the Kubernetes OpenAPI definitions.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, PersistentVolumeClaimVolumeSource, ResourceRequirements, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;
use stepstack_settings::{
    KubernetesPodSettings, KubernetesStepOperatorSettings, ManifestInput, SecretEnvRef,
};

pub const SEED_YAML: &str = include_str!("../fixtures/seed-settings.yaml");

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// The seed example built from k8s-openapi values.
pub fn seed_settings() -> KubernetesStepOperatorSettings {
    KubernetesStepOperatorSettings {
        service_account_name: Some("ml-service-account".into()),
        pod_settings: Some(KubernetesPodSettings {
            node_selectors: map(&[
                ("cloud.google.com/gke-nodepool", "ml-pool"),
                ("kubernetes.io/arch", "amd64"),
            ]),
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "gpu-type".into(),
                                operator: "In".into(),
                                values: Some(vec![
                                    "nvidia-tesla-v100".into(),
                                    "nvidia-tesla-p100".into(),
                                ]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            tolerations: vec![
                Toleration {
                    key: Some("gpu".into()),
                    operator: Some("Equal".into()),
                    value: Some("present".into()),
                    effect: Some("NoSchedule".into()),
                    toleration_seconds: None,
                },
                Toleration {
                    key: Some("high-priority".into()),
                    operator: Some("Exists".into()),
                    effect: Some("PreferNoSchedule".into()),
                    ..Default::default()
                },
            ],
            resources: Some(ResourceRequirements {
                requests: Some(quantities(&[
                    ("cpu", "2"),
                    ("memory", "4Gi"),
                    ("nvidia.com/gpu", "1"),
                ])),
                limits: Some(quantities(&[
                    ("cpu", "4"),
                    ("memory", "8Gi"),
                    ("nvidia.com/gpu", "1"),
                ])),
                claims: None,
            }),
            annotations: map(&[
                ("prometheus.io/scrape", "true"),
                ("prometheus.io/port", "8080"),
            ]),
            volumes: vec![
                Volume {
                    name: "data-volume".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: "ml-data-pvc".into(),
                        read_only: None,
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "config-volume".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: "ml-config".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            volume_mounts: vec![
                VolumeMount {
                    name: "data-volume".into(),
                    mount_path: "/mnt/data".into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: "config-volume".into(),
                    mount_path: "/etc/ml-config".into(),
                    read_only: Some(true),
                    ..Default::default()
                },
            ],
            host_ipc: true,
            image_pull_secrets: vec!["regcred".into(), "gcr-secret".into()],
            labels: map(&[
                ("app", "ml-pipeline"),
                ("environment", "production"),
                ("team", "data-science"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Launch data of the `trainer` step of `my_pipeline`.
pub fn launch() -> ManifestInput {
    ManifestInput {
        pipeline_name: "my_pipeline".into(),
        run_name: "my_pipeline-2024_05_01-12_00_00_123456".into(),
        run_id: "6f1c2d3e-0000-4000-8000-000000000001".into(),
        step_name: "trainer".into(),
        step_run_id: "6f1c2d3e-0000-4000-8000-0000000000aa".into(),
        attempt: 0,
        namespace: "ml".into(),
        image: "registry.example.com/ml/train:1.0".into(),
        command: vec!["python".into(), "train.py".into()],
        args: vec!["--epochs".into(), "3".into()],
        env: vec![("STEPSTACK_STEP".into(), "trainer".into())],
        secret_env: vec![SecretEnvRef {
            name: "STEPSTACK_STORE_API_TOKEN".into(),
            secret_name: "stepstack-run-token".into(),
            key: "token".into(),
        }],
        ..Default::default()
    }
}

/// Validates a manifest against the strict JSON Schema of its k8s-openapi type, which
/// k8s-openapi generates from the Kubernetes OpenAPI spec (v1.33 here): unknown keys,
/// wrong types, missing required fields and malformed quantities are all rejected.
pub fn assert_valid_against_openapi<T: schemars::JsonSchema>(manifest: &Value) {
    let errors = openapi_errors::<T>(manifest);
    assert!(
        errors.is_empty(),
        "manifest rejected by the OpenAPI schema: {errors:#?}"
    );
}

/// The schema violations of `manifest` (empty when valid).
pub fn openapi_errors<T: schemars::JsonSchema>(manifest: &Value) -> Vec<String> {
    let schema = stepstack_settings::schema::strict_schema_for::<T>();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    validator
        .iter_errors(manifest)
        .map(|e| format!("{}: {}", e.instance_path(), e))
        .collect()
}
