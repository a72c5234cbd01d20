//! `stepstack step run|logs|status|cancel|attach|preview|list`: run a command as a step on
//! the active stack's step operator and follow it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::{Args, Subcommand};
use futures::StreamExt;
use serde::Serialize;
use stepstack_core::{
    Error, ErrorKind, FailureReason, LogLine, ResourceSettings, StepFailure, StepHandle,
    StepLaunch, StepOperator, StepOutcome, StepStatus, StepTimings,
};
use stepstack_settings::{LoadedDocument, OnInterrupt, SettingsLayers};
use stepstack_store::{
    Component, NewStepRun, StepRun, StepRunFilter, StepRunUpdate, Store, StoreError,
};

use super::Context;
use super::support::{build_step_operator, step_operator_component};
use crate::exit::{CliError, CliResult, Exit, render};
use crate::output::{OutputFormat, table};
use crate::progress::{PendingProgress, show_while_pending};
use crate::signals::{Interrupts, exit_now};

/// The image of a step when `--image` is not given.
const DEFAULT_IMAGE: &str = "busybox:1.36";
/// How long the live log stream may go without a line, once the step has ended, before
/// `run` stops waiting for it (and says that the live view is incomplete).
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// How long `status` of a finished step run waits for the operator's timings (a bonus:
/// the outcome is stored, and the cluster may be gone).
const TIMINGS_BUDGET: Duration = Duration::from_secs(10);
/// The pending message of a step run recorded before its submission finished.
const SUBMITTING: &str = "its Job is being created";

#[derive(Debug, Subcommand)]
pub(crate) enum StepCommand {
    /// Run a command as a step: `step run NAME [--settings FILE] [--set K=V]… -- COMMAND…`.
    Run(RunArgs),
    /// Print a step run's logs (given a step's name: its latest run's).
    Logs(LogsArgs),
    /// Show a step run's status (given a step's name: its latest run's).
    Status(RunOrStep),
    /// Cancel a step run.
    Cancel(RunId),
    /// Follow a running step (from another terminal or after --detach) to its end.
    Attach(RunOrStep),
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
pub(crate) struct RunOrStep {
    /// The step-run id (or a unique prefix), or a step's name for its latest run.
    id: String,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The step-run id (or a unique prefix), or a step's name for its latest run.
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

/// The `--settings` file, loaded once (the step operator may come from it).
fn load_document(step: &StepArgs) -> CliResult<Option<LoadedDocument>> {
    step.settings
        .as_deref()
        .map(super::settings::load_settings_file)
        .transpose()
}

/// `--step-operator`, else the run configuration's `steps.NAME.step_operator`.
fn named_step_operator<'a>(
    step: &'a StepArgs,
    document: Option<&'a LoadedDocument>,
) -> Option<&'a str> {
    step.step_operator
        .as_deref()
        .or_else(|| document.and_then(|d| d.step_operator_of(&step.name)))
}

fn prepare(
    step: &StepArgs,
    document: Option<&LoadedDocument>,
    component: &Component,
) -> CliResult<Prepared> {
    let mut layers = SettingsLayers::new().with_component_config(
        format!("step operator `{}`: ", component.name),
        serde_json::Value::Object(component.configuration.clone()),
    );
    let mut resources = ResourceSettings::default();
    if let (Some(file), Some(document)) = (&step.settings, document) {
        if let LoadedDocument::RunConfig { .. } = document {
            resources = document
                .resource_settings(&step.name)
                .map_err(|report| invalid_settings(&report))?;
        }
        layers = document.add_layers(
            &step.name,
            &component.flavor,
            &component.name,
            &file.display().to_string(),
            layers,
        );
    }
    layers = layers.with_environment(std::env::vars());
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
    let document = load_document(&args.step)?;
    let named = named_step_operator(&args.step, document.as_ref());
    let component = step_operator_component(ctx, &store, named)?;
    let Prepared {
        launch,
        on_interrupt,
    } = prepare(&args.step, document.as_ref(), &component)?;
    let step_name = launch.step_name.clone();
    let step_run_id = launch.step_run_id.clone();
    ctx.block_on(async {
        // From here on SIGINT, SIGTERM and SIGHUP cancel the step instead of killing us.
        let mut interrupts = Interrupts::install()?;
        let operator = build_step_operator(ctx, &store, &component).await?;
        // Record the step run before anything is created: a process killed while
        // submitting leaves a record that `step list`, `status` and `cancel` know.
        let planned = operator.planned_handle(&launch).await?;
        if let Some(planned) = &planned {
            store
                .create_step_run(record_of(planned, &component.name).with_status(
                    StepStatus::Pending {
                        message: Some(SUBMITTING.to_owned()),
                    },
                ))
                .map_err(Error::from)?;
        }
        let mut interrupted = None;
        let submitted = {
            let submit = operator.submit(launch);
            tokio::pin!(submit);
            loop {
                tokio::select! {
                    result = &mut submit => break result,
                    signal = interrupts.recv() => {
                        if interrupted.is_some() {
                            exit_now(signal, &step_run_id);
                        }
                        // Dropping the create now could leave a Job created after the
                        // cancel; let it finish (it is bounded by the API timeouts).
                        crate::output::message(&format!(
                            "Interrupted: step run {step_run_id} is being submitted; it is cancelled as soon as the cluster has it ({signal}; interrupt again to exit at once)"
                        ));
                        interrupted = Some(signal);
                    }
                }
            }
        };
        let handle = match submitted {
            Ok(handle) => handle,
            Err(err) => {
                if planned.is_some() {
                    record_submit_failure(&mut store, &step_run_id, &err);
                }
                return Err(err.into());
            }
        };
        let run = match &planned {
            Some(_) => {
                let mut update = StepRunUpdate::status(StepStatus::Pending { message: None });
                update.handle = Some(handle.clone());
                store.update_step_run(&handle.step_run_id, update)
            }
            None => store.create_step_run(record_of(&handle, &component.name)),
        }
        .map_err(Error::from)?;
        if run.status.is_finished() {
            // `step cancel` got to the record while the Job was being created: it may
            // have found nothing to delete, so delete what the submit created.
            operator.cancel(&handle).await?;
            crate::output::message(&format!(
                "error: step run {step_run_id} was cancelled while it was being submitted; its Job is deleted"
            ));
            return Ok(Exit::StepFailed);
        }
        let printer = ctx.printer();
        printer.line(format!(
            "Submitted step `{step_name}` to step operator `{}` (step run {}).",
            component.name, handle.step_run_id
        ))?;
        if let Some(signal) = interrupted {
            return interrupted_run(
                &mut store,
                operator.as_ref(),
                &handle,
                on_interrupt,
                &mut interrupts,
                signal,
            )
            .await;
        }
        if args.detach {
            printer.line(format!(
                "Follow it with: stepstack step attach {}",
                handle.step_run_id
            ))?;
            printer.structured(&handle)?;
            return Ok(Exit::Ok);
        }
        follow(
            ctx,
            &mut store,
            operator,
            &handle,
            on_interrupt,
            &mut interrupts,
        )
        .await
    })?
}

/// The record of a step run from its (planned or submitted) handle, with the file its
/// logs are kept in.
fn record_of(handle: &StepHandle, component: &str) -> NewStepRun {
    let record = NewStepRun::from_handle(handle.clone(), component);
    match kept_log_file(handle) {
        Some(path) => record.with_log_path(path),
        None => record,
    }
}

/// Where the step operator keeps the step's log lines (JSON lines of [`LogLine`]).
fn kept_log_file(handle: &StepHandle) -> Option<PathBuf> {
    if handle.flavor != stepstack_k8s_operator::FLAVOR {
        return None;
    }
    stepstack_k8s_operator::KubernetesHandle::from_handle(handle)
        .ok()?
        .log_file
}

/// Records that the submission of a recorded step run failed: the cluster refused it,
/// or could not be asked (then the Job may exist, and `step cancel` still finds it).
fn record_submit_failure(store: &mut Store, step_run_id: &str, err: &Error) {
    let api_reason = err
        .context_value("api_reason")
        .unwrap_or(err.kind().as_str())
        .to_owned();
    let mut message = format!("the step could not be submitted: {err}");
    if !matches!(
        err.kind(),
        ErrorKind::InvalidSettings
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::PermissionDenied
    ) {
        message.push_str(&format!(
            "; if the cluster created its Job anyway, `stepstack step cancel {step_run_id}` deletes it"
        ));
    }
    let failure = StepFailure::new(FailureReason::CreateFailed { api_reason }, message);
    if let Err(e) = store.update_step_run(
        step_run_id,
        StepRunUpdate::status(StepStatus::Failed(failure)),
    ) {
        tracing::warn!(error = %e, "could not record the failed submission");
    }
}

/// Streams the step's logs while waiting for its outcome; an interrupt (Ctrl-C, SIGTERM,
/// SIGHUP) cancels or keeps the step per its `on_interrupt` setting.
async fn follow(
    ctx: &Context<'_>,
    store: &mut Store,
    operator: Arc<dyn StepOperator>,
    handle: &StepHandle,
    on_interrupt: OnInterrupt,
    interrupts: &mut Interrupts,
) -> CliResult<Exit> {
    let print_logs = ctx.global.output == OutputFormat::Table;
    let progress = PendingProgress::new();
    let progress_task = tokio::spawn(show_while_pending(
        progress.clone(),
        operator.clone(),
        handle.clone(),
    ));
    let printed = Arc::new(AtomicU64::new(0));
    let log_task = print_logs.then(|| {
        let operator = operator.clone();
        let handle = handle.clone();
        let progress = progress.clone();
        let printed = printed.clone();
        tokio::spawn(async move {
            stream_logs(
                operator.as_ref(),
                &handle,
                true,
                Some((&progress, &printed)),
            )
            .await
        })
    });
    let outcome = tokio::select! {
        outcome = operator.wait(handle) => outcome,
        signal = interrupts.recv() => {
            progress.finish();
            progress_task.abort();
            if let Some(task) = &log_task {
                task.abort();
            }
            return interrupted_run(store, operator.as_ref(), handle, on_interrupt, interrupts, signal)
                .await;
        }
    };
    progress.finish();
    progress_task.abort();
    let outcome = outcome?;
    if let Some(task) = log_task {
        drain_logs(task, &printed, &handle.step_run_id, interrupts).await;
    }
    record_outcome(store, handle, &outcome);
    // Where the time went is a bonus: a flavor that cannot tell, or an error, shows none.
    let timings = operator.timings(handle).await.ok().flatten();
    report_outcome(ctx, handle, &outcome, timings.as_ref())
}

/// What an interrupted `run` or `attach` does: cancel the step and wait for its end
/// (a second interrupt exits at once), or leave it running with `on_interrupt: keep`.
/// Either way the command exits with 130.
async fn interrupted_run(
    store: &mut Store,
    operator: &dyn StepOperator,
    handle: &StepHandle,
    on_interrupt: OnInterrupt,
    interrupts: &mut Interrupts,
    signal: &str,
) -> CliResult<Exit> {
    let id = &handle.step_run_id;
    if on_interrupt == OnInterrupt::Keep {
        crate::output::message(&format!(
            "Interrupted ({signal}): the step keeps running (on_interrupt: keep); follow it with `stepstack step attach {id}`"
        ));
        return Ok(Exit::Interrupted);
    }
    crate::output::message(&format!(
        "Interrupted: cancelling step run {id} … ({signal}; interrupt again to exit at once)"
    ));
    let cancelled = async {
        operator.cancel(handle).await?;
        record_cancelled(store, handle);
        operator.wait(handle).await
    };
    let outcome = tokio::select! {
        outcome = cancelled => outcome,
        signal = interrupts.recv() => exit_now(signal, id),
    };
    match outcome {
        Ok(outcome) => {
            record_outcome(store, handle, &outcome);
            crate::output::message(&format!("Cancelled step run {id}."));
            Ok(Exit::Interrupted)
        }
        Err(err) => Err(CliError::new(
            Exit::Interrupted,
            anyhow::Error::new(err).context(format!(
                "could not cancel step run {id}; try again with `stepstack step cancel {id}`"
            )),
        )),
    }
}

/// Lets the live log stream finish after the step has ended: as long as it keeps
/// printing, and [`LOG_DRAIN`] after its last line. When it has to be cut off (or it
/// failed, or an interrupt came) it says so on stderr and where the full log is, rather
/// than losing lines silently.
async fn drain_logs(
    mut task: tokio::task::JoinHandle<stepstack_core::Result<()>>,
    printed: &AtomicU64,
    step_run_id: &str,
    interrupts: &mut Interrupts,
) {
    let mut seen = printed.load(Ordering::Relaxed);
    let incomplete = loop {
        tokio::select! {
            joined = &mut task => break match joined {
                Ok(Ok(())) => None,
                // The reader of stdout went away: the output is over, not incomplete.
                Ok(Err(err)) if crate::output::is_closed_core(&err) => None,
                Ok(Err(err)) => Some(format!("the log stream failed: {err}")),
                Err(_) => Some("the log stream stopped".to_owned()),
            },
            _ = tokio::time::sleep(LOG_DRAIN) => {
                let now = printed.load(Ordering::Relaxed);
                if now == seen {
                    task.abort();
                    break Some(format!(
                        "the log stream delivered nothing for {} s after the step ended",
                        LOG_DRAIN.as_secs()
                    ));
                }
                seen = now;
            }
            signal = interrupts.recv() => {
                task.abort();
                break Some(format!("{signal} stopped the log stream"));
            }
        }
    };
    if let Some(why) = incomplete {
        crate::output::message(&format!(
            "warning: the live log view above may be incomplete ({why}); `stepstack step logs {step_run_id}` shows the full log"
        ));
    }
}

/// Prints the step's log lines; with a live view, the first one clears the pending-step
/// display and each one is counted.
async fn stream_logs(
    operator: &dyn StepOperator,
    handle: &StepHandle,
    follow: bool,
    live: Option<(&PendingProgress, &AtomicU64)>,
) -> stepstack_core::Result<()> {
    let mut lines = operator.logs(handle, follow).await?;
    while let Some(line) = lines.next().await {
        let line = line?;
        if let Some((progress, printed)) = live {
            progress.finish();
            printed.fetch_add(1, Ordering::Relaxed);
        }
        crate::output::print_line_core(&line)?;
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

/// Records the cancellation as soon as the delete is done, before waiting for the end:
/// a submitter still creating the Job sees it when its create returns (and deletes what
/// it created), whatever the wait then takes.
fn record_cancelled(store: &mut Store, handle: &StepHandle) {
    let failure = StepFailure::new(
        FailureReason::Cancelled,
        "the step was cancelled and its Job deleted",
    );
    if let Err(e) = store.update_step_run(
        &handle.step_run_id,
        StepRunUpdate::status(StepStatus::Failed(failure)),
    ) {
        tracing::warn!(error = %e, "could not record the cancellation");
    }
}

/// The step run `id` names: a step-run id (or a unique prefix of one), else the latest
/// run of the step named `id`.
fn find_run(store: &Store, id: &str) -> CliResult<StepRun> {
    match store.get_step_run(id) {
        Ok(run) => Ok(run),
        Err(StoreError::NotFound { .. }) => {
            let mut filter = StepRunFilter::new();
            filter.step_name = Some(id.to_owned());
            filter.limit = Some(1);
            let latest = store.list_step_runs(&filter).map_err(Error::from)?;
            latest.into_iter().next().ok_or_else(|| {
                CliError::from(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no step run has the id (or id prefix) `{id}` and no step named `{id}` has run; `stepstack step list` shows the recorded runs"
                    ),
                ))
            })
        }
        Err(e) => Err(Error::from(e).into()),
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
            crate::output::message(&format!(
                "error: step `{}` failed: {failure}",
                handle.step_name
            ));
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
    run: &StepRun,
) -> CliResult<(StepHandle, Arc<dyn StepOperator>)> {
    let handle = run.handle.clone().ok_or_else(|| {
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
    let run = find_run(&store, &args.id)?;
    // A finished step's complete kept log is local: no cluster needed (it may have been
    // replaced, e.g. by `local-cluster stop` and `start`, or be unreachable).
    let kept = run
        .log_path
        .as_deref()
        .filter(|_| run.status.is_finished())
        .map(stepstack_k8s_operator::read_kept_log)
        .filter(|kept| !kept.lines.is_empty());
    if let Some(kept) = &kept
        && kept.incomplete.is_none()
    {
        print_lines(&kept.lines)?;
        return Ok(Exit::Ok);
    }
    let streamed = ctx.block_on(async {
        let (handle, operator) = reattach(ctx, &store, &run).await?;
        stream_logs(operator.as_ref(), &handle, args.follow, None)
            .await
            .map_err(CliError::from)
    })?;
    match (streamed, kept) {
        (Ok(()), _) => Ok(Exit::Ok),
        // The lines before it are real; what is missing is a warning, not a failure.
        // The reader went away (`| head`): the output is over, nothing to add.
        (Err(err), _) if crate::output::is_closed(&err.error) => Err(err),
        (Err(err), _) if is_incomplete(&err) => {
            crate::output::message(&format!("warning: {}", render(&err.error)));
            Ok(Exit::Ok)
        }
        // The cluster cannot say more than the partial kept log: show that, and say so.
        (Err(err), Some(kept)) => {
            print_lines(&kept.lines)?;
            crate::output::message(&format!(
                "warning: the kept log is incomplete ({}), and the cluster could not be asked for the rest: {}",
                kept.incomplete.unwrap_or_default(),
                render(&err.error)
            ));
            Ok(Exit::Ok)
        }
        (Err(err), None) => Err(err),
    }
}

fn print_lines(lines: &[LogLine]) -> CliResult {
    for line in lines {
        crate::output::print_line(line)?;
    }
    Ok(())
}

/// Whether `err` ends a log stream that could not deliver every line.
fn is_incomplete(err: &CliError) -> bool {
    err.error
        .chain()
        .filter_map(|e| e.downcast_ref::<Error>())
        .any(stepstack_k8s_operator::is_incomplete_log)
}

fn status(args: RunOrStep, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let run = find_run(&store, &args.id)?;
    let handle = run.handle.clone();
    let (status, timings) = if run.status.is_finished() {
        // How it ended is stored; only the timings come from the operator, if it still
        // reaches the step (the cluster may be gone or replaced).
        let timings = ctx.block_on(async {
            let timings = async {
                let (handle, operator) = reattach(ctx, &store, &run).await.ok()?;
                operator.timings(&handle).await.ok().flatten()
            };
            tokio::time::timeout(TIMINGS_BUDGET, timings)
                .await
                .ok()
                .flatten()
        })?;
        (run.status.clone(), timings)
    } else {
        let live = ctx.block_on(async {
            let (handle, operator) = reattach(ctx, &store, &run).await?;
            let status = match operator.status(&handle).await {
                Ok(status) => status,
                // Recorded, but its submitter never got the Job created (or is creating
                // it now): say so, and keep the record as it is.
                Err(err) if err.kind() == ErrorKind::NotFound && is_submitting(&run) => {
                    return Ok::<_, CliError>(None);
                }
                Err(err) => return Err(err.into()),
            };
            let timings = operator.timings(&handle).await.ok().flatten();
            Ok(Some((status, timings)))
        })??;
        match live {
            Some((status, timings)) => {
                if let Err(e) =
                    store.update_step_run(&run.id, StepRunUpdate::status(status.clone()))
                {
                    tracing::warn!(error = %e, "could not record the step's status");
                }
                (status, timings)
            }
            None => (never_created(&run), None),
        }
    };
    let step_name = handle.as_ref().map_or(&run.step_name, |h| &h.step_name);
    #[derive(Serialize)]
    struct Shown<'a> {
        step_run_id: &'a str,
        step: &'a str,
        status: &'a StepStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        timings: Option<&'a StepTimings>,
    }
    let shown = Shown {
        step_run_id: &run.id,
        step: step_name,
        status: &status,
        timings: timings.as_ref(),
    };
    ctx.printer().data(&shown, || {
        let mut t = table(["STEP RUN", "STEP", "STATUS", "TIME"]);
        t.add_row([
            run.id.clone(),
            step_name.clone(),
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
    let run = store.get_step_run(&args.id).map_err(Error::from)?;
    let (handle, outcome) = ctx.block_on(async {
        let (handle, operator) = reattach(ctx, &store, &run).await?;
        operator.cancel(&handle).await?;
        record_cancelled(&mut store, &handle);
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

fn attach(args: RunOrStep, ctx: &Context<'_>) -> CliResult<Exit> {
    let mut store = ctx.store()?;
    let run = find_run(&store, &args.id)?;
    let component = store
        .get_component(super::support::STEP_OPERATOR, &run.component)
        .map_err(Error::from)?;
    // The step's own `on_interrupt` (frozen in its handle), else the component's.
    let kept = run
        .handle
        .as_ref()
        .filter(|h| h.flavor == stepstack_k8s_operator::FLAVOR)
        .and_then(|h| stepstack_k8s_operator::KubernetesHandle::from_handle(h).ok())
        .map(|data| data.on_interrupt());
    let on_interrupt = kept.unwrap_or_else(|| {
        stepstack_settings::parse_config(
            &serde_json::Value::Object(component.configuration.clone()),
            "",
        )
        .map(|c| c.settings.on_interrupt)
        .unwrap_or_default()
    });
    ctx.block_on(async {
        let mut interrupts = Interrupts::install()?;
        let (handle, operator) = reattach(ctx, &store, &run).await?;
        if is_submitting(&run)
            && let Err(err) = operator.status(&handle).await
            && err.kind() == ErrorKind::NotFound
        {
            return Err(CliError::from(Error::new(
                ErrorKind::NotFound,
                format!(
                    "step run {id} has no Job: the process that submitted it stopped before creating it, or is creating it now; try again in a moment, close the record with `stepstack step cancel {id}`, or run the step again",
                    id = run.id
                ),
            )));
        }
        follow(
            ctx,
            &mut store,
            operator,
            &handle,
            on_interrupt,
            &mut interrupts,
        )
        .await
    })?
}

fn preview(args: PreviewArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    let store = ctx.store()?;
    let document = load_document(&args.step)?;
    let named = named_step_operator(&args.step, document.as_ref());
    let component = step_operator_component(ctx, &store, named)?;
    if component.flavor != stepstack_k8s_operator::FLAVOR {
        return Err(CliError::usage(format!(
            "preview knows the `{}` flavor; `{}` is a `{}` step operator",
            stepstack_k8s_operator::FLAVOR,
            component.name,
            component.flavor
        )));
    }
    let Prepared { launch, .. } = prepare(&args.step, document.as_ref(), &component)?;
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
            let mut text = match ctx.global.output {
                OutputFormat::Json => preview.to_json()?,
                _ => preview.to_yaml()?,
            };
            if !text.ends_with('\n') {
                text.push('\n');
            }
            crate::output::print(&text)?;
            return Ok(Exit::Ok);
        }
        let server = operator.preview_on_server(&launch).await?;
        /// The dry run as `-o json|yaml` prints it.
        #[derive(Serialize)]
        struct DryRun<'a> {
            accepted: bool,
            #[serde(flatten)]
            server: &'a stepstack_k8s_operator::ServerPreview,
        }
        ctx.printer().structured(&DryRun {
            accepted: server.accepted(),
            server: &server,
        })?;
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
    if runs.is_empty() && ctx.global.output == OutputFormat::Table {
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

/// Whether the step run was recorded before its submission and not heard of since.
fn is_submitting(run: &StepRun) -> bool {
    matches!(&run.status, StepStatus::Pending { message: Some(m) } if m == SUBMITTING)
}

/// The status of a recorded step run whose Job the cluster does not have: its submitter
/// stopped before creating it (or is creating it right now).
fn never_created(run: &StepRun) -> StepStatus {
    StepStatus::Pending {
        message: Some(format!(
            "its Job does not exist: the process that submitted it stopped before creating it, or is creating it now; `stepstack step cancel {}` closes the record",
            run.id
        )),
    }
}

fn describe_status(status: &StepStatus) -> String {
    match status {
        StepStatus::Pending {
            message: Some(message),
        } => format!("pending: {message}"),
        StepStatus::Pending { message: None } => "pending".to_owned(),
        StepStatus::Running => "running".to_owned(),
        StepStatus::Succeeded => "succeeded".to_owned(),
        StepStatus::Failed(failure) if failure.reason == FailureReason::Cancelled => {
            format!("cancelled: {}", failure.message)
        }
        StepStatus::Failed(failure) => format!("failed: {}: {}", failure.reason, failure.message),
        _ => "unknown".to_owned(),
    }
}
