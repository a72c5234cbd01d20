//! `stepstack service-connector …`: the arguments, and the type listing that needs no
//! store; `manage` holds the commands on registered connectors.

use clap::{Args, Subcommand};
use comfy_table::Cell;
use serde::Serialize;
use stepstack_core::connector::ConnectorTypeSpec;

use super::Context;

mod credentials;
mod manage;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::table;

#[derive(Debug, Subcommand)]
pub(crate) enum ServiceConnectorCommand {
    /// Register a service connector: `register NAME --type T --auth-method M --key=value…`.
    Register(RegisterArgs),
    /// List the registered service connectors.
    List(ListArgs),
    /// Show a connector, or with --resource-type/--resource-id the client it derives.
    Describe(DescribeArgs),
    /// Change a connector's configuration (`--key=value…`, --remove-attr KEY).
    Update(UpdateArgs),
    /// Delete a connector.
    Delete(NameArg),
    /// Check a connector's credentials and list what they reach.
    Verify(VerifyArgs),
    /// Configure the local client (kubeconfig) for a resource the connector reaches.
    Login(LoginArgs),
    /// Print a fresh token as a kubectl ExecCredential (the credential plugin `login` sets up).
    Token(TokenArgs),
    /// List the resources every registered connector reaches.
    ListResources(ListResourcesArgs),
    /// List the connector types this build knows.
    ListTypes(ListTypesArgs),
    /// Describe a connector type, one of its resource types or one of its auth methods.
    DescribeType(DescribeTypeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct NameArg {
    /// The connector's name or id.
    name: String,
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// The new connector's name.
    name: String,
    /// The connector type, e.g. `kubernetes`, `aws`.
    #[arg(short = 't', long = "type")]
    connector_type: String,
    /// The auth method (default: the type's only method, or the auto-configured one).
    #[arg(short = 'a', long)]
    auth_method: Option<String>,
    /// Scope the connector to one resource type.
    #[arg(short = 'r', long)]
    resource_type: Option<String>,
    /// Scope the connector to one resource.
    #[arg(long)]
    resource_id: Option<String>,
    /// Configure the connector from the local environment (kubeconfig, cloud CLI profiles).
    #[arg(long)]
    auto_configure: bool,
    /// Register without checking the credentials.
    #[arg(long)]
    no_verify: bool,
    /// Lifetime of the temporary credentials the connector issues.
    #[arg(long)]
    expiration_seconds: Option<u64>,
    /// Seconds before expiry at which credentials count as expired (default 300).
    #[arg(long)]
    expires_skew_tolerance: Option<u64>,
    /// A description.
    #[arg(short = 'd', long, default_value = "")]
    description: String,
    /// Labels, `key=value` (repeatable).
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
    /// Print secret values instead of [HIDDEN].
    #[arg(short = 'x', long)]
    show_secrets: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only connectors of this type.
    #[arg(short = 't', long = "type")]
    connector_type: Option<String>,
    /// Only connectors that provide this resource type.
    #[arg(short = 'r', long)]
    resource_type: Option<String>,
    /// Only connectors with these labels, `key` or `key=value` (repeatable).
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    /// The connector's name or id.
    name: String,
    /// Describe the client derived for this resource type.
    #[arg(short = 'r', long)]
    resource_type: Option<String>,
    /// Describe the client derived for this resource.
    #[arg(long)]
    resource_id: Option<String>,
    /// Print secret values instead of [HIDDEN].
    #[arg(short = 'x', long)]
    show_secrets: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The connector's name or id.
    name: String,
    /// A new name.
    #[arg(long = "name", value_name = "NEW_NAME")]
    new_name: Option<String>,
    /// A new auth method.
    #[arg(short = 'a', long)]
    auth_method: Option<String>,
    /// A new resource type scope.
    #[arg(short = 'r', long)]
    resource_type: Option<String>,
    /// A new resource scope.
    #[arg(long)]
    resource_id: Option<String>,
    /// Remove a configuration attribute, or `resource_id`, `resource_type`,
    /// `expiration_seconds` (repeatable).
    #[arg(long = "remove-attr", value_name = "KEY")]
    remove_attrs: Vec<String>,
    /// Update without checking the credentials.
    #[arg(long)]
    no_verify: bool,
    /// A new description.
    #[arg(short = 'd', long)]
    description: Option<String>,
    /// Labels to set, `key=value` (repeatable).
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The connector's name or id.
    name: String,
    /// Only this resource type.
    #[arg(short = 'r', long)]
    resource_type: Option<String>,
    /// Only this resource.
    #[arg(long)]
    resource_id: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    #[command(flatten)]
    target: VerifyArgs,
    /// Write the current token into the kubeconfig instead of a user that runs
    /// `stepstack service-connector token` (the token stops working when it expires).
    #[arg(long)]
    static_token: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// The connector's name or id.
    name: String,
    /// The resource type (default: kubernetes-cluster).
    #[arg(short = 'r', long)]
    resource_type: Option<String>,
    /// The resource.
    #[arg(long)]
    resource_id: Option<String>,
}

impl TokenArgs {
    fn resource_type(&self) -> String {
        self.resource_type
            .clone()
            .unwrap_or_else(|| stepstack_core::connector::KUBERNETES_CLUSTER.to_owned())
    }
}

#[derive(Debug, Args)]
pub(crate) struct ListResourcesArgs {
    /// Only connectors of this type.
    #[arg(short = 'c', long)]
    connector_type: Option<String>,
    /// Only this resource type.
    #[arg(short = 'r', long)]
    resource_type: Option<String>,
    /// Only this resource.
    #[arg(long)]
    resource_id: Option<String>,
    /// Leave out connectors that failed.
    #[arg(short = 'e', long)]
    exclude_errors: bool,
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
        ServiceConnectorCommand::Register(args) => manage::register(args, ctx),
        ServiceConnectorCommand::List(args) => manage::list(args, ctx),
        ServiceConnectorCommand::Describe(args) => manage::describe(args, ctx),
        ServiceConnectorCommand::Update(args) => manage::update(args, ctx),
        ServiceConnectorCommand::Delete(args) => manage::delete(args, ctx),
        ServiceConnectorCommand::Verify(args) => manage::verify(args, ctx),
        ServiceConnectorCommand::Login(args) => manage::login(args, ctx),
        ServiceConnectorCommand::Token(args) => credentials::token(args, ctx),
        ServiceConnectorCommand::ListResources(args) => manage::list_resources(args, ctx),
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
    let printer = ctx.printer();
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
    let printer = ctx.printer();
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
