//! The commands on registered connectors: register, list, describe, update, delete,
//! verify, login, list-resources.

use std::collections::BTreeMap;
use std::sync::Arc;

use comfy_table::Cell;
use serde::Serialize;
use stepstack_core::connector::{AuthMethodSpec, ConnectorTypeSpec, ResourcesReport};
use stepstack_core::secrecy::{ExposeSecret, SecretString};
use stepstack_core::{AutoConfigureRequest, ConnectorConfig, Error, ServiceConnector};
use stepstack_store::{ConnectorFilter, ConnectorUpdate, NewConnector, Store};

use super::{
    DescribeArgs, ListArgs, ListResourcesArgs, LoginArgs, NameArg, RegisterArgs, UpdateArgs,
    VerifyArgs, credentials,
};
use crate::commands::Context;
use crate::commands::support::{STEP_OPERATOR, build_connector, parse_labels};
use crate::exit::{CliError, CliResult, Exit};
use crate::freeform::typed_values;
use crate::output::{HIDDEN, table};

/// Errors longer than this are cut in tables (the full text is in JSON/YAML output).
const MAX_TABLE_ERROR: usize = 100;

pub(super) fn register(args: RegisterArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let flavor = ctx.registry.connector(&args.connector_type)?;
    let spec = flavor.connector_type().clone();
    let mut config = if args.auto_configure {
        let mut request = AutoConfigureRequest::new(args.name.clone());
        request.auth_method = args.auth_method.clone();
        request.resource_type = args.resource_type.clone();
        request.resource_id = args.resource_id.clone();
        request.values = ctx.free_form.clone();
        ctx.block_on(flavor.auto_configure(request))??
    } else {
        let method = auth_method(&spec, args.auth_method.as_deref())?;
        let mut config = ConnectorConfig::new(
            args.name.clone(),
            spec.connector_type.clone(),
            method.auth_method.clone(),
        );
        apply_free_form(&mut config, method, ctx)?;
        if let Some(resource_type) = &args.resource_type {
            config.resource_types = vec![resource_type.clone()];
        }
        config.resource_id = args.resource_id.clone();
        config
    };
    config.name = args.name.clone();
    if args.expiration_seconds.is_some() {
        config.expiration_seconds = args.expiration_seconds;
    }
    if args.expires_skew_tolerance.is_some() {
        config.expires_skew_tolerance = args.expires_skew_tolerance;
    }
    let connector = flavor.build(config.clone())?;
    let report = if args.no_verify {
        None
    } else {
        Some(verified(
            ctx,
            connector.as_ref(),
            args.resource_type.as_deref(),
            args.resource_id.as_deref(),
            "register",
        )?)
    };
    let labels = parse_labels(&args.labels)?;
    let mut store = ctx.store()?;
    store
        .create_connector(
            NewConnector::from_config(config)
                .with_labels(labels)
                .with_description(args.description),
        )
        .map_err(Error::from)?;
    let printer = ctx.printer();
    match report {
        Some(report) => {
            printer.line(format!(
                "Successfully registered service connector `{}` with access to the following resources:",
                args.name
            ))?;
            printer.data(&report, || resources_table(&report))?;
        }
        None => {
            printer.line(format!(
                "Successfully registered service connector `{}`.",
                args.name
            ))?;
            printer.structured(&serde_json::json!({"name": args.name}))?;
        }
    }
    Ok(Exit::Ok)
}

pub(super) fn list(args: ListArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let mut filter = ConnectorFilter::new();
    filter.connector_type = args.connector_type;
    filter.resource_type = args.resource_type;
    filter.labels = args
        .labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let connectors = store.list_connectors(&filter).map_err(Error::from)?;
    let in_use = connectors_of_active_stack(&store);
    let printer = ctx.printer();
    if connectors.is_empty() {
        printer.line("No service connectors found for the given filters.")?;
        return Ok(Exit::Ok);
    }
    printer.data(&connectors, || {
        let mut t = table([
            "ACTIVE",
            "NAME",
            "ID",
            "TYPE",
            "AUTH METHOD",
            "RESOURCE TYPES",
            "RESOURCE NAME",
            "EXPIRES AT",
        ]);
        for c in &connectors {
            t.add_row([
                if in_use.contains(&c.name) { "●" } else { "" }.to_owned(),
                c.name.clone(),
                c.id.simple().to_string()[..8].to_owned(),
                c.connector_type.clone(),
                c.auth_method.clone(),
                if c.resource_types.is_empty() {
                    "<any>".to_owned()
                } else {
                    c.resource_types.join(", ")
                },
                c.resource_id
                    .clone()
                    .unwrap_or_else(|| "<multiple>".to_owned()),
                c.expires_at.map(|t| t.to_string()).unwrap_or_default(),
            ]);
        }
        t
    })?;
    Ok(Exit::Ok)
}

pub(super) fn describe(args: DescribeArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let printer = ctx.printer();
    if args.resource_type.is_some() || args.resource_id.is_some() {
        return describe_client(args, ctx, &store);
    }
    let connector = store.get_connector(&args.name).map_err(Error::from)?;
    let secrets = if args.show_secrets {
        store.connector_secrets(&args.name).map_err(Error::from)?
    } else {
        BTreeMap::new()
    };
    let mut configuration: BTreeMap<String, String> = connector
        .values
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect();
    for key in &connector.secret_keys {
        let shown = secrets
            .get(key)
            .map(|s| s.expose_secret().to_owned())
            .unwrap_or_else(|| HIDDEN.to_owned());
        configuration.insert(key.clone(), shown);
    }
    #[derive(Serialize)]
    struct Described<'a> {
        #[serde(flatten)]
        connector: &'a stepstack_store::Connector,
        configuration: &'a BTreeMap<String, String>,
    }
    printer.line(format!(
        "Service connector `{}` ({}):",
        connector.name, connector.connector_type
    ))?;
    printer.data(
        &Described {
            connector: &connector,
            configuration: &configuration,
        },
        || {
            let mut t = table(["PROPERTY", "VALUE"]);
            t.add_row(["ID".to_owned(), connector.id.to_string()]);
            t.add_row(["NAME".to_owned(), connector.name.clone()]);
            t.add_row(["TYPE".to_owned(), connector.connector_type.clone()]);
            t.add_row(["AUTH METHOD".to_owned(), connector.auth_method.clone()]);
            t.add_row([
                "RESOURCE TYPES".to_owned(),
                connector.resource_types.join(", "),
            ]);
            t.add_row([
                "RESOURCE NAME".to_owned(),
                connector.resource_id.clone().unwrap_or_default(),
            ]);
            t.add_row([
                "EXPIRES AT".to_owned(),
                connector
                    .expires_at
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            ]);
            t.add_row([
                "SESSION DURATION".to_owned(),
                connector
                    .expiration_seconds
                    .map(|s| format!("{s}s"))
                    .unwrap_or_default(),
            ]);
            t.add_row(["DESCRIPTION".to_owned(), connector.description.clone()]);
            for (key, value) in &configuration {
                t.add_row([format!("config: {key}"), value.clone()]);
            }
            t
        },
    )?;
    Ok(Exit::Ok)
}

/// `describe NAME --resource-type R --resource-id I`: the client connection the connector
/// derives for that resource (server, CA, expiry; the token only with --show-secrets).
fn describe_client(args: DescribeArgs, ctx: &Context<'_>, store: &Store) -> CliResult<Exit> {
    let connector = build_connector(ctx, store, &args.name)?;
    let resource_type = args
        .resource_type
        .clone()
        .unwrap_or_else(|| stepstack_core::connector::KUBERNETES_CLUSTER.to_owned());
    let (connection, token) = ctx.block_on(async {
        let connection = connector
            .connect(&resource_type, args.resource_id.as_deref())
            .await?;
        let token = match &connection.token_source {
            Some(source) => Some(source.token().await?),
            None => None,
        };
        Ok::<_, Error>((connection, token))
    })??;
    let static_token = connection
        .config
        .auth_info
        .token
        .as_ref()
        .map(|t| t.expose_secret().to_owned());
    let token_text = match (
        token
            .as_ref()
            .map(|t| t.value.expose_secret().to_owned())
            .or(static_token),
        args.show_secrets,
    ) {
        (Some(token), true) => token,
        (Some(_), false) => HIDDEN.to_owned(),
        (None, _) => "<none: client certificate, exec plugin or basic auth>".to_owned(),
    };
    #[derive(Serialize)]
    struct Client {
        connector: String,
        resource_type: String,
        resource_id: Option<String>,
        server: String,
        default_namespace: String,
        certificate_authority: bool,
        /// Why no client can be built from this connection (e.g. an unreadable CA).
        #[serde(skip_serializing_if = "Option::is_none")]
        client_refusal: Option<String>,
        insecure: bool,
        token: String,
        expires_at: Option<String>,
    }
    let client = Client {
        connector: args.name.clone(),
        resource_type,
        resource_id: args.resource_id.clone(),
        server: connection.config.cluster_url.to_string(),
        default_namespace: connection.config.default_namespace.clone(),
        certificate_authority: connection.config.root_cert.is_some(),
        client_refusal: connection.client_refusal().map(str::to_owned),
        insecure: connection.config.accept_invalid_certs,
        token: token_text,
        expires_at: token
            .and_then(|t| t.expires_at)
            .or(connection.expires_at)
            .map(|t| t.to_string()),
    };
    let printer = ctx.printer();
    printer.line(format!(
        "Client derived by service connector `{}` for {} `{}`:",
        client.connector,
        client.resource_type,
        client.resource_id.as_deref().unwrap_or("<default>")
    ))?;
    printer.data(&client, || {
        let mut t = table(["PROPERTY", "VALUE"]);
        t.add_row(["SERVER", client.server.as_str()]);
        t.add_row(["DEFAULT NAMESPACE", client.default_namespace.as_str()]);
        t.add_row([
            "CERTIFICATE AUTHORITY",
            if client.certificate_authority {
                "set"
            } else {
                "system roots"
            },
        ]);
        if let Some(refusal) = &client.client_refusal {
            t.add_row(["CLIENT".to_owned(), format!("unusable: {refusal}")]);
        }
        t.add_row(["INSECURE", if client.insecure { "yes" } else { "no" }]);
        t.add_row(["TOKEN", client.token.as_str()]);
        t.add_row([
            "EXPIRES AT",
            client.expires_at.as_deref().unwrap_or("never"),
        ]);
        t
    })?;
    Ok(Exit::Ok)
}

pub(super) fn update(args: UpdateArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let mut config = store.connector_config(&args.name).map_err(Error::from)?;
    let flavor = ctx.registry.connector(&config.connector_type)?;
    let spec = flavor.connector_type().clone();
    if let Some(method) = &args.auth_method {
        config.auth_method = method.clone();
    }
    let method = auth_method(&spec, Some(&config.auth_method))?;
    apply_free_form(&mut config, method, ctx)?;
    if let Some(resource_type) = &args.resource_type {
        config.resource_types = vec![resource_type.clone()];
    }
    if let Some(resource_id) = &args.resource_id {
        config.resource_id = Some(resource_id.clone());
    }
    for key in &args.remove_attrs {
        match key.replace('-', "_").as_str() {
            "resource_id" => config.resource_id = None,
            "resource_type" | "resource_types" => config.resource_types.clear(),
            "expiration_seconds" => config.expiration_seconds = None,
            other => {
                let removed =
                    config.values.remove(other).is_some() | config.secrets.remove(other).is_some();
                if !removed {
                    return Err(CliError::usage(format!(
                        "connector `{}` has no attribute `{other}` to remove",
                        args.name
                    )));
                }
            }
        }
    }
    let old_name = config.name.clone();
    if let Some(new_name) = &args.new_name {
        config.name = new_name.clone();
    }
    let connector = flavor.build(config.clone())?;
    let report = if args.no_verify {
        None
    } else {
        Some(verified(ctx, connector.as_ref(), None, None, "update")?)
    };
    let mut update = ConnectorUpdate::replace_with(config.clone());
    update.description = args.description;
    update.labels = parse_labels(&args.labels)?;
    store
        .update_connector(&old_name, update)
        .map_err(Error::from)?;
    let printer = ctx.printer();
    match report {
        Some(report) => {
            printer.line(format!(
                "Successfully updated service connector `{}`. It can now be used to access the following resources:",
                config.name
            ))?;
            printer.data(&report, || resources_table(&report))?;
        }
        None => printer.line(format!(
            "Successfully updated service connector `{}`.",
            config.name
        ))?,
    }
    Ok(Exit::Ok)
}

pub(super) fn delete(args: NameArg, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let deleted = store.delete_connector(&args.name).map_err(Error::from)?;
    ctx.printer()
        .line(format!("Deleted service connector: {}", deleted.name))?;
    Ok(Exit::Ok)
}

pub(super) fn verify(args: VerifyArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let connector = build_connector(ctx, &store, &args.name)?;
    let report = ctx
        .block_on(connector.verify(args.resource_type.as_deref(), args.resource_id.as_deref()))??;
    let printer = ctx.printer();
    if let Some(error) = failure(&report) {
        return Err(CliError::new(
            Exit::Connection,
            anyhow::anyhow!(
                "service connector '{}' verification failed: {error}",
                args.name
            ),
        ));
    }
    printer.line(format!(
        "Service connector '{}' is correctly configured with valid credentials and has access to the following resources:",
        args.name
    ))?;
    printer.data(&report, || resources_table(&report))?;
    Ok(Exit::Ok)
}

pub(super) fn login(args: LoginArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let LoginArgs {
        target: args,
        static_token,
    } = args;
    let store = ctx.store()?;
    let connector = build_connector(ctx, &store, &args.name)?;
    let resource_type = args
        .resource_type
        .clone()
        .unwrap_or_else(|| stepstack_core::connector::KUBERNETES_CLUSTER.to_owned());
    let resource_id = args.resource_id.as_deref();
    let (message, refreshing) = ctx.block_on(async {
        let message = connector
            .configure_local_client(&resource_type, resource_id)
            .await
            .map_err(|e| {
                let kind = e.kind();
                CliError::new(
                    Exit::for_kind(kind),
                    anyhow::anyhow!(
                        "service connector '{}' could not configure the local client: {e}",
                        args.name
                    ),
                )
            })?;
        let refreshing = !static_token
            && credentials::use_token_command(ctx, connector.as_ref(), &resource_type, resource_id)
                .await
                .map_err(|e| {
                    CliError::new(
                        e.exit,
                        e.error.context(format!(
                            "{message}; but making kubectl renew its token failed, so it works only until that token expires \
                             (run the login again, or add --static-token to keep the token as written)"
                        )),
                    )
                })?;
        CliResult::Ok((message, refreshing))
    })??;
    let spec = connector.connector_type();
    let printer = ctx.printer();
    printer.line(&message)?;
    if refreshing {
        printer.line(
            "kubectl gets a fresh token from `stepstack service-connector token` whenever the current one expires.",
        )?;
    }
    printer.line(format!(
        "The '{}' {} was used to successfully configure the local {} client.",
        args.name,
        spec.name,
        spec.resource_type(&resource_type)
            .map(|r| r.name.as_str())
            .unwrap_or(&resource_type)
    ))?;
    Ok(Exit::Ok)
}

#[derive(Serialize)]
struct ResourceRow {
    connector_id: String,
    connector_name: String,
    connector_type: String,
    resource_type: String,
    resource_ids: Vec<String>,
    error: Option<String>,
}

pub(super) fn list_resources(args: ListResourcesArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let mut filter = ConnectorFilter::new();
    filter.connector_type = args.connector_type.clone();
    filter.resource_type = args.resource_type.clone();
    let stored = store.list_connectors(&filter).map_err(Error::from)?;
    let mut built: Vec<(
        stepstack_store::Connector,
        CliResult<Arc<dyn ServiceConnector>>,
    )> = Vec::new();
    for connector in stored {
        let result = build_connector(ctx, &store, &connector.name);
        built.push((connector, result));
    }
    let resource_type = args.resource_type.as_deref();
    let resource_id = args.resource_id.as_deref();
    let reports = ctx.block_on(futures::future::join_all(built.iter().map(
        |(_, result)| async move {
            match result {
                Ok(connector) => connector
                    .verify(resource_type, resource_id)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("{:#}", e.error)),
            }
        },
    )))?;
    let mut rows = Vec::new();
    for ((connector, _), report) in built.iter().zip(reports) {
        let base =
            |resource_type: String, resource_ids: Vec<String>, error: Option<String>| ResourceRow {
                connector_id: connector.id.to_string(),
                connector_name: connector.name.clone(),
                connector_type: connector.connector_type.clone(),
                resource_type,
                resource_ids,
                error,
            };
        match report {
            Ok(report) => {
                for entry in &report.resources {
                    let error = entry.error.clone().or_else(|| report.error.clone());
                    rows.push(base(
                        entry.resource_type.clone(),
                        entry.resource_ids.clone().unwrap_or_default(),
                        error,
                    ));
                }
            }
            Err(error) => rows.push(base(
                args.resource_type.clone().unwrap_or_default(),
                Vec::new(),
                Some(error),
            )),
        }
    }
    if args.exclude_errors {
        rows.retain(|r| r.error.is_none());
    }
    let printer = ctx.printer();
    if rows.is_empty() {
        printer.line("No service connector resources match the given filters.")?;
        return Ok(Exit::Ok);
    }
    let what = args
        .resource_type
        .as_deref()
        .map(|r| format!("'{r}' "))
        .unwrap_or_default();
    let by = args
        .connector_type
        .as_deref()
        .map(|t| format!("'{t}' "))
        .unwrap_or_default();
    printer.line(format!(
        "The following {what}resources can be accessed by {by}service connectors:"
    ))?;
    printer.data(&rows, || {
        let mut t = table([
            "CONNECTOR ID",
            "CONNECTOR NAME",
            "CONNECTOR TYPE",
            "RESOURCE TYPE",
            "RESOURCE NAMES",
        ]);
        for row in &rows {
            let names = match &row.error {
                Some(error) => format!("error: {}", truncate(error, MAX_TABLE_ERROR)),
                None => row.resource_ids.join("\n"),
            };
            t.add_row([
                Cell::new(&row.connector_id[..8]),
                Cell::new(&row.connector_name),
                Cell::new(&row.connector_type),
                Cell::new(&row.resource_type),
                Cell::new(names),
            ]);
        }
        t
    })?;
    Ok(Exit::Ok)
}

/// The auth method `requested`, or the type's only one.
fn auth_method<'a>(
    spec: &'a ConnectorTypeSpec,
    requested: Option<&str>,
) -> CliResult<&'a AuthMethodSpec> {
    let available = || {
        spec.auth_methods
            .iter()
            .map(|m| m.auth_method.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match requested {
        Some(method) => spec.auth_method(method).ok_or_else(|| {
            CliError::usage(format!(
                "the `{}` connector type has no auth method `{method}`; available: {}",
                spec.connector_type,
                available()
            ))
        }),
        None if spec.auth_methods.len() == 1 => Ok(&spec.auth_methods[0]),
        None => Err(CliError::usage(format!(
            "choose an auth method for the `{}` connector type with --auth-method: {}",
            spec.connector_type,
            available()
        ))),
    }
}

/// Puts the free-form `--key=value` arguments into `config`, secret ones as secrets.
fn apply_free_form(
    config: &mut ConnectorConfig,
    method: &AuthMethodSpec,
    ctx: &Context<'_>,
) -> CliResult {
    let typed = typed_values(&ctx.free_form, &method.config_schema)?;
    for (key, value) in typed {
        if method.is_secret(&key) {
            let text = value
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            config.values.remove(&key);
            config.secrets.insert(key, SecretString::from(text));
        } else {
            config.secrets.remove(&key);
            config.values.insert(key, value);
        }
    }
    Ok(())
}

/// Verifies the connector and turns a failure into exit code 3 with the operation named.
fn verified(
    ctx: &Context<'_>,
    connector: &dyn ServiceConnector,
    resource_type: Option<&str>,
    resource_id: Option<&str>,
    operation: &str,
) -> CliResult<ResourcesReport> {
    let report = ctx
        .block_on(connector.verify(resource_type, resource_id))?
        .map_err(|e| CliError::from(e.with_context("operation", operation.to_owned())))?;
    if let Some(error) = failure(&report) {
        return Err(CliError::new(
            Exit::Connection,
            anyhow::anyhow!(
                "failed to {operation} service connector `{}`: {error}; fix the configuration or pass --no-verify",
                connector.config().name
            ),
        ));
    }
    Ok(report)
}

/// The report's global error, or the first per-type error when nothing was reached.
fn failure(report: &ResourcesReport) -> Option<String> {
    if let Some(error) = &report.error {
        return Some(error.clone());
    }
    let reached = report.resources.iter().any(|r| r.error.is_none());
    if reached {
        return None;
    }
    report.resources.iter().find_map(|r| r.error.clone())
}

fn resources_table(report: &ResourcesReport) -> comfy_table::Table {
    let mut t = table(["RESOURCE TYPE", "RESOURCE NAMES"]);
    for entry in &report.resources {
        let names = match (&entry.resource_ids, &entry.error) {
            (_, Some(error)) => format!("error: {}", truncate(error, MAX_TABLE_ERROR)),
            (Some(ids), None) => ids.join("\n"),
            (None, None) => String::new(),
        };
        t.add_row([entry.resource_type.clone(), names]);
    }
    t
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}… (use -o json for the full error)")
}

/// Names of the connectors linked to the active stack's components.
fn connectors_of_active_stack(store: &Store) -> Vec<String> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let Ok(active) = store.active_stack(&cwd) else {
        return Vec::new();
    };
    active
        .stack
        .components
        .iter()
        .filter_map(|(component_type, member)| {
            store.get_component(component_type, &member.name).ok()
        })
        .filter(|c| c.component_type == STEP_OPERATOR || c.connector_name.is_some())
        .filter_map(|c| c.connector_name)
        .collect()
}
