//! `LocalProcessOperator`: a step operator that runs each step as a local process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use stepstack_core::{
    Capabilities, Error, ErrorKind, FailureReason, LogLine, LogStream, Result, StepFailure,
    StepHandle, StepLaunch, StepOperator, StepOutcome, StepStatus,
};
use tokio::sync::{oneshot, watch};

const FLAVOR: &str = "local-process";
/// How often a step started by another process is checked for completion.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Runs each step's command as a local process.
#[derive(Debug)]
pub struct LocalProcessOperator {
    state_dir: PathBuf,
    running: Mutex<HashMap<String, RunningStep>>,
}

#[derive(Debug)]
struct RunningStep {
    cancel: Option<oneshot::Sender<()>>,
    outcome: watch::Receiver<Option<StepOutcome>>,
}

/// What a handle of this flavor carries.
#[derive(Debug, Serialize, Deserialize)]
struct HandleData {
    step_dir: PathBuf,
}

impl LocalProcessOperator {
    /// An operator that keeps step state under `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        LocalProcessOperator {
            state_dir: state_dir.into(),
            running: Mutex::new(HashMap::new()),
        }
    }

    fn outcome_receiver(&self, step_run_id: &str) -> Option<watch::Receiver<Option<StepOutcome>>> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(step_run_id).map(|r| r.outcome.clone())
    }
}

#[async_trait]
impl StepOperator for LocalProcessOperator {
    fn capabilities(&self) -> Capabilities {
        // No timings (a local process has no queue) and one process per step.
        Capabilities::none()
            .with_logs()
            .with_cancel()
            .with_reattach()
    }

    fn flavor(&self) -> &str {
        FLAVOR
    }

    async fn submit(&self, launch: StepLaunch) -> Result<StepHandle> {
        let step_dir = self.state_dir.join(&launch.step_run_id);
        std::fs::create_dir_all(&step_dir)
            .map_err(|e| io_error("create the step directory", &step_dir, e))?;
        let log_path = step_dir.join("log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| io_error("create the log file", &log_path, e))?;
        let stderr = log
            .try_clone()
            .map_err(|e| io_error("open the log file", &log_path, e))?;

        let Some((program, rest)) = launch.command.split_first() else {
            return Err(
                Error::new(ErrorKind::InvalidSettings, "the step has no command to run")
                    .with_context("step", launch.step_name.clone()),
            );
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(rest)
            .args(&launch.args)
            .envs(&launch.environment)
            .envs(launch.secret_environment.iter().map(|(k, v)| {
                use stepstack_core::secrecy::ExposeSecret;
                (k.clone(), v.expose_secret().to_owned())
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| {
            Error::new(
                ErrorKind::InvalidSettings,
                format!("could not start `{program}`: {e}; check that the command exists on this machine"),
            )
            .with_context("step", launch.step_name.clone())
        })?;

        let (cancel_tx, cancel_rx) = oneshot::channel();
        let (outcome_tx, outcome_rx) = watch::channel(None);
        tokio::spawn(supervise(child, cancel_rx, outcome_tx, step_dir.clone()));
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                launch.step_run_id.clone(),
                RunningStep {
                    cancel: Some(cancel_tx),
                    outcome: outcome_rx,
                },
            );
        let data = serde_json::to_value(HandleData { step_dir }).map_err(|e| {
            Error::new(ErrorKind::Internal, "could not serialize the handle").with_source(e)
        })?;
        Ok(StepHandle::new(FLAVOR, &launch, data))
    }

    async fn wait(&self, handle: &StepHandle) -> Result<StepOutcome> {
        if let Some(mut outcome) = self.outcome_receiver(&handle.step_run_id) {
            let done = outcome
                .wait_for(Option::is_some)
                .await
                .map_err(|_| Error::new(ErrorKind::Internal, "the step's supervisor stopped"))?;
            return Ok(done.clone().expect("wait_for checked is_some"));
        }
        // Started by another process: its supervisor writes the outcome file when done.
        let data: HandleData = handle.data_as()?;
        loop {
            if let Some(outcome) = read_outcome(&data.step_dir)? {
                return Ok(outcome);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn status(&self, handle: &StepHandle) -> Result<StepStatus> {
        let outcome = match self.outcome_receiver(&handle.step_run_id) {
            Some(outcome) => outcome.borrow().clone(),
            None => read_outcome(&handle.data_as::<HandleData>()?.step_dir)?,
        };
        Ok(match outcome {
            None => StepStatus::Running,
            Some(StepOutcome::Failed(failure)) => StepStatus::Failed(failure),
            Some(_) => StepStatus::Succeeded,
        })
    }

    async fn cancel(&self, handle: &StepHandle) -> Result<()> {
        let cancel = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running
                .get_mut(&handle.step_run_id)
                .and_then(|r| r.cancel.take())
        };
        if let Some(cancel) = cancel {
            // The supervisor may have finished already; then there is nothing to stop.
            let _ = cancel.send(());
            self.wait(handle).await?;
            return Ok(());
        }
        if self.outcome_receiver(&handle.step_run_id).is_some()
            || read_outcome(&handle.data_as::<HandleData>()?.step_dir)?.is_some()
        {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            "this step was started by another process, which is the only one that can stop it",
        )
        .with_context("step_run_id", handle.step_run_id.clone()))
    }

    async fn logs(&self, handle: &StepHandle, follow: bool) -> Result<LogStream> {
        let data: HandleData = handle.data_as()?;
        if follow {
            self.wait(handle).await?;
        }
        let path = data.step_dir.join("log");
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| io_error("read the log file", &path, e))?;
        let lines: Vec<Result<LogLine>> = text.lines().map(|l| Ok(LogLine::new(None, l))).collect();
        Ok(futures::stream::iter(lines).boxed())
    }
}

/// Waits for the process or a cancel request, then records the outcome.
async fn supervise(
    mut child: tokio::process::Child,
    cancel: oneshot::Receiver<()>,
    outcome_tx: watch::Sender<Option<StepOutcome>>,
    step_dir: PathBuf,
) {
    let outcome = tokio::select! {
        status = child.wait() => match status {
            Ok(status) if status.success() => StepOutcome::Succeeded { attempts: 1 },
            Ok(status) => {
                let code = status.code().unwrap_or(-1);
                StepOutcome::Failed(StepFailure::new(
                    FailureReason::NonZeroExit { code },
                    format!("the command exited with code {code}"),
                ))
            }
            Err(e) => StepOutcome::Failed(StepFailure::new(
                FailureReason::Unknown,
                format!("could not wait for the process: {e}"),
            )),
        },
        Ok(()) = cancel => {
            let _ = child.kill().await;
            StepOutcome::Failed(StepFailure::new(FailureReason::Cancelled, "the step was cancelled"))
        }
    };
    if let Err(e) = write_outcome(&step_dir, &outcome) {
        tracing::warn!(error = %e, dir = %step_dir.display(), "could not record the step outcome");
    }
    let _ = outcome_tx.send(Some(outcome));
}

fn write_outcome(step_dir: &Path, outcome: &StepOutcome) -> std::io::Result<()> {
    let tmp = step_dir.join("outcome.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(outcome)?)?;
    std::fs::rename(tmp, step_dir.join("outcome.json"))
}

fn read_outcome(step_dir: &Path) -> Result<Option<StepOutcome>> {
    let path = step_dir.join("outcome.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::new(ErrorKind::Internal, "the step's outcome file is corrupt")
                .with_context("path", path.display().to_string())
                .with_source(e)
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if step_dir.exists() {
                Ok(None)
            } else {
                Err(Error::new(
                    ErrorKind::NotFound,
                    "no such step on this machine; local-process handles only work where the step ran",
                )
                .with_context("path", step_dir.display().to_string()))
            }
        }
        Err(e) => Err(io_error("read the outcome file", &path, e)),
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Internal, format!("could not {what}: {e}"))
        .with_context("path", path.display().to_string())
}
