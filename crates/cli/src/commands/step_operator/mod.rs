//! `stepstack step-operator …`: the arguments and the flavor listing; `manage` holds
//! the commands on registered step operators.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Context;

mod manage;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::table;

#[derive(Debug, Subcommand)]
pub(crate) enum StepOperatorCommand {
    /// Register a step operator: `register NAME --flavor kubernetes --key=value…`.
    Register(RegisterArgs),
    /// List the registered step operators.
    List,
    /// Show a step operator's configuration (--effective: every setting and its layer).
    Describe(DescribeArgs),
    /// Change a step operator's configuration (`--key=value…`, --remove-attr KEY).
    Update(UpdateArgs),
    /// Delete a step operator.
    Delete(NameArg),
    /// Link a step operator to a cluster through a service connector.
    Connect(ConnectArgs),
    /// Remove a step operator's link to its service connector.
    Disconnect(NameArg),
    /// Step-operator flavors.
    #[command(subcommand)]
    Flavor(FlavorCommand),
}

#[derive(Debug, Args)]
pub(crate) struct NameArg {
    /// The step operator's name or id.
    name: String,
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// The new step operator's name.
    name: String,
    /// The flavor, e.g. `kubernetes`.
    #[arg(short = 'f', long)]
    flavor: String,
    /// Link it to this service connector right away.
    #[arg(short = 'c', long)]
    connector: Option<String>,
    /// The resource to use through the connector.
    #[arg(short = 'r', long)]
    resource_id: Option<String>,
    /// Labels, `key=value` (repeatable).
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    /// The step operator's name or id.
    name: String,
    /// Show every effective setting and the layer that set it.
    #[arg(long)]
    effective: bool,
    /// With --effective: a settings file (settings object or run configuration).
    #[arg(long, requires = "effective")]
    settings: Option<std::path::PathBuf>,
    /// With --effective and a run configuration: the step whose settings to show.
    #[arg(long, requires = "effective")]
    step: Option<String>,
    /// With --effective: command-line overrides, `path=value` (repeatable).
    #[arg(long = "set", requires = "effective", value_name = "PATH=VALUE")]
    overrides: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The step operator's name or id.
    name: String,
    /// Remove a configuration attribute (repeatable).
    #[arg(long = "remove-attr", value_name = "KEY")]
    remove_attrs: Vec<String>,
    /// Labels to set, `key=value` (repeatable).
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The step operator's name or id.
    name: String,
    /// The service connector to use.
    #[arg(short = 'c', long)]
    connector: String,
    /// The resource to use through the connector (needed when it reaches several).
    #[arg(short = 'r', long)]
    resource_id: Option<String>,
    /// Link without checking that the connector reaches the resource.
    #[arg(long)]
    no_verify: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FlavorCommand {
    /// List the step-operator flavors this build knows.
    List,
    /// Describe a flavor and print its configuration schema.
    Describe(FlavorDescribeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FlavorDescribeArgs {
    /// The flavor, e.g. `kubernetes`.
    flavor: String,
}

#[derive(Serialize)]
struct FlavorRow {
    name: String,
    description: String,
    connector_resource_type: Option<String>,
}

pub(crate) fn run(command: StepOperatorCommand, ctx: &Context<'_>) -> CliResult<Exit> {
    match command {
        StepOperatorCommand::Register(args) => manage::register(args, ctx),
        StepOperatorCommand::List => manage::list(ctx),
        StepOperatorCommand::Describe(args) => manage::describe(args, ctx),
        StepOperatorCommand::Update(args) => manage::update(args, ctx),
        StepOperatorCommand::Delete(args) => manage::delete(args, ctx),
        StepOperatorCommand::Connect(args) => manage::connect(args, ctx),
        StepOperatorCommand::Disconnect(args) => manage::disconnect(args, ctx),
        StepOperatorCommand::Flavor(FlavorCommand::List) => flavor_list(ctx),
        StepOperatorCommand::Flavor(FlavorCommand::Describe(args)) => flavor_describe(args, ctx),
    }
}

/// A flavor's refusal of a component's configuration, with `key: name` added to its
/// context. A multi-line message (one problem per line) gets its context on the first
/// line, where it belongs, instead of glued to the last problem.
pub(crate) fn config_error(
    error: stepstack_core::Error,
    key: &'static str,
    name: &str,
) -> CliError {
    let error = error.with_context(key, name.to_owned());
    let Some((first, rest)) = error.message().split_once('\n') else {
        return error.into();
    };
    let context = error
        .context()
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    CliError::new(
        Exit::for_kind(error.kind()),
        anyhow::anyhow!("{first} ({context})\n{rest}"),
    )
}

fn flavor_list(ctx: &Context<'_>) -> CliResult<Exit> {
    let rows: Vec<FlavorRow> = ctx
        .registry
        .step_operators()
        .map(|f| FlavorRow {
            name: f.name().to_owned(),
            description: f.description().to_owned(),
            connector_resource_type: f.connector_resource_type().map(str::to_owned),
        })
        .collect();
    ctx.printer().data(&rows, || {
        let mut t = table(["FLAVOR", "CONNECTOR RESOURCE TYPE", "DESCRIPTION"]);
        for row in &rows {
            t.add_row([
                row.name.as_str(),
                row.connector_resource_type.as_deref().unwrap_or("-"),
                row.description.as_str(),
            ]);
        }
        t
    })?;
    Ok(Exit::Ok)
}

fn flavor_describe(args: FlavorDescribeArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let flavor = ctx.registry.step_operator(&args.flavor)?;
    #[derive(Serialize)]
    struct Described {
        name: String,
        description: String,
        config_schema: serde_json::Value,
        settings_schema: serde_json::Value,
    }
    let described = Described {
        name: flavor.name().to_owned(),
        description: flavor.description().to_owned(),
        config_schema: flavor.config_schema(),
        settings_schema: flavor.settings_schema(),
    };
    let printer = ctx.printer();
    printer.line(format!("{}: {}", described.name, described.description))?;
    printer.data(&described, || {
        let mut t = table(["CONFIGURATION ATTRIBUTE", "DESCRIPTION"]);
        let properties = described
            .config_schema
            .get("properties")
            .and_then(|p| p.as_object());
        for (field, schema) in properties.into_iter().flatten() {
            t.add_row([
                field.as_str(),
                schema
                    .get("description")
                    .and_then(|d| d.as_str())
                    .unwrap_or(""),
            ]);
        }
        t
    })?;
    Ok(Exit::Ok)
}
