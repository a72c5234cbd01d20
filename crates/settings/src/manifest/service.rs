//! The headless Service of a multi-pod (Indexed) Job.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{MAIN_PORT, ManifestError};

/// The headless Service that gives the pods of an Indexed Job stable DNS names
/// (`<job>-<index>.<job>.<namespace>.svc`). It is owned by the Job, so it is garbage
/// collected with it; `job_uid` must come from the API server's create response
/// (ZenML fault 31), so call this after creating the Job.
pub fn build_headless_service(job: &Job, job_uid: &str) -> Result<Service, ManifestError> {
    let name = job.metadata.name.clone().ok_or(ManifestError::UnnamedJob)?;
    if job_uid.is_empty() {
        return Err(ManifestError::InvalidInput {
            field: "job_uid",
            reason: "must be the uid of the created Job".into(),
        });
    }
    let labels = job.metadata.labels.clone().unwrap_or_default();
    // Select the pods by stepstack's own labels (step run + attempt identify the Job),
    // not by labels the job controller adds.
    let selector: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "stepstack.dev/step-run-id" | "stepstack.dev/attempt"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name,
                uid: job_uid.to_string(),
                controller: Some(false),
                block_owner_deletion: Some(false),
            }]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("main".into()),
                port: MAIN_PORT,
                ..Default::default()
            }]),
            publish_not_ready_addresses: Some(true),
            ..Default::default()
        }),
        status: None,
    })
}
