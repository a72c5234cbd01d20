//! What several command groups share: opening the store, building connectors and step
//! operators from stored configuration, running async work, parsing labels.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use stepstack_core::connector::KUBERNETES_CLUSTER;
use stepstack_core::{Error, ErrorKind, ServiceConnector, StepOperator, StepOperatorContext};
use stepstack_store::{Component, Store};

use super::Context;
use crate::exit::{CliError, CliResult, Exit};

/// The component type of step operators in the store.
pub(crate) const STEP_OPERATOR: &str = "step_operator";

impl Context<'_> {
    /// Opens the store under the home directory.
    pub(crate) fn store(&self) -> CliResult<Store> {
        let home = self.home()?;
        let options = stepstack_store::StoreOptions::from_env(|key| std::env::var(key).ok());
        Ok(Store::open_with(&home, options).map_err(Error::from)?)
    }

    /// Runs `future` to completion on a runtime made for this command.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> CliResult<F::Output> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| {
                CliError::new(
                    Exit::Internal,
                    anyhow::anyhow!("could not start the async runtime: {e}"),
                )
            })?;
        Ok(runtime.block_on(future))
    }
}

/// Builds the connector `name` from the store through its flavor.
pub(crate) fn build_connector(
    ctx: &Context<'_>,
    store: &Store,
    name: &str,
) -> CliResult<Arc<dyn ServiceConnector>> {
    let config = store.connector_config(name).map_err(Error::from)?;
    let flavor = ctx.registry.connector(&config.connector_type)?;
    Ok(flavor.build(config)?)
}

/// Builds the step operator `component` with the connection of its linked connector,
/// if it has one.
pub(crate) async fn build_step_operator(
    ctx: &Context<'_>,
    store: &Store,
    component: &Component,
) -> CliResult<Arc<dyn StepOperator>> {
    let flavor = ctx.registry.step_operator(&component.flavor)?;
    let config = serde_json::Value::Object(component.configuration.clone());
    let config = flavor
        .validate_config(&config)
        .map_err(|e| e.with_context("step_operator", component.name.clone()))?;
    let mut context =
        StepOperatorContext::new(component.name.clone()).with_state_dir(state_dir(ctx, component)?);
    if let Some(connector_name) = &component.connector_name {
        let connector = build_connector(ctx, store, connector_name)?;
        let resource_type = flavor
            .connector_resource_type()
            .unwrap_or(KUBERNETES_CLUSTER);
        let connection = connector
            .connect(resource_type, component.connector_resource_id.as_deref())
            .await
            .map_err(|e| e.with_context("connector", connector_name.clone()))?;
        context = context.with_connection(connection);
    }
    Ok(flavor.build(&config, context)?)
}

/// Where the step operator `component` keeps its state (step logs, outcomes):
/// `<home>/step-operators/<component id>`. The id, not the name: a path made from an id
/// stays inside the home whatever the name is (names stored before the store checked
/// them could be `../x` or `/abs`), and survives a rename.
pub(crate) fn state_dir(ctx: &Context<'_>, component: &Component) -> CliResult<PathBuf> {
    Ok(ctx
        .home()?
        .join("step-operators")
        .join(component.id.simple().to_string()))
}

/// The step operator of the active stack (or the one named).
pub(crate) fn step_operator_component(
    ctx: &Context<'_>,
    store: &Store,
    name: Option<&str>,
) -> CliResult<Component> {
    if let Some(name) = name {
        return Ok(store
            .get_component(STEP_OPERATOR, name)
            .map_err(Error::from)?);
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let active = store.active_stack(&cwd).map_err(Error::from)?;
    let Some(member) = active.stack.components.get(STEP_OPERATOR) else {
        return Err(Error::new(
            ErrorKind::InvalidSettings,
            format!(
                "the active stack `{}` has no step operator; add one with `stepstack stack update -s NAME`",
                active.stack.name
            ),
        )
        .into());
    };
    let _ = ctx;
    Ok(store
        .get_component(STEP_OPERATOR, &member.name)
        .map_err(Error::from)?)
}

/// Parses `key=value` labels.
pub(crate) fn parse_labels(
    labels: &[String],
) -> CliResult<std::collections::BTreeMap<String, String>> {
    labels
        .iter()
        .map(|label| {
            label
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    CliError::usage(format!("label `{label}` is not of the form key=value"))
                })
        })
        .collect()
}
