//! The `StepOperator` contract: run one step somewhere with more compute.

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::step::{LogLine, StepHandle, StepLaunch, StepOutcome, StepStatus, StepTimings};
use crate::{Error, ErrorKind, Result};

/// A stream of the lines a step prints.
pub type LogStream = BoxStream<'static, Result<LogLine>>;

/// What a step operator supports beyond `submit`, `wait` and `status`, as data: the
/// CLI and the orchestrator ask before they offer a feature, and the conformance suite
/// runs one check per declared capability.
///
/// Every field is off by default, so a flavor claims only what it implements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// `logs` streams the step's output, live with `follow` and after the end.
    pub logs: bool,
    /// `cancel` stops a running step, which then ends as `Cancelled`.
    pub cancel: bool,
    /// `timings` says where a step's time went (queue, start, run).
    pub timings: bool,
    /// A serialized `StepHandle` can be adopted by another process (wait, logs, cancel).
    pub reattach: bool,
    /// One step can run on several pods or machines at once (e.g. `pod_count > 1`).
    pub multi_pod: bool,
}

impl Capabilities {
    /// No capabilities beyond the required methods.
    pub const fn none() -> Self {
        Capabilities {
            logs: false,
            cancel: false,
            timings: false,
            reattach: false,
            multi_pod: false,
        }
    }

    /// Declares log streaming.
    pub const fn with_logs(mut self) -> Self {
        self.logs = true;
        self
    }

    /// Declares cancellation.
    pub const fn with_cancel(mut self) -> Self {
        self.cancel = true;
        self
    }

    /// Declares timings.
    pub const fn with_timings(mut self) -> Self {
        self.timings = true;
        self
    }

    /// Declares reattachment through a serialized handle.
    pub const fn with_reattach(mut self) -> Self {
        self.reattach = true;
        self
    }

    /// Declares multi-pod steps.
    pub const fn with_multi_pod(mut self) -> Self {
        self.multi_pod = true;
        self
    }
}

/// Runs steps on compute the orchestrating machine lacks.
///
/// `submit` returns as soon as the work is accepted; `wait` follows it to the end. The
/// [`StepHandle`] is serializable, so a different process (or the same one after a
/// restart) can `wait`, `logs` and `cancel` the same step.
#[async_trait]
pub trait StepOperator: Send + Sync + fmt::Debug {
    /// The flavor name, e.g. `kubernetes`.
    fn flavor(&self) -> &str;

    /// What this operator supports beyond submit, wait and status. The default claims
    /// nothing; a flavor declares each capability it implements.
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
    }

    /// The handle [`StepOperator::submit`] will return for `launch`, known before
    /// anything is created (the flavor's names are deterministic per step run), or
    /// `None` when the flavor cannot tell. A launcher records it before submitting, so a
    /// process killed mid-submit leaves a record through which `status`, `cancel` and
    /// `wait` find whatever was created (or learn that nothing was).
    async fn planned_handle(&self, launch: &StepLaunch) -> Result<Option<StepHandle>> {
        let _ = launch;
        Ok(None)
    }

    /// Starts the step and returns once the work is accepted.
    async fn submit(&self, launch: StepLaunch) -> Result<StepHandle>;

    /// Waits until the step has finished and says how it ended. A failed step is an
    /// `Ok(StepOutcome::Failed(..))`; `Err` means the operator could not find out.
    async fn wait(&self, handle: &StepHandle) -> Result<StepOutcome>;

    /// Where the step is now.
    async fn status(&self, handle: &StepHandle) -> Result<StepStatus>;

    /// Stops the step and removes what it created (unless the flavor's settings say to
    /// keep it). Cancelling a finished step is not an error.
    async fn cancel(&self, handle: &StepHandle) -> Result<()>;

    /// The step's output. With `follow`, the stream ends when the step ends.
    async fn logs(&self, handle: &StepHandle, follow: bool) -> Result<LogStream> {
        let _ = (handle, follow);
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("the `{}` step operator cannot stream logs", self.flavor()),
        ))
    }

    /// Where the step's time went so far (queued, starting, running), if the flavor can
    /// tell; `None` by default and for steps it knows nothing about any more.
    async fn timings(&self, handle: &StepHandle) -> Result<Option<StepTimings>> {
        let _ = handle;
        Ok(None)
    }

    /// Submits the step and waits for it: `submit` followed by `wait`.
    async fn launch(&self, launch: StepLaunch) -> Result<StepOutcome> {
        let handle = self.submit(launch).await?;
        self.wait(&handle).await
    }
}
