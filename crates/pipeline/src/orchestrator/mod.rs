//! The orchestrator: runs a pipeline's steps on this machine or on step operators, in
//! dependency order, at most `parallelism` at a time, recording everything in a
//! [`RunStore`] and moving outputs through an [`ArtifactStore`].
//!
//! - **Records first.** A run and all its step runs are recorded (pending) before any
//!   step starts; each step run then records its cache key, its operator's handle (the
//!   planned one before submit), its status and its outputs as they happen.
//! - **Local steps** run as processes (tokio), in `<workspace>/<run id>/<step>/`: inputs
//!   are read from the artifact store into `inputs/<name>/` (digests checked), outputs are
//!   the directories `outputs/<name>/` (created empty), which the placeholders name. After
//!   the command exits 0 every declared output must hold something (else the step fails
//!   with `MissingOutput`) and is written to the store at
//!   `<pipeline>/<run id>/<step>/<output>`.
//! - **Steps on a step operator** go through the [`stepstack_core::StepOperator`] the caller registered
//!   under the component's name: submit, logs (forwarded to the caller's sink), wait.
//!   Their inputs and outputs use the same workspace directories, which works where the
//!   operator's pods share this machine's file system (the testkit emulator's process
//!   kubelet); the in-pod agent that moves artifacts inside a real pod is not wired yet.
//! - **Failures** skip everything downstream (`skipped`, reason `UpstreamFailed`); steps
//!   that do not depend on the failure run on and finish; the run fails.
//! - **Cancel** (the caller's token): every running step is cancelled (the operator's
//!   `cancel`, a local process killed), steps not started are `skipped`, the run is
//!   `cancelled`.
//! - **Cache**: see [`crate::cache`]; a cached step costs no operator call.
//! - **Resume** ([`Orchestrator::resume`]): succeeded and cached steps are kept; a step
//!   recorded running with a handle is adopted through `wait(handle)` (or submitted again
//!   under the same step-run id when nothing is behind the handle); every other step
//!   starts again.

mod exec;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;
use stepstack_core::artifact_store::ArtifactStore;
use tokio_util::sync::CancellationToken;

pub use exec::{LogSink, StepOperatorEntry};

use crate::model::Pipeline;
use crate::record::{
    OutputRecord, RunRecord, RunSnapshot, RunStatus, RunStore, RunStoreError, StepFailureReason,
    StepRunFailure, StepRunRecord, StepRunStatus, StepRunUpdate,
};
use crate::{ValidationReport, problems};
use exec::{StepJob, StepResult};

/// How many steps run at once unless the caller says otherwise: enough to keep a
/// cluster busy with many small steps, few enough that local steps do not swamp this
/// machine.
pub const DEFAULT_PARALLELISM: usize = 8;

/// Options of one run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunOptions {
    /// The run's name; default `<pipeline>-<first 8 digits of the run id>`.
    pub run_name: Option<String>,
    /// How many steps run at once (at least 1); default [`DEFAULT_PARALLELISM`].
    pub parallelism: usize,
    /// Turns caching off for every step of the run.
    pub no_cache: bool,
    /// Where the pipeline came from (a file name), for the paths in settings errors.
    pub origin: String,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            run_name: None,
            parallelism: DEFAULT_PARALLELISM,
            no_cache: false,
            origin: "pipeline".into(),
        }
    }
}

impl RunOptions {
    /// Sets the run name.
    pub fn run_name(mut self, name: impl Into<String>) -> RunOptions {
        self.run_name = Some(name.into());
        self
    }

    /// Sets the parallelism.
    pub fn parallelism(mut self, parallelism: usize) -> RunOptions {
        self.parallelism = parallelism;
        self
    }

    /// Turns caching off (or on) for the run.
    pub fn no_cache(mut self, no_cache: bool) -> RunOptions {
        self.no_cache = no_cache;
        self
    }
}

/// Why a run could not be carried out (a step failing is not an error: it is in the
/// summary).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestratorError {
    /// A step names a step operator the caller did not provide.
    #[error("{}", problems(.0))]
    UnknownStepOperator(ValidationReport),
    /// The run to resume belongs to another pipeline.
    #[error("run `{run_id}` is a run of pipeline `{found}`, not `{expected}`")]
    WrongPipeline {
        /// The run.
        run_id: String,
        /// This orchestrator's pipeline.
        expected: String,
        /// The run's.
        found: String,
    },
    /// The run records could not be read or written.
    #[error("the run records failed")]
    Records(#[from] RunStoreError),
}

/// One step's line of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSummary {
    /// The step.
    pub step: String,
    /// How it ended.
    pub status: StepRunStatus,
    /// How long it ran, when it ran.
    pub duration: Option<Duration>,
    /// Why it did not succeed.
    pub failure: Option<StepRunFailure>,
    /// Its stored outputs.
    pub outputs: BTreeMap<String, OutputRecord>,
}

/// How a run ended: the run's status and one line per step, in topological order.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: String,
    /// The run's name.
    pub run_name: String,
    /// How the run ended.
    pub status: RunStatus,
    /// The steps.
    pub steps: Vec<StepSummary>,
}

impl RunSummary {
    /// The summary line of `step`.
    pub fn step(&self, step: &str) -> Option<&StepSummary> {
        self.steps.iter().find(|s| s.step == step)
    }

    /// The status of `step`.
    pub fn status_of(&self, step: &str) -> Option<StepRunStatus> {
        self.step(step).map(|s| s.status)
    }
}

impl fmt::Display for RunSummary {
    /// The table: step, status, time, reason.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .steps
            .iter()
            .map(|s| s.step.len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            f,
            "{:<width$}  {:<9}  {:>8}  REASON",
            "STEP", "STATUS", "TIME"
        )?;
        for s in &self.steps {
            let time = s
                .duration
                .map(|d| format!("{:.1}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into());
            let reason = s
                .failure
                .as_ref()
                .map(|f| format!("{}: {}", f.reason.name(), f.message))
                .unwrap_or_default();
            writeln!(
                f,
                "{:<width$}  {:<9}  {:>8}  {reason}",
                s.step,
                s.status.as_str(),
                time
            )?;
        }
        write!(
            f,
            "run {} ({}): {:?}",
            self.run_name, self.run_id, self.status
        )
    }
}

/// Runs one pipeline.
#[derive(Clone)]
pub struct Orchestrator {
    pipeline: Arc<Pipeline>,
    runs: Arc<dyn RunStore>,
    artifacts: Arc<dyn ArtifactStore>,
    operators: BTreeMap<String, StepOperatorEntry>,
    workspace: PathBuf,
    options: RunOptions,
    log: Option<LogSink>,
}

impl fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Orchestrator")
            .field("pipeline", &self.pipeline.name())
            .field("operators", &self.operators.keys().collect::<Vec<_>>())
            .field("workspace", &self.workspace)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Orchestrator {
    /// An orchestrator for `pipeline` recording in `runs`, storing artifacts in
    /// `artifacts`, with step workspaces under `workspace`.
    pub fn new(
        pipeline: Pipeline,
        runs: Arc<dyn RunStore>,
        artifacts: Arc<dyn ArtifactStore>,
        workspace: impl Into<PathBuf>,
    ) -> Orchestrator {
        Orchestrator {
            pipeline: Arc::new(pipeline),
            runs,
            artifacts,
            operators: BTreeMap::new(),
            workspace: workspace.into(),
            options: RunOptions::default(),
            log: None,
        }
    }

    /// Registers the step operator steps name as `component`.
    pub fn with_step_operator(
        mut self,
        component: impl Into<String>,
        entry: StepOperatorEntry,
    ) -> Orchestrator {
        self.operators.insert(component.into(), entry);
        self
    }

    /// Sets the run options.
    pub fn with_options(mut self, options: RunOptions) -> Orchestrator {
        self.options = options;
        self
    }

    /// Sends every line a step prints to `log` (step name, line).
    pub fn with_log_sink(mut self, log: LogSink) -> Orchestrator {
        self.log = Some(log);
        self
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Records a new run (and its step runs) and returns its id, without running
    /// anything; [`Orchestrator::resume`] runs it.
    pub async fn create_run(&self) -> Result<String, OrchestratorError> {
        self.check_operators()?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = self
            .options
            .run_name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.pipeline.name(), &id[..8]));
        let mut run = RunRecord::new(&id, name, self.pipeline.name());
        run.no_cache = self.options.no_cache;
        let steps: Vec<StepRunRecord> = self
            .pipeline
            .dag()
            .topological_order()
            .into_iter()
            .map(|step| StepRunRecord::new(&id, step, uuid::Uuid::new_v4().simple().to_string()))
            .collect();
        self.runs.create_run(&run, &steps).await?;
        tracing::info!(run_id = %id, pipeline = %self.pipeline.name(), "run recorded");
        Ok(id)
    }

    /// Records a new run and runs it until it ends or `cancel` fires.
    pub async fn run(&self, cancel: CancellationToken) -> Result<RunSummary, OrchestratorError> {
        let id = self.create_run().await?;
        self.resume(&id, cancel).await
    }

    /// Runs (or continues) the recorded run `run_id`: succeeded and cached steps are
    /// kept, steps recorded running with a handle are adopted, the rest start.
    pub async fn resume(
        &self,
        run_id: &str,
        cancel: CancellationToken,
    ) -> Result<RunSummary, OrchestratorError> {
        self.check_operators()?;
        let snapshot = self.runs.load_run(run_id).await?;
        if snapshot.run.pipeline != self.pipeline.name() {
            return Err(OrchestratorError::WrongPipeline {
                run_id: run_id.into(),
                expected: self.pipeline.name().into(),
                found: snapshot.run.pipeline,
            });
        }
        self.execute(snapshot, cancel).await?;
        self.summary(run_id).await
    }

    fn check_operators(&self) -> Result<(), OrchestratorError> {
        let registered: Vec<&str> = self.operators.keys().map(String::as_str).collect();
        self.pipeline
            .check_step_operators(&registered)
            .map_err(OrchestratorError::UnknownStepOperator)
    }

    /// The summary of the recorded run `run_id`.
    pub async fn summary(&self, run_id: &str) -> Result<RunSummary, OrchestratorError> {
        let snapshot = self.runs.load_run(run_id).await?;
        let steps = self
            .pipeline
            .dag()
            .topological_order()
            .into_iter()
            .filter_map(|step| snapshot.steps.get(step))
            .map(|r| StepSummary {
                step: r.step.clone(),
                status: r.status,
                duration: match (r.started_at, r.finished_at) {
                    (Some(a), Some(b)) => b.duration_since(a).try_into().ok(),
                    _ => None,
                },
                failure: r.failure.clone(),
                outputs: r.outputs.clone(),
            })
            .collect();
        Ok(RunSummary {
            run_id: snapshot.run.id,
            run_name: snapshot.run.name,
            status: snapshot.run.status,
            steps,
        })
    }

    async fn execute(
        &self,
        snapshot: RunSnapshot,
        cancel: CancellationToken,
    ) -> Result<(), OrchestratorError> {
        let run = snapshot.run;
        let dag = self.pipeline.dag();
        let mut records = snapshot.steps;
        // Steps whose outputs downstream steps may read.
        let mut done: BTreeSet<String> = BTreeSet::new();
        // Steps started (or ended) in this call, or ruled out.
        let mut settled: BTreeSet<String> = BTreeSet::new();
        let mut outputs: BTreeMap<String, BTreeMap<String, OutputRecord>> = BTreeMap::new();
        for (step, record) in &mut records {
            match record.status {
                s if s.is_done() => {
                    done.insert(step.clone());
                    settled.insert(step.clone());
                    outputs.insert(step.clone(), record.outputs.clone());
                }
                StepRunStatus::Running if record.handle.is_some() => {}
                StepRunStatus::Pending => {}
                _ => {
                    self.runs
                        .update_step_run(&run.id, step, StepRunUpdate::Reset)
                        .await?;
                    crate::record::apply_update(record, StepRunUpdate::Reset);
                }
            }
        }
        self.runs
            .set_run_status(&run.id, RunStatus::Running)
            .await?;

        let use_cache = !(self.options.no_cache || run.no_cache);
        let parallelism = self.options.parallelism.max(1);
        // Cancels the steps when the caller cancels, or when the records fail.
        let steps_cancel = cancel.child_token();
        // The step futures run concurrently inside this one future (not as spawned
        // tasks): core's `read_tree` future cannot be proven `Send` (closures in a
        // stream), and dropping this future must drop, and so stop, every local step.
        let mut running: FuturesUnordered<
            LocalBoxFuture<'static, (String, Result<StepResult, RunStoreError>)>,
        > = FuturesUnordered::new();
        let mut failed = false;
        let mut records_error: Option<RunStoreError> = None;

        // Adopted steps first: they are already running somewhere.
        let mut queue: Vec<String> = records
            .values()
            .filter(|r| r.status == StepRunStatus::Running && r.handle.is_some())
            .map(|r| r.step.clone())
            .collect();
        loop {
            if !steps_cancel.is_cancelled() {
                for step in dag.ready(&done) {
                    if !settled.contains(step) && !queue.iter().any(|q| q == step) {
                        queue.push(step.to_string());
                    }
                }
                while running.len() < parallelism && !queue.is_empty() {
                    let step = queue.remove(0);
                    settled.insert(step.clone());
                    let job = self.job(&run, &records[&step], &outputs, use_cache, &steps_cancel);
                    running.push(Box::pin(async move { (step, job.run().await) }));
                }
            }
            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = running.next() => joined,
                () = cancel.cancelled(), if !steps_cancel.is_cancelled() => {
                    tracing::info!(run_id = %run.id, "cancelling the run");
                    steps_cancel.cancel();
                    continue;
                }
            };
            let Some(joined) = joined else { break };
            let (step, result) = joined;
            match result {
                Ok(StepResult {
                    status,
                    outputs: step_outputs,
                }) if status.is_done() => {
                    done.insert(step.clone());
                    outputs.insert(step, step_outputs);
                }
                Ok(StepResult { status, .. }) => {
                    if status == StepRunStatus::Failed {
                        failed = true;
                        for downstream in dag.downstream(&step) {
                            if settled.insert(downstream.to_string()) {
                                self.runs
                                    .update_step_run(
                                        &run.id,
                                        downstream,
                                        StepRunUpdate::Status {
                                            status: StepRunStatus::Skipped,
                                            failure: Some(StepRunFailure::new(
                                                StepFailureReason::UpstreamFailed {
                                                    step: step.clone(),
                                                },
                                                format!("`{step}` failed"),
                                            )),
                                        },
                                    )
                                    .await?;
                            }
                        }
                    }
                }
                Err(e) => {
                    records_error.get_or_insert(e);
                    steps_cancel.cancel();
                }
            }
        }
        if let Some(e) = records_error {
            return Err(e.into());
        }
        let cancelled = cancel.is_cancelled();
        // What never started.
        for step in dag.steps() {
            if !settled.contains(step) {
                let failure = if cancelled {
                    StepRunFailure::new(StepFailureReason::Cancelled, "the run was cancelled")
                } else {
                    StepRunFailure::new(StepFailureReason::Launch, "the run stopped first")
                };
                self.runs
                    .update_step_run(
                        &run.id,
                        step,
                        StepRunUpdate::Status {
                            status: StepRunStatus::Skipped,
                            failure: Some(failure),
                        },
                    )
                    .await?;
            }
        }
        let status = if cancelled {
            RunStatus::Cancelled
        } else if failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        self.runs.set_run_status(&run.id, status).await?;
        tracing::info!(run_id = %run.id, ?status, "run ended");
        Ok(())
    }

    fn job(
        &self,
        run: &RunRecord,
        record: &StepRunRecord,
        outputs: &BTreeMap<String, BTreeMap<String, OutputRecord>>,
        use_cache: bool,
        cancel: &CancellationToken,
    ) -> StepJob {
        let step = self
            .pipeline
            .step(&record.step)
            .expect("records are made from the pipeline's steps");
        let inputs = step
            .inputs
            .iter()
            .filter_map(|(name, source)| {
                outputs
                    .get(&source.step)
                    .and_then(|o| o.get(&source.output))
                    .map(|o| (name.clone(), o.clone()))
            })
            .collect();
        let operator = step.step_operator.as_ref().and_then(|component| {
            self.operators
                .get(component)
                .map(|e| (component.clone(), e.clone()))
        });
        StepJob {
            pipeline: Arc::clone(&self.pipeline),
            run: run.clone(),
            record: record.clone(),
            inputs,
            runs: Arc::clone(&self.runs),
            artifacts: Arc::clone(&self.artifacts),
            operator,
            dir: self.workspace.join(&run.id).join(&record.step),
            use_cache,
            origin: self.options.origin.clone(),
            cancel: cancel.clone(),
            log: self.log.clone(),
        }
    }
}
