//! `stepstack settings validate FILE` and `stepstack settings schema`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use stepstack_settings::{LoadedDocument, ValidationReport};

use super::Context;
use crate::exit::{CliError, CliResult, Exit};

#[derive(Debug, Subcommand)]
pub(crate) enum SettingsCommand {
    /// Check a settings file (YAML, TOML or JSON) and report every problem with its path.
    Validate(ValidateArgs),
    /// Print the JSON Schema of the Kubernetes step-operator settings.
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The file: a step-operator settings object, or a run configuration with
    /// `settings.step_operator` and `steps.NAME.settings.step_operator`.
    file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    /// The component configuration schema instead of the per-step settings schema.
    #[arg(long)]
    config: bool,
}

pub(crate) fn run(command: SettingsCommand, ctx: &Context<'_>) -> CliResult<Exit> {
    match command {
        SettingsCommand::Validate(args) => validate(args, ctx),
        SettingsCommand::Schema(args) => {
            let schema = if args.config {
                stepstack_settings::config_schema()
            } else {
                stepstack_settings::settings_schema()
            };
            print!("{}", stepstack_settings::schema::render_schema(&schema));
            Ok(Exit::Ok)
        }
    }
}

fn validate(args: ValidateArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let file = args.file.display().to_string();
    let document = stepstack_settings::load_file(&args.file, std::env::vars())
        .map_err(|e| CliError::usage(format!("{e}")))?;
    let mut report = ValidationReport::default();
    let mut checked = 0;
    let mut check = |value: &serde_json::Value, prefix: &str| {
        checked += 1;
        if let Err(r) = stepstack_settings::parse_settings(value, prefix) {
            report.issues.extend(r.issues);
        }
    };
    match &document {
        LoadedDocument::Settings(value) => check(value, ""),
        LoadedDocument::RunConfig {
            pipeline, steps, ..
        } => {
            if let Some(value) = pipeline {
                check(value, LoadedDocument::PIPELINE_PREFIX);
            }
            for (step, doc) in steps {
                if let Some(value) = &doc.step_operator {
                    check(value, &LoadedDocument::step_prefix(step));
                }
            }
        }
        _ => {}
    }
    if report.is_empty() {
        ctx.printer().line(format!(
            "{file}: valid ({checked} settings object(s) checked)"
        ))?;
        return Ok(Exit::Ok);
    }
    let mut message = format!("{file}: {} problem(s):", report.issues.len());
    for issue in &report.issues {
        message.push_str(&format!("\n  {issue}"));
    }
    message.push_str("\nfix them and run `stepstack settings validate` again");
    Err(CliError::usage(message))
}
