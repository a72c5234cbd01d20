//! `preview`: the exact objects a launch would create, offline, and what the API server
//! would say about them (server-side dry run with strict field validation).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Secret, Service};
use serde::Serialize;
use stepstack_core::{Error, ErrorKind, Result, StepLaunch};
use stepstack_settings::build_headless_service;

use crate::api::{Call, CallPolicy};
use crate::jobs::jobs_path;
use crate::operator::KubernetesStepOperator;
use crate::submit::manifests;

/// Placeholder uid of the Job in a preview (the real one comes from the API server).
const PREVIEW_UID: &str = "00000000-0000-0000-0000-000000000000";

/// The objects one launch creates, as they would be sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Preview {
    /// The Job of the first attempt.
    pub job: Job,
    /// The headless Service of a multi-pod step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    /// The Secret with the secret environment, values replaced by `[HIDDEN]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

impl Preview {
    /// The objects as a multi-document YAML stream (Job, then Service, then Secret).
    pub fn to_yaml(&self) -> Result<String> {
        let mut out = String::new();
        for value in self.documents()? {
            out.push_str("---\n");
            out.push_str(&serde_norway::to_string(&value).map_err(internal)?);
        }
        Ok(out)
    }

    /// The objects as a JSON `v1/List`.
    pub fn to_json(&self) -> Result<String> {
        let list =
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": self.documents()?});
        serde_json::to_string_pretty(&list).map_err(internal)
    }

    fn documents(&self) -> Result<Vec<serde_json::Value>> {
        let mut docs = vec![with_kind(&self.job, "batch/v1", "Job")?];
        if let Some(service) = &self.service {
            docs.push(with_kind(service, "v1", "Service")?);
        }
        if let Some(secret) = &self.secret {
            docs.push(with_kind(secret, "v1", "Secret")?);
        }
        Ok(docs)
    }
}

fn with_kind(obj: &impl Serialize, api_version: &str, kind: &str) -> Result<serde_json::Value> {
    let mut value = serde_json::to_value(obj).map_err(internal)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), kind.into());
    }
    Ok(value)
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Internal, "cannot render the preview").with_source(e)
}

/// What the API server said about a preview in a dry run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ServerPreview {
    /// The Job as the API server would store it (defaults applied), if accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
    /// Every problem the API server reported (empty when it would accept everything).
    pub problems: Vec<String>,
}

impl ServerPreview {
    /// Whether the API server would accept the step's objects.
    pub fn accepted(&self) -> bool {
        self.problems.is_empty()
    }
}

impl KubernetesStepOperator {
    /// The objects `launch` would create, built without contacting the cluster.
    pub fn preview(&self, launch: &StepLaunch) -> Result<Preview> {
        let settings = self.effective_settings(launch)?;
        let (job, secret) = manifests(&settings, launch, &self.config().kubernetes_namespace)?;
        let service = if settings.pod_count > 1 {
            Some(build_headless_service(&job, PREVIEW_UID).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidSettings,
                    format!("cannot build the headless Service: {e}"),
                )
            })?)
        } else {
            None
        };
        let secret = secret.map(|mut s| {
            if let Some(data) = s.string_data.as_mut() {
                data.values_mut().for_each(|v| *v = "[HIDDEN]".into());
            }
            s
        });
        Ok(Preview {
            job,
            service,
            secret,
        })
    }

    /// Asks the API server whether it would accept the step's objects: a create with
    /// `dryRun=All` and `fieldValidation=Strict` (schema, defaulting, admission and quota
    /// run; nothing is stored).
    pub async fn preview_on_server(&self, launch: &StepLaunch) -> Result<ServerPreview> {
        let settings = self.effective_settings(launch)?;
        let preview = self.preview(launch)?;
        let calls = CallPolicy::new(settings.api_request_timeout, settings.max_api_retries);
        let (api, _) = self.inner.api().await?;
        let namespace = &self.config().kubernetes_namespace;
        let mut problems = Vec::new();
        let job_call = Call::post(
            format!(
                "dry-run create Job {namespace}/{}",
                preview.job.metadata.name.as_deref().unwrap_or("")
            ),
            format!("{}?dryRun=All&fieldValidation=Strict", jobs_path(namespace)),
            &with_kind(&preview.job, "batch/v1", "Job")?,
        );
        let job = match api.json::<Job>(&job_call, calls).await {
            Ok(job) => Some(job),
            Err(err) => {
                problems.push(format!(
                    "Job: {}",
                    err.status_message()
                        .map(str::to_owned)
                        .unwrap_or_else(|| err.to_string())
                ));
                None
            }
        };
        for (what, path, body) in [
            (
                "Service",
                format!("/api/v1/namespaces/{namespace}/services"),
                preview
                    .service
                    .as_ref()
                    .map(|s| with_kind(s, "v1", "Service"))
                    .transpose()?,
            ),
            (
                "Secret",
                format!("/api/v1/namespaces/{namespace}/secrets"),
                preview
                    .secret
                    .as_ref()
                    .map(|s| with_kind(s, "v1", "Secret"))
                    .transpose()?,
            ),
        ] {
            let Some(body) = body else { continue };
            let call = Call::post(
                format!("dry-run create {what} in {namespace}"),
                format!("{path}?dryRun=All&fieldValidation=Strict"),
                &body,
            );
            if let Err(err) = api.bytes(&call, calls).await {
                problems.push(format!(
                    "{what}: {}",
                    err.status_message()
                        .map(str::to_owned)
                        .unwrap_or_else(|| err.to_string())
                ));
            }
        }
        Ok(ServerPreview { job, problems })
    }
}
