#![doc = include_str!("../README.md")]

mod api;
mod cancel;
mod client;
mod deadlines;
mod flavor;
mod handle;
mod jobs;
mod labels;
mod logs;
mod operator;
mod outcome;
mod preview;
mod retry;
mod state;
mod state_dir;
mod submit;
mod sweep;
mod timings;
mod wait;
mod watch;

pub use flavor::{KubernetesStepOperatorFlavor, register};
pub use handle::KubernetesHandle;
pub use logs::{INCOMPLETE, LOG_STREAM_CONTEXT, is_incomplete_log};
pub use operator::KubernetesStepOperator;
pub use preview::{Preview, ServerPreview};
pub use state_dir::kept_log::{KeptLog, read_kept_log};

/// The flavor name.
pub const FLAVOR: &str = "kubernetes";
