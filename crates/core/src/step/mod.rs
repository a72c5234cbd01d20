//! What a step is, how it is handed to a step operator and what comes back.

mod handle;
mod launch;
mod outcome;
mod timings;

pub use handle::StepHandle;
pub use launch::{GpuVendor, ResourceSettings, StepLaunch};
pub use outcome::{FailureReason, LogLine, StepFailure, StepOutcome, StepStatus};
pub use timings::StepTimings;
