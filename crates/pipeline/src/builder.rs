//! The Rust builder of pipelines: the same model and the same checks as a file.

use std::collections::BTreeMap;

use serde_json::Value;
use stepstack_settings::ValidationReport;

use crate::model::{Pipeline, Step};

impl Pipeline {
    /// Starts a pipeline named `name`.
    pub fn builder(name: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder {
            name: name.into(),
            settings: None,
            steps: Vec::new(),
        }
    }
}

/// Builds a [`Pipeline`] in Rust; [`PipelineBuilder::build`] validates it like a file.
///
/// ```
/// use stepstack_pipeline::{Pipeline, Step};
///
/// let pipeline = Pipeline::builder("training")
///     .step("load", Step::new(["python", "load.py", "{{outputs.data}}"]).output("data"))
///     .step(
///         "train",
///         Step::new(["python", "train.py", "{{inputs.data}}"])
///             .input("data", "load", "data")
///             .step_operator("k8s"),
///     )
///     .build()
///     .unwrap();
/// assert_eq!(pipeline.dag().topological_order(), ["load", "train"]);
/// ```
#[derive(Debug, Clone)]
pub struct PipelineBuilder {
    name: String,
    settings: Option<Value>,
    steps: Vec<(String, Step)>,
}

impl PipelineBuilder {
    /// Sets the pipeline-level settings block (run-configuration form).
    pub fn settings(mut self, settings: Value) -> PipelineBuilder {
        self.settings = Some(settings);
        self
    }

    /// Adds a step.
    pub fn step(mut self, name: impl Into<String>, step: Step) -> PipelineBuilder {
        self.steps.push((name.into(), step));
        self
    }

    /// Validates and returns the pipeline, or every problem found.
    pub fn build(self) -> Result<Pipeline, ValidationReport> {
        let mut report = ValidationReport::default();
        let mut steps = BTreeMap::new();
        for (name, step) in self.steps {
            if steps.contains_key(&name) {
                report.issues.push(crate::issue(
                    crate::path::key("steps", &name),
                    stepstack_settings::IssueKind::InvalidValue,
                    format!("step `{name}` is added twice"),
                ));
                continue;
            }
            steps.insert(name, step);
        }
        crate::validate::finish(self.name, self.settings, steps, None, report)
            .map(|(pipeline, _warnings)| pipeline)
    }
}
