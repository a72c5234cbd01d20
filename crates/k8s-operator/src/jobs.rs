//! The Jobs of a step's attempts: their API paths, creating one (adopting a Job that
//! already exists for the same step run), making what belongs to it (the Secret's
//! owner reference, the headless Service) and deleting one with its pods.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use stepstack_core::{Error, ErrorKind, Result};
use stepstack_settings::build_headless_service;

use crate::api::{Api, ApiError, Call, CallPolicy};
use crate::labels::STEP_RUN_LABEL;

/// The collection path of the Jobs of `namespace`.
pub(crate) fn jobs_path(namespace: &str) -> String {
    format!("/apis/batch/v1/namespaces/{namespace}/jobs")
}

/// The path of Job `name` in `namespace`.
pub(crate) fn job_path(namespace: &str, name: &str) -> String {
    format!("/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
}

/// The path of Secret `name` in `namespace`.
pub(crate) fn secret_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/secrets/{name}")
}

/// Delete options that take the Job's pods (and the Service and Secret it owns) along.
pub(crate) fn foreground() -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"})
}

/// Maps a create error, explaining a missing namespace.
pub(crate) fn create_error(err: ApiError, namespace: &str) -> Error {
    if err.code() == Some(404) {
        return Error::new(
            ErrorKind::NotFound,
            format!(
                "namespace `{namespace}` does not exist; create it with `kubectl create namespace {namespace}` or set `kubernetes_namespace` to an existing one"
            ),
        )
        .with_context("api_reason", "NotFound")
        .with_source(err);
    }
    err.into_core()
}

/// Creates `job`; a 409 adopts the existing Job when it belongs to the same step run.
pub(crate) async fn create_job(api: &Api, job: &Job, calls: CallPolicy) -> Result<Job> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let call = Call::post(
        format!("create Job {namespace}/{name}"),
        jobs_path(&namespace),
        job,
    );
    match api.json::<Job>(&call, calls).await {
        Ok(created) => Ok(created),
        Err(err) if err.code() == Some(409) => {
            let get = Call::get(
                format!("get Job {namespace}/{name}"),
                job_path(&namespace, &name),
            );
            let existing: Job = api.json(&get, calls).await.map_err(ApiError::into_core)?;
            let ours = label(job, STEP_RUN_LABEL);
            if ours.is_some() && label(&existing, STEP_RUN_LABEL) == ours {
                tracing::debug!(namespace = %namespace, job = %name, "the Job already exists for this step run; adopting it");
                Ok(existing)
            } else {
                Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "a Job named `{name}` already exists in namespace `{namespace}` and belongs to another step run; delete it or set `job_name_prefix`"
                    ),
                )
                .with_context("api_reason", "AlreadyExists"))
            }
        }
        Err(err) => Err(create_error(err, &namespace)),
    }
}

fn label<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Makes what belongs to a created Job: the owner reference on its Secret and, for
/// multi-pod Jobs, the headless Service (the Job is deleted if that fails).
pub(crate) async fn attach(
    api: &Api,
    job: &Job,
    secret: Option<&str>,
    calls: CallPolicy,
) -> Result<()> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if let Some(secret) = secret {
        own_secret(api, &namespace, secret, &name, &uid, calls).await?;
    }
    let multi = job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed");
    if multi {
        let service = build_headless_service(job, &uid).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot build the headless Service: {e}"),
            )
        })?;
        let call = Call::post(
            format!("create Service {namespace}/{name}"),
            format!("/api/v1/namespaces/{namespace}/services"),
            &service,
        );
        match api.bytes(&call, calls).await {
            Ok(_) => {}
            Err(err) if err.code() == Some(409) => {}
            Err(err) => {
                tracing::warn!(namespace = %namespace, job = %name, error = %stepstack_core::error_chain(&err), "could not create the headless Service; deleting the Job");
                delete_job(api, &namespace, &name, calls).await.ok();
                return Err(err.into_core());
            }
        }
    }
    Ok(())
}

/// Adds the Job as an owner of the Secret, so the Secret goes with the Job.
async fn own_secret(
    api: &Api,
    namespace: &str,
    secret: &str,
    job: &str,
    uid: &str,
    calls: CallPolicy,
) -> Result<()> {
    let get = Call::get(
        format!("get Secret {namespace}/{secret}"),
        secret_path(namespace, secret),
    );
    let current: Secret = api.json(&get, calls).await.map_err(ApiError::into_core)?;
    let mut owners = current.metadata.owner_references.unwrap_or_default();
    if owners.iter().any(|o| o.uid == uid) {
        return Ok(());
    }
    owners.push(OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.to_owned(),
        uid: uid.to_owned(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    });
    let patch = serde_json::json!({"metadata": {"ownerReferences": owners}});
    let call = Call::merge_patch(
        format!("own Secret {namespace}/{secret}"),
        secret_path(namespace, secret),
        &patch,
    );
    api.bytes(&call, calls)
        .await
        .map(|_| ())
        .map_err(ApiError::into_core)
}

/// Deletes one Job with foreground propagation; a Job that is already gone is fine.
pub(crate) async fn delete_job(
    api: &Api,
    namespace: &str,
    name: &str,
    calls: CallPolicy,
) -> Result<()> {
    let call = Call::delete(
        format!("delete Job {namespace}/{name}"),
        job_path(namespace, name),
        &foreground(),
    );
    match api.bytes(&call, calls).await {
        Ok(_) => Ok(()),
        Err(err) if err.code() == Some(404) => Ok(()),
        Err(err) => Err(err.into_core()),
    }
}
