#![doc = include_str!("../README.md")]

mod env_case;
mod error;
pub mod layers;
pub mod load;
pub mod manifest;
mod names;
mod pod_settings;
pub mod quantity;
mod resources;
pub mod schema;
mod step_operator;
mod validate;

pub use error::{Issue, IssueKind, ValidationReport};
pub use layers::{
    EffectiveSettings, Layer, LayerSource, OverrideError, SettingsLayers, parse_override,
};
pub use load::{
    Checked, LoadError, LoadedDocument, SettingsTarget, StepDocument, StepOperatorSettings,
    env_layers, env_overrides, load_file, load_str,
};
pub use manifest::{
    MAIN_CONTAINER, MAIN_PORT, ManifestError, ManifestInput, SecretEnvRef, build_headless_service,
    build_job, job_labels,
};
pub use names::{
    MAX_LABEL_LEN, job_name, multi_pod_job_name, sanitize_label, sanitize_label_value,
    step_run_hash,
};
pub use pod_settings::KubernetesPodSettings;
pub use resources::{
    DEFAULT_MEMORY_REQUEST, GpuVendor, ResourceError, ResourceSettings,
    apply_default_memory_request, apply_resources,
};
pub use schema::{config_schema, schemas, settings_schema};
pub use step_operator::{
    CONFIG_ONLY_FIELDS, DEFAULT_FAIL_ON_CONTAINER_WAITING_REASONS, DEFAULT_NAMESPACE,
    DEFAULT_SCHEDULING_TIMEOUT, DEFAULT_STARTUP_TIMEOUT, DEPRECATED_FIELDS,
    InfrastructureRetryBudget, KubernetesStepOperatorConfig, KubernetesStepOperatorSettings,
    LogOptions, OnInterrupt, StepRetryPolicy,
};
pub use stepstack_input::Format;
/// Kubernetes naming rules (`Err` holds the reason in Kubernetes' words), for other
/// crates that name Kubernetes objects or label values after user input.
pub use validate::k8s_names::{check_dns1123_label, check_label_value};
/// The one "did you mean …?" helper.
pub use validate::suggest::did_you_mean;
pub use validate::{
    MAX_INDEXED_POD_COUNT, RESERVED_LABEL_KEYS, RESERVED_LABEL_PREFIX, is_reserved_label_key,
    parse_config, parse_resource_settings, parse_settings, settings_warnings,
};
