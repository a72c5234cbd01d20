//! The command tree (clap derive) and the dispatch to one module per command group.

mod completion;
#[cfg(feature = "local-cluster")]
mod local_cluster;
mod pipeline;
mod service_connector;
mod settings;
mod stack;
mod step;
mod step_operator;
mod support;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use stepstack_core::Registry;

use crate::exit::{CliResult, Exit};
use crate::freeform::FreeForm;
use crate::output::{OutputFormat, Printer};

/// Run pipeline steps on Kubernetes pods with the compute your machine lacks.
///
/// Exit codes: 0 success; 1 a step failed; 2 usage, settings or configuration error;
/// 3 connection or authentication error; 4 internal error; 130 interrupted.
#[derive(Debug, Parser)]
#[command(
    name = "stepstack",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The stepstack home directory (default: $STEPSTACK_HOME, else the platform data directory).
    #[arg(long, global = true, env = "STEPSTACK_HOME", value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) output: OutputFormat,
    /// More log output on stderr (-v, -vv).
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage service connectors: credentials that reach clusters.
    #[command(name = "service-connector", subcommand)]
    ServiceConnector(service_connector::ServiceConnectorCommand),
    /// Manage step operators.
    #[command(name = "step-operator", subcommand)]
    StepOperator(step_operator::StepOperatorCommand),
    /// Manage stacks: which step operator steps run on.
    #[command(subcommand)]
    Stack(stack::StackCommand),
    /// Run commands as steps and follow them.
    #[command(subcommand)]
    Step(step::StepCommand),
    /// Make the current directory a project with its own active stack.
    Init(stack::InitArgs),
    /// Validate settings files and print their JSON Schema.
    #[command(subcommand)]
    Settings(settings::SettingsCommand),
    /// Validate pipeline files and print their JSON Schema.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Run an emulated Kubernetes cluster on this machine, to try everything without one.
    #[cfg(feature = "local-cluster")]
    #[command(name = "local-cluster", subcommand)]
    LocalCluster(local_cluster::LocalClusterCommand),
    /// Print shell completions.
    Completion(completion::CompletionArgs),
}

/// What every command gets.
pub(crate) struct Context<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) global: GlobalArgs,
    pub(crate) free_form: FreeForm,
}

impl Context<'_> {
    /// The stepstack home directory: `--home`, else `$STEPSTACK_HOME`, else the platform
    /// data directory.
    pub(crate) fn home(&self) -> CliResult<PathBuf> {
        stepstack_store::home_dir(self.global.home.clone(), |key| std::env::var(key).ok())
            .map_err(|e| crate::exit::CliError::from(stepstack_core::Error::from(e)))
    }

    pub(crate) fn printer(&self) -> Printer {
        Printer {
            format: self.global.output,
        }
    }
}

pub(crate) fn dispatch(cli: Cli, registry: &Registry, free_form: FreeForm) -> CliResult<Exit> {
    let ctx = Context {
        registry,
        global: cli.global,
        free_form,
    };
    match cli.command {
        Command::ServiceConnector(command) => service_connector::run(command, &ctx),
        Command::StepOperator(command) => step_operator::run(command, &ctx),
        Command::Stack(command) => stack::run(command, &ctx),
        Command::Step(command) => step::run(command, &ctx),
        Command::Init(args) => stack::init(args, &ctx),
        Command::Settings(command) => settings::run(command, &ctx),
        Command::Pipeline(command) => pipeline::run(command, &ctx),
        #[cfg(feature = "local-cluster")]
        Command::LocalCluster(command) => local_cluster::run(command, &ctx),
        Command::Completion(args) => completion::run(args),
    }
}
