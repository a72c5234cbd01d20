//! `stepstack step-operator …`.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Context;
use crate::exit::{CliResult, Exit};
use crate::output::table;

#[derive(Debug, Subcommand)]
pub(crate) enum StepOperatorCommand {
    /// Step-operator flavors.
    #[command(subcommand)]
    Flavor(FlavorCommand),
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
        StepOperatorCommand::Flavor(FlavorCommand::List) => flavor_list(ctx),
        StepOperatorCommand::Flavor(FlavorCommand::Describe(args)) => flavor_describe(args, ctx),
    }
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
    ctx.printer(false).data(&rows, || {
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
    let printer = ctx.printer(false);
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
