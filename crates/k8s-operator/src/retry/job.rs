//! The Job of a retried attempt: the previous attempt's Job renamed, relabelled, with
//! the retries used so far, and without what the API server generated.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::RetryCounts;
use crate::labels::{ATTEMPT_LABEL, FAILURE_ANNOTATION, GENERATED_LABELS, RETRIES_ANNOTATION};

/// The retries `job`'s attempt had used (none for attempt 0).
pub(crate) fn retry_counts(job: &Job) -> RetryCounts {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RETRIES_ANNOTATION))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// The Job of the next attempt: the previous one renamed, relabelled and without what
/// the API server generated.
pub(crate) fn retry_job(previous: &Job, name: &str, attempt: u32, counts: RetryCounts) -> Job {
    let old_name = previous.metadata.name.clone().unwrap_or_default();
    let mut labels = previous.metadata.labels.clone().unwrap_or_default();
    labels.insert(ATTEMPT_LABEL.into(), attempt.to_string());
    let mut annotations = previous.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(FAILURE_ANNOTATION);
    annotations.insert(
        RETRIES_ANNOTATION.into(),
        serde_json::to_string(&counts).unwrap_or_default(),
    );
    let mut spec = previous.spec.clone().unwrap_or_default();
    spec.selector = None;
    spec.manual_selector = None;
    if let Some(l) = spec
        .template
        .metadata
        .as_mut()
        .and_then(|meta| meta.labels.as_mut())
    {
        for key in GENERATED_LABELS {
            l.remove(key);
        }
        l.insert(ATTEMPT_LABEL.into(), attempt.to_string());
    }
    if let Some(pod) = spec.template.spec.as_mut() {
        if pod.subdomain.is_some() {
            pod.subdomain = Some(name.to_owned());
        }
        for container in &mut pod.containers {
            for env in container.env.iter_mut().flatten() {
                if let Some(value) = env.value.as_mut()
                    && !old_name.is_empty()
                    && value.contains(&old_name)
                {
                    *value = value.replace(&old_name, name);
                }
            }
        }
    }
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: previous.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The Secret the Job's `main` container takes its secret environment from.
pub(crate) fn secret_of(job: &Job) -> Option<String> {
    job.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find_map(|e| {
            e.value_from
                .as_ref()?
                .secret_key_ref
                .as_ref()
                .map(|s| s.name.clone())
                .filter(|n| n.ends_with("-env"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_jobs_are_renamed_relabelled_and_clean() {
        let previous: Job = serde_json::from_value(json!({
            "metadata": {"name": "train-p-aaaa", "namespace": "ml", "uid": "u1", "resourceVersion": "7",
                "labels": {"stepstack.dev/attempt": "0", "stepstack.dev/step-run-id": "sr"},
                "annotations": {FAILURE_ANNOTATION: "{}"}},
            "spec": {
                "selector": {"matchLabels": {"controller-uid": "u1"}},
                "template": {
                    "metadata": {"labels": {"controller-uid": "u1", "job-name": "train-p-aaaa", "stepstack.dev/attempt": "0"}},
                    "spec": {"subdomain": "train-p-aaaa", "containers": [{"name": "main", "env": [
                        {"name": "STEPSTACK_MAIN_ADDRESS", "value": "train-p-aaaa-0.train-p-aaaa.ml.svc"},
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "train-p-aaaa-env", "key": "TOKEN"}}}
                    ]}]}
                }
            },
            "status": {"failed": 1}
        }))
        .unwrap();
        let counts = RetryCounts {
            step: 1,
            infrastructure: 0,
        };
        let job = retry_job(&previous, "train-p-bbbb", 1, counts);
        assert_eq!(job.metadata.name.as_deref(), Some("train-p-bbbb"));
        assert!(
            job.metadata.uid.is_none()
                && job.metadata.resource_version.is_none()
                && job.status.is_none()
        );
        assert_eq!(job.metadata.labels.as_ref().unwrap()[ATTEMPT_LABEL], "1");
        assert_eq!(retry_counts(&job), counts);
        assert!(
            !job.metadata
                .annotations
                .as_ref()
                .unwrap()
                .contains_key(FAILURE_ANNOTATION)
        );
        let spec = job.spec.as_ref().unwrap();
        assert!(spec.selector.is_none());
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert!(
            !template_labels.contains_key("controller-uid")
                && !template_labels.contains_key("job-name")
        );
        assert_eq!(template_labels[ATTEMPT_LABEL], "1");
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.subdomain.as_deref(), Some("train-p-bbbb"));
        let env = pod.containers[0].env.as_ref().unwrap();
        assert_eq!(
            env[0].value.as_deref(),
            Some("train-p-bbbb-0.train-p-bbbb.ml.svc")
        );
        assert_eq!(secret_of(&job).as_deref(), Some("train-p-aaaa-env"));
    }
}
