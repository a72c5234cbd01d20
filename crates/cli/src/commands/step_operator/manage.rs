//! The commands on registered step operators: register, list, describe, update, delete,
//! connect, disconnect.

use serde::Serialize;
use stepstack_core::{Error, ErrorKind};
use stepstack_settings::{LoadedDocument, SettingsLayers};
use stepstack_store::{ComponentFilter, ComponentUpdate, NewComponent, Store};

use super::{ConnectArgs, DescribeArgs, NameArg, RegisterArgs, UpdateArgs};
use crate::commands::Context;
use crate::commands::support::{STEP_OPERATOR, build_connector, parse_labels};
use crate::exit::{CliError, CliResult, Exit};
use crate::freeform::typed_values;
use crate::output::table;

pub(super) fn register(args: RegisterArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let flavor = ctx.registry.step_operator(&args.flavor)?;
    let raw = serde_json::Value::Object(typed_values(&ctx.free_form, &flavor.config_schema())?);
    let config = flavor
        .validate_config(&raw)
        .map_err(|e| super::config_error(e, "step_operator", &args.name))?;
    if args.flavor == stepstack_k8s_operator::FLAVOR {
        for warning in stepstack_settings::settings_warnings(&raw, "") {
            tracing::warn!(path = %format!("--{}", warning.path), "{}", warning.message);
        }
    }
    let configuration = config.as_object().cloned().unwrap_or_default();
    let mut store = ctx.store()?;
    // Check the connector before anything is stored, so a failed link leaves no component.
    let link = match &args.connector {
        Some(connector) => Some(resolve_link(
            ctx,
            &store,
            flavor.connector_resource_type(),
            connector,
            args.resource_id.clone(),
            false,
        )?),
        None => None,
    };
    let mut new = NewComponent::new(STEP_OPERATOR, args.flavor.clone(), args.name.clone())
        .with_configuration(configuration)
        .with_labels(parse_labels(&args.labels)?);
    if let Some(link) = &link {
        new = new.with_connector(link.connector.clone(), link.resource_id.clone());
    }
    store.create_component(new).map_err(Error::from)?;
    let printer = ctx.printer();
    printer.line(format!(
        "Successfully registered step operator `{}`.",
        args.name
    ))?;
    if let Some(link) = link {
        print_link(ctx, &args.name, &link)?;
    }
    Ok(Exit::Ok)
}

#[derive(Serialize)]
struct Row {
    active: bool,
    name: String,
    id: String,
    flavor: String,
    connector: Option<String>,
    resource_id: Option<String>,
}

pub(super) fn list(ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let components = store
        .list_components(&ComponentFilter::of_type(STEP_OPERATOR))
        .map_err(Error::from)?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let active = store
        .active_stack(&cwd)
        .ok()
        .and_then(|a| a.stack.components.get(STEP_OPERATOR).map(|m| m.id));
    let rows: Vec<Row> = components
        .iter()
        .map(|c| Row {
            active: Some(c.id) == active,
            name: c.name.clone(),
            id: c.id.to_string(),
            flavor: c.flavor.clone(),
            connector: c.connector_name.clone(),
            resource_id: c.connector_resource_id.clone(),
        })
        .collect();
    let printer = ctx.printer();
    if rows.is_empty() {
        printer.line("No step operators registered; register one with `stepstack step-operator register NAME --flavor kubernetes`.")?;
        return Ok(Exit::Ok);
    }
    printer.data(&rows, || {
        let mut t = table(["ACTIVE", "NAME", "ID", "FLAVOR", "CONNECTOR", "RESOURCE"]);
        for row in &rows {
            t.add_row([
                if row.active { "●" } else { "" }.to_owned(),
                row.name.clone(),
                row.id[..8].to_owned(),
                row.flavor.clone(),
                row.connector.clone().unwrap_or_default(),
                row.resource_id.clone().unwrap_or_default(),
            ]);
        }
        t
    })?;
    Ok(Exit::Ok)
}

pub(super) fn describe(args: DescribeArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let component = store
        .get_component(STEP_OPERATOR, &args.name)
        .map_err(Error::from)?;
    let printer = ctx.printer();
    if !args.effective {
        printer.line(format!(
            "Step operator `{}` ({} flavor):",
            component.name, component.flavor
        ))?;
        printer.data(&component, || {
            let mut t = table(["PROPERTY", "VALUE"]);
            t.add_row(["ID".to_owned(), component.id.to_string()]);
            t.add_row(["FLAVOR".to_owned(), component.flavor.clone()]);
            t.add_row([
                "CONNECTOR".to_owned(),
                component.connector_name.clone().unwrap_or_default(),
            ]);
            t.add_row([
                "RESOURCE".to_owned(),
                component.connector_resource_id.clone().unwrap_or_default(),
            ]);
            for (key, value) in &component.configuration {
                t.add_row([format!("config: {key}"), value.to_string()]);
            }
            t
        })?;
        return Ok(Exit::Ok);
    }
    if component.flavor != stepstack_k8s_operator::FLAVOR {
        return Err(CliError::usage(format!(
            "--effective knows the `{}` flavor's settings only; `{}` is a `{}` step operator",
            stepstack_k8s_operator::FLAVOR,
            component.name,
            component.flavor
        )));
    }
    let mut layers = SettingsLayers::new().with_component_config(
        format!("step operator `{}`: ", component.name),
        serde_json::Value::Object(component.configuration.clone()),
    );
    if let Some(file) = &args.settings {
        let document = crate::commands::settings::load_settings_file(file)?;
        let step = args.step.clone().unwrap_or_default();
        if matches!(document, LoadedDocument::RunConfig { .. }) && args.step.is_none() {
            return Err(CliError::usage(
                "the settings file is a run configuration; name the step with --step",
            ));
        }
        layers = document.add_layers(
            &step,
            &component.flavor,
            &component.name,
            &file.display().to_string(),
            layers,
        );
    }
    layers = layers.with_environment(std::env::vars());
    for input in &args.overrides {
        layers = layers
            .with_override(input)
            .map_err(|e| CliError::usage(e.to_string()))?;
    }
    let effective = layers.resolve().map_err(|report| {
        let mut message = format!(
            "the effective settings of `{}` are invalid:",
            component.name
        );
        for issue in &report.issues {
            message.push_str(&format!("\n  {issue}"));
        }
        CliError::usage(message)
    })?;
    #[derive(Serialize)]
    struct Setting {
        path: String,
        value: serde_json::Value,
        layer: String,
    }
    let settings: Vec<Setting> = effective
        .provenance()
        .map(|(path, source)| Setting {
            path: path.to_owned(),
            value: lookup(&effective.value, path)
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            layer: format!("{:?}{}", source.layer, origin_suffix(&source.origin)),
        })
        .collect();
    printer.line(format!(
        "Effective settings of step operator `{}`:",
        component.name
    ))?;
    printer.data(&settings, || {
        let mut t = table(["SETTING", "VALUE", "SET BY"]);
        for s in &settings {
            t.add_row([s.path.clone(), s.value.to_string(), s.layer.clone()]);
        }
        t
    })?;
    Ok(Exit::Ok)
}

pub(super) fn update(args: UpdateArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let component = store
        .get_component(STEP_OPERATOR, &args.name)
        .map_err(Error::from)?;
    let flavor = ctx.registry.step_operator(&component.flavor)?;
    let mut configuration = component.configuration.clone();
    configuration.extend(typed_values(&ctx.free_form, &flavor.config_schema())?);
    for key in &args.remove_attrs {
        if configuration.remove(key).is_none() {
            return Err(CliError::usage(format!(
                "step operator `{}` has no attribute `{key}` to remove",
                component.name
            )));
        }
    }
    let validated = flavor
        .validate_config(&serde_json::Value::Object(configuration))
        .map_err(|e| super::config_error(e, "step_operator", &component.name))?;
    let mut update = ComponentUpdate::default();
    update.configuration = validated.as_object().cloned();
    update.labels = parse_labels(&args.labels)?;
    store
        .update_component(STEP_OPERATOR, &component.name, update)
        .map_err(Error::from)?;
    ctx.printer().line(format!(
        "Successfully updated step operator `{}`.",
        component.name
    ))?;
    Ok(Exit::Ok)
}

pub(super) fn delete(args: NameArg, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let deleted = store
        .delete_component(STEP_OPERATOR, &args.name)
        .map_err(Error::from)?;
    ctx.printer().line(format!(
        "Successfully deleted step operator `{}`.",
        deleted.name
    ))?;
    Ok(Exit::Ok)
}

pub(super) fn connect(args: ConnectArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let component = store
        .get_component(STEP_OPERATOR, &args.name)
        .map_err(Error::from)?;
    let flavor = ctx.registry.step_operator(&component.flavor)?;
    let link = resolve_link(
        ctx,
        &store,
        flavor.connector_resource_type(),
        &args.connector,
        args.resource_id.clone(),
        args.no_verify,
    )?;
    store
        .connect_component(
            STEP_OPERATOR,
            &component.name,
            &link.connector,
            link.resource_id.as_deref(),
        )
        .map_err(Error::from)?;
    print_link(ctx, &component.name, &link)?;
    Ok(Exit::Ok)
}

pub(super) fn disconnect(args: NameArg, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let component = store
        .disconnect_component(STEP_OPERATOR, &args.name)
        .map_err(Error::from)?;
    ctx.printer().line(format!(
        "Successfully disconnected the service connector from step operator `{}`.",
        component.name
    ))?;
    Ok(Exit::Ok)
}

/// A checked link from a component to a connector's resource.
#[derive(Debug, Serialize)]
struct Link {
    connector: String,
    connector_id: String,
    connector_type: String,
    resource_type: String,
    resource_id: Option<String>,
}

/// Checks that `connector` provides the flavor's resource type and picks the resource:
/// the one given, the connector's own, or the only one it reaches.
fn resolve_link(
    ctx: &Context<'_>,
    store: &Store,
    required: Option<&str>,
    connector: &str,
    resource_id: Option<String>,
    no_verify: bool,
) -> CliResult<Link> {
    let Some(resource_type) = required else {
        return Err(CliError::usage(
            "this step-operator flavor does not support using a service connector",
        ));
    };
    let stored = store.get_connector(connector).map_err(Error::from)?;
    if !stored.resource_types.is_empty()
        && !stored.resource_types.iter().any(|t| t == resource_type)
    {
        return Err(CliError::usage(format!(
            "service connector `{}` does not provide the '{resource_type}' resource type; it provides: {}",
            stored.name,
            stored.resource_types.join(", ")
        )));
    }
    let mut resource_id = resource_id.or_else(|| stored.resource_id.clone());
    if !no_verify {
        let built = build_connector(ctx, store, &stored.name)?;
        let report = ctx.block_on(built.verify(Some(resource_type), resource_id.as_deref()))??;
        let entry = report.entry(resource_type);
        if let Some(error) = report
            .error
            .clone()
            .or_else(|| entry.and_then(|e| e.error.clone()))
        {
            return Err(CliError::new(
                Exit::Connection,
                anyhow::anyhow!(
                    "service connector `{}` cannot reach the {resource_type}: {error}",
                    stored.name
                ),
            ));
        }
        let ids = entry
            .and_then(|e| e.resource_ids.clone())
            .unwrap_or_default();
        match (resource_id.as_ref(), ids.as_slice()) {
            (Some(_), _) => {}
            (None, [only]) => resource_id = Some(only.clone()),
            (None, []) => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "service connector `{}` reaches no {resource_type} resources",
                        stored.name
                    ),
                )
                .into());
            }
            (None, many) => {
                return Err(CliError::usage(format!(
                    "Multiple {resource_type} resources are available for the selected connector. \
                     Please use the `--resource-id` command line argument to select one of them: {}",
                    many.join(", ")
                )));
            }
        }
    }
    Ok(Link {
        connector: stored.name.clone(),
        connector_id: stored.id.to_string(),
        connector_type: stored.connector_type.clone(),
        resource_type: resource_type.to_owned(),
        resource_id,
    })
}

fn print_link(ctx: &Context<'_>, name: &str, link: &Link) -> CliResult {
    let printer = ctx.printer();
    printer.line(format!(
        "Successfully connected step operator `{name}` to the following resources:"
    ))?;
    printer.data(link, || {
        let mut t = table([
            "CONNECTOR ID",
            "CONNECTOR NAME",
            "CONNECTOR TYPE",
            "RESOURCE TYPE",
            "RESOURCE NAMES",
        ]);
        t.add_row([
            link.connector_id[..8].to_owned(),
            link.connector.clone(),
            link.connector_type.clone(),
            link.resource_type.clone(),
            link.resource_id.clone().unwrap_or_default(),
        ]);
        t
    })
}

/// The value at a dotted path such as `pod_settings.tolerations[0].key`.
fn lookup<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut current = value;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            current = current.get(key)?;
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            let index: usize = index.trim_end_matches(']').parse().ok()?;
            current = current.get(index)?;
        }
    }
    Some(current)
}

fn origin_suffix(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches(':').trim();
    if origin.is_empty() {
        String::new()
    } else {
        format!(" ({origin})")
    }
}

#[cfg(test)]
mod tests {
    use super::lookup;

    #[test]
    fn lookup_follows_keys_and_indexes() {
        let value = serde_json::json!({"pod_settings": {"tolerations": [{"key": "gpu"}]}});
        assert_eq!(
            lookup(&value, "pod_settings.tolerations[0].key").unwrap(),
            "gpu"
        );
        assert!(lookup(&value, "pod_settings.tolerations[3].key").is_none());
    }
}
