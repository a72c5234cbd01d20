//! The `StepOperator` contract: run one step somewhere with more compute.

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::step::{LogLine, StepHandle, StepLaunch, StepOutcome, StepStatus, StepTimings};
use crate::{Error, ErrorKind, Result};

/// A stream of the lines a step prints.
pub type LogStream = BoxStream<'static, Result<LogLine>>;

/// Runs steps on compute the orchestrating machine lacks.
///
/// `submit` returns as soon as the work is accepted; `wait` follows it to the end. The
/// [`StepHandle`] is serializable, so a different process (or the same one after a
/// restart) can `wait`, `logs` and `cancel` the same step.
#[async_trait]
pub trait StepOperator: Send + Sync + fmt::Debug {
    /// The flavor name, e.g. `kubernetes`.
    fn flavor(&self) -> &str;

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
