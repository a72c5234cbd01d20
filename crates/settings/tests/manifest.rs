//! Manifest building details: pod-spec args, security context, env, resources, input.

mod common;

use common::{assert_valid_against_openapi, launch};
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};
use stepstack_settings::{
    GpuVendor, KubernetesStepOperatorSettings, ManifestError, ManifestInput, ResourceSettings,
    build_job, parse_settings,
};

fn settings(doc: Value) -> KubernetesStepOperatorSettings {
    parse_settings(&doc, "").unwrap_or_else(|e| panic!("{e}"))
}

fn job_json(s: &KubernetesStepOperatorSettings, input: &ManifestInput) -> Value {
    let v = serde_json::to_value(build_job(s, input).unwrap()).unwrap();
    assert_valid_against_openapi::<Job>(&v);
    v
}

#[test]
fn additional_pod_spec_args_merge_and_substitute_the_image() {
    let s = settings(json!({"pod_settings": {
        "node_selectors": {"pool": "gpu"},
        "additional_pod_spec_args": {
            "priority_class_name": "high",
            "node_selector": {"zone": "a"},
            "initContainers": [{"name": "warm", "image": "{{ image }}", "command": ["true"]}],
            "security_context": {"runAsUser": 1000, "fsGroup": 2000}
        }
    }}));
    let v = job_json(&s, &launch());
    let pod = &v["spec"]["template"]["spec"];
    assert_eq!(pod["priorityClassName"], "high");
    assert_eq!(pod["nodeSelector"], json!({"pool": "gpu", "zone": "a"}));
    assert_eq!(
        pod["initContainers"][0]["image"],
        "registry.example.com/ml/train:1.0"
    );
    assert_eq!(
        pod["securityContext"],
        json!({"runAsUser": 1000, "fsGroup": 2000})
    );
}

#[test]
fn container_security_context_is_camel_case_and_keeps_privileged() {
    let s = settings(json!({
        "privileged": true,
        "pod_settings": {"container_security_context": {
            "runAsNonRoot": true, "allowPrivilegeEscalation": true,
            "capabilities": {"drop": ["ALL"]}
        }}
    }));
    let v = job_json(&s, &launch());
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["securityContext"],
        json!({
            "privileged": true, "runAsNonRoot": true, "allowPrivilegeEscalation": true,
            "capabilities": {"drop": ["ALL"]}
        })
    );
}

#[test]
fn user_env_is_appended_and_duplicates_are_errors() {
    let s = settings(json!({"pod_settings": {
        "env": [{"name": "EXTRA", "value": "1"},
                {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}],
        "env_from": [{"secretRef": {"name": "creds"}}]
    }}));
    let v = job_json(&s, &launch());
    let main = &v["spec"]["template"]["spec"]["containers"][0];
    let names: Vec<&str> = main["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "STEPSTACK_STEP",
            "STEPSTACK_STORE_API_TOKEN",
            "EXTRA",
            "FROM_CM"
        ]
    );
    assert_eq!(main["envFrom"], json!([{"secretRef": {"name": "creds"}}]));

    let dup =
        settings(json!({"pod_settings": {"env": [{"name": "STEPSTACK_STEP", "value": "x"}]}}));
    let err = build_job(&dup, &launch()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable `STEPSTACK_STEP` is set twice (launch env[0] and pod_settings.env[0]); remove one"
    );
}

#[test]
fn resource_settings_and_default_memory_request() {
    let mut input = launch();
    input.resources = ResourceSettings {
        cpu_count: Some(2.0),
        gpu_count: Some(1),
        memory: None,
        gpu_vendor: GpuVendor::Nvidia,
    };
    let s = settings(json!({"pod_settings": {"resources": {"limits": {"memory": "256Mi"}}}}));
    let v = job_json(&s, &input);
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({
            "requests": {"cpu": "2", "memory": "256Mi", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "2", "memory": "256Mi", "nvidia.com/gpu": "1"}
        })
    );
    let v = job_json(&KubernetesStepOperatorSettings::default(), &launch());
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({"requests": {"memory": "400Mi"}})
    );
    // Resource settings above an explicit limit: reported, not sent to the cluster.
    let mut input = launch();
    input.resources.cpu_count = Some(8.0);
    let s = settings(json!({"pod_settings": {"resources": {"limits": {"cpu": "2"}}}}));
    let err = build_job(&s, &input).unwrap_err();
    assert!(
        err.to_string()
            .contains("pod_settings.resources.requests.cpu: request 8 is above the limit 2"),
        "{err}"
    );
}

#[test]
fn job_spec_fields_and_invalid_settings() {
    let s = settings(json!({
        "ttl_seconds_after_finished": 600, "active_deadline_seconds": 3600,
        "job_name_prefix": "Nightly", "pod_settings": {"scheduler_name": "volcano"}
    }));
    let v = job_json(&s, &launch());
    assert_eq!(v["spec"]["ttlSecondsAfterFinished"], 600);
    assert_eq!(v["spec"]["activeDeadlineSeconds"], 3600);
    assert!(
        v["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("nightly-trainer-my-pipeline-")
    );
    assert_eq!(v["spec"]["template"]["spec"]["schedulerName"], "volcano");

    // Rust-built settings are validated too: a reserved label is refused.
    let mut bad = KubernetesStepOperatorSettings::default();
    bad.pod_settings
        .get_or_insert_with(Default::default)
        .labels
        .insert("stepstack.dev/step-run-id".into(), "other".into());
    match build_job(&bad, &launch()) {
        Err(ManifestError::InvalidSettings(report)) => {
            assert_eq!(
                report.issues[0].path,
                "pod_settings.labels[\"stepstack.dev/step-run-id\"]"
            );
        }
        other => panic!("expected invalid settings, got {other:?}"),
    }

    let mut input = launch();
    input.namespace = "Not A Namespace".into();
    assert!(matches!(
        build_job(&KubernetesStepOperatorSettings::default(), &input),
        Err(ManifestError::InvalidInput {
            field: "namespace",
            ..
        })
    ));
    input = launch();
    input.image = String::new();
    assert!(matches!(
        build_job(&KubernetesStepOperatorSettings::default(), &input),
        Err(ManifestError::InvalidInput { field: "image", .. })
    ));
}

#[test]
fn names_are_deterministic_per_attempt() {
    let s = KubernetesStepOperatorSettings::default();
    let a = build_job(&s, &launch()).unwrap();
    let b = build_job(&s, &launch()).unwrap();
    assert_eq!(a.metadata.name, b.metadata.name);
    let mut retry = launch();
    retry.attempt = 1;
    let c = build_job(&s, &retry).unwrap();
    assert_ne!(a.metadata.name, c.metadata.name);
    assert_eq!(
        c.spec.unwrap().template.metadata.unwrap().labels.unwrap()["stepstack.dev/attempt"],
        "1"
    );
}
