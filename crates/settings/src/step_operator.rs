//! `KubernetesStepOperatorSettings` (per pipeline or step) and
//! `KubernetesStepOperatorConfig` (per registered component).

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::pod_settings::{KubernetesPodSettings, is_false};

/// The container waiting reasons that fail a step at once by default.
pub const DEFAULT_FAIL_ON_CONTAINER_WAITING_REASONS: [&str; 4] = [
    "InvalidImageName",
    "ErrImagePull",
    "ImagePullBackOff",
    "CreateContainerConfigError",
];

/// The fields that ZenML deprecated and stepstack accepts with a warning.
pub const DEPRECATED_FIELDS: [&str; 4] = [
    "pod_startup_timeout",
    "pod_failure_max_retries",
    "pod_failure_retry_delay",
    "pod_failure_backoff",
];

/// Settings of the Kubernetes step operator for one pipeline or step (ZenML's
/// `KubernetesStepOperatorSettings` plus stepstack's deadlines, retries, log options
/// and interrupt behaviour).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesStepOperatorSettings {
    /// What the step's pod looks like.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_settings: Option<KubernetesPodSettings>,
    /// Number of pods; more than one makes an Indexed Job with a headless Service.
    #[schemars(range(min = 1))]
    pub pod_count: u32,
    /// Service account of the pod (namespace default when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Run the `main` container privileged.
    pub privileged: bool,
    /// Prefix of the Job name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_name_prefix: Option<String>,
    /// Delete the finished Job after this many seconds (never when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u32>,
    /// Kubernetes fails the Job after this many seconds of running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<u32>,
    /// Container waiting reasons that fail the step at once instead of waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_on_container_waiting_reasons: Option<Vec<String>>,
    /// Timeout of one Kubernetes API request, in seconds (a float is truncated).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_timeout"
    )]
    #[schemars(with = "Option<f64>", range(min = 1))]
    pub api_request_timeout: Option<u64>,
    /// Retries of a failed Kubernetes API call (transient failures only).
    pub max_api_retries: u32,
    /// Seconds a pod may stay unscheduled before the step fails as Unschedulable
    /// (default 600; `null` waits forever, e.g. for a slow cluster autoscaler).
    pub scheduling_timeout: Option<u64>,
    /// Seconds a scheduled pod may take to start its containers (default 600; `null`
    /// waits forever).
    pub startup_timeout: Option<u64>,
    /// Retries of a step whose own code failed.
    pub retry: StepRetryPolicy,
    /// Separate retry budget for infrastructure failures (eviction, preemption, node
    /// loss); these do not use up `retry`.
    pub infrastructure_retry: InfrastructureRetryBudget,
    /// How step logs are streamed and kept.
    pub logs: LogOptions,
    /// What happens to the Job when the launching process is interrupted.
    pub on_interrupt: OnInterrupt,
    /// Deprecated (unused since ZenML moved to Jobs); accepted with a warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("deprecated" = true))]
    pub pod_startup_timeout: Option<i64>,
    /// Deprecated; accepted with a warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("deprecated" = true))]
    pub pod_failure_max_retries: Option<i64>,
    /// Deprecated; accepted with a warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("deprecated" = true))]
    pub pod_failure_retry_delay: Option<i64>,
    /// Deprecated; accepted with a warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("deprecated" = true))]
    pub pod_failure_backoff: Option<f64>,
}

impl Default for KubernetesStepOperatorSettings {
    fn default() -> Self {
        Self {
            pod_settings: None,
            pod_count: 1,
            service_account_name: None,
            privileged: false,
            job_name_prefix: None,
            ttl_seconds_after_finished: None,
            active_deadline_seconds: None,
            fail_on_container_waiting_reasons: Some(
                DEFAULT_FAIL_ON_CONTAINER_WAITING_REASONS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            api_request_timeout: None,
            max_api_retries: 3,
            scheduling_timeout: Some(DEFAULT_SCHEDULING_TIMEOUT),
            startup_timeout: Some(DEFAULT_STARTUP_TIMEOUT),
            retry: StepRetryPolicy::default(),
            infrastructure_retry: InfrastructureRetryBudget::default(),
            logs: LogOptions::default(),
            on_interrupt: OnInterrupt::default(),
            pod_startup_timeout: None,
            pod_failure_max_retries: None,
            pod_failure_retry_delay: None,
            pod_failure_backoff: None,
        }
    }
}

fn deserialize_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value: Option<f64> = Option::deserialize(d)?;
    // Truncation is the documented ZenML behaviour; validation rejects < 1, and the
    // warning is given once per layer by `SettingsLayers::resolve` (not here: documents
    // are deserialized several times on their way to a Job).
    Ok(value.map(|v| v.trunc().max(0.0) as u64))
}

/// Retry policy for step failures (the step's own code failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StepRetryPolicy {
    /// Retries after the first attempt (0 = no retry).
    pub max_retries: u32,
    /// Delay before the first retry, in seconds.
    pub delay_seconds: u64,
    /// Factor applied to the delay after each retry.
    #[schemars(range(min = 1.0))]
    pub backoff: f64,
    /// Upper bound of the delay, in seconds.
    pub max_delay_seconds: u64,
}

impl Default for StepRetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 0,
            delay_seconds: 10,
            backoff: 2.0,
            max_delay_seconds: 300,
        }
    }
}

/// Retry budget for infrastructure failures (eviction, preemption, node loss), counted
/// separately from [`StepRetryPolicy`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct InfrastructureRetryBudget {
    /// Attempts that may be lost to infrastructure failures before the step fails.
    pub max_retries: u32,
    /// Delay before resubmitting, in seconds.
    pub delay_seconds: u64,
}

impl Default for InfrastructureRetryBudget {
    fn default() -> Self {
        Self {
            max_retries: 2,
            delay_seconds: 5,
        }
    }
}

/// How step logs are streamed and kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogOptions {
    /// Prefix each streamed line with its Kubernetes timestamp.
    pub timestamps: bool,
    /// Keep the logs after the pod is gone.
    pub keep: bool,
    /// Log lines shown in the error when the step fails.
    pub tail_lines_on_failure: u32,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            timestamps: true,
            keep: true,
            tail_lines_on_failure: 50,
        }
    }
}

/// What to do with a running Job when the launching process is interrupted (Ctrl-C).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnInterrupt {
    /// Delete the Job (foreground propagation), stopping its pods.
    #[default]
    Delete,
    /// Leave the Job running; it can be reattached later.
    Keep,
}

/// Seconds a pod may stay unscheduled, unless set otherwise.
pub const DEFAULT_SCHEDULING_TIMEOUT: u64 = 600;
/// Seconds a scheduled pod may take to start, unless set otherwise.
pub const DEFAULT_STARTUP_TIMEOUT: u64 = 600;

/// Component-level configuration of a registered Kubernetes step operator: every
/// settings field (so each can be set at registration) plus the connection fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct KubernetesStepOperatorConfig {
    /// Namespace of the Jobs; it must exist (it is never created).
    pub kubernetes_namespace: String,
    /// Use the in-cluster service account; context and connector are ignored.
    #[serde(skip_serializing_if = "is_false")]
    pub incluster: bool,
    /// kubeconfig context, used when no connector is linked (current context if unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes_context: Option<String>,
    /// The settings defaults of this component.
    #[serde(flatten)]
    pub settings: KubernetesStepOperatorSettings,
}

/// Default namespace of the Jobs (as in ZenML).
pub const DEFAULT_NAMESPACE: &str = "zenml";

impl Default for KubernetesStepOperatorConfig {
    fn default() -> Self {
        Self {
            kubernetes_namespace: DEFAULT_NAMESPACE.to_string(),
            incluster: false,
            kubernetes_context: None,
            settings: KubernetesStepOperatorSettings::default(),
        }
    }
}

/// The component-only keys of [`KubernetesStepOperatorConfig`].
pub const CONFIG_ONLY_FIELDS: [&str; 3] =
    ["kubernetes_namespace", "incluster", "kubernetes_context"];
