//! The pipeline model: what a pipeline file and the Rust builder both produce.
//!
//! A [`Pipeline`] only exists validated: [`crate::load_file`], [`crate::load_str`] and
//! [`crate::PipelineBuilder::build`] run the same checks, so a Rust program and a file user get
//! the same model and the same errors.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use stepstack_settings::{
    Checked, LoadedDocument, ResourceSettings, SettingsLayers, ValidationReport,
};

use crate::dag::Dag;

/// A validated pipeline: a name, optional pipeline-level settings and its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub(crate) name: String,
    pub(crate) settings: Option<Value>,
    pub(crate) steps: BTreeMap<String, Step>,
    /// The settings of the pipeline and its steps as the settings crate reads a run
    /// configuration, so layering is exactly that of `step run --settings`.
    pub(crate) document: LoadedDocument,
    pub(crate) dag: Dag,
}

/// One step: a command with its inputs, outputs and where it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Step {
    /// The program and its first arguments (placeholders allowed).
    pub command: Vec<String>,
    /// More arguments, appended to `command` (placeholders allowed).
    pub args: Vec<String>,
    /// The container image, for a step on a step operator.
    pub image: Option<String>,
    /// The step-operator component that runs the step; `None` runs it on this machine.
    pub step_operator: Option<String>,
    /// The step's settings block, in run-configuration form (`step_operator`,
    /// `step_operator.<flavor>`, `step_operator:<name>`, `resources`, …).
    pub settings: Option<Value>,
    /// The step's resource settings (`cpu_count`, `gpu_count`, `memory`, `gpu_vendor`).
    pub resources: Option<Value>,
    /// Environment variables (values may hold placeholders).
    pub environment: BTreeMap<String, String>,
    /// Inputs by name: which step's output each one reads.
    pub inputs: BTreeMap<String, OutputRef>,
    /// The names of the directories the step writes.
    pub outputs: Vec<String>,
    /// Steps that must finish first although no input says so.
    pub after: Vec<String>,
    /// How often a failed step is tried again.
    pub retry: Option<Retry>,
    /// Whether an earlier identical successful run may stand in for this one.
    pub cache: bool,
}

/// A reference to another step's output, written `STEP.OUTPUT`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct OutputRef {
    /// The producing step.
    pub step: String,
    /// Its output.
    pub output: String,
}

impl OutputRef {
    /// A reference to `output` of `step`.
    pub fn new(step: impl Into<String>, output: impl Into<String>) -> OutputRef {
        OutputRef {
            step: step.into(),
            output: output.into(),
        }
    }
}

impl std::fmt::Display for OutputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.step, self.output)
    }
}

/// Retries of a failed step, as ZenML's `StepRetryConfig`: up to `max_retries` more
/// attempts, the n-th after `delay * backoff^(n-1)` seconds (`backoff` 0 or 1: a fixed
/// delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// Attempts after the first.
    pub max_retries: u32,
    /// Seconds before the first retry.
    pub delay: u64,
    /// Factor by which the delay grows per retry.
    pub backoff: u32,
}

impl Default for Retry {
    /// ZenML's defaults: one retry, at once.
    fn default() -> Retry {
        Retry {
            max_retries: 1,
            delay: 0,
            backoff: 0,
        }
    }
}

impl Step {
    /// A step running `command` (the program first), on this machine, cached, with
    /// nothing else set.
    pub fn new<I, S>(command: I) -> Step
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Step {
            command: command.into_iter().map(Into::into).collect(),
            args: Vec::new(),
            image: None,
            step_operator: None,
            settings: None,
            resources: None,
            environment: BTreeMap::new(),
            inputs: BTreeMap::new(),
            outputs: Vec::new(),
            after: Vec::new(),
            retry: None,
            cache: true,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Step
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the image.
    pub fn image(mut self, image: impl Into<String>) -> Step {
        self.image = Some(image.into());
        self
    }

    /// Runs the step on the step-operator component `name`.
    pub fn step_operator(mut self, name: impl Into<String>) -> Step {
        self.step_operator = Some(name.into());
        self
    }

    /// Sets the settings block (run-configuration form, e.g.
    /// `{"step_operator": {"pod_settings": …}}`).
    pub fn settings(mut self, settings: Value) -> Step {
        self.settings = Some(settings);
        self
    }

    /// Sets the resource settings.
    pub fn resources(mut self, resources: &ResourceSettings) -> Step {
        self.resources = serde_json::to_value(resources).ok();
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Step {
        self.environment.insert(name.into(), value.into());
        self
    }

    /// Declares input `name`, read from `output` of `step`.
    pub fn input(
        mut self,
        name: impl Into<String>,
        step: impl Into<String>,
        output: impl Into<String>,
    ) -> Step {
        self.inputs
            .insert(name.into(), OutputRef::new(step, output));
        self
    }

    /// Declares an output directory.
    pub fn output(mut self, name: impl Into<String>) -> Step {
        self.outputs.push(name.into());
        self
    }

    /// Runs the step only after `step` finished.
    pub fn after(mut self, step: impl Into<String>) -> Step {
        self.after.push(step.into());
        self
    }

    /// Sets the retries.
    pub fn retry(mut self, retry: Retry) -> Step {
        self.retry = Some(retry);
        self
    }

    /// Turns caching on or off.
    pub fn cache(mut self, cache: bool) -> Step {
        self.cache = cache;
        self
    }

    /// The steps this one waits for: producers of its inputs and its `after` steps,
    /// each once, sorted.
    pub fn upstream(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .inputs
            .values()
            .map(|r| r.step.as_str())
            .chain(self.after.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

impl Pipeline {
    /// The pipeline's name (the `pipeline` label of its Jobs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pipeline-level settings block, as written.
    pub fn settings(&self) -> Option<&Value> {
        self.settings.as_ref()
    }

    /// The steps, by name.
    pub fn steps(&self) -> &BTreeMap<String, Step> {
        &self.steps
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.get(name)
    }

    /// The dependency graph of the steps.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// The settings as the settings crate reads a run configuration (pipeline layer and
    /// per-step layers).
    pub fn settings_document(&self) -> &LoadedDocument {
        &self.document
    }

    /// Adds the pipeline's and `step`'s settings layers that apply to the component
    /// `component` of flavor `flavor` to `layers`, exactly as `step run --settings`
    /// does with a run configuration. Errors carry the pipeline file's paths.
    pub fn settings_layers(
        &self,
        step: &str,
        flavor: &str,
        component: &str,
        origin: &str,
        layers: SettingsLayers,
    ) -> SettingsLayers {
        self.document
            .add_layers(step, flavor, component, origin, layers)
    }

    /// Validates every settings block a step operator of `flavor` would use.
    pub fn check_settings(&self, flavor: &str) -> Result<Checked, ValidationReport> {
        self.document.validate(flavor)
    }

    /// The effective resource settings of `step`: the pipeline's `settings.resources`,
    /// then the step's `settings.resources` or `resources`, key by key.
    pub fn resource_settings(&self, step: &str) -> Result<ResourceSettings, ValidationReport> {
        let mut merged = serde_json::Map::new();
        let pipeline = self
            .settings
            .as_ref()
            .and_then(|s| s.get("resources"))
            .cloned();
        let step = self.steps.get(step);
        let own = step.and_then(|s| {
            s.resources.clone().or_else(|| {
                s.settings
                    .as_ref()
                    .and_then(|v| v.get("resources"))
                    .cloned()
            })
        });
        for value in [pipeline, own].into_iter().flatten() {
            if let Value::Object(map) = value {
                merged.extend(map.into_iter().filter(|(_, v)| !v.is_null()));
            }
        }
        stepstack_settings::parse_resource_settings(&Value::Object(merged), "resources")
    }

    /// Checks, when a run starts, that every step's step operator is one of the
    /// `registered` components; each problem names the registered ones.
    pub fn check_step_operators(&self, registered: &[&str]) -> Result<(), ValidationReport> {
        let mut report = ValidationReport::default();
        for (name, step) in &self.steps {
            let Some(operator) = step.step_operator.as_deref() else {
                continue;
            };
            if registered.contains(&operator) {
                continue;
            }
            let message = if registered.is_empty() {
                format!(
                    "no step operator `{operator}`: none is registered (register one with `stepstack step-operator register`)"
                )
            } else {
                let mut sorted = registered.to_vec();
                sorted.sort_unstable();
                let hint = stepstack_settings::did_you_mean(operator, &sorted)
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                format!(
                    "no step operator `{operator}` is registered; {hint}registered: {}",
                    sorted.join(", ")
                )
            };
            report.issues.push(crate::issue(
                crate::path::key(&crate::path::key("steps", name), "step_operator"),
                stepstack_settings::IssueKind::InvalidValue,
                message,
            ));
        }
        if report.is_empty() {
            Ok(())
        } else {
            Err(report)
        }
    }
}
