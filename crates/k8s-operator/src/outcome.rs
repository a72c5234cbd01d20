//! Pure mapping from what the cluster says about one attempt (its Job and pods) to where
//! the step is: waiting (and until when), succeeded, or failed with a typed reason.
//!
//! No I/O here: the watch supplies the snapshot, the deadlines module the limits, and
//! the caller the current time, so every rule is unit-tested with fixture objects.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde::{Deserialize, Serialize};
use stepstack_core::{FailureReason, StepStatus};
use stepstack_settings::MAIN_CONTAINER;

use crate::deadlines::{Deadlines, add};

use crate::labels::FAILURE_ANNOTATION;

/// Waiting reasons that mean the image cannot be pulled.
const IMAGE_PULL_REASONS: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
    "SignatureValidationFailed",
];

/// How long a failed Job without an explaining pod waits for the pods' watch to catch up.
const POD_INFO_GRACE: Duration = Duration::from_secs(3);

/// Waiting reasons of a container that is still being set up normally.
const NORMAL_WAITING_REASONS: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// What the watch knows about one attempt of a step.
#[derive(Debug, Clone, Default)]
pub(crate) struct AttemptSnapshot {
    /// The Job, as last seen (kept after it was deleted).
    pub(crate) job: Option<Arc<Job>>,
    /// Whether the Job was deleted.
    pub(crate) job_deleted: bool,
    /// The Job's pods as last seen (deleted pods are dropped).
    pub(crate) pods: Vec<Arc<Pod>>,
}

/// A failure: the typed reason, a message, and where to look for evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Failure {
    /// Why.
    pub(crate) reason: FailureReason,
    /// What happened, in one sentence.
    pub(crate) message: String,
    /// The pod whose logs and events explain it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pod: Option<String>,
    /// Whether stepstack decided this (deadline, fail-fast) while the Job still runs, so
    /// the Job must be deleted.
    #[serde(default)]
    pub(crate) decided_here: bool,
    /// The Job has created no pod in time: a failure only if the job controller reports
    /// why (a `FailedCreate` event), which the caller checks.
    #[serde(skip)]
    pub(crate) no_pod: bool,
}

impl Failure {
    fn new(reason: FailureReason, message: impl Into<String>, pod: Option<&Pod>) -> Self {
        Failure {
            reason,
            message: message.into(),
            pod: pod.and_then(|p| p.metadata.name.clone()),
            decided_here: false,
            no_pod: false,
        }
    }

    fn decided_here(mut self) -> Self {
        self.decided_here = true;
        self
    }

    fn no_pod(mut self) -> Self {
        self.no_pod = true;
        self
    }
}

/// Where an attempt is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Not finished: the status to report and when to look again even without news.
    Waiting {
        /// Pending (with the reason) or Running.
        status: StepStatus,
        /// When a deadline runs out.
        wake_at: Option<Timestamp>,
    },
    /// Every pod succeeded.
    Succeeded,
    /// The attempt failed.
    Failed(Failure),
}

/// Where the attempt in `snapshot` is at `now`.
pub(crate) fn evaluate(
    snapshot: &AttemptSnapshot,
    deadlines: &Deadlines,
    now: Timestamp,
) -> Verdict {
    let job = snapshot.job.as_deref();
    if let Some(failure) = job.and_then(recorded_failure) {
        return Verdict::Failed(failure);
    }
    let pods: Vec<&Pod> = snapshot.pods.iter().map(|p| p.as_ref()).collect();
    if let Some(job) = job {
        if has_condition(job, "Complete") || has_condition(job, "SuccessCriteriaMet") {
            return Verdict::Succeeded;
        }
        if let Some((reason, message, since)) = failed_condition(job) {
            let failure = job_failure(job, &reason, &message, &pods, now);
            // The pods' watch may lag behind the Jobs' watch: give it a moment to
            // deliver the pod that explains the failure.
            if failure.reason == FailureReason::Unknown
                && let Some(since) = since
                && now < add(since, POD_INFO_GRACE)
            {
                return Verdict::Waiting {
                    status: StepStatus::Running,
                    wake_at: Some(add(since, POD_INFO_GRACE)),
                };
            }
            return Verdict::Failed(failure);
        }
    }
    let expected = expected_pods(job);
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count();
    let job_gone =
        snapshot.job_deleted || job.is_some_and(|j| j.metadata.deletion_timestamp.is_some());
    if job_gone {
        if succeeded >= expected {
            return Verdict::Succeeded;
        }
        if let Some(pod) = pods.iter().find(|p| phase(p) == "Failed") {
            return Verdict::Failed(pod_failure(pod));
        }
        return Verdict::Failed(Failure::new(
            FailureReason::Cancelled,
            "the Job was deleted before it finished (cancelled)",
            None,
        ));
    }
    if let Some(pod) = pods
        .iter()
        .find(|p| phase(p) == "Failed" && !deleted_without_cause(p))
    {
        if let Some(job) = job
            && deadline_passed(job, now)
        {
            return Verdict::Failed(Failure::new(
                FailureReason::DeadlineExceeded,
                active_deadline_message(job),
                Some(pod),
            ));
        }
        return Verdict::Failed(pod_failure(pod));
    }
    if expected > 0 && succeeded >= expected {
        // The job controller will mark the Job Complete.
        return Verdict::Waiting {
            status: StepStatus::Running,
            wake_at: None,
        };
    }
    waiting(job, &pods, expected, deadlines, now)
}

fn waiting(
    job: Option<&Job>,
    pods: &[&Pod],
    expected: usize,
    deadlines: &Deadlines,
    now: Timestamp,
) -> Verdict {
    let active: Vec<&&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && phase(p) != "Succeeded")
        .collect();
    if active.is_empty() {
        let created = job
            .and_then(|j| j.metadata.creation_timestamp.as_ref())
            .map(|t| t.0);
        let wake_at = created.and_then(|c| deadlines.scheduling.map(|d| add(c, d)));
        if let Some(at) = wake_at
            && now >= at
        {
            return Verdict::Failed(
                Failure::new(
                    FailureReason::Unschedulable {
                        message: "no pod was created for the Job".into(),
                    },
                    format!(
                        "the Job created no pod within the scheduling timeout ({})",
                        human(deadlines.scheduling)
                    ),
                    None,
                )
                .decided_here()
                .no_pod(),
            );
        }
        let message = if job.is_none() {
            "waiting for the Job to appear"
        } else {
            "waiting for the Job's pod to be created"
        };
        return Verdict::Waiting {
            status: StepStatus::Pending {
                message: Some(message.into()),
            },
            wake_at,
        };
    }
    let mut pending: Option<(String, Option<Timestamp>)> = None;
    let mut running_wake: Option<Timestamp> = None;
    for pod in active {
        match pod_waiting(pod, deadlines, now) {
            PodState::Failed(failure) => return Verdict::Failed(failure),
            PodState::Pending { message, wake_at } => {
                let wake_at = earliest(pending.as_ref().and_then(|p| p.1), wake_at);
                let message = pending.map(|p| p.0).unwrap_or(message);
                pending = Some((message, wake_at));
            }
            PodState::Running => {}
        }
    }
    if let Some(job) = job
        && let Some(at) = run_deadline(job, deadlines)
    {
        if now >= at {
            return Verdict::Failed(
                Failure::new(
                    FailureReason::DeadlineExceeded,
                    active_deadline_message(job),
                    None,
                )
                .decided_here(),
            );
        }
        running_wake = Some(at);
    }
    if pending.is_none() && pods.len() < expected {
        pending = Some(("waiting for the Job's pods to be created".into(), None));
    }
    match pending {
        Some((message, wake_at)) => Verdict::Waiting {
            status: StepStatus::Pending {
                message: Some(message),
            },
            wake_at: earliest(wake_at, running_wake),
        },
        None => Verdict::Waiting {
            status: StepStatus::Running,
            wake_at: running_wake,
        },
    }
}

enum PodState {
    Pending {
        message: String,
        wake_at: Option<Timestamp>,
    },
    Running,
    Failed(Failure),
}

fn pod_waiting(pod: &Pod, deadlines: &Deadlines, now: Timestamp) -> PodState {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
        || pod_condition(pod, "PodScheduled").is_some_and(|c| c.status == "True");
    if !scheduled {
        let message = pod_condition(pod, "PodScheduled")
            .filter(|c| c.status == "False")
            .and_then(|c| c.message.clone())
            .unwrap_or_else(|| "waiting for a node".into());
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let wake_at = created.and_then(|c| deadlines.scheduling.map(|d| add(c, d)));
        if let Some(at) = wake_at
            && now >= at
        {
            return PodState::Failed(
                Failure::new(
                    FailureReason::Unschedulable {
                        message: message.clone(),
                    },
                    format!(
                        "pod {name} was not scheduled within the scheduling timeout ({}): {message}",
                        human(deadlines.scheduling)
                    ),
                    Some(pod),
                )
                .decided_here(),
            );
        }
        return PodState::Pending {
            message: format!("pod {name} is not scheduled: {message}"),
            wake_at,
        };
    }
    let main = main_status(pod);
    let started = main
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some() || s.terminated.is_some());
    if started || phase(pod) == "Running" && main.is_none() {
        return PodState::Running;
    }
    let waiting = main
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref());
    let reason = waiting
        .and_then(|w| w.reason.clone())
        .unwrap_or_else(|| "ContainerCreating".into());
    let detail = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
    let described = if detail.is_empty() {
        reason.clone()
    } else {
        format!("{reason}: {detail}")
    };
    if deadlines.fail_on_waiting.contains(&reason) {
        return PodState::Failed(
            Failure::new(
                classify_waiting(&reason),
                format!("container {MAIN_CONTAINER} of pod {name} is waiting: {described}"),
                Some(pod),
            )
            .decided_here(),
        );
    }
    let since = scheduled_at(pod);
    let wake_at = since.and_then(|s| deadlines.startup.map(|d| add(s, d)));
    if let Some(at) = wake_at
        && now >= at
    {
        let reason_typed = if NORMAL_WAITING_REASONS.contains(&reason.as_str()) {
            FailureReason::DeadlineExceeded
        } else {
            classify_waiting(&reason)
        };
        return PodState::Failed(
            Failure::new(
                reason_typed,
                format!(
                    "container {MAIN_CONTAINER} of pod {name} did not start within the startup timeout ({}): {described}",
                    human(deadlines.startup)
                ),
                Some(pod),
            )
            .decided_here(),
        );
    }
    PodState::Pending {
        message: format!("pod {name} is starting: {described}"),
        wake_at,
    }
}

/// The typed reason of a container waiting reason.
pub(crate) fn classify_waiting(reason: &str) -> FailureReason {
    if IMAGE_PULL_REASONS.contains(&reason) {
        FailureReason::ImagePull {
            waiting_reason: reason.to_owned(),
        }
    } else {
        FailureReason::ContainerConfig {
            waiting_reason: reason.to_owned(),
        }
    }
}

/// Why a failed Job failed, from its condition and its pods.
fn job_failure(job: &Job, reason: &str, message: &str, pods: &[&Pod], now: Timestamp) -> Failure {
    let failed_pod = pods.iter().find(|p| phase(p) == "Failed").copied();
    if reason == "DeadlineExceeded" || (reason.is_empty() && deadline_passed(job, now)) {
        let message = if message.is_empty() {
            active_deadline_message(job)
        } else {
            format!("{} ({message})", active_deadline_message(job))
        };
        return Failure::new(FailureReason::DeadlineExceeded, message, failed_pod);
    }
    if let Some(pod) = failed_pod {
        if deleted_without_cause(pod) {
            return Failure::new(
                FailureReason::Cancelled,
                format!(
                    "pod {} was deleted before it finished",
                    pod.metadata.name.as_deref().unwrap_or("?")
                ),
                Some(pod),
            );
        }
        return pod_failure(pod);
    }
    if let Some(pod) = pods.iter().find(|p| disruption(p).is_some()) {
        return pod_failure(pod);
    }
    let text = if message.is_empty() {
        format!("the Job failed ({reason})")
    } else {
        format!("the Job failed ({reason}): {message}")
    };
    Failure::new(FailureReason::Unknown, text, None)
}

/// Why a failed pod failed.
pub(crate) fn pod_failure(pod: &Pod) -> Failure {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref();
    let pod_reason = status.and_then(|s| s.reason.as_deref()).unwrap_or("");
    let pod_message = status.and_then(|s| s.message.as_deref()).unwrap_or("");
    let with_message = |what: &str| {
        if pod_message.is_empty() {
            format!("pod {name} {what}")
        } else {
            format!("pod {name} {what}: {pod_message}")
        }
    };
    match pod_reason {
        "Evicted" => {
            return Failure::new(
                FailureReason::Evicted,
                with_message("was evicted"),
                Some(pod),
            );
        }
        "NodeLost" | "NodeShutdown" | "Shutdown" | "Terminated" => {
            return Failure::new(
                FailureReason::NodeLost,
                with_message("lost its node"),
                Some(pod),
            );
        }
        "Preempted" | "Preempting" => {
            return Failure::new(
                FailureReason::Preempted,
                with_message("was preempted"),
                Some(pod),
            );
        }
        "DeadlineExceeded" => {
            return Failure::new(
                FailureReason::DeadlineExceeded,
                with_message("ran out of its active deadline"),
                Some(pod),
            );
        }
        _ => {}
    }
    if let Some((reason, message)) = disruption(pod) {
        let message = format!("pod {name} was disrupted ({reason}): {message}");
        let typed = if reason.contains("Preemption") {
            FailureReason::Preempted
        } else if reason.contains("Taint")
            || reason.contains("PodGC")
            || reason.contains("NodeLost")
        {
            FailureReason::NodeLost
        } else {
            FailureReason::Evicted
        };
        return Failure::new(typed, message, Some(pod));
    }
    let main = main_status(pod);
    let terminated = main.and_then(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
    });
    if let Some(t) = terminated {
        let reason = t.reason.as_deref().unwrap_or("");
        let termination = t
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| format!("; termination message: {m}"))
            .unwrap_or_default();
        if reason == "OOMKilled" {
            return Failure::new(
                FailureReason::OomKilled,
                format!(
                    "container {MAIN_CONTAINER} of pod {name} was killed for exceeding its memory limit (exit code {}){termination}; raise the memory limit",
                    t.exit_code
                ),
                Some(pod),
            );
        }
        if matches!(
            reason,
            "ContainerCannotRun" | "StartError" | "CreateContainerError"
        ) {
            return Failure::new(
                FailureReason::ContainerConfig {
                    waiting_reason: reason.to_owned(),
                },
                format!(
                    "container {MAIN_CONTAINER} of pod {name} could not run ({reason}){termination}"
                ),
                Some(pod),
            );
        }
        if t.exit_code != 0 {
            return Failure::new(
                FailureReason::NonZeroExit { code: t.exit_code },
                format!(
                    "container {MAIN_CONTAINER} of pod {name} exited with code {}{termination}",
                    t.exit_code
                ),
                Some(pod),
            );
        }
    }
    if let Some(reason) = main
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone())
    {
        return Failure::new(
            classify_waiting(&reason),
            with_message(&format!(
                "failed while its container was waiting ({reason})"
            )),
            Some(pod),
        );
    }
    let what = if pod_reason.is_empty() {
        "failed".to_owned()
    } else {
        format!("failed ({pod_reason})")
    };
    Failure::new(FailureReason::Unknown, with_message(&what), Some(pod))
}

/// A pod that failed because someone deleted it (not an eviction, preemption or node
/// loss): conclusive only together with the Job's state.
fn deleted_without_cause(pod: &Pod) -> bool {
    let reason = pod
        .status
        .as_ref()
        .and_then(|s| s.reason.as_deref())
        .unwrap_or("");
    let killed = main_status(pod)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .is_none_or(|t| matches!(t.exit_code, 137 | 143) || t.signal.is_some());
    pod.metadata.deletion_timestamp.is_some()
        && disruption(pod).is_none()
        && reason.is_empty()
        && killed
}

fn disruption(pod: &Pod) -> Option<(String, String)> {
    pod_condition(pod, "DisruptionTarget")
        .filter(|c| c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// The failure stepstack recorded on the Job before deleting it.
pub(crate) fn recorded_failure(job: &Job) -> Option<Failure> {
    let text = job.metadata.annotations.as_ref()?.get(FAILURE_ANNOTATION)?;
    serde_json::from_str(text).ok()
}

fn has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

fn failed_condition(job: &Job) -> Option<(String, String, Option<Timestamp>)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .or_else(|| {
            conditions
                .iter()
                .find(|c| c.type_ == "FailureTarget" && c.status == "True")
        })
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
                c.last_transition_time.as_ref().map(|t| t.0),
            )
        })
}

fn expected_pods(job: Option<&Job>) -> usize {
    job.and_then(|j| j.spec.as_ref())
        .and_then(|s| s.completions.or(s.parallelism))
        .map(|n| n.max(1) as usize)
        .unwrap_or(1)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn pod_condition<'a>(
    pod: &'a Pod,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The status of the `main` container.
pub(crate) fn main_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == MAIN_CONTAINER)
}

fn scheduled_at(pod: &Pod) -> Option<Timestamp> {
    pod_condition(pod, "PodScheduled")
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
        .or_else(|| {
            pod.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
        })
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn active_deadline(job: &Job) -> Option<i64> {
    job.spec.as_ref()?.active_deadline_seconds
}

fn active_deadline_message(job: &Job) -> String {
    match active_deadline(job) {
        Some(seconds) => format!("the Job ran longer than active_deadline_seconds ({seconds} s)"),
        None => "the Job ran out of its deadline".into(),
    }
}

/// When the Job's `activeDeadlineSeconds` (plus a grace period for the job controller)
/// runs out, counted from the Job's start.
fn run_deadline(job: &Job, deadlines: &Deadlines) -> Option<Timestamp> {
    let seconds = u64::try_from(active_deadline(job)?).ok()?;
    let start = job
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())?
        .0;
    Some(add(
        start,
        Duration::from_secs(seconds) + deadlines.run_grace,
    ))
}

fn deadline_passed(job: &Job, now: Timestamp) -> bool {
    let Some(seconds) = active_deadline(job).and_then(|s| u64::try_from(s).ok()) else {
        return false;
    };
    job.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .is_some_and(|start| now >= add(start.0, Duration::from_secs(seconds)))
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn human(d: Option<Duration>) -> String {
    d.map(|d| format!("{} s", d.as_secs_f64()))
        .unwrap_or_else(|| "none".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn job(value: serde_json::Value) -> Arc<Job> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn deadlines() -> Deadlines {
        Deadlines {
            scheduling: Some(Duration::from_secs(60)),
            startup: Some(Duration::from_secs(120)),
            fail_on_waiting: vec![
                "ErrImagePull".into(),
                "ImagePullBackOff".into(),
                "CreateContainerConfigError".into(),
            ],
            run_grace: Duration::from_secs(10),
        }
    }

    fn running_job() -> Arc<Job> {
        job(json!({
            "metadata": {"name": "j", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"template": {}, "backoffLimit": 0, "parallelism": 1},
            "status": {"startTime": "2026-01-01T00:00:00Z", "active": 1}
        }))
    }

    fn snapshot(job: Arc<Job>, pods: Vec<Arc<Pod>>) -> AttemptSnapshot {
        AttemptSnapshot {
            job: Some(job),
            job_deleted: false,
            pods,
        }
    }

    fn failed(v: Verdict) -> Failure {
        match v {
            Verdict::Failed(f) => f,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn terminated_pod(reason: &str, exit_code: i32, message: Option<&str>) -> Arc<Pod> {
        pod(json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "node-1", "containers": []},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "reason": reason, "message": message}}
            }]}
        }))
    }

    const NOW: &str = "2026-01-01T00:00:30Z";

    #[test]
    fn complete_job_succeeds() {
        let j = job(json!({
            "metadata": {"name": "j"},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}
        }));
        assert_eq!(
            evaluate(&snapshot(j, vec![]), &deadlines(), t(NOW)),
            Verdict::Succeeded
        );
    }

    #[test]
    fn job_deleted_after_success_still_succeeds() {
        let p = pod(json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}}));
        let mut s = snapshot(running_job(), vec![p]);
        s.job_deleted = true;
        assert_eq!(evaluate(&s, &deadlines(), t(NOW)), Verdict::Succeeded);
    }

    #[test]
    fn job_deleted_while_running_is_cancelled() {
        let mut s = snapshot(running_job(), vec![]);
        s.job_deleted = true;
        assert_eq!(
            failed(evaluate(&s, &deadlines(), t(NOW))).reason,
            FailureReason::Cancelled
        );
    }

    #[test]
    fn non_zero_exit_keeps_code_and_termination_message() {
        let s = snapshot(
            running_job(),
            vec![terminated_pod("Error", 3, Some("bad input"))],
        );
        let f = failed(evaluate(&s, &deadlines(), t(NOW)));
        assert_eq!(f.reason, FailureReason::NonZeroExit { code: 3 });
        assert!(f.message.contains("exited with code 3"), "{}", f.message);
        assert!(
            f.message.contains("termination message: bad input"),
            "{}",
            f.message
        );
        assert_eq!(f.pod.as_deref(), Some("p"));
        assert!(!f.decided_here);
    }

    #[test]
    fn oom_killed_is_typed() {
        let s = snapshot(running_job(), vec![terminated_pod("OOMKilled", 137, None)]);
        assert_eq!(
            failed(evaluate(&s, &deadlines(), t(NOW))).reason,
            FailureReason::OomKilled
        );
    }

    #[test]
    fn evicted_preempted_and_node_lost_pods() {
        for (reason, expected) in [
            ("Evicted", FailureReason::Evicted),
            ("Preempted", FailureReason::Preempted),
            ("NodeLost", FailureReason::NodeLost),
        ] {
            let p = pod(json!({
                "metadata": {"name": "p"},
                "status": {"phase": "Failed", "reason": reason, "message": "because"}
            }));
            let f = failed(evaluate(
                &snapshot(running_job(), vec![p]),
                &deadlines(),
                t(NOW),
            ));
            assert_eq!(f.reason, expected, "{reason}");
            assert!(f.message.contains("because"));
        }
        let p = pod(json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Failed", "conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager", "message": "node gone"}
            ]}
        }));
        assert_eq!(
            failed(evaluate(
                &snapshot(running_job(), vec![p]),
                &deadlines(),
                t(NOW)
            ))
            .reason,
            FailureReason::NodeLost
        );
    }

    #[test]
    fn job_deadline_exceeded() {
        let j = job(json!({
            "metadata": {"name": "j"},
            "spec": {"template": {}, "activeDeadlineSeconds": 2},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline"}]}
        }));
        let f = failed(evaluate(
            &snapshot(j, vec![terminated_pod("Error", 143, None)]),
            &deadlines(),
            t(NOW),
        ));
        assert_eq!(f.reason, FailureReason::DeadlineExceeded);
        assert!(
            f.message.contains("active_deadline_seconds (2 s)"),
            "{}",
            f.message
        );
    }

    #[test]
    fn unschedulable_waits_then_fails_at_the_scheduling_deadline() {
        let p = pod(json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]}
        }));
        let s = snapshot(running_job(), vec![p]);
        match evaluate(&s, &deadlines(), t(NOW)) {
            Verdict::Waiting {
                status: StepStatus::Pending { message },
                wake_at,
            } => {
                assert!(message.unwrap().contains("Insufficient nvidia.com/gpu"));
                assert_eq!(wake_at, Some(t("2026-01-01T00:01:00Z")));
            }
            other => panic!("{other:?}"),
        }
        let f = failed(evaluate(&s, &deadlines(), t("2026-01-01T00:01:00Z")));
        assert_eq!(
            f.reason,
            FailureReason::Unschedulable {
                message: "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.".into()
            }
        );
        assert!(f.decided_here);
    }

    fn waiting_pod(reason: &str) -> Arc<Pod> {
        pod(json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "node-1", "containers": []},
            "status": {"phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"}],
                "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": "details"}}}]}
        }))
    }

    #[test]
    fn image_pull_fails_fast_on_listed_reasons() {
        let f = failed(evaluate(
            &snapshot(running_job(), vec![waiting_pod("ErrImagePull")]),
            &deadlines(),
            t(NOW),
        ));
        assert_eq!(
            f.reason,
            FailureReason::ImagePull {
                waiting_reason: "ErrImagePull".into()
            }
        );
        assert!(f.decided_here);
        let f = failed(evaluate(
            &snapshot(
                running_job(),
                vec![waiting_pod("CreateContainerConfigError")],
            ),
            &deadlines(),
            t(NOW),
        ));
        assert_eq!(
            f.reason,
            FailureReason::ContainerConfig {
                waiting_reason: "CreateContainerConfigError".into()
            }
        );
    }

    #[test]
    fn unlisted_waiting_reasons_fail_at_the_startup_deadline() {
        let mut d = deadlines();
        d.fail_on_waiting.clear();
        let s = snapshot(running_job(), vec![waiting_pod("ImagePullBackOff")]);
        match evaluate(&s, &d, t(NOW)) {
            Verdict::Waiting { wake_at, .. } => {
                assert_eq!(wake_at, Some(t("2026-01-01T00:02:01Z")))
            }
            other => panic!("{other:?}"),
        }
        let f = failed(evaluate(&s, &d, t("2026-01-01T00:02:01Z")));
        assert_eq!(
            f.reason,
            FailureReason::ImagePull {
                waiting_reason: "ImagePullBackOff".into()
            }
        );
        let s = snapshot(running_job(), vec![waiting_pod("ContainerCreating")]);
        assert_eq!(
            failed(evaluate(&s, &d, t("2026-01-01T00:03:00Z"))).reason,
            FailureReason::DeadlineExceeded
        );
    }

    #[test]
    fn running_pod_reports_running_until_the_local_run_deadline() {
        let p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"nodeName": "node-1", "containers": []},
            "status": {"phase": "Running", "containerStatuses": [{"name": "main", "image": "x", "imageID": "",
                "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        }));
        let s = snapshot(running_job(), vec![p.clone()]);
        assert_eq!(
            evaluate(&s, &deadlines(), t(NOW)),
            Verdict::Waiting {
                status: StepStatus::Running,
                wake_at: None
            }
        );
        let j = job(json!({
            "metadata": {"name": "j", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"template": {}, "activeDeadlineSeconds": 5},
            "status": {"startTime": "2026-01-01T00:00:00Z"}
        }));
        let s = snapshot(j, vec![p]);
        match evaluate(&s, &deadlines(), t("2026-01-01T00:00:03Z")) {
            Verdict::Waiting { status, wake_at } => {
                assert_eq!(status, StepStatus::Running);
                assert_eq!(wake_at, Some(t("2026-01-01T00:00:15Z")));
            }
            other => panic!("{other:?}"),
        }
        let f = failed(evaluate(&s, &deadlines(), t("2026-01-01T00:00:15Z")));
        assert_eq!(f.reason, FailureReason::DeadlineExceeded);
        assert!(f.decided_here);
    }

    #[test]
    fn a_failed_job_waits_briefly_for_the_pod_that_explains_it() {
        let j = job(json!({
            "metadata": {"name": "j"},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "lastTransitionTime": "2026-01-01T00:00:29Z"}]}
        }));
        match evaluate(&snapshot(j.clone(), vec![]), &deadlines(), t(NOW)) {
            Verdict::Waiting { wake_at, .. } => {
                assert_eq!(wake_at, Some(t("2026-01-01T00:00:32Z")))
            }
            other => panic!("{other:?}"),
        }
        let f = failed(evaluate(
            &snapshot(j.clone(), vec![]),
            &deadlines(),
            t("2026-01-01T00:00:32Z"),
        ));
        assert_eq!(f.reason, FailureReason::Unknown);
        assert!(f.message.contains("BackoffLimitExceeded"));
        let f = failed(evaluate(
            &snapshot(j, vec![terminated_pod("Error", 3, None)]),
            &deadlines(),
            t(NOW),
        ));
        assert_eq!(f.reason, FailureReason::NonZeroExit { code: 3 });
    }

    #[test]
    fn recorded_failures_win() {
        let failure = Failure {
            reason: FailureReason::ImagePull {
                waiting_reason: "ErrImagePull".into(),
            },
            message: "m".into(),
            pod: Some("p".into()),
            decided_here: true,
            no_pod: false,
        };
        let j = job(json!({
            "metadata": {"name": "j", "deletionTimestamp": "2026-01-01T00:00:10Z",
                "annotations": {FAILURE_ANNOTATION: serde_json::to_string(&failure).unwrap()}},
        }));
        assert_eq!(
            evaluate(&snapshot(j, vec![]), &deadlines(), t(NOW)),
            Verdict::Failed(failure)
        );
    }

    #[test]
    fn multi_pod_steps_wait_for_every_pod() {
        let j = job(json!({
            "metadata": {"name": "j"},
            "spec": {"template": {}, "completions": 3, "parallelism": 3, "completionMode": "Indexed"}
        }));
        let done = pod(json!({"metadata": {"name": "p0"}, "status": {"phase": "Succeeded"}}));
        let v = evaluate(
            &snapshot(j.clone(), vec![done.clone()]),
            &deadlines(),
            t(NOW),
        );
        assert!(
            matches!(
                v,
                Verdict::Waiting {
                    status: StepStatus::Pending { .. },
                    ..
                }
            ),
            "{v:?}"
        );
        let v = evaluate(
            &snapshot(j, vec![done, terminated_pod("Error", 2, None)]),
            &deadlines(),
            t(NOW),
        );
        assert_eq!(failed(v).reason, FailureReason::NonZeroExit { code: 2 });
    }
}
