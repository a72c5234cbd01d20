//! `KubernetesPodSettings`: what a step's pod looks like beyond stepstack's own fields.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, ResourceRequirements, SecurityContext, Toleration, Volume,
    VolumeMount,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pod-level settings of a step, field for field as ZenML's `KubernetesPodSettings`.
///
/// Top-level keys are snake_case; embedded Kubernetes objects use Kubernetes' camelCase
/// wire format and are the `k8s-openapi` types. Build it in Rust with
/// `..Default::default()`, or load it from a file (see [`crate::load`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesPodSettings {
    /// Node labels the pod must run on (`spec.nodeSelector`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selectors: BTreeMap<String, String>,
    /// Pod affinity rules (`spec.affinity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Taints the pod tolerates (`spec.tolerations`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Requests and limits of the `main` container. Quantities given as YAML numbers
    /// are accepted and normalised to strings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Annotations of the pod template.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Volumes appended to the pod's volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Volume mounts appended to the `main` container; each must name a declared volume.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Share the host's IPC namespace (`spec.hostIPC`).
    #[serde(skip_serializing_if = "is_false")]
    pub host_ipc: bool,
    /// Scheduler to dispatch the pod (`spec.schedulerName`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    /// Names of Secrets used to pull the image (`spec.imagePullSecrets`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// Extra pod labels. stepstack's own keys (`pipeline`, `run`, `step`,
    /// `app.kubernetes.io/managed-by`, `stepstack.dev/…`) are reserved.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Environment variables appended after stepstack's own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Sources of environment variables (`envFrom`) of the `main` container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Security context of the `main` container (merged with `privileged`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_security_context: Option<SecurityContext>,
    /// Further `PodSpec` fields, keyed by their camelCase name (snake_case is accepted
    /// and converted). Lists extend, maps merge, scalars replace; a string that is
    /// exactly `{{ image }}` is replaced by the step's image.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_pod_spec_args: BTreeMap<String, serde_json::Value>,
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
