//! Where a step is (`StepStatus`) and how it ended (`StepOutcome`, `FailureReason`).

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Where a step is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepStatus {
    /// Accepted but not running yet (waiting for a node, pulling the image, …).
    Pending {
        /// Why it is still pending, when known (e.g. the scheduler's message).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Running.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished unsuccessfully (including cancellation).
    Failed(StepFailure),
}

impl StepStatus {
    /// Whether the step has finished, successfully or not.
    pub fn is_finished(&self) -> bool {
        matches!(self, StepStatus::Succeeded | StepStatus::Failed(_))
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepOutcome {
    /// The step's command exited 0.
    Succeeded {
        /// How many attempts it took (1 without retries).
        attempts: u32,
    },
    /// The step failed; the failure says why.
    Failed(StepFailure),
}

impl StepOutcome {
    /// Whether the step succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, StepOutcome::Succeeded { .. })
    }

    /// The failure, if the step failed.
    pub fn failure(&self) -> Option<&StepFailure> {
        match self {
            StepOutcome::Failed(failure) => Some(failure),
            StepOutcome::Succeeded { .. } => None,
        }
    }
}

/// A failed step: the typed reason, a message for people and the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepFailure {
    /// Why the step failed.
    pub reason: FailureReason,
    /// What happened and what to do, in one or two sentences.
    pub message: String,
    /// The last lines the step printed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_log_lines: Vec<String>,
    /// Warning events recorded for the step's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warning_events: Vec<String>,
    /// How many attempts were made.
    pub attempts: u32,
}

impl StepFailure {
    /// A failure for `reason` with `message` after one attempt and no evidence.
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        StepFailure {
            reason,
            message: message.into(),
            last_log_lines: Vec::new(),
            warning_events: Vec::new(),
            attempts: 1,
        }
    }

    /// Adds the last log lines.
    pub fn with_last_log_lines(mut self, lines: Vec<String>) -> Self {
        self.last_log_lines = lines;
        self
    }

    /// Adds warning events.
    pub fn with_warning_events(mut self, events: Vec<String>) -> Self {
        self.warning_events = events;
        self
    }

    /// Sets the number of attempts.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        if !self.warning_events.is_empty() {
            f.write_str("\nwarning events:")?;
            for event in &self.warning_events {
                write!(f, "\n  {event}")?;
            }
        }
        if !self.last_log_lines.is_empty() {
            f.write_str("\nlast log lines:")?;
            for line in &self.last_log_lines {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

/// Why a step failed: what the cluster said, typed, so callers can decide whether to
/// retry and users see the real cause instead of "failed".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureReason {
    /// No node could take the pod before the scheduling deadline.
    Unschedulable {
        /// The scheduler's message, e.g. "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
        message: String,
    },
    /// The image could not be pulled (bad name, missing image, missing pull secret).
    ImagePull {
        /// The container waiting reason, e.g. `ImagePullBackOff`.
        waiting_reason: String,
    },
    /// The container could not be created from its configuration (missing Secret or
    /// ConfigMap, bad command).
    ContainerConfig {
        /// The container waiting or termination reason.
        waiting_reason: String,
    },
    /// The container exceeded its memory limit.
    #[serde(rename = "oom_killed")]
    OomKilled,
    /// The pod was evicted from its node.
    Evicted,
    /// The pod was preempted by a higher-priority pod.
    Preempted,
    /// A deadline ran out (`active_deadline_seconds`, or the startup deadline).
    DeadlineExceeded,
    /// The node running the pod went away.
    NodeLost,
    /// The command exited with a non-zero code.
    NonZeroExit {
        /// The exit code.
        code: i32,
    },
    /// The step was cancelled.
    Cancelled,
    /// The cluster refused to create the step's objects.
    CreateFailed {
        /// The API's reason, e.g. `Forbidden` or `Invalid`.
        api_reason: String,
    },
    /// The Job failed for a reason stepstack does not recognise.
    Unknown,
}

impl FailureReason {
    /// Whether the failure came from the infrastructure rather than the step's code, so it
    /// is retried on the infrastructure budget (eviction, preemption, node loss).
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            FailureReason::Evicted | FailureReason::Preempted | FailureReason::NodeLost
        )
    }

    /// A short CamelCase name, as Kubernetes writes reasons.
    pub fn name(&self) -> &'static str {
        match self {
            FailureReason::Unschedulable { .. } => "Unschedulable",
            FailureReason::ImagePull { .. } => "ImagePull",
            FailureReason::ContainerConfig { .. } => "ContainerConfig",
            FailureReason::OomKilled => "OOMKilled",
            FailureReason::Evicted => "Evicted",
            FailureReason::Preempted => "Preempted",
            FailureReason::DeadlineExceeded => "DeadlineExceeded",
            FailureReason::NodeLost => "NodeLost",
            FailureReason::NonZeroExit { .. } => "NonZeroExit",
            FailureReason::Cancelled => "Cancelled",
            FailureReason::CreateFailed { .. } => "CreateFailed",
            FailureReason::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::NonZeroExit { code } => write!(f, "NonZeroExit({code})"),
            FailureReason::ImagePull { waiting_reason }
            | FailureReason::ContainerConfig { waiting_reason } => {
                write!(f, "{}({waiting_reason})", self.name())
            }
            FailureReason::CreateFailed { api_reason } => write!(f, "CreateFailed({api_reason})"),
            other => f.write_str(other.name()),
        }
    }
}

/// One line a step printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogLine {
    /// When the line was written, as the cluster recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// For multi-pod steps, the pod's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_index: Option<u32>,
    /// The text, without the trailing newline.
    pub text: String,
}

impl LogLine {
    /// A line with the given text and timestamp.
    pub fn new(timestamp: Option<Timestamp>, text: impl Into<String>) -> Self {
        LogLine {
            timestamp,
            pod_index: None,
            text: text.into(),
        }
    }

    /// Marks the line as coming from pod `index` of a multi-pod step.
    pub fn with_pod_index(mut self, index: u32) -> Self {
        self.pod_index = Some(index);
        self
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(index) = self.pod_index {
            write!(f, "[{index}] ")?;
        }
        f.write_str(&self.text)
    }
}
