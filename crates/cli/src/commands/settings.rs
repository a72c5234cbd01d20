//! `stepstack settings validate FILE` and `stepstack settings schema`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use stepstack_settings::LoadedDocument;

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
            crate::output::print(&stepstack_settings::schema::render_schema(&schema))?;
            Ok(Exit::Ok)
        }
    }
}

/// Loads a settings file (settings object or run configuration) within the input limits;
/// a failure is a usage error whose chain says why (line and column, the limit hit, the
/// missing file). `settings validate`, `step run`, `step preview` and
/// `step-operator describe --effective` all load through here, so they judge a file alike.
pub(crate) fn load_settings_file(file: &Path) -> CliResult<LoadedDocument> {
    stepstack_settings::load_file(file).map_err(|e| CliError::new(Exit::Usage, e))
}

fn validate(args: ValidateArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let file = args.file.display().to_string();
    let document = load_settings_file(&args.file)?;
    match document.validate(stepstack_k8s_operator::FLAVOR) {
        Ok(checked) => {
            for warning in &checked.warnings {
                crate::output::message(&format!("warning: {file}: {warning}"));
            }
            ctx.printer().line(format!(
                "{file}: valid ({} settings object(s) checked)",
                checked.objects
            ))?;
            if !checked.skipped.is_empty() {
                ctx.printer().line(format!(
                    "not checked (settings for other flavors): {}",
                    checked.skipped.join(", ")
                ))?;
            }
            Ok(Exit::Ok)
        }
        Err(report) => {
            let mut message = format!("{file}: {} problem(s):", report.issues.len());
            for issue in &report.issues {
                message.push_str(&format!("\n  {issue}"));
            }
            message.push_str("\nfix them and run `stepstack settings validate` again");
            Err(CliError::usage(message))
        }
    }
}
