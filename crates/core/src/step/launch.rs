//! `StepLaunch`: everything a step operator needs to run one step.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Everything a step operator needs to run one step.
///
/// Plain and secret environment values are kept apart so a flavor can put secrets in a
/// Kubernetes Secret instead of the pod spec; `Debug` never shows secret values.
#[derive(Clone)]
#[non_exhaustive]
pub struct StepLaunch {
    /// The pipeline this step belongs to.
    pub pipeline_name: String,
    /// The human-readable name of the pipeline run.
    pub run_name: String,
    /// The unique id of the pipeline run.
    pub run_id: String,
    /// The step's name within the pipeline.
    pub step_name: String,
    /// The unique id of this step run; step operators derive deterministic object names
    /// from it so a retried submit adopts rather than duplicates.
    pub step_run_id: String,
    /// The container image to run.
    pub image: String,
    /// The entrypoint.
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    pub args: Vec<String>,
    /// Plain environment variables, in name order.
    pub environment: BTreeMap<String, String>,
    /// Secret environment variables, in name order.
    pub secret_environment: BTreeMap<String, SecretString>,
    /// Generic compute requirements, translated by the flavor.
    pub resources: ResourceSettings,
    /// The flavor's own settings for this step, already layered; the flavor validates
    /// them strictly before anything runs.
    pub settings: serde_json::Value,
}

impl StepLaunch {
    /// A launch of `command` in `image` as step `step_name` of `pipeline_name`, with a
    /// fresh run id and step-run id; the run name defaults to the run id.
    pub fn new(
        pipeline_name: impl Into<String>,
        step_name: impl Into<String>,
        image: impl Into<String>,
        command: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let run_id = new_id();
        StepLaunch {
            pipeline_name: pipeline_name.into(),
            run_name: run_id.clone(),
            run_id,
            step_name: step_name.into(),
            step_run_id: new_id(),
            image: image.into(),
            command: command.into_iter().map(Into::into).collect(),
            args: Vec::new(),
            environment: BTreeMap::new(),
            secret_environment: BTreeMap::new(),
            resources: ResourceSettings::default(),
            settings: serde_json::Value::Object(Default::default()),
        }
    }

    /// Sets the run name and id.
    pub fn with_run(mut self, run_name: impl Into<String>, run_id: impl Into<String>) -> Self {
        self.run_name = run_name.into();
        self.run_id = run_id.into();
        self
    }

    /// Sets the step-run id (for example to re-submit the same step run).
    pub fn with_step_run_id(mut self, step_run_id: impl Into<String>) -> Self {
        self.step_run_id = step_run_id.into();
        self
    }

    /// Sets the arguments.
    pub fn with_args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a plain environment variable.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.environment.insert(name.into(), value.into());
        self
    }

    /// Adds a secret environment variable.
    pub fn with_secret_env(mut self, name: impl Into<String>, value: SecretString) -> Self {
        self.secret_environment.insert(name.into(), value);
        self
    }

    /// Sets the generic resource requirements.
    pub fn with_resources(mut self, resources: ResourceSettings) -> Self {
        self.resources = resources;
        self
    }

    /// Sets the flavor settings.
    pub fn with_settings(mut self, settings: serde_json::Value) -> Self {
        self.settings = settings;
        self
    }
}

impl fmt::Debug for StepLaunch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepLaunch")
            .field("pipeline_name", &self.pipeline_name)
            .field("run_name", &self.run_name)
            .field("run_id", &self.run_id)
            .field("step_name", &self.step_name)
            .field("step_run_id", &self.step_run_id)
            .field("image", &self.image)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("environment", &self.environment)
            .field(
                "secret_environment",
                &self
                    .secret_environment
                    .keys()
                    .map(|k| (k, "[HIDDEN]"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("resources", &self.resources)
            .field("settings", &self.settings)
            .finish()
    }
}

/// Who made the GPUs; decides the extended resource name.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GpuVendor {
    /// `nvidia.com/gpu`
    #[default]
    Nvidia,
    /// `amd.com/gpu`
    Amd,
}

impl GpuVendor {
    /// The Kubernetes extended resource name of this vendor's GPUs.
    pub fn resource_name(self) -> &'static str {
        match self {
            GpuVendor::Nvidia => "nvidia.com/gpu",
            GpuVendor::Amd => "amd.com/gpu",
        }
    }
}

// The one type for resources: users write it in settings and pipeline files (validated
// and published as JSON Schema by `stepstack-settings`, which re-exports it and turns it
// into container requests and limits), and a `StepLaunch` carries it unchanged to the step
// operator. The doc comment below is the published schema's description, so it stays one
// line; the fields are public and stable, so the type is built with a literal.
/// Hardware a step asks for, as in ZenML's `ResourceSettings`, plus the GPU vendor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceSettings {
    /// CPU cores (fractions allowed, e.g. `0.5`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub cpu_count: Option<f64>,
    /// Whole GPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<u32>,
    /// Memory such as `4GB`, `512MiB` (ZenML units) or a Kubernetes quantity (`4Gi`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// GPU vendor (`nvidia`, the default, or `amd`).
    pub gpu_vendor: GpuVendor,
}

impl ResourceSettings {
    /// Requirements of `cpu_count` cores, `gpu_count` GPUs (of the default vendor) and
    /// `memory`.
    pub fn new(cpu_count: Option<f64>, gpu_count: Option<u32>, memory: Option<String>) -> Self {
        ResourceSettings {
            cpu_count,
            gpu_count,
            memory,
            gpu_vendor: GpuVendor::default(),
        }
    }

    /// Whether nothing is requested.
    pub fn is_empty(&self) -> bool {
        self.cpu_count.is_none() && self.gpu_count.is_none() && self.memory.is_none()
    }
}

/// A random, 32-hex-digit id.
fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
