//! Where a step's time went, read from the cluster's timestamps: the Job's creation, the
//! pods' `PodScheduled` condition, and the `main` container's start and finish.
//!
//! For a multi-pod step the phases run from the first pod bound and started to the last
//! one finished. Only the last attempt's phases are shown; `total` spans every attempt.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerState, Pod};
use stepstack_core::StepTimings;
use stepstack_settings::MAIN_CONTAINER;

use crate::outcome::AttemptSnapshot;

/// The timings of a step from the snapshots of its attempts; `None` before any Job of it
/// was seen.
pub(crate) fn of_attempts(
    attempts: &BTreeMap<u32, AttemptSnapshot>,
    now: Timestamp,
) -> Option<StepTimings> {
    let created = |a: &AttemptSnapshot| {
        a.job
            .as_ref()
            .and_then(|job| job.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
    };
    let submitted = attempts.values().find_map(created)?;
    let last = attempts.values().rev().find(|a| a.job.is_some())?;
    let attempt_submitted = created(last).unwrap_or(submitted);
    let pods: Vec<&Pod> = last.pods.iter().map(AsRef::as_ref).collect();
    let scheduled = pods.iter().filter_map(|p| scheduled_at(p)).min();
    let started = pods.iter().filter_map(|p| main_state(p, started_at)).min();
    let finished = if pods.is_empty() {
        None
    } else {
        // Finished when every pod's container has: the last of them.
        pods.iter()
            .map(|p| main_state(p, finished_at))
            .collect::<Option<Vec<_>>>()
            .and_then(|ends| ends.into_iter().max())
    };
    let end = finished.unwrap_or(now);
    Some(StepTimings::new(
        scheduled.map(|s| seconds(attempt_submitted, s)),
        scheduled.zip(started).map(|(s, st)| seconds(s, st)),
        started.map(|st| seconds(st, end)),
        Some(seconds(submitted, end)),
    ))
}

fn scheduled_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

fn main_state(pod: &Pod, read: fn(&ContainerState) -> Option<Timestamp>) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == MAIN_CONTAINER)?
        .state
        .as_ref()
        .and_then(read)
}

fn started_at(state: &ContainerState) -> Option<Timestamp> {
    let running = state.running.as_ref().and_then(|r| r.started_at.as_ref());
    let terminated = state
        .terminated
        .as_ref()
        .and_then(|t| t.started_at.as_ref());
    running.or(terminated).map(|t| t.0)
}

fn finished_at(state: &ContainerState) -> Option<Timestamp> {
    state
        .terminated
        .as_ref()
        .and_then(|t| t.finished_at.as_ref())
        .map(|t| t.0)
}

/// Seconds from `from` to `to`, never negative (clocks of nodes and API server differ).
fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64().max(0.0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::batch::v1::Job;
    use serde_json::json;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn job(created: &str) -> Arc<Job> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"creationTimestamp": created}})).unwrap(),
        )
    }

    fn pod(scheduled: Option<&str>, state: serde_json::Value) -> Arc<Pod> {
        let mut pod = json!({"status": {"containerStatuses": [{
            "name": "main", "image": "busybox", "imageID": "", "ready": false,
            "restartCount": 0, "state": state
        }]}});
        if let Some(at) = scheduled {
            pod["status"]["conditions"] =
                json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": at}]);
        }
        Arc::new(serde_json::from_value(pod).unwrap())
    }

    fn attempt(job: Arc<Job>, pods: Vec<Arc<Pod>>) -> AttemptSnapshot {
        AttemptSnapshot {
            job: Some(job),
            job_deleted: false,
            pods,
        }
    }

    #[test]
    fn a_finished_step_has_every_phase_and_retries_count_in_the_total() {
        let attempts = BTreeMap::from([
            (0, attempt(job("2026-01-01T00:00:00Z"), vec![])),
            (
                1,
                attempt(
                    job("2026-01-01T00:01:00Z"),
                    vec![pod(
                        Some("2026-01-01T00:01:05Z"),
                        json!({"terminated": {"exitCode": 0,
                            "startedAt": "2026-01-01T00:01:07Z",
                            "finishedAt": "2026-01-01T00:02:07Z"}}),
                    )],
                ),
            ),
        ]);
        let timings = of_attempts(&attempts, ts("2026-01-01T01:00:00Z")).unwrap();
        assert_eq!(
            timings,
            StepTimings::new(Some(5.0), Some(2.0), Some(60.0), Some(127.0))
        );
    }

    #[test]
    fn a_running_step_counts_up_to_now_and_a_queued_one_has_no_later_phases() {
        let now = ts("2026-01-01T00:00:30Z");
        let running = BTreeMap::from([(
            0,
            attempt(
                job("2026-01-01T00:00:00Z"),
                vec![pod(
                    Some("2026-01-01T00:00:01Z"),
                    json!({"running": {"startedAt": "2026-01-01T00:00:10Z"}}),
                )],
            ),
        )]);
        assert_eq!(
            of_attempts(&running, now).unwrap(),
            StepTimings::new(Some(1.0), Some(9.0), Some(20.0), Some(30.0))
        );
        let queued = BTreeMap::from([(
            0,
            attempt(
                job("2026-01-01T00:00:00Z"),
                vec![pod(
                    None,
                    json!({"waiting": {"reason": "ContainerCreating"}}),
                )],
            ),
        )]);
        assert_eq!(
            of_attempts(&queued, now).unwrap(),
            StepTimings::new(None, None, None, Some(30.0))
        );
        assert_eq!(of_attempts(&BTreeMap::new(), now), None);
    }
}
