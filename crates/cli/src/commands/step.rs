//! `stepstack step run|logs|status|cancel|attach|preview|list`: run a command as a step on
//! the active stack's step operator and follow it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use futures::StreamExt;
use serde::Serialize;
use stepstack_core::{
    Error, ErrorKind, ResourceSettings, StepHandle, StepLaunch, StepOperator, StepOutcome,
    StepStatus, StepTimings,
};
use stepstack_settings::{LoadedDocument, OnInterrupt, SettingsLayers};
use stepstack_store::{Component, NewStepRun, StepRunFilter, StepRunUpdate, Store};

use super::Context;
use super::support::{build_step_operator, state_dir, step_operator_component};
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{OutputFormat, table};
use crate::progress::{PendingProgress, show_while_pending};

/// The image of a step when `--image` is not given.
const DEFAULT_IMAGE: &str = "busybox:1.36";
/// How long the log stream may lag behind the outcome before `run` stops waiting for it.
const LOG_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Subcommand)]
pub(crate) enum StepCommand {
    /// Run a command as a step: `step run NAME [--settings FILE] [--set K=V]… -- COMMAND…`.
    Run(RunArgs),
    /// Print a step run's logs.
    Logs(LogsArgs),
    /// Show a step run's status.
    Status(RunId),
    /// Cancel a step run.
    Cancel(RunId),
    /// Follow a running step (from another terminal or after --detach) to its end.
    Attach(RunId),
    /// Print the manifests a step would create (--server-dry-run: ask the cluster).
    Preview(PreviewArgs),
    /// List recent step runs.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StepArgs {
    /// The step's name.
    name: String,
    /// A settings file: step-operator settings, or a run configuration.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Override a setting, e.g. `pod_settings.node_selectors.pool=gpu` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    overrides: Vec<String>,
    /// The container image.
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// The pipeline the step belongs to (label `pipeline`).
    #[arg(long, default_value = "cli")]
    pipeline: String,
    /// The run name (label `run`; default: a new run id).
    #[arg(long)]
    run: Option<String>,
    /// Use this step operator instead of the active stack's.
    #[arg(long)]
    step_operator: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    step: StepArgs,
    /// Return once the step is submitted; follow it later with `step attach`.
    #[arg(long)]
    detach: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PreviewArgs {
    #[command(flatten)]
    step: StepArgs,
    /// Ask the API server whether it would accept the objects (dryRun=All, strict fields).
    #[arg(long)]
    server_dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunId {
    /// The step-run id (or a unique prefix).
    id: String,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The step-run id (or a unique prefix).
    id: String,
    /// Keep printing until the step ends.
    #[arg(short = 'f', long)]
    follow: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// At most this many runs.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

pub(crate) fn run(command: StepCommand, ctx: &Context<'_>) -> CliResult<Exit> {
    match command {
        StepCommand::Run(args) => run_step(args, ctx),
        StepCommand::Logs(args) => logs(args, ctx),
        StepCommand::Status(args) => status(args, ctx),
        StepCommand::Cancel(args) => cancel(args, ctx),
        StepCommand::Attach(args) => attach(args, ctx),
        StepCommand::Preview(args) => preview(args, ctx),
        StepCommand::List(args) => list(args, ctx),
    }
}

/// A launch built from the arguments, with the effective settings validated.
struct Prepared {
    launch: StepLaunch,
    on_interrupt: OnInterrupt,
}

fn prepare(step: &StepArgs, component: &Component) -> CliResult<Prepared> {
    let mut layers = SettingsLayers::new().with_component_config(
        format!("step operator `{}`: ", component.name),
        serde_json::Value::Object(component.configuration.clone()),
    );
    let mut resources = ResourceSettings::default();
    if let Some(file) = &step.settings {
        let document = stepstack_settings::load_file(file, std::env::vars())
            .map_err(|e| CliError::usage(e.to_string()))?;
        if let LoadedDocument::RunConfig { .. } = &document {
            let r = document
                .resource_settings(&step.name)
                .map_err(|report| invalid_settings(&report))?;
            resources = ResourceSettings::new(r.cpu_count, r.gpu_count, r.memory);
        }
        layers = document.add_layers(&step.name, &file.display().to_string(), layers);
    }
    for input in &step.overrides {
        layers = layers
            .with_override(input)
            .map_err(|e| CliError::usage(e.to_string()))?;
    }
    let (settings, on_interrupt) = if component.flavor == stepstack_k8s_operator::FLAVOR {
        let effective = layers
            .resolve()
            .map_err(|report| invalid_settings(&report))?;
        let on_interrupt = effective.settings.on_interrupt;
        (effective.value, on_interrupt)
    } else {
        (serde_json::json!({}), OnInterrupt::Delete)
    };
    let mut launch = StepLaunch::new(
        step.pipeline.clone(),
        step.name.clone(),
        step.image.clone(),
        step.command.clone(),
    )
    .with_settings(settings)
    .with_resources(resources);
    if let Some(run) = &step.run {
        let run_id = launch.run_id.clone();
        launch = launch.with_run(run.clone(), run_id);
    }
    Ok(Prepared {
        launch,
        on_interrupt,
    })
}

fn invalid_settings(report: &stepstack_settings::ValidationReport) -> CliError {
    let mut message = format!(
        "the step's settings have {} problem(s):",
        report.issues.len()
    );
    for issue in &report.issues {
        message.push_str(&format!("\n  {issue}"));
    }
    message.push_str("\nfix them and run again (`stepstack settings validate FILE` checks a file)");
    CliError::usage(message)
}

fn run_step(args: RunArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let component = step_operator_component(ctx, &store, args.step.step_operator.as_deref())?;
    let Prepared {
        launch,
        on_interrupt,
    } = prepare(&args.step, &component)?;
    let step_name = launch.step_name.clone();
    ctx.block_on(async {
        let operator = build_step_operator(ctx, &store, &component).await?;
        let handle = operator.submit(launch).await?;
        let log_path = state_dir(ctx, &component.name)?
            .join("logs")
            .join(format!("{}.log", handle.step_run_id));
        store
            .create_step_run(
                NewStepRun::from_handle(handle.clone(), component.name.clone())
                    .with_log_path(log_path),
            )
            .map_err(Error::from)?;
        let printer = ctx.printer();
        printer.line(format!(
            "Submitted step `{step_name}` to step operator `{}` (step run {}).",
            component.name, handle.step_run_id
        ))?;
        if args.detach {
            printer.line(format!(
                "Follow it with: stepstack step attach {}",
                handle.step_run_id
            ))?;
            printer.structured(&handle)?;
            return Ok(Exit::Ok);
        }
        follow(ctx, &mut store, operator, &handle, on_interrupt).await
    })?
}

/// Streams the step's logs while waiting for its outcome; Ctrl-C cancels or detaches per
/// the step's `on_interrupt` setting.
async fn follow(
    ctx: &Context<'_>,
    store: &mut Store,
    operator: Arc<dyn StepOperator>,
    handle: &StepHandle,
    on_interrupt: OnInterrupt,
) -> CliResult<Exit> {
    let print_logs = ctx.global.output == OutputFormat::Table;
    let progress = PendingProgress::new();
    let progress_task = tokio::spawn(show_while_pending(
        progress.clone(),
        operator.clone(),
        handle.clone(),
    ));
    let log_task = print_logs.then(|| {
        let operator = operator.clone();
        let handle = handle.clone();
        let progress = progress.clone();
        tokio::spawn(
            async move { stream_logs(operator.as_ref(), &handle, true, Some(&progress)).await },
        )
    });
    let outcome = tokio::select! {
        outcome = operator.wait(handle) => outcome,
        _ = tokio::signal::ctrl_c() => {
            progress.finish();
            match on_interrupt {
                OnInterrupt::Delete => {
                    eprintln!("Interrupted: cancelling step run {} …", handle.step_run_id);
                    operator.cancel(handle).await?;
                    operator.wait(handle).await
                }
                OnInterrupt::Keep => {
                    eprintln!(
                        "Interrupted: the step keeps running (on_interrupt: keep); follow it with `stepstack step attach {}`",
                        handle.step_run_id
                    );
                    return Ok(Exit::StepFailed);
                }
            }
        }
    };
    progress.finish();
    progress_task.abort();
    let outcome = outcome?;
    if let Some(task) = log_task {
        // The logs end with the step; do not hang if the stream lags.
        let _ = tokio::time::timeout(LOG_DRAIN, task).await;
    }
    record_outcome(store, handle, &outcome);
    // Where the time went is a bonus: a flavor that cannot tell, or an error, shows none.
    let timings = operator.timings(handle).await.ok().flatten();
    report_outcome(ctx, handle, &outcome, timings.as_ref())
}

/// Prints the step's log lines; the first one clears the pending-step display.
async fn stream_logs(
    operator: &dyn StepOperator,
    handle: &StepHandle,
    follow: bool,
    progress: Option<&PendingProgress>,
) -> stepstack_core::Result<()> {
    let mut lines = operator.logs(handle, follow).await?;
    while let Some(line) = lines.next().await {
        let line = line?;
        if let Some(progress) = progress {
            progress.finish();
        }
        println!("{line}");
    }
    Ok(())
}

fn record_outcome(store: &mut Store, handle: &StepHandle, outcome: &StepOutcome) {
    let status = match outcome {
        StepOutcome::Failed(failure) => StepStatus::Failed(failure.clone()),
        _ => StepStatus::Succeeded,
    };
    if let Err(e) = store.update_step_run(&handle.step_run_id, StepRunUpdate::status(status)) {
        tracing::warn!(error = %e, "could not record the step's outcome");
    }
}

/// The outcome as `-o json|yaml` prints it: the outcome's fields, plus its timings.
#[derive(Serialize)]
struct Finished<'a> {
    #[serde(flatten)]
    outcome: &'a StepOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    timings: Option<&'a StepTimings>,
}

fn report_outcome(
    ctx: &Context<'_>,
    handle: &StepHandle,
    outcome: &StepOutcome,
    timings: Option<&StepTimings>,
) -> CliResult<Exit> {
    let printer = ctx.printer();
    printer.structured(&Finished { outcome, timings })?;
    let exit = match outcome {
        StepOutcome::Failed(failure) => {
            eprintln!("error: step `{}` failed: {failure}", handle.step_name);
            Exit::StepFailed
        }
        _ => {
            printer.line(format!("Step `{}` succeeded.", handle.step_name))?;
            Exit::Ok
        }
    };
    if let Some(timings) = timings {
        printer.line(format!("Time: {timings}."))?;
    }
    Ok(exit)
}

/// The stored step run's handle and the operator that can reach it.
async fn reattach(
    ctx: &Context<'_>,
    store: &Store,
    id: &str,
) -> CliResult<(StepHandle, Arc<dyn StepOperator>)> {
    let run = store.get_step_run(id).map_err(Error::from)?;
    let handle = run.handle.ok_or_else(|| {
        CliError::from(Error::new(
            ErrorKind::NotFound,
            format!(
                "step run {} was never submitted; there is nothing to reattach to",
                run.id
            ),
        ))
    })?;
    let component = store
        .get_component(super::support::STEP_OPERATOR, &run.component)
        .map_err(Error::from)?;
    let operator = build_step_operator(ctx, store, &component).await?;
    Ok((handle, operator))
}

fn logs(args: LogsArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    ctx.block_on(async {
        let (handle, operator) = reattach(ctx, &store, &args.id).await?;
        stream_logs(operator.as_ref(), &handle, args.follow, None).await?;
        Ok(Exit::Ok)
    })?
}

fn status(args: RunId, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let (handle, status, timings) = ctx.block_on(async {
        let (handle, operator) = reattach(ctx, &store, &args.id).await?;
        let status = operator.status(&handle).await?;
        let timings = operator.timings(&handle).await.ok().flatten();
        Ok::<_, CliError>((handle, status, timings))
    })??;
    if let Err(e) =
        store.update_step_run(&handle.step_run_id, StepRunUpdate::status(status.clone()))
    {
        tracing::warn!(error = %e, "could not record the step's status");
    }
    #[derive(Serialize)]
    struct Shown<'a> {
        step_run_id: &'a str,
        step: &'a str,
        status: &'a StepStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        timings: Option<&'a StepTimings>,
    }
    let shown = Shown {
        step_run_id: &handle.step_run_id,
        step: &handle.step_name,
        status: &status,
        timings: timings.as_ref(),
    };
    ctx.printer().data(&shown, || {
        let mut t = table(["STEP RUN", "STEP", "STATUS", "TIME"]);
        t.add_row([
            handle.step_run_id.clone(),
            handle.step_name.clone(),
            describe_status(&status),
            timings
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ]);
        t
    })?;
    Ok(Exit::Ok)
}

fn cancel(args: RunId, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let (handle, outcome) = ctx.block_on(async {
        let (handle, operator) = reattach(ctx, &store, &args.id).await?;
        operator.cancel(&handle).await?;
        let outcome = operator.wait(&handle).await?;
        Ok::<_, CliError>((handle, outcome))
    })??;
    record_outcome(&mut store, &handle, &outcome);
    ctx.printer().line(format!(
        "Cancelled step run {} (step `{}`).",
        handle.step_run_id, handle.step_name
    ))?;
    Ok(Exit::Ok)
}

fn attach(args: RunId, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let run = store.get_step_run(&args.id).map_err(Error::from)?;
    let component = store
        .get_component(super::support::STEP_OPERATOR, &run.component)
        .map_err(Error::from)?;
    let on_interrupt = stepstack_settings::parse_config(
        &serde_json::Value::Object(component.configuration.clone()),
        "",
    )
    .map(|c| c.settings.on_interrupt)
    .unwrap_or_default();
    ctx.block_on(async {
        let (handle, operator) = reattach(ctx, &store, &args.id).await?;
        follow(ctx, &mut store, operator, &handle, on_interrupt).await
    })?
}

fn preview(args: PreviewArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let component = step_operator_component(ctx, &store, args.step.step_operator.as_deref())?;
    if component.flavor != stepstack_k8s_operator::FLAVOR {
        return Err(CliError::usage(format!(
            "preview knows the `{}` flavor; `{}` is a `{}` step operator",
            stepstack_k8s_operator::FLAVOR,
            component.name,
            component.flavor
        )));
    }
    let Prepared { launch, .. } = prepare(&args.step, &component)?;
    let config = stepstack_settings::parse_config(
        &serde_json::Value::Object(component.configuration.clone()),
        "",
    )
    .map_err(|report| invalid_settings(&report))?;
    ctx.block_on(async {
        let mut context = stepstack_core::StepOperatorContext::new(component.name.clone());
        if args.server_dry_run
            && let Some(connector) = &component.connector_name
        {
            let built = super::support::build_connector(ctx, &store, connector)?;
            let connection = built
                .connect(
                    stepstack_core::connector::KUBERNETES_CLUSTER,
                    component.connector_resource_id.as_deref(),
                )
                .await?;
            context = context.with_connection(connection);
        }
        let operator = stepstack_k8s_operator::KubernetesStepOperator::new(config, context);
        if !args.server_dry_run {
            let preview = operator.preview(&launch)?;
            let text = match ctx.global.output {
                OutputFormat::Json => preview.to_json()?,
                _ => preview.to_yaml()?,
            };
            print!("{text}");
            return Ok(Exit::Ok);
        }
        let server = operator.preview_on_server(&launch).await?;
        if server.accepted() {
            ctx.printer()
                .line("The API server would accept the step's objects.")?;
            return Ok(Exit::Ok);
        }
        let mut message = format!(
            "the API server would reject the step's objects ({} problem(s)):",
            server.problems.len()
        );
        for problem in &server.problems {
            message.push_str(&format!("\n  {problem}"));
        }
        Err(CliError::usage(message))
    })?
}

fn list(args: ListArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let mut filter = StepRunFilter::new();
    filter.limit = Some(args.limit);
    let runs = store.list_step_runs(&filter).map_err(Error::from)?;
    let printer = ctx.printer();
    if runs.is_empty() {
        printer.line("No step runs yet; run one with `stepstack step run NAME -- COMMAND`.")?;
        return Ok(Exit::Ok);
    }
    printer.data(&runs, || {
        let mut t = table([
            "STEP RUN",
            "PIPELINE",
            "STEP",
            "STEP OPERATOR",
            "STATUS",
            "CREATED",
        ]);
        for run in &runs {
            t.add_row([
                run.id.clone(),
                run.pipeline.clone(),
                run.step_name.clone(),
                run.component.clone(),
                run.status_text.clone(),
                run.created_at.to_string(),
            ]);
        }
        t
    })?;
    Ok(Exit::Ok)
}

fn describe_status(status: &StepStatus) -> String {
    match status {
        StepStatus::Pending {
            message: Some(message),
        } => format!("pending: {message}"),
        StepStatus::Pending { message: None } => "pending".to_owned(),
        StepStatus::Running => "running".to_owned(),
        StepStatus::Succeeded => "succeeded".to_owned(),
        StepStatus::Failed(failure) => format!("failed: {}: {}", failure.reason, failure.message),
        _ => "unknown".to_owned(),
    }
}
