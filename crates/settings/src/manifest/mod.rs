//! Pure manifest building: settings + launch data → `batch/v1` Job (and, for
//! `pod_count > 1`, the headless Service). No cluster, no network.

mod job;
mod service;

pub use job::{build_job, job_labels};
pub use service::build_headless_service;

use crate::error::ValidationReport;
use crate::resources::{ResourceError, ResourceSettings};

/// Name of the step's container.
pub const MAIN_CONTAINER: &str = "main";
/// Port of the main pod of a multi-pod step (`STEPSTACK_MAIN_PORT`).
pub const MAIN_PORT: i32 = 29500;
/// Value of `app.kubernetes.io/managed-by` on everything stepstack creates.
pub const MANAGED_BY: &str = "stepstack";

/// An environment variable whose value lives in a Kubernetes Secret; the manifest
/// carries only the reference (`valueFrom.secretKeyRef`), never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnvRef {
    /// Name of the environment variable.
    pub name: String,
    /// Name of the Secret in the Job's namespace.
    pub secret_name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// What the step operator knows about one launch, besides the settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ManifestInput {
    /// Pipeline name (label `pipeline`, sanitised; exact in an annotation).
    pub pipeline_name: String,
    /// Run name (label `run`, sanitised).
    pub run_name: String,
    /// Run id (label `stepstack.dev/run-id`).
    pub run_id: String,
    /// Step name (label `step`, sanitised; exact in an annotation).
    pub step_name: String,
    /// Step-run id (label `stepstack.dev/step-run-id`; part of the Job name's hash).
    pub step_run_id: String,
    /// Attempt number, 0 for the first (label `stepstack.dev/attempt`; part of the hash).
    pub attempt: u32,
    /// Namespace of the Job (the component's `kubernetes_namespace`).
    pub namespace: String,
    /// Container image.
    pub image: String,
    /// Container command (the image's entrypoint when empty).
    pub command: Vec<String>,
    /// Container arguments.
    pub args: Vec<String>,
    /// Plain environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Secret environment variables, as references to Secret keys.
    pub secret_env: Vec<SecretEnvRef>,
    /// Hardware the step asks for (translated into requests and limits).
    pub resources: ResourceSettings,
    /// Overrides `settings.pod_count` when set (e.g. from a resource allocation).
    pub pod_count: Option<u32>,
}

/// Why no manifest could be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The settings break a rule (see the report for every problem).
    #[error(transparent)]
    InvalidSettings(#[from] ValidationReport),
    /// A launch field is missing or malformed.
    #[error("invalid launch data: {field} {reason}")]
    InvalidInput {
        /// The `ManifestInput` field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The resource settings cannot be translated.
    #[error(transparent)]
    Resources(#[from] ResourceError),
    /// Two environment variables have the same name.
    #[error("environment variable `{name}` is set twice ({first} and {second}); remove one")]
    DuplicateEnv {
        /// Variable name.
        name: String,
        /// Where it was first set.
        first: String,
        /// Where it was set again.
        second: String,
    },
    /// `additional_pod_spec_args` do not form a valid PodSpec once merged.
    #[error("pod_settings.additional_pod_spec_args: merged pod spec is invalid: {reason}")]
    PodSpecArgs {
        /// The deserializer's message.
        reason: String,
    },
    /// The Job passed to [`build_headless_service`] has no name.
    #[error("the created Job has no name; pass the Job returned by the API server")]
    UnnamedJob,
}
