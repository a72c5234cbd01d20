//! One step run, start to end: cache lookup, inputs in, the command (a local process or
//! a step operator), outputs out, every change recorded as it happens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use stepstack_core::artifact_store::{ArtifactAddress, ArtifactStore, ReadOptions};
use stepstack_core::{
    ErrorKind, FailureReason, StepHandle, StepLaunch, StepOperator, StepOutcome, error_chain,
};
use stepstack_settings::SettingsLayers;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio_util::sync::CancellationToken;

use crate::cache::{CacheInputs, CacheKey};
use crate::model::Pipeline;
use crate::placeholder::{RenderedStep, RunContext};
use crate::record::{
    OutputRecord, RunRecord, RunStore, RunStoreError, StepFailureReason, StepRunFailure,
    StepRunRecord, StepRunStatus, StepRunUpdate,
};

/// Receives every line a step prints: the step's name and the line.
pub type LogSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A step operator the orchestrator may use, with the settings layers below the
/// pipeline's (flavor defaults and the component's configuration).
#[derive(Debug, Clone)]
pub struct StepOperatorEntry {
    /// The operator.
    pub operator: Arc<dyn StepOperator>,
    /// The layers under the pipeline's and the step's (for the `kubernetes` flavor:
    /// the component configuration; empty by default).
    pub base_layers: SettingsLayers,
}

impl StepOperatorEntry {
    /// `operator` with no layers below the pipeline's.
    pub fn new(operator: Arc<dyn StepOperator>) -> StepOperatorEntry {
        StepOperatorEntry {
            operator,
            base_layers: SettingsLayers::new(),
        }
    }

    /// Sets the layers below the pipeline's.
    pub fn with_base_layers(mut self, layers: SettingsLayers) -> StepOperatorEntry {
        self.base_layers = layers;
        self
    }
}

/// How a step run ended, for the scheduler.
#[derive(Debug, Clone)]
pub(crate) struct StepResult {
    pub(crate) status: StepRunStatus,
    pub(crate) outputs: BTreeMap<String, OutputRecord>,
}

/// Everything one step run needs, owned, so it can run as its own task.
pub(crate) struct StepJob {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) run: RunRecord,
    pub(crate) record: StepRunRecord,
    /// The upstream outputs each input reads, by input name.
    pub(crate) inputs: BTreeMap<String, OutputRecord>,
    pub(crate) runs: Arc<dyn RunStore>,
    pub(crate) artifacts: Arc<dyn ArtifactStore>,
    /// The component name and its entry, for a step on a step operator.
    pub(crate) operator: Option<(String, StepOperatorEntry)>,
    /// `<workspace>/<run id>/<step>`.
    pub(crate) dir: PathBuf,
    pub(crate) use_cache: bool,
    /// Where the pipeline came from, for settings error paths.
    pub(crate) origin: String,
    pub(crate) cancel: CancellationToken,
    pub(crate) log: Option<LogSink>,
}

/// A step-level failure on its way to the record.
struct Failed(StepRunFailure);

impl From<StepRunFailure> for Failed {
    fn from(failure: StepRunFailure) -> Failed {
        Failed(failure)
    }
}

fn failure(reason: StepFailureReason, message: impl Into<String>) -> Failed {
    Failed(StepRunFailure::new(reason, message))
}

/// What the command phase ended with.
enum Ran {
    Succeeded,
    Cancelled,
}

impl StepJob {
    fn step(&self) -> &str {
        &self.record.step
    }

    async fn update(&self, update: StepRunUpdate) -> Result<(), RunStoreError> {
        self.runs
            .update_step_run(&self.run.id, &self.record.step, update)
            .await
    }

    async fn set_status(
        &self,
        status: StepRunStatus,
        failure: Option<StepRunFailure>,
    ) -> Result<(), RunStoreError> {
        self.update(StepRunUpdate::Status { status, failure }).await
    }

    /// Runs the step and records how it ended. `Err` only when the records cannot be
    /// written.
    pub(crate) async fn run(self) -> Result<StepResult, RunStoreError> {
        let adopt = self.record.status == StepRunStatus::Running && self.record.handle.is_some();
        match self.execute(adopt).await {
            Ok(Ok((status, outputs))) => Ok(StepResult { status, outputs }),
            Ok(Err(Failed(failure))) => {
                let status = if failure.reason == StepFailureReason::Cancelled {
                    StepRunStatus::Cancelled
                } else {
                    StepRunStatus::Failed
                };
                tracing::info!(step = %self.step(), reason = %failure.reason.name(), "step did not succeed");
                self.set_status(status, Some(failure)).await?;
                Ok(StepResult {
                    status,
                    outputs: BTreeMap::new(),
                })
            }
            Err(err) => Err(err),
        }
    }

    #[allow(clippy::type_complexity)]
    async fn execute(
        &self,
        adopt: bool,
    ) -> Result<Result<(StepRunStatus, BTreeMap<String, OutputRecord>), Failed>, RunStoreError>
    {
        let step = self
            .pipeline
            .step(self.step())
            .expect("the scheduler only runs the pipeline's steps")
            .clone();

        let settings = match self.effective_settings() {
            Ok(settings) => settings,
            Err(f) => return Ok(Err(f)),
        };
        let resources = match self.pipeline.resource_settings(self.step()) {
            Ok(r) => r,
            Err(report) => {
                return Ok(Err(failure(
                    StepFailureReason::Launch,
                    crate::problems(&report),
                )));
            }
        };
        let key = CacheInputs {
            command: step.command.clone(),
            args: step.args.clone(),
            environment: step.environment.clone(),
            secret_names: Default::default(),
            image: step.image.clone(),
            runner: self.operator.as_ref().map_or_else(
                || "local".to_string(),
                |(_, e)| e.operator.flavor().to_string(),
            ),
            resources: serde_json::to_value(&resources).unwrap_or(Value::Null),
            settings: settings.clone(),
            outputs: step.outputs.clone(),
            inputs: self
                .inputs
                .iter()
                .map(|(name, out)| (name.clone(), out.digest.clone()))
                .collect(),
        }
        .key();
        self.update(StepRunUpdate::CacheKey(key.clone())).await?;

        if !adopt
            && self.use_cache
            && step.cache
            && let Some(outputs) = self.cached(&key, &step.outputs).await?
        {
            self.update(StepRunUpdate::Outputs {
                outputs: outputs.1.clone(),
                cached_from: Some(outputs.0),
            })
            .await?;
            self.set_status(StepRunStatus::Cached, None).await?;
            tracing::info!(step = %self.step(), "cached");
            return Ok(Ok((StepRunStatus::Cached, outputs.1)));
        }

        let inputs_dir = self.dir.join("inputs");
        let outputs_dir = self.dir.join("outputs");
        let mut context = RunContext {
            run_name: self.run.name.clone(),
            run_id: self.run.id.clone(),
            step_name: self.step().to_string(),
            ..RunContext::default()
        };
        for name in self.inputs.keys() {
            context.inputs.insert(name.clone(), inputs_dir.join(name));
        }
        for name in &step.outputs {
            context.outputs.insert(name.clone(), outputs_dir.join(name));
        }
        let rendered = match step.render(&context) {
            Ok(r) => r,
            Err(e) => return Ok(Err(failure(StepFailureReason::Launch, e.to_string()))),
        };

        let ran = if adopt {
            self.adopt(step.clone(), rendered, resources, settings.clone())
                .await?
        } else {
            if let Err(f) = self.prepare(&inputs_dir, &outputs_dir, &step.outputs).await {
                return Ok(Err(f));
            }
            match &self.operator {
                None => {
                    self.set_status(StepRunStatus::Running, None).await?;
                    self.run_local(&rendered).await
                }
                Some(_) => {
                    self.run_on_operator(step.clone(), rendered, resources, settings.clone())
                        .await?
                }
            }
        };
        match ran {
            Ok(Ran::Succeeded) => {}
            Ok(Ran::Cancelled) => {
                return Ok(Err(failure(
                    StepFailureReason::Cancelled,
                    "the run was cancelled while the step ran",
                )));
            }
            Err(f) => return Ok(Err(f)),
        }

        let outputs = match self.store_outputs(&outputs_dir, &step.outputs).await {
            Ok(outputs) => outputs,
            Err(f) => return Ok(Err(f)),
        };
        self.update(StepRunUpdate::Outputs {
            outputs: outputs.clone(),
            cached_from: None,
        })
        .await?;
        self.set_status(StepRunStatus::Succeeded, None).await?;
        Ok(Ok((StepRunStatus::Succeeded, outputs)))
    }

    /// The effective step-operator settings (`Null` for a local step). For the
    /// `kubernetes` flavor: the layers as `step run` builds them, resolved strictly; for
    /// another flavor: the step's `settings.step_operator` block as written.
    fn effective_settings(&self) -> Result<Value, Failed> {
        let Some((component, entry)) = &self.operator else {
            return Ok(Value::Null);
        };
        let flavor = entry.operator.flavor();
        if flavor != "kubernetes" {
            return Ok(self
                .pipeline
                .step(self.step())
                .and_then(|s| s.settings.as_ref())
                .and_then(|s| s.get("step_operator"))
                .cloned()
                .unwrap_or(Value::Null));
        }
        let layers = self.pipeline.settings_layers(
            self.step(),
            flavor,
            component,
            &self.origin,
            entry.base_layers.clone(),
        );
        layers
            .resolve()
            .map(|effective| effective.value)
            .map_err(|report| failure(StepFailureReason::Launch, crate::problems(&report)))
    }

    /// The outputs of an earlier successful step run with `key`, if every declared
    /// output is still stored with its recorded digest.
    async fn cached(
        &self,
        key: &CacheKey,
        declared: &[String],
    ) -> Result<Option<(String, BTreeMap<String, OutputRecord>)>, RunStoreError> {
        let Some(earlier) = self.runs.find_cached(key).await? else {
            return Ok(None);
        };
        let mut outputs = BTreeMap::new();
        for name in declared {
            let Some(output) = earlier.outputs.get(name) else {
                return Ok(None);
            };
            match self.artifacts.digest(&output.address).await {
                Ok(digest) if digest == output.digest => {
                    outputs.insert(name.clone(), output.clone());
                }
                Ok(_) | Err(_) => {
                    tracing::info!(step = %self.step(), address = %output.address, "a cached output is gone or changed; running the step");
                    return Ok(None);
                }
            }
        }
        Ok(Some((earlier.step_run_id, outputs)))
    }

    /// Inputs read from the store into fresh directories, empty output directories
    /// (whatever an interrupted attempt left is removed first), and no artifact left at
    /// this step run's output addresses from an attempt that never got recorded.
    async fn prepare(
        &self,
        inputs_dir: &Path,
        outputs_dir: &Path,
        outputs: &[String],
    ) -> Result<(), Failed> {
        for dir in [inputs_dir, outputs_dir] {
            remove_dir(dir).await.map_err(|e| {
                failure(
                    StepFailureReason::Launch,
                    format!("cannot clear {}: {e}", dir.display()),
                )
            })?;
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                failure(
                    StepFailureReason::Launch,
                    format!("cannot create {}: {e}", dir.display()),
                )
            })?;
        }
        for (name, input) in &self.inputs {
            let options = ReadOptions::default().expect_digest(input.digest.clone());
            self.artifacts
                .read_tree(&input.address, &inputs_dir.join(name), &options)
                .await
                .map_err(|e| {
                    failure(
                        StepFailureReason::ArtifactDownload {
                            input: name.clone(),
                        },
                        format!("input `{name}` ({}): {}", input.address, error_chain(&e)),
                    )
                })?;
        }
        for name in outputs {
            tokio::fs::create_dir_all(outputs_dir.join(name))
                .await
                .map_err(|e| {
                    failure(
                        StepFailureReason::Launch,
                        format!("cannot create output `{name}`: {e}"),
                    )
                })?;
            let address = self.address(name).map_err(|f| f.0)?;
            self.artifacts.delete(&address).await.map_err(|e| {
                failure(
                    StepFailureReason::ArtifactUpload {
                        output: name.clone(),
                    },
                    format!(
                        "cannot remove what an interrupted attempt left at {address}: {}",
                        error_chain(&e)
                    ),
                )
            })?;
        }
        Ok(())
    }

    fn address(&self, output: &str) -> Result<ArtifactAddress, Failed> {
        ArtifactAddress::new(self.pipeline.name(), &self.run.id, self.step(), output).map_err(|e| {
            failure(
                StepFailureReason::ArtifactUpload {
                    output: output.to_string(),
                },
                e.to_string(),
            )
        })
    }

    /// Checks that every declared output was written, then stores each one.
    async fn store_outputs(
        &self,
        outputs_dir: &Path,
        declared: &[String],
    ) -> Result<BTreeMap<String, OutputRecord>, Failed> {
        for name in declared {
            let dir = outputs_dir.join(name);
            let written = match tokio::fs::symlink_metadata(&dir).await {
                Ok(meta) if meta.is_dir() => {
                    let mut entries = tokio::fs::read_dir(&dir).await.map_err(|e| {
                        failure(
                            StepFailureReason::MissingOutput {
                                output: name.clone(),
                            },
                            format!("output `{name}` cannot be read: {e}"),
                        )
                    })?;
                    matches!(entries.next_entry().await, Ok(Some(_)))
                }
                _ => false,
            };
            if !written {
                return Err(failure(
                    StepFailureReason::MissingOutput {
                        output: name.clone(),
                    },
                    format!(
                        "the step succeeded but did not write its output `{name}` ({} is missing or empty)",
                        dir.display()
                    ),
                ));
            }
        }
        let mut stored = BTreeMap::new();
        for name in declared {
            let address = self.address(name)?;
            let manifest = self
                .artifacts
                .write_tree(&address, &outputs_dir.join(name))
                .await
                .map_err(|e| {
                    failure(
                        StepFailureReason::ArtifactUpload {
                            output: name.clone(),
                        },
                        format!("output `{name}` ({address}): {}", error_chain(&e)),
                    )
                })?;
            stored.insert(
                name.clone(),
                OutputRecord {
                    address,
                    digest: manifest.digest,
                },
            );
        }
        Ok(stored)
    }

    fn forward(&self, line: &str) {
        if let Some(log) = &self.log {
            log(self.step(), line);
        }
    }

    /// Runs the rendered command on this machine, in the step's directory, with the
    /// step's environment on top of this process's; cancel kills it.
    async fn run_local(&self, rendered: &RenderedStep) -> Result<Ran, Failed> {
        let Some((program, args)) = rendered.command.split_first() else {
            return Err(failure(
                StepFailureReason::Launch,
                "the step has no command",
            ));
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .envs(&rendered.environment)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A dropped orchestrator (a crash, a dropped future) takes its local
            // processes with it; resume starts them again.
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            failure(
                StepFailureReason::Launch,
                format!("cannot start `{program}`: {e}"),
            )
        })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let wait = async {
            tokio::select! {
                status = child.wait() => Some(status),
                () = self.cancel.cancelled() => {
                    let _ = child.kill().await;
                    None
                }
            }
        };
        let (status, (), ()) = tokio::join!(wait, self.pump(stdout), self.pump(stderr));
        match status {
            None => Ok(Ran::Cancelled),
            Some(Err(e)) => Err(failure(
                StepFailureReason::Launch,
                format!("cannot wait for `{program}`: {e}"),
            )),
            Some(Ok(status)) if status.success() => Ok(Ran::Succeeded),
            Some(Ok(status)) => {
                let code = status.code().unwrap_or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    128 + status.signal().unwrap_or(0)
                });
                Err(failure(
                    StepFailureReason::Step {
                        failure: FailureReason::NonZeroExit { code },
                    },
                    format!("`{program}` exited with code {code}"),
                ))
            }
        }
    }

    async fn pump(&self, pipe: Option<impl AsyncRead + Unpin>) {
        let Some(pipe) = pipe else { return };
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            self.forward(&line);
        }
    }

    fn launch(
        &self,
        step: &crate::model::Step,
        rendered: &RenderedStep,
        resources: &stepstack_settings::ResourceSettings,
        settings: &Value,
    ) -> Result<StepLaunch, Failed> {
        let Some(image) = &step.image else {
            return Err(failure(
                StepFailureReason::Launch,
                "a step on a step operator needs an `image`",
            ));
        };
        let (program, args) = rendered
            .command
            .split_first()
            .ok_or_else(|| failure(StepFailureReason::Launch, "the step has no command"))?;
        let mut launch = StepLaunch::new(
            self.pipeline.name(),
            self.step(),
            image.clone(),
            [program.clone()],
        )
        .with_run(self.run.name.clone(), self.run.id.clone())
        .with_step_run_id(self.record.step_run_id.clone())
        .with_args(args.iter().cloned())
        .with_resources(resources.clone())
        .with_settings(if settings.is_null() {
            Value::Object(Default::default())
        } else {
            settings.clone()
        });
        for (k, v) in &rendered.environment {
            launch = launch.with_env(k.clone(), v.clone());
        }
        Ok(launch)
    }

    fn operator(&self) -> &Arc<dyn StepOperator> {
        &self
            .operator
            .as_ref()
            .expect("only called for steps on a step operator")
            .1
            .operator
    }

    /// Submits the step (recording the planned handle first, so a crash mid-submit
    /// leaves a handle to adopt), then follows it.
    async fn run_on_operator(
        &self,
        step: crate::model::Step,
        rendered: RenderedStep,
        resources: stepstack_settings::ResourceSettings,
        settings: Value,
    ) -> Result<Result<Ran, Failed>, RunStoreError> {
        let launch = match self.launch(&step, &rendered, &resources, &settings) {
            Ok(l) => l,
            Err(f) => return Ok(Err(f)),
        };
        let operator = self.operator();
        match operator.planned_handle(&launch).await {
            Ok(Some(planned)) => self.update(StepRunUpdate::Handle(planned)).await?,
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(step = %self.step(), error = %error_chain(&e), "no planned handle")
            }
        }
        self.set_status(StepRunStatus::Running, None).await?;
        if self.cancel.is_cancelled() {
            return Ok(Ok(Ran::Cancelled));
        }
        let handle = match operator.submit(launch).await {
            Ok(h) => h,
            Err(e) => {
                return Ok(Err(failure(
                    StepFailureReason::Launch,
                    format!("submit failed: {}", error_chain(&e)),
                )));
            }
        };
        self.update(StepRunUpdate::Handle(handle.clone())).await?;
        Ok(self.follow(&handle).await)
    }

    /// Adopts a step a previous orchestrator submitted: waits for it through its
    /// handle; when the operator finds nothing behind the handle (the crash came before
    /// the submit), submits it again under the same step-run id.
    async fn adopt(
        &self,
        step: crate::model::Step,
        rendered: RenderedStep,
        resources: stepstack_settings::ResourceSettings,
        settings: Value,
    ) -> Result<Result<Ran, Failed>, RunStoreError> {
        let Some(handle) = self.record.handle.clone() else {
            return Ok(Err(failure(
                StepFailureReason::Launch,
                "no handle to adopt",
            )));
        };
        if self.operator.is_none() {
            return Ok(Err(failure(
                StepFailureReason::Launch,
                "the step has a handle but no step operator",
            )));
        }
        let status = self.operator().status(&handle).await;
        let missing = matches!(&status, Err(e) if e.kind() == ErrorKind::NotFound);
        drop(status);
        if missing {
            tracing::info!(step = %self.step(), "nothing behind the recorded handle; submitting again");
            let inputs_dir = self.dir.join("inputs");
            let outputs_dir = self.dir.join("outputs");
            if let Err(f) = self.prepare(&inputs_dir, &outputs_dir, &step.outputs).await {
                return Ok(Err(f));
            }
            return self
                .run_on_operator(step, rendered, resources, settings)
                .await;
        }
        tracing::info!(step = %self.step(), "adopting the running step");
        Ok(self.follow(&handle).await)
    }

    /// Waits for the step while forwarding its log lines; a cancel cancels it.
    async fn follow(&self, handle: &StepHandle) -> Result<Ran, Failed> {
        let operator = Arc::clone(self.operator());
        let wait = async {
            tokio::select! {
                outcome = operator.wait(handle) => Some(outcome),
                () = self.cancel.cancelled() => {
                    if let Err(e) = operator.cancel(handle).await {
                        tracing::warn!(step = %self.step(), error = %error_chain(&e), "cancelling the step failed");
                    }
                    None
                }
            }
        };
        let logs = async {
            if !operator.capabilities().logs {
                return;
            }
            // With `follow` the stream ends when the step ends (the operator's contract).
            match operator.logs(handle, true).await {
                Ok(mut stream) => {
                    while let Some(line) = stream.next().await {
                        match line {
                            Ok(line) => self.forward(&line.text),
                            Err(e) => {
                                tracing::debug!(step = %self.step(), error = %error_chain(&e), "log stream ended");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(step = %self.step(), error = %error_chain(&e), "no logs")
                }
            }
        };
        let (outcome, ()) = tokio::join!(wait, logs);
        match outcome {
            None => Ok(Ran::Cancelled),
            Some(Ok(StepOutcome::Succeeded { .. })) => Ok(Ran::Succeeded),
            Some(Ok(StepOutcome::Failed(f))) if f.reason == FailureReason::Cancelled => {
                Ok(Ran::Cancelled)
            }
            Some(Ok(StepOutcome::Failed(f))) => Err(failure(
                StepFailureReason::Step {
                    failure: f.reason.clone(),
                },
                f.message.clone(),
            )),
            Some(Ok(_)) => Err(failure(
                StepFailureReason::Launch,
                "the step operator reported an outcome this version does not know",
            )),
            Some(Err(e)) => Err(failure(
                StepFailureReason::Launch,
                format!("waiting for the step failed: {}", error_chain(&e)),
            )),
        }
    }
}

/// Removes `dir` and everything in it; a missing directory is fine.
async fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
