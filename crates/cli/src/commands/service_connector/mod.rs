//! `stepstack service-connector …`.

use clap::{Args, Subcommand};
use comfy_table::Cell;
use serde::Serialize;
use stepstack_core::connector::ConnectorTypeSpec;

use super::Context;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::table;

#[derive(Debug, Subcommand)]
pub(crate) enum ServiceConnectorCommand {
    /// List the connector types this build knows.
    ListTypes(ListTypesArgs),
    /// Describe a connector type, one of its resource types or one of its auth methods.
    DescribeType(DescribeTypeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListTypesArgs {
    /// Only this connector type.
    #[arg(short = 't', long = "type")]
    connector_type: Option<String>,
    /// Only types that reach this resource type.
    #[arg(short = 'r', long)]
    resource_type: Option<String>,
    /// Only types with this auth method.
    #[arg(short = 'a', long)]
    auth_method: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DescribeTypeArgs {
    /// The connector type, e.g. `kubernetes`.
    connector_type: String,
    /// Describe this resource type of the connector type.
    #[arg(short = 'r', long)]
    resource_type: Option<String>,
    /// Describe this auth method of the connector type.
    #[arg(short = 'a', long)]
    auth_method: Option<String>,
}

pub(crate) fn run(command: ServiceConnectorCommand, ctx: &Context<'_>) -> CliResult<Exit> {
    match command {
        ServiceConnectorCommand::ListTypes(args) => list_types(args, ctx),
        ServiceConnectorCommand::DescribeType(args) => describe_type(args, ctx),
    }
}

fn list_types(args: ListTypesArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let specs: Vec<ConnectorTypeSpec> = ctx
        .registry
        .connectors()
        .map(|f| f.connector_type().clone())
        .filter(|s| {
            args.connector_type
                .as_deref()
                .is_none_or(|t| s.connector_type == t)
        })
        .filter(|s| {
            args.resource_type
                .as_deref()
                .is_none_or(|r| s.resource_type(r).is_some())
        })
        .filter(|s| {
            args.auth_method
                .as_deref()
                .is_none_or(|m| s.auth_method(m).is_some())
        })
        .collect();
    let printer = ctx.printer(false);
    if specs.is_empty() {
        printer.line("No service connector types found for the given filters.")?;
    }
    printer.data(&specs, || {
        let mut t = table([
            "NAME",
            "TYPE",
            "RESOURCE TYPES",
            "AUTH METHODS",
            "AUTO-CONFIGURE",
        ]);
        for spec in &specs {
            t.add_row([
                Cell::new(&spec.name),
                Cell::new(&spec.connector_type),
                Cell::new(join(
                    spec.resource_types.iter().map(|r| r.resource_type.as_str()),
                )),
                Cell::new(join(
                    spec.auth_methods.iter().map(|m| m.auth_method.as_str()),
                )),
                Cell::new(if spec.supports_auto_configuration {
                    "yes"
                } else {
                    "no"
                }),
            ]);
        }
        t
    })?;
    Ok(Exit::Ok)
}

fn describe_type(args: DescribeTypeArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let flavor = ctx.registry.connector(&args.connector_type)?;
    let spec = flavor.connector_type();
    let printer = ctx.printer(false);
    if let Some(method) = &args.auth_method {
        let method = spec.auth_method(method).ok_or_else(|| {
            CliError::usage(format!(
                "the `{}` connector type has no auth method `{method}`; available: {}",
                spec.connector_type,
                join(spec.auth_methods.iter().map(|m| m.auth_method.as_str()))
            ))
        })?;
        printer.data(method, || {
            let mut t = table(["FIELD", "SECRET", "DESCRIPTION"]);
            let properties = method
                .config_schema
                .get("properties")
                .and_then(|p| p.as_object());
            for (field, schema) in properties.into_iter().flatten() {
                t.add_row([
                    field.as_str(),
                    if method.is_secret(field) { "yes" } else { "no" },
                    schema
                        .get("description")
                        .and_then(|d| d.as_str())
                        .unwrap_or(""),
                ]);
            }
            t
        })?;
        return Ok(Exit::Ok);
    }
    if let Some(resource) = &args.resource_type {
        let resource = spec.resource_type(resource).ok_or_else(|| {
            CliError::usage(format!(
                "the `{}` connector type has no resource type `{resource}`; available: {}",
                spec.connector_type,
                join(spec.resource_types.iter().map(|r| r.resource_type.as_str()))
            ))
        })?;
        printer.data(resource, || {
            let mut t = table([
                "RESOURCE TYPE",
                "AUTH METHODS",
                "MULTIPLE INSTANCES",
                "DESCRIPTION",
            ]);
            t.add_row([
                resource.resource_type.clone(),
                resource.auth_methods.join(", "),
                if resource.supports_instances {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
                resource.description.clone(),
            ]);
            t
        })?;
        return Ok(Exit::Ok);
    }
    #[derive(Serialize)]
    struct Described<'a> {
        #[serde(flatten)]
        spec: &'a ConnectorTypeSpec,
    }
    printer.line(format!(
        "{} ({})\n{}",
        spec.name, spec.connector_type, spec.description
    ))?;
    printer.data(&Described { spec }, || {
        let mut t = table([
            "AUTH METHOD",
            "NAME",
            "SECRET FIELDS",
            "EXPIRATION (min/default/max s)",
        ]);
        for m in &spec.auth_methods {
            let expiration = m.expiration.map(|e| {
                let show =
                    |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned());
                format!(
                    "{}/{}/{}",
                    show(e.min_seconds),
                    show(e.default_seconds),
                    show(e.max_seconds)
                )
            });
            t.add_row([
                m.auth_method.clone(),
                m.name.clone(),
                m.secret_fields.join(", "),
                expiration.unwrap_or_default(),
            ]);
        }
        t
    })?;
    Ok(Exit::Ok)
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}
