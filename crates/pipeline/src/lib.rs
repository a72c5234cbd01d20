#![doc = include_str!("../README.md")]

mod builder;
pub mod cache;
mod dag;
mod load;
mod model;
pub mod orchestrator;
mod parse;
mod path;
mod placeholder;
pub mod record;
pub mod schema;
mod validate;

pub use builder::PipelineBuilder;
pub use cache::{CacheInputs, CacheKey};
pub use dag::Dag;
pub use load::{LoadError, Loaded, Loader, load_file, load_str};
pub use model::{OutputRef, Pipeline, Retry, Step};
pub use orchestrator::{
    DEFAULT_PARALLELISM, LogSink, Orchestrator, OrchestratorError, RunOptions, RunSummary,
    StepOperatorEntry, StepSummary,
};
pub use placeholder::{Placeholder, RenderError, RenderedStep, RunContext, render};
pub use record::{
    InMemoryRunStore, OutputRecord, RunRecord, RunSnapshot, RunStatus, RunStore, RunStoreError,
    StepFailureReason, StepRunFailure, StepRunRecord, StepRunStatus, StepRunUpdate,
};
pub use schema::{PIPELINE_SCHEMA_FILE, pipeline_schema, schemas};
pub use stepstack_input::Format;
pub use stepstack_settings::{Issue, IssueKind, ValidationReport};

fn issue(path: String, kind: IssueKind, message: impl Into<String>) -> Issue {
    Issue {
        path,
        message: message.into(),
        kind,
    }
}

/// "has N problems:" and the problems, one a line.
fn problems(report: &ValidationReport) -> String {
    let n = report.issues.len();
    let mut text = format!(
        "the pipeline has {n} problem{}:",
        if n == 1 { "" } else { "s" }
    );
    for issue in &report.issues {
        text.push_str(&format!("\n  {issue}"));
    }
    text
}
