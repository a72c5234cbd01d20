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
            print!(
                "{}",
                stepstack_settings::schema::render_schema(&stepstack_pipeline::pipeline_schema())
            );
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
    let report = Report {
        file: file.clone(),
        pipeline: pipeline.name(),
        order: pipeline.dag().topological_order(),
        warnings: loaded.warnings.iter().map(ToString::to_string).collect(),
    };
    let printer = ctx.printer();
    printer.structured(&report)?;
    for warning in &report.warnings {
        eprintln!("warning: {file}: {warning}");
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
