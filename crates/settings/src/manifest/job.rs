//! The `batch/v1` Job of one step attempt.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, LocalObjectReference, PodSpec, PodTemplateSpec,
    ResourceRequirements, SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::{MAIN_CONTAINER, MAIN_PORT, MANAGED_BY, ManifestError, ManifestInput};
use crate::error::{Path, ValidationReport};
use crate::names::{job_name, sanitize_label_value};
use crate::pod_settings::KubernetesPodSettings;
use crate::resources::apply_default_memory_request;
use crate::step_operator::KubernetesStepOperatorSettings;
use crate::validate::k8s_names::check_dns1123_label;
use crate::validate::rules::check_resources;

const STEP_NAME_ANNOTATION: &str = "stepstack.dev/step-name";
const PIPELINE_NAME_ANNOTATION: &str = "stepstack.dev/pipeline-name";
const RUN_NAME_ANNOTATION: &str = "stepstack.dev/run-name";

/// The labels stepstack puts on the Job and its pods: `pipeline`, `run`, `step`
/// (sanitised values), `stepstack.dev/run-id`, `stepstack.dev/step-run-id`,
/// `stepstack.dev/attempt` and `app.kubernetes.io/managed-by=stepstack`.
pub fn job_labels(input: &ManifestInput) -> BTreeMap<String, String> {
    [
        ("pipeline", sanitize_label_value(&input.pipeline_name)),
        ("run", sanitize_label_value(&input.run_name)),
        ("step", sanitize_label_value(&input.step_name)),
        ("stepstack.dev/run-id", sanitize_label_value(&input.run_id)),
        (
            "stepstack.dev/step-run-id",
            sanitize_label_value(&input.step_run_id),
        ),
        ("stepstack.dev/attempt", input.attempt.to_string()),
        ("app.kubernetes.io/managed-by", MANAGED_BY.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn check_input(input: &ManifestInput) -> Result<(), ManifestError> {
    let invalid = |field, reason: &str| ManifestError::InvalidInput {
        field,
        reason: reason.to_string(),
    };
    if input.image.trim().is_empty() {
        return Err(invalid("image", "must not be empty"));
    }
    if input.step_name.is_empty() {
        return Err(invalid("step_name", "must not be empty"));
    }
    if input.step_run_id.is_empty() {
        return Err(invalid("step_run_id", "must not be empty"));
    }
    if input.pod_count == Some(0) {
        return Err(invalid("pod_count", "must be at least 1"));
    }
    check_dns1123_label(&input.namespace).map_err(|e| ManifestError::InvalidInput {
        field: "namespace",
        reason: e,
    })
}

/// Builds the Job of one step attempt, exactly as DESIGN.md §5 describes: one container
/// `main`, `restartPolicy: Never`, `backoffLimit: 0`, `terminationGracePeriodSeconds:
/// 30`, a deterministic name, stepstack's labels, and the pod settings applied on top.
/// For `pod_count > 1` the Job is Indexed and its pods get `subdomain` and the
/// `STEPSTACK_POD_COUNT` / `STEPSTACK_MAIN_ADDRESS` / `STEPSTACK_MAIN_PORT` variables;
/// create the Service with [`super::build_headless_service`] after the Job.
///
/// The settings are validated first, so invalid settings never produce a manifest.
pub fn build_job(
    settings: &KubernetesStepOperatorSettings,
    input: &ManifestInput,
) -> Result<Job, ManifestError> {
    settings.validate()?;
    check_input(input)?;
    let pod_count = input.pod_count.unwrap_or(settings.pod_count).max(1);
    let default_pod_settings = KubernetesPodSettings::default();
    let ps = settings
        .pod_settings
        .as_ref()
        .unwrap_or(&default_pod_settings);

    let name = job_name(
        settings.job_name_prefix.as_deref(),
        &input.step_name,
        &input.pipeline_name,
        &input.step_run_id,
        input.attempt,
        pod_count,
    );
    let labels = job_labels(input);

    let mut pod_labels = labels.clone();
    // Reserved keys were rejected by validation, so user labels cannot override ours.
    pod_labels.extend(ps.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut pod_annotations = ps.annotations.clone();
    if let Some(old) = pod_annotations.insert(STEP_NAME_ANNOTATION.into(), input.step_name.clone())
        && old != input.step_name
    {
        tracing::warn!(
            annotation = STEP_NAME_ANNOTATION,
            "pod_settings.annotations sets a stepstack annotation; stepstack's value wins"
        );
    }

    let env = build_env(input, ps, &name, pod_count)?;
    let resources = build_resources(ps, input)?;

    let mut security_context = ps.container_security_context.clone().unwrap_or_default();
    security_context.privileged =
        Some(settings.privileged || security_context.privileged.unwrap_or(false));

    let container = Container {
        name: MAIN_CONTAINER.into(),
        image: Some(input.image.clone()),
        command: (!input.command.is_empty()).then(|| input.command.clone()),
        args: (!input.args.is_empty()).then(|| input.args.clone()),
        env: (!env.is_empty()).then_some(env),
        env_from: (!ps.env_from.is_empty()).then(|| ps.env_from.clone()),
        resources: Some(resources),
        volume_mounts: (!ps.volume_mounts.is_empty()).then(|| ps.volume_mounts.clone()),
        security_context: Some(SecurityContext { ..security_context }),
        ..Default::default()
    };

    let mut pod_spec = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".into()),
        termination_grace_period_seconds: Some(30),
        service_account_name: settings.service_account_name.clone(),
        image_pull_secrets: (!ps.image_pull_secrets.is_empty()).then(|| {
            ps.image_pull_secrets
                .iter()
                .map(|n| LocalObjectReference { name: n.clone() })
                .collect()
        }),
        node_selector: (!ps.node_selectors.is_empty()).then(|| ps.node_selectors.clone()),
        affinity: ps.affinity.clone(),
        tolerations: (!ps.tolerations.is_empty()).then(|| ps.tolerations.clone()),
        volumes: (!ps.volumes.is_empty()).then(|| ps.volumes.clone()),
        host_ipc: ps.host_ipc.then_some(true),
        scheduler_name: ps.scheduler_name.clone().filter(|s| !s.is_empty()),
        subdomain: (pod_count > 1).then(|| name.clone()),
        ..Default::default()
    };
    if !ps.additional_pod_spec_args.is_empty() {
        pod_spec = apply_pod_spec_args(pod_spec, &ps.additional_pod_spec_args, &input.image)?;
    }

    let multi = pod_count > 1;
    let pod_count_i32 = i32::try_from(pod_count).unwrap_or(i32::MAX);
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(input.namespace.clone()),
            labels: Some(labels),
            annotations: Some(
                [
                    (STEP_NAME_ANNOTATION, &input.step_name),
                    (PIPELINE_NAME_ANNOTATION, &input.pipeline_name),
                    (RUN_NAME_ANNOTATION, &input.run_name),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            parallelism: Some(pod_count_i32),
            completions: multi.then_some(pod_count_i32),
            completion_mode: multi.then(|| "Indexed".to_string()),
            ttl_seconds_after_finished: settings
                .ttl_seconds_after_finished
                .map(|t| i32::try_from(t).unwrap_or(i32::MAX)),
            active_deadline_seconds: settings.active_deadline_seconds.map(i64::from),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        status: None,
    })
}

fn build_env(
    input: &ManifestInput,
    ps: &KubernetesPodSettings,
    job_name: &str,
    pod_count: u32,
) -> Result<Vec<EnvVar>, ManifestError> {
    let mut env: Vec<(EnvVar, String)> = Vec::new();
    for (i, (name, value)) in input.env.iter().enumerate() {
        env.push((
            EnvVar {
                name: name.clone(),
                value: Some(value.clone()),
                value_from: None,
            },
            format!("launch env[{i}]"),
        ));
    }
    for (i, s) in input.secret_env.iter().enumerate() {
        env.push((
            EnvVar {
                name: s.name.clone(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: s.secret_name.clone(),
                        key: s.key.clone(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            },
            format!("launch secret_env[{i}]"),
        ));
    }
    if pod_count > 1 {
        let main_address = format!("{job_name}-0.{job_name}.{}.svc", input.namespace);
        for (name, value) in [
            ("STEPSTACK_POD_COUNT", pod_count.to_string()),
            ("STEPSTACK_MAIN_ADDRESS", main_address),
            ("STEPSTACK_MAIN_PORT", MAIN_PORT.to_string()),
        ] {
            env.push((
                EnvVar {
                    name: name.into(),
                    value: Some(value),
                    value_from: None,
                },
                "stepstack multi-pod env".into(),
            ));
        }
    }
    for (i, e) in ps.env.iter().enumerate() {
        env.push((e.clone(), format!("pod_settings.env[{i}]")));
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (e, origin) in &env {
        if let Some(first) = seen.insert(e.name.as_str(), origin.as_str()) {
            return Err(ManifestError::DuplicateEnv {
                name: e.name.clone(),
                first: first.to_string(),
                second: origin.clone(),
            });
        }
    }
    Ok(env.into_iter().map(|(e, _)| e).collect())
}

fn build_resources(
    ps: &KubernetesPodSettings,
    input: &ManifestInput,
) -> Result<ResourceRequirements, ManifestError> {
    let mut resources = ps.resources.clone().unwrap_or_default();
    crate::resources::apply_resources(&input.resources, &mut resources)?;
    apply_default_memory_request(&mut resources);
    let mut report = ValidationReport::default();
    check_resources(
        &resources,
        &Path::new("pod_settings").key("resources"),
        &mut report,
    );
    report.into_result()?;
    Ok(resources)
}

/// Merges `additional_pod_spec_args` (camelCase keys) into the pod spec: lists extend,
/// maps update, scalars replace; strings equal to `{{ image }}` become the image.
fn apply_pod_spec_args(
    pod_spec: PodSpec,
    args: &BTreeMap<String, Value>,
    image: &str,
) -> Result<PodSpec, ManifestError> {
    let mut spec = serde_json::to_value(&pod_spec).map_err(|e| ManifestError::PodSpecArgs {
        reason: e.to_string(),
    })?;
    let Some(map) = spec.as_object_mut() else {
        return Err(ManifestError::PodSpecArgs {
            reason: "pod spec is not an object".into(),
        });
    };
    for (key, value) in args {
        if value.is_null() {
            continue;
        }
        let mut value = value.clone();
        substitute_image(&mut value, image);
        match (map.get_mut(key), value) {
            (Some(Value::Array(existing)), Value::Array(more)) => existing.extend(more),
            (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
            (_, value) => {
                map.insert(key.clone(), value);
            }
        }
    }
    serde_json::from_value(spec).map_err(|e| ManifestError::PodSpecArgs {
        reason: e.to_string(),
    })
}

fn substitute_image(value: &mut Value, image: &str) {
    match value {
        Value::String(s) if matches!(s.trim(), "{{ image }}" | "{{image}}") => {
            *s = image.to_string();
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute_image(v, image)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute_image(v, image)),
        _ => {}
    }
}
