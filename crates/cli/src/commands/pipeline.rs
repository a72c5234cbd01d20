//! `stepstack pipeline validate FILE` and `stepstack pipeline schema`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Context;
use crate::exit::{CliError, CliResult, Exit};

#[derive(Debug, Subcommand)]
pub(crate) enum PipelineCommand {
    /// Check a pipeline file (YAML, TOML or JSON) and report every problem with its path.
    Validate(ValidateArgs),
    /// Print the JSON Schema of pipeline files.
    Schema,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The pipeline file (a run configuration whose steps have commands is one too).
    file: PathBuf,
    /// Do not check that the step operators the steps name are registered (for files
    /// checked away from the machine that runs them).
    #[arg(long)]
    no_store: bool,
}

/// What `validate -o json|yaml` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    file: String,
    pipeline: &'a str,
    /// The steps in an order the orchestrator may run them.
    order: Vec<&'a str>,
    warnings: Vec<String>,
}

pub(crate) fn run(command: PipelineCommand, ctx: &Context<'_>) -> CliResult<Exit> {
    match command {
        PipelineCommand::Validate(args) => validate(args, ctx),
        PipelineCommand::Schema => {
            crate::output::print(&stepstack_settings::schema::render_schema(
                &stepstack_pipeline::pipeline_schema(),
            ))?;
            Ok(Exit::Ok)
        }
    }
}

fn validate(args: ValidateArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let file = args.file.display().to_string();
    // Step-operator settings are checked as the built-in Kubernetes flavor reads them;
    // blocks for other flavors (`step_operator.<flavor>`) are left to those flavors.
    let loaded = stepstack_pipeline::Loader::new()
        .settings_flavor(stepstack_k8s_operator::FLAVOR)
        .load_file(&args.file)
        .map_err(|e| match e.report() {
            Some(_) => CliError::usage(format!(
                "{e}\nfix them and run `stepstack pipeline validate` again"
            )),
            // Unreadable or unparsable: the chain (with line and column) is printed once.
            None => CliError::new(Exit::Usage, e),
        })?;
    let pipeline = &loaded.pipeline;
    let names_operators = pipeline.steps().values().any(|s| s.step_operator.is_some());
    if names_operators && !args.no_store {
        // What `pipeline run` checks when it starts: the components must exist here.
        let registered: Vec<String> = ctx
            .store()?
            .list_components(&stepstack_store::ComponentFilter::of_type(
                super::support::STEP_OPERATOR,
            ))
            .map_err(stepstack_core::Error::from)?
            .into_iter()
            .map(|c| c.name)
            .collect();
        let registered: Vec<&str> = registered.iter().map(String::as_str).collect();
        if let Err(report) = pipeline.check_step_operators(&registered) {
            let mut message =
                format!("{file}: the pipeline's step operators are not all registered:");
            for issue in &report.issues {
                message.push_str(&format!("\n  {issue}"));
            }
            message.push_str("\n(--no-store skips this check)");
            return Err(CliError::usage(message));
        }
    }
    let report = Report {
        file: file.clone(),
        pipeline: pipeline.name(),
        order: pipeline.dag().topological_order(),
        warnings: loaded.warnings.iter().map(ToString::to_string).collect(),
    };
    let printer = ctx.printer();
    printer.structured(&report)?;
    for warning in &report.warnings {
        crate::output::message(&format!("warning: {file}: {warning}"));
    }
    printer.line(format!(
        "{file}: valid pipeline `{}` ({} step{}: {})",
        report.pipeline,
        report.order.len(),
        if report.order.len() == 1 { "" } else { "s" },
        report.order.join(", ")
    ))?;
    Ok(Exit::Ok)
}
