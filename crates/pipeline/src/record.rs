//! Run records: what the orchestrator writes down about a run and its step runs, through
//! the [`RunStore`] trait, so another process (or this one after a crash) can describe,
//! resume or cache from it.
//!
//! The orchestrator records the run and every step run before it submits anything, then
//! each change (status, the operator's handle, the cache key, the outputs) as it happens.
//! [`InMemoryRunStore`] keeps the records in memory (tests, embedded use); the SQLite
//! store lives in `stepstack-store` and implements the same trait.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use stepstack_core::artifact_store::{ArtifactAddress, ArtifactDigest};
use stepstack_core::{FailureReason, StepHandle};

use crate::cache::CacheKey;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Recorded, nothing started yet.
    Pending,
    /// Steps are running (or the orchestrator died while they were).
    Running,
    /// Every step succeeded or was cached.
    Succeeded,
    /// A step failed; what depended on it was skipped.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

impl RunStatus {
    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// Where a step run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepRunStatus {
    /// Waiting for its upstream steps or a free slot.
    Pending,
    /// Started (a local process, or submitted to a step operator).
    Running,
    /// Ran and succeeded; its outputs are stored.
    Succeeded,
    /// An earlier successful step run with the same cache key stands in for it.
    Cached,
    /// Ran and failed.
    Failed,
    /// Never ran: something upstream failed, or the run was cancelled first.
    Skipped,
    /// Was running when the run was cancelled.
    Cancelled,
}

impl StepRunStatus {
    /// Whether the step's outputs are available to downstream steps.
    pub fn is_done(self) -> bool {
        matches!(self, StepRunStatus::Succeeded | StepRunStatus::Cached)
    }

    /// The status as the summary prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            StepRunStatus::Pending => "pending",
            StepRunStatus::Running => "running",
            StepRunStatus::Succeeded => "succeeded",
            StepRunStatus::Cached => "cached",
            StepRunStatus::Failed => "failed",
            StepRunStatus::Skipped => "skipped",
            StepRunStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for StepRunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a step run did not succeed (or was skipped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepFailureReason {
    /// What the step operator or the local process reported (non-zero exit, OOM, …).
    Step {
        /// The operator's typed reason.
        failure: FailureReason,
    },
    /// The step succeeded but did not write a declared output directory.
    MissingOutput {
        /// The output's name.
        output: String,
    },
    /// An input could not be read from the artifact store.
    ArtifactDownload {
        /// The input's name.
        input: String,
    },
    /// An output could not be written to the artifact store.
    ArtifactUpload {
        /// The output's name.
        output: String,
    },
    /// The step could not be started (rendering, spawning, settings, the operator's
    /// submit or wait failing).
    Launch,
    /// A step it depends on did not succeed.
    UpstreamFailed {
        /// That step.
        step: String,
    },
    /// The run was cancelled.
    Cancelled,
}

impl StepFailureReason {
    /// A short CamelCase name for summaries.
    pub fn name(&self) -> String {
        match self {
            StepFailureReason::Step { failure } => failure.to_string(),
            StepFailureReason::MissingOutput { .. } => "MissingOutput".into(),
            StepFailureReason::ArtifactDownload { .. } => "ArtifactDownload".into(),
            StepFailureReason::ArtifactUpload { .. } => "ArtifactUpload".into(),
            StepFailureReason::Launch => "Launch".into(),
            StepFailureReason::UpstreamFailed { .. } => "UpstreamFailed".into(),
            StepFailureReason::Cancelled => "Cancelled".into(),
        }
    }
}

/// A failure with its reason and a message saying what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRunFailure {
    /// Why.
    pub reason: StepFailureReason,
    /// What happened, in a sentence.
    pub message: String,
}

impl StepRunFailure {
    /// A failure for `reason` with `message`.
    pub fn new(reason: StepFailureReason, message: impl Into<String>) -> StepRunFailure {
        StepRunFailure {
            reason,
            message: message.into(),
        }
    }
}

/// A stored output: where it is and its content digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// The artifact's address (`<pipeline>/<run id>/<step>/<output>`; for a cached step,
    /// the address the earlier run wrote).
    pub address: ArtifactAddress,
    /// Its content digest.
    pub digest: ArtifactDigest,
}

/// One pipeline run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunRecord {
    /// The run's unique id (the `run` label and a segment of artifact addresses).
    pub id: String,
    /// Its human-readable name.
    pub name: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// Where it is.
    pub status: RunStatus,
    /// Whether caching was turned off for the whole run.
    pub no_cache: bool,
    /// When it was recorded.
    pub created_at: Timestamp,
}

impl RunRecord {
    /// A pending run of `pipeline` with id `id` and name `name`.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        pipeline: impl Into<String>,
    ) -> RunRecord {
        RunRecord {
            id: id.into(),
            name: name.into(),
            pipeline: pipeline.into(),
            status: RunStatus::Pending,
            no_cache: false,
            created_at: Timestamp::now(),
        }
    }
}

/// One step of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepRunRecord {
    /// The run it belongs to.
    pub run_id: String,
    /// The step's name.
    pub step: String,
    /// This step run's unique id (step operators name their objects after it).
    pub step_run_id: String,
    /// Where it is.
    pub status: StepRunStatus,
    /// The step operator's handle, recorded before submit (the planned one) and again
    /// after; `None` for a local step.
    pub handle: Option<StepHandle>,
    /// The cache key, once the inputs are known.
    pub cache_key: Option<CacheKey>,
    /// The stored outputs, by name, once the step succeeded (or was cached).
    pub outputs: BTreeMap<String, OutputRecord>,
    /// For a cached step, the step run whose outputs it reuses.
    pub cached_from: Option<String>,
    /// Why it failed or was skipped.
    pub failure: Option<StepRunFailure>,
    /// When it started running.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

impl StepRunRecord {
    /// A pending step run of `step` in run `run_id`.
    pub fn new(
        run_id: impl Into<String>,
        step: impl Into<String>,
        step_run_id: impl Into<String>,
    ) -> StepRunRecord {
        StepRunRecord {
            run_id: run_id.into(),
            step: step.into(),
            step_run_id: step_run_id.into(),
            status: StepRunStatus::Pending,
            handle: None,
            cache_key: None,
            outputs: BTreeMap::new(),
            cached_from: None,
            failure: None,
            started_at: None,
            finished_at: None,
        }
    }
}

/// A run and its step runs, as loaded for describe or resume.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSnapshot {
    /// The run.
    pub run: RunRecord,
    /// Its step runs, by step name.
    pub steps: BTreeMap<String, StepRunRecord>,
}

/// A change to a step run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StepRunUpdate {
    /// A new status; `failure` says why for failed, skipped and cancelled steps. Running
    /// sets `started_at`, the end states set `finished_at`.
    Status {
        /// The status.
        status: StepRunStatus,
        /// Why, when it did not succeed.
        failure: Option<StepRunFailure>,
    },
    /// The operator's handle.
    Handle(StepHandle),
    /// The cache key.
    CacheKey(CacheKey),
    /// The stored outputs; `cached_from` names the step run they come from when cached.
    Outputs {
        /// The outputs.
        outputs: BTreeMap<String, OutputRecord>,
        /// The earlier step run, for a cached step.
        cached_from: Option<String>,
    },
    /// Back to pending with no handle, outputs or failure (a resumed step that starts
    /// again).
    Reset,
}

/// What went wrong with the run records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunStoreError {
    /// No run has this id.
    #[error("no run `{run_id}`")]
    RunNotFound {
        /// The id asked for.
        run_id: String,
    },
    /// The run has no step of this name.
    #[error("run `{run_id}` has no step `{step}`")]
    StepNotFound {
        /// The run.
        run_id: String,
        /// The step asked for.
        step: String,
    },
    /// A run with this id is already recorded.
    #[error("run `{run_id}` is already recorded")]
    Duplicate {
        /// The id.
        run_id: String,
    },
    /// The backend failed.
    #[error("the run store failed to {operation}")]
    Backend {
        /// What was being done.
        operation: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where run records live.
#[async_trait]
pub trait RunStore: Send + Sync + fmt::Debug {
    /// Records a new run with all its step runs (in one transaction where the backend
    /// has them).
    async fn create_run(
        &self,
        run: &RunRecord,
        steps: &[StepRunRecord],
    ) -> Result<(), RunStoreError>;

    /// Sets the run's status.
    async fn set_run_status(&self, run_id: &str, status: RunStatus) -> Result<(), RunStoreError>;

    /// Applies `update` to the step run of `step` in `run_id`.
    async fn update_step_run(
        &self,
        run_id: &str,
        step: &str,
        update: StepRunUpdate,
    ) -> Result<(), RunStoreError>;

    /// The run `run_id` and its step runs.
    async fn load_run(&self, run_id: &str) -> Result<RunSnapshot, RunStoreError>;

    /// A step run that succeeded (or was itself cached) with `key` and recorded
    /// outputs, the most recently finished first; `None` when there is none.
    async fn find_cached(&self, key: &CacheKey) -> Result<Option<StepRunRecord>, RunStoreError>;
}

/// Run records in memory: for tests and programs that embed the orchestrator without a
/// database. Clones share the same records.
#[derive(Debug, Clone, Default)]
pub struct InMemoryRunStore {
    inner: Arc<Mutex<Runs>>,
}

#[derive(Debug, Default)]
struct Runs {
    runs: HashMap<String, RunSnapshot>,
}

impl InMemoryRunStore {
    /// An empty store.
    pub fn new() -> InMemoryRunStore {
        InMemoryRunStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Runs) -> T) -> T {
        // A panic while holding the lock leaves plain data behind, still consistent
        // per field, so a poisoned lock is used as is.
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Every run's id, oldest first.
    pub fn run_ids(&self) -> Vec<String> {
        self.with(|runs| {
            let mut list: Vec<_> = runs
                .runs
                .values()
                .map(|s| (s.run.created_at, s.run.id.clone()))
                .collect();
            list.sort();
            list.into_iter().map(|(_, id)| id).collect()
        })
    }
}

/// Applies `update` to `record`.
pub(crate) fn apply_update(record: &mut StepRunRecord, update: StepRunUpdate) {
    match update {
        StepRunUpdate::Status { status, failure } => {
            match status {
                StepRunStatus::Running => {
                    record.started_at = Some(Timestamp::now());
                    record.finished_at = None;
                }
                StepRunStatus::Pending => {}
                _ => record.finished_at = Some(Timestamp::now()),
            }
            record.status = status;
            record.failure = failure;
        }
        StepRunUpdate::Handle(handle) => record.handle = Some(handle),
        StepRunUpdate::CacheKey(key) => record.cache_key = Some(key),
        StepRunUpdate::Outputs {
            outputs,
            cached_from,
        } => {
            record.outputs = outputs;
            record.cached_from = cached_from;
        }
        StepRunUpdate::Reset => {
            record.status = StepRunStatus::Pending;
            record.handle = None;
            record.outputs.clear();
            record.cached_from = None;
            record.failure = None;
            record.started_at = None;
            record.finished_at = None;
        }
    }
}

#[async_trait]
impl RunStore for InMemoryRunStore {
    async fn create_run(
        &self,
        run: &RunRecord,
        steps: &[StepRunRecord],
    ) -> Result<(), RunStoreError> {
        self.with(|runs| {
            if runs.runs.contains_key(&run.id) {
                return Err(RunStoreError::Duplicate {
                    run_id: run.id.clone(),
                });
            }
            let steps = steps.iter().map(|s| (s.step.clone(), s.clone())).collect();
            runs.runs.insert(
                run.id.clone(),
                RunSnapshot {
                    run: run.clone(),
                    steps,
                },
            );
            Ok(())
        })
    }

    async fn set_run_status(&self, run_id: &str, status: RunStatus) -> Result<(), RunStoreError> {
        self.with(|runs| {
            let snapshot = runs
                .runs
                .get_mut(run_id)
                .ok_or_else(|| RunStoreError::RunNotFound {
                    run_id: run_id.into(),
                })?;
            snapshot.run.status = status;
            Ok(())
        })
    }

    async fn update_step_run(
        &self,
        run_id: &str,
        step: &str,
        update: StepRunUpdate,
    ) -> Result<(), RunStoreError> {
        self.with(|runs| {
            let snapshot = runs
                .runs
                .get_mut(run_id)
                .ok_or_else(|| RunStoreError::RunNotFound {
                    run_id: run_id.into(),
                })?;
            let record =
                snapshot
                    .steps
                    .get_mut(step)
                    .ok_or_else(|| RunStoreError::StepNotFound {
                        run_id: run_id.into(),
                        step: step.into(),
                    })?;
            apply_update(record, update);
            Ok(())
        })
    }

    async fn load_run(&self, run_id: &str) -> Result<RunSnapshot, RunStoreError> {
        self.with(|runs| {
            runs.runs
                .get(run_id)
                .cloned()
                .ok_or_else(|| RunStoreError::RunNotFound {
                    run_id: run_id.into(),
                })
        })
    }

    async fn find_cached(&self, key: &CacheKey) -> Result<Option<StepRunRecord>, RunStoreError> {
        self.with(|runs| {
            Ok(runs
                .runs
                .values()
                .flat_map(|s| s.steps.values())
                .filter(|r| r.status.is_done() && r.cache_key.as_ref() == Some(key))
                .max_by_key(|r| r.finished_at)
                .cloned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> CacheKey {
        CacheKey::from_bytes(text.as_bytes())
    }

    #[tokio::test]
    async fn records_runs_and_finds_successful_step_runs_by_key() {
        let store = InMemoryRunStore::new();
        let run = RunRecord::new("r1", "nightly", "p");
        let steps = [
            StepRunRecord::new("r1", "a", "s1"),
            StepRunRecord::new("r1", "b", "s2"),
        ];
        store.create_run(&run, &steps).await.unwrap();
        assert!(matches!(
            store.create_run(&run, &steps).await,
            Err(RunStoreError::Duplicate { .. })
        ));

        store
            .update_step_run("r1", "a", StepRunUpdate::CacheKey(key("a")))
            .await
            .unwrap();
        store
            .update_step_run("r1", "b", StepRunUpdate::CacheKey(key("b")))
            .await
            .unwrap();
        // Not yet successful: no cache hit.
        assert!(store.find_cached(&key("a")).await.unwrap().is_none());
        store
            .update_step_run(
                "r1",
                "a",
                StepRunUpdate::Status {
                    status: StepRunStatus::Succeeded,
                    failure: None,
                },
            )
            .await
            .unwrap();
        store
            .update_step_run(
                "r1",
                "b",
                StepRunUpdate::Status {
                    status: StepRunStatus::Failed,
                    failure: Some(StepRunFailure::new(StepFailureReason::Launch, "x")),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .find_cached(&key("a"))
                .await
                .unwrap()
                .unwrap()
                .step_run_id,
            "s1"
        );
        // A failed step run never stands in.
        assert!(store.find_cached(&key("b")).await.unwrap().is_none());

        let snapshot = store.load_run("r1").await.unwrap();
        assert_eq!(snapshot.steps["a"].status, StepRunStatus::Succeeded);
        assert!(snapshot.steps["a"].finished_at.is_some());
        assert!(matches!(
            store
                .update_step_run("r1", "zz", StepRunUpdate::Reset)
                .await,
            Err(RunStoreError::StepNotFound { .. })
        ));
        assert!(matches!(
            store.load_run("nope").await,
            Err(RunStoreError::RunNotFound { .. })
        ));
    }
}
