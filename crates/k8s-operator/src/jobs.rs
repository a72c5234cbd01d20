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

/// A failed create, and whether the API server refused it for the object itself.
#[derive(Debug)]
pub(crate) struct CreateError {
    /// The error, as the caller reports it.
    pub(crate) error: Error,
    /// The Status reason when the API server refused the object (invalid, or denied by
    /// a quota): a step whose create is refused ends as `CreateFailed` with this
    /// `api_reason` instead of failing the call.
    pub(crate) rejected: Option<String>,
}

impl From<Error> for CreateError {
    fn from(error: Error) -> Self {
        CreateError {
            error,
            rejected: None,
        }
    }
}

impl CreateError {
    /// Classifies a failed create from the typed API error.
    pub(crate) fn from_api(err: ApiError) -> Self {
        let rejected = rejection_reason(&err).map(str::to_owned);
        CreateError {
            error: err.into_core(),
            rejected,
        }
    }

    /// The same failure with `f` applied to the error (to add context).
    pub(crate) fn map(self, f: impl FnOnce(Error) -> Error) -> Self {
        CreateError {
            error: f(self.error),
            rejected: self.rejected,
        }
    }
}

/// The Status reason of a create the API server refused for the object itself, read
/// from the answer's code and reason: an invalid object (`Invalid`, `BadRequest`,
/// `UnprocessableEntity`), or a 403 from the quota admission. That last one has the
/// code, reason and details of an RBAC denial (which stays an error: the identity needs
/// a permission); Kubernetes tells them apart only in the Status message, which the
/// quota admission starts with `exceeded quota`.
pub(crate) fn rejection_reason(err: &ApiError) -> Option<&str> {
    let (code, reason) = (err.code()?, err.reason()?);
    let invalid = matches!(reason, "Invalid" | "BadRequest" | "UnprocessableEntity");
    let over_quota = code == 403
        && err
            .status_message()
            .is_some_and(|m| m.contains("exceeded quota"));
    (invalid || over_quota).then_some(reason)
}

/// Maps a create error, explaining a missing namespace.
pub(crate) fn create_error(err: ApiError, namespace: &str) -> CreateError {
    if err.code() == Some(404) {
        return Error::new(
            ErrorKind::NotFound,
            format!(
                "namespace `{namespace}` does not exist; create it with `kubectl create namespace {namespace}` or set `kubernetes_namespace` to an existing one"
            ),
        )
        .with_context("api_reason", "NotFound")
        .with_source(err)
        .into();
    }
    CreateError::from_api(err)
}

/// Creates `job`; a 409 adopts the existing Job when it belongs to the same step run.
pub(crate) async fn create_job(
    api: &Api,
    job: &Job,
    calls: CallPolicy,
) -> Result<Job, CreateError> {
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
                .with_context("api_reason", "AlreadyExists")
                .into())
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
) -> Result<(), CreateError> {
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
                return Err(CreateError::from_api(err));
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn status(op: &str, code: u16, reason: &str, message: &str) -> ApiError {
        ApiError::Status {
            op: op.to_owned(),
            code,
            reason: reason.to_owned(),
            message: message.to_owned(),
            retry_after: None,
        }
    }

    proptest! {
        /// Over generated answers: a create is refused exactly when the Status reason
        /// says the object is invalid or the quota admission denied it; what the call
        /// was about (its object names, in the text users see) never decides it.
        #[test]
        fn refusals_follow_the_status_not_the_text(
            code in prop::sample::select(vec![400u16, 401, 403, 404, 409, 422, 429, 500, 503]),
            reason in prop::sample::select(vec![
                "Invalid", "BadRequest", "UnprocessableEntity", "Forbidden", "NotFound",
                "AlreadyExists", "Unauthorized", "InternalError",
            ]),
            quota in any::<bool>(),
            op in "(create Job ml/)?[a-z -]{0,20}(exceeded quota|Invalid|BadRequest)?",
        ) {
            let message = if quota {
                "jobs.batch \"x\" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1"
            } else {
                "jobs.batch is forbidden: User \"ci\" cannot create resource \"jobs\""
            };
            let err = status(&op, code, reason, message);
            let expected = matches!(reason, "Invalid" | "BadRequest" | "UnprocessableEntity")
                || (code == 403 && quota);
            prop_assert_eq!(rejection_reason(&err), expected.then_some(reason));
            // The same answer about another object is classified the same way.
            let other = status("create Job ml/other", code, reason, message);
            prop_assert_eq!(rejection_reason(&other), rejection_reason(&err));
        }
    }

    #[test]
    fn unanswered_calls_are_never_refusals() {
        let timeout = ApiError::Timeout {
            op: "create Job ml/exceeded quota Invalid".into(),
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(rejection_reason(&timeout), None);
    }
}
