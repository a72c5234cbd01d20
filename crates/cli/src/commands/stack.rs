//! `stepstack stack …` and `stepstack init`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use stepstack_core::Error;
use stepstack_store::{ActiveScope, NewComponent, NewStack, Stack, StackFilter, StackUpdate};

use super::Context;
use super::support::{STEP_OPERATOR, parse_labels};
use crate::exit::{CliError, CliResult, Exit};
use crate::output::table;

#[derive(Debug, Subcommand)]
pub(crate) enum StackCommand {
    /// Register a stack.
    Register(RegisterArgs),
    /// List the stacks; the active one is marked.
    List,
    /// Show a stack (default: the active one).
    Describe(OptionalName),
    /// Change a stack's components (default: the active stack).
    Update(UpdateArgs),
    /// Make a stack the active one (for this project after `stepstack init`, else globally).
    Set(SetArgs),
    /// Delete a stack.
    Delete(Name),
    /// Write a stack and its components as YAML.
    Export(ExportArgs),
    /// Register a stack and its components from an exported YAML file.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Name {
    /// The stack's name or id.
    name: String,
}

#[derive(Debug, Args)]
pub(crate) struct OptionalName {
    /// The stack's name or id (default: the active stack).
    name: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// The new stack's name.
    name: String,
    /// Its step operator.
    #[arg(short = 's', long)]
    step_operator: Option<String>,
    /// Make it the active stack.
    #[arg(long)]
    set: bool,
    /// Labels, `key=value` (repeatable).
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The stack's name or id (default: the active stack).
    name: Option<String>,
    /// Its new step operator.
    #[arg(short = 's', long)]
    step_operator: Option<String>,
    /// Remove its step operator.
    #[arg(long, conflicts_with = "step_operator")]
    remove_step_operator: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The stack's name or id.
    name: String,
    /// Set it globally even inside an initialised project.
    #[arg(long)]
    global: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The stack's name or id.
    name: String,
    /// Write to this file instead of stdout.
    file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The exported YAML file.
    file: PathBuf,
    /// Register under this name instead of the exported one.
    #[arg(long)]
    name: Option<String>,
}

/// The `stepstack init` arguments.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The project directory (default: the current directory).
    path: Option<PathBuf>,
}

/// An exported stack.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Exported {
    stack: String,
    components: BTreeMap<String, ExportedComponent>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportedComponent {
    name: String,
    flavor: String,
    #[serde(default)]
    configuration: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource_id: Option<String>,
}

pub(crate) fn run(command: StackCommand, ctx: &Context<'_>) -> CliResult<Exit> {
    match command {
        StackCommand::Register(args) => register(args, ctx),
        StackCommand::List => list(ctx),
        StackCommand::Describe(args) => describe(args, ctx),
        StackCommand::Update(args) => update(args, ctx),
        StackCommand::Set(args) => set(args, ctx),
        StackCommand::Delete(args) => delete(args, ctx),
        StackCommand::Export(args) => export(args, ctx),
        StackCommand::Import(args) => import(args, ctx),
    }
}

pub(crate) fn init(args: InitArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let path = match args.path {
        Some(path) => path,
        None => std::env::current_dir()
            .map_err(|e| CliError::usage(format!("no current directory: {e}")))?,
    };
    let mut store = ctx.store()?;
    let project = store.init_project(&path).map_err(Error::from)?;
    ctx.printer().line(format!(
        "Initialized a stepstack project in {}; its active stack is `{}` (repository).",
        project.root.display(),
        project.active_stack
    ))?;
    Ok(Exit::Ok)
}

fn register(args: RegisterArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let mut new = NewStack::new(args.name.clone());
    new.labels = parse_labels(&args.labels)?;
    if let Some(step_operator) = &args.step_operator {
        new = new.with_component(STEP_OPERATOR, step_operator.clone());
    }
    let stack = store.create_stack(new).map_err(Error::from)?;
    let printer = ctx.printer();
    printer.line(format!("Stack `{}` successfully registered!", stack.name))?;
    if args.set {
        set_active(ctx, &mut store, &stack.name, false)?;
    }
    Ok(Exit::Ok)
}

fn list(ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let stacks = store
        .list_stacks(&StackFilter::new())
        .map_err(Error::from)?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let active = store.active_stack(&cwd).ok();
    #[derive(Serialize)]
    struct Row<'a> {
        active: bool,
        #[serde(flatten)]
        stack: &'a Stack,
    }
    let rows: Vec<Row<'_>> = stacks
        .iter()
        .map(|stack| Row {
            active: active.as_ref().is_some_and(|a| a.stack.id == stack.id),
            stack,
        })
        .collect();
    let repository = active.as_ref().is_some_and(|a| a.source.is_repository());
    ctx.printer().data(&rows, || {
        let mut t = table(["ACTIVE", "STACK NAME", "STACK ID", "STEP OPERATOR"]);
        for row in &rows {
            let marker = match (row.active, repository) {
                (true, true) => "● (repository)",
                (true, false) => "●",
                _ => "",
            };
            t.add_row([
                marker.to_owned(),
                row.stack.name.clone(),
                row.stack.id.simple().to_string()[..8].to_owned(),
                row.stack
                    .components
                    .get(STEP_OPERATOR)
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
            ]);
        }
        t
    })?;
    Ok(Exit::Ok)
}

fn describe(args: OptionalName, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let (stack, active) = stack_or_active(&store, args.name.as_deref())?;
    let printer = ctx.printer();
    let suffix = if active { " (active)" } else { "" };
    printer.line(format!("Stack `{}`{suffix}:", stack.name))?;
    printer.data(&stack, || {
        let mut t = table(["COMPONENT TYPE", "COMPONENT NAME", "FLAVOR"]);
        for (component_type, member) in &stack.components {
            t.add_row([
                component_type.clone(),
                member.name.clone(),
                member.flavor.clone(),
            ]);
        }
        t
    })?;
    Ok(Exit::Ok)
}

fn update(args: UpdateArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let (stack, _) = stack_or_active(&store, args.name.as_deref())?;
    let mut update = StackUpdate::default();
    if let Some(step_operator) = &args.step_operator {
        update
            .components
            .insert(STEP_OPERATOR.to_owned(), step_operator.clone());
    }
    if args.remove_step_operator {
        update.remove_components.push(STEP_OPERATOR.to_owned());
    }
    let stack = store
        .update_stack(&stack.name, update)
        .map_err(Error::from)?;
    ctx.printer()
        .line(format!("Stack `{}` successfully updated!", stack.name))?;
    Ok(Exit::Ok)
}

fn set(args: SetArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    set_active(ctx, &mut store, &args.name, args.global)?;
    Ok(Exit::Ok)
}

fn set_active(
    ctx: &Context<'_>,
    store: &mut stepstack_store::Store,
    name: &str,
    global: bool,
) -> CliResult {
    let cwd = std::env::current_dir().unwrap_or_default();
    let project = if global {
        None
    } else {
        store.find_project(&cwd).map_err(Error::from)?
    };
    let scope = match &project {
        Some(project) => ActiveScope::Project(project.root.clone()),
        None => ActiveScope::Global,
    };
    store.set_active_stack(name, &scope).map_err(Error::from)?;
    let where_ = if project.is_some() {
        " (repository)"
    } else {
        " (global)"
    };
    ctx.printer()
        .line(format!("Active stack set to: `{name}`{where_}"))
}

fn delete(args: Name, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let stack = store.delete_stack(&args.name).map_err(Error::from)?;
    ctx.printer()
        .line(format!("Deleted stack `{}`.", stack.name))?;
    Ok(Exit::Ok)
}

fn export(args: ExportArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let stack = store.get_stack(&args.name).map_err(Error::from)?;
    let mut components = BTreeMap::new();
    for (component_type, member) in &stack.components {
        let component = store
            .get_component(component_type, &member.name)
            .map_err(Error::from)?;
        components.insert(
            component_type.clone(),
            ExportedComponent {
                name: component.name,
                flavor: component.flavor,
                configuration: component.configuration,
                connector: component.connector_name,
                resource_id: component.connector_resource_id,
            },
        );
    }
    let exported = Exported {
        stack: stack.name.clone(),
        components,
    };
    let yaml = serde_norway::to_string(&exported).map_err(|e| CliError::new(Exit::Internal, e))?;
    match args.file {
        Some(file) => {
            std::fs::write(&file, yaml)
                .map_err(|e| CliError::usage(format!("could not write {}: {e}", file.display())))?;
            ctx.printer().line(format!(
                "Exported stack `{}` to {}.",
                stack.name,
                file.display()
            ))?;
        }
        None => crate::output::print(&yaml)?,
    }
    Ok(Exit::Ok)
}

fn import(args: ImportArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    // The same input rule as every other loader: bounded size, depth and alias expansion.
    let limits = stepstack_input::Limits::DEFAULT;
    let shown = args.file.display().to_string();
    let text = stepstack_input::read_file(&args.file, &limits).map_err(|e| {
        CliError::new(
            Exit::Usage,
            anyhow::Error::new(e).context(format!("could not read {shown}")),
        )
    })?;
    let not_exported = |e: anyhow::Error| {
        CliError::new(
            Exit::Usage,
            e.context(format!("{shown} is not an exported stack")),
        )
    };
    let value = stepstack_input::parse(&text, stepstack_input::Format::Yaml, &limits)
        .map_err(|e| not_exported(e.into()))?;
    let exported: Exported = serde_json::from_value(value).map_err(|e| not_exported(e.into()))?;
    // Validate every component before anything is stored.
    for (component_type, component) in &exported.components {
        if component_type != STEP_OPERATOR {
            return Err(CliError::usage(format!(
                "{}: unknown component type `{component_type}`; this build knows `{STEP_OPERATOR}`",
                args.file.display()
            )));
        }
        ctx.registry
            .step_operator(&component.flavor)?
            .validate_config(&serde_json::Value::Object(component.configuration.clone()))
            .map_err(|e| super::step_operator::config_error(e, "component", &component.name))?;
    }
    let name = args.name.unwrap_or_else(|| exported.stack.clone());
    let mut store = ctx.store()?;
    store
        .write(|tx| {
            let mut stack = NewStack::new(name.clone());
            for (component_type, component) in &exported.components {
                let mut new = NewComponent::new(
                    component_type.clone(),
                    component.flavor.clone(),
                    component.name.clone(),
                )
                .with_configuration(component.configuration.clone());
                if let Some(connector) = &component.connector {
                    new = new.with_connector(connector.clone(), component.resource_id.clone());
                }
                tx.create_component(new)?;
                stack = stack.with_component(component_type.clone(), component.name.clone());
            }
            tx.create_stack(stack)
        })
        .map_err(Error::from)?;
    ctx.printer().line(format!("Imported stack `{name}`."))?;
    Ok(Exit::Ok)
}

/// The named stack, or the active one; the flag says whether it is the active one.
fn stack_or_active(store: &stepstack_store::Store, name: Option<&str>) -> CliResult<(Stack, bool)> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let active = store.active_stack(&cwd).map_err(Error::from)?;
    match name {
        Some(name) => {
            let stack = store.get_stack(name).map_err(Error::from)?;
            let is_active = stack.id == active.stack.id;
            Ok((stack, is_active))
        }
        None => Ok((active.stack, true)),
    }
}
