//! The seed's example settings: YAML and Rust values give identical manifests, and the
//! manifests are accepted by the Kubernetes OpenAPI schema.

mod common;

use common::{SEED_YAML, assert_valid_against_openapi, launch, openapi_errors, seed_settings};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};
use stepstack_settings::Format as FileFormat;
use stepstack_settings::{
    LoadedDocument, build_headless_service, build_job, load_str, parse_settings,
};

fn seed_from_yaml() -> stepstack_settings::KubernetesStepOperatorSettings {
    let LoadedDocument::Settings(value) =
        load_str(SEED_YAML, FileFormat::Yaml, "seed-settings.yaml").unwrap()
    else {
        panic!("the seed file is a settings document");
    };
    parse_settings(&value, "").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn yaml_and_rust_values_give_identical_settings_and_manifests() {
    let from_yaml = seed_from_yaml();
    let from_rust = seed_settings();
    assert_eq!(from_yaml, from_rust);
    from_rust.validate().unwrap();
    let a = build_job(&from_yaml, &launch()).unwrap();
    let b = build_job(&from_rust, &launch()).unwrap();
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&b).unwrap()
    );
}

#[test]
fn seed_manifest_has_the_documented_shape() {
    let job = build_job(&seed_from_yaml(), &launch()).unwrap();
    let v = serde_json::to_value(&job).unwrap();
    assert_eq!(v["apiVersion"], "batch/v1");
    assert_eq!(v["kind"], "Job");
    let name = v["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("trainer-my-pipeline-"), "{name}");
    assert_eq!(name.len(), "trainer-my-pipeline-".len() + 8);
    assert_eq!(v["metadata"]["namespace"], "ml");
    let job_labels = json!({
        "pipeline": "my_pipeline",
        "run": "my_pipeline-2024_05_01-12_00_00_123456",
        "step": "trainer",
        "stepstack.dev/run-id": "6f1c2d3e-0000-4000-8000-000000000001",
        "stepstack.dev/step-run-id": "6f1c2d3e-0000-4000-8000-0000000000aa",
        "stepstack.dev/attempt": "0",
        "app.kubernetes.io/managed-by": "stepstack"
    });
    assert_eq!(v["metadata"]["labels"], job_labels);
    let spec = &v["spec"];
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(spec["parallelism"], 1);
    assert!(spec.get("completionMode").is_none());
    let template = &spec["template"];
    let pod_labels = template["metadata"]["labels"].as_object().unwrap();
    for (k, val) in job_labels.as_object().unwrap() {
        assert_eq!(&pod_labels[k], val);
    }
    assert_eq!(pod_labels["team"], "data-science");
    assert_eq!(
        template["metadata"]["annotations"]["prometheus.io/port"],
        "8080"
    );
    assert_eq!(
        template["metadata"]["annotations"]["stepstack.dev/step-name"],
        "trainer"
    );

    let pod = &template["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["hostIPC"], true);
    assert_eq!(pod["serviceAccountName"], "ml-service-account");
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "regcred"}, {"name": "gcr-secret"}])
    );
    assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], "amd64");
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "gpu-type"
    );
    assert_eq!(pod["tolerations"].as_array().unwrap().len(), 2);
    assert_eq!(
        pod["volumes"],
        json!([
            {"name": "data-volume", "persistentVolumeClaim": {"claimName": "ml-data-pvc"}},
            {"name": "config-volume", "configMap": {"name": "ml-config"}}
        ])
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let main = &containers[0];
    assert_eq!(main["name"], "main");
    assert_eq!(main["image"], "registry.example.com/ml/train:1.0");
    assert_eq!(main["command"], json!(["python", "train.py"]));
    assert_eq!(main["args"], json!(["--epochs", "3"]));
    assert_eq!(
        main["env"],
        json!([
            {"name": "STEPSTACK_STEP", "value": "trainer"},
            {"name": "STEPSTACK_STORE_API_TOKEN",
             "valueFrom": {"secretKeyRef": {"name": "stepstack-run-token", "key": "token"}}}
        ])
    );
    assert_eq!(
        main["resources"],
        json!({
            "requests": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"}
        })
    );
    assert_eq!(main["securityContext"], json!({"privileged": false}));
    assert_eq!(main["volumeMounts"][1]["readOnly"], true);

    assert_valid_against_openapi::<Job>(&v);
}

#[test]
fn multi_pod_job_and_headless_service() {
    let mut settings = seed_from_yaml();
    settings.pod_count = 3;
    let job = build_job(&settings, &launch()).unwrap();
    let v = serde_json::to_value(&job).unwrap();
    let name = v["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.len() <= 61);
    assert_eq!(v["spec"]["parallelism"], 3);
    assert_eq!(v["spec"]["completions"], 3);
    assert_eq!(v["spec"]["completionMode"], "Indexed");
    let pod = &v["spec"]["template"]["spec"];
    assert_eq!(pod["subdomain"], name.as_str());
    let env = &pod["containers"][0]["env"];
    assert_eq!(env[2], json!({"name": "STEPSTACK_POD_COUNT", "value": "3"}));
    assert_eq!(
        env[3],
        json!({"name": "STEPSTACK_MAIN_ADDRESS", "value": format!("{name}-0.{name}.ml.svc")})
    );
    assert_eq!(
        env[4],
        json!({"name": "STEPSTACK_MAIN_PORT", "value": "29500"})
    );
    assert_valid_against_openapi::<Job>(&v);

    let service = build_headless_service(&job, "0b3f6a2e-1111-4222-8333-444455556666").unwrap();
    let s = serde_json::to_value(&service).unwrap();
    assert_eq!(s["metadata"]["name"], name.as_str());
    assert_eq!(s["metadata"]["namespace"], "ml");
    assert_eq!(
        s["metadata"]["ownerReferences"],
        json!([{
            "apiVersion": "batch/v1", "kind": "Job", "name": name,
            "uid": "0b3f6a2e-1111-4222-8333-444455556666",
            "controller": false, "blockOwnerDeletion": false
        }])
    );
    assert_eq!(s["spec"]["clusterIP"], "None");
    assert_eq!(s["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(s["spec"]["ports"], json!([{"name": "main", "port": 29500}]));
    assert_eq!(
        s["spec"]["selector"],
        json!({
            "stepstack.dev/step-run-id": "6f1c2d3e-0000-4000-8000-0000000000aa",
            "stepstack.dev/attempt": "0"
        })
    );
    assert_valid_against_openapi::<Service>(&s);
    assert!(build_headless_service(&job, "").is_err());
}

#[test]
fn committed_schema_accepts_the_seed_and_rejects_a_typo() {
    let schema: Value = serde_json::from_str(include_str!(
        "../../../schemas/kubernetes-step-operator-settings.json"
    ))
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let seed: Value = serde_norway::from_str(SEED_YAML).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&seed)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let typo = json!({"pod_settings": {"tolerations": [{"key": "a", "toleration_seconds": 1}]}});
    assert!(!validator.is_valid(&typo));
    let bad_enum = json!({"on_interrupt": "explode"});
    assert!(!validator.is_valid(&bad_enum));

    let config_schema: Value = serde_json::from_str(include_str!(
        "../../../schemas/kubernetes-step-operator-config.json"
    ))
    .unwrap();
    let validator = jsonschema::validator_for(&config_schema).unwrap();
    let mut config = seed.clone();
    config["kubernetes_namespace"] = json!("ml");
    assert!(validator.is_valid(&config));
    assert!(!validator.is_valid(&json!({"kubernetes_namespaces": "ml"})));
}

#[test]
fn the_openapi_check_rejects_broken_manifests() {
    let job = build_job(&seed_from_yaml(), &launch()).unwrap();
    let good = serde_json::to_value(&job).unwrap();
    let breakages: [(&str, Value); 4] = [
        ("/spec/template/spec/restartPolicyy", json!("Never")),
        (
            "/spec/template/spec/containers/0/resources/limits/memory",
            json!("8GB"),
        ),
        ("/spec/backoffLimit", json!("zero")),
        (
            "/spec/template/spec/containers/0/volumeMounts/0/mount_path",
            json!("/x"),
        ),
    ];
    for (pointer, bad) in breakages {
        let mut v = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent).unwrap()[key] = bad;
        assert!(
            !openapi_errors::<Job>(&v).is_empty(),
            "{pointer} should be rejected"
        );
    }
    // A container without its required name.
    let mut v = good.clone();
    v["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    assert!(!openapi_errors::<Job>(&v).is_empty());
}
