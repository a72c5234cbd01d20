//! The in-memory picture of one namespace's managed Jobs and pods, grouped by step run
//! and attempt, with one notification channel per step run.
//!
//! Deleted Jobs stay as tombstones (with their last seen status), so a Job removed by
//! `ttlSecondsAfterFinished` after it succeeded still reads as succeeded.
//!
//! Two sources change the picture: the watch, whose events arrive in order, and reads
//! made directly (a `get` when the watch has not delivered a Job yet, a list when the
//! watch keeps failing). A direct read can be older than what the watch delivered while
//! the read was on its way; applied blindly, it would put a finished Job back to
//! running, and since nothing changes about a finished Job any more, no event would
//! ever correct it: its waiters would wait forever. So every change is stamped with a
//! sequence number, a direct read starts with a [`ReadMark`], and it only replaces an
//! object that has not changed since that mark. Whatever it does not replace is at
//! least as new as the read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio::sync::watch;

use crate::outcome::AttemptSnapshot;

use crate::labels::{ATTEMPT_LABEL, INDEX_KEY, STEP_RUN_LABEL};

/// Step run (label value) and attempt of a managed object.
fn key_of(meta: &ObjectMeta) -> Option<(String, u32)> {
    let labels = meta.labels.as_ref()?;
    let step_run = labels.get(STEP_RUN_LABEL)?.clone();
    let attempt = labels
        .get(ATTEMPT_LABEL)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    Some((step_run, attempt))
}

/// How long a deleted Job's last state is kept for late waiters.
const TOMBSTONE_TTL: Duration = Duration::from_secs(3600);
/// Deletions between two sweeps of old tombstones.
const SWEEP_EVERY: u32 = 256;

#[derive(Debug, Default)]
struct Attempt {
    job: Option<Arc<Job>>,
    job_deleted: bool,
    deleted_at: Option<Instant>,
    /// The sequence number of the last change of the Job (0: never).
    job_seq: u64,
    pods: BTreeMap<String, Arc<Pod>>,
    /// The sequence number of the last change of each pod.
    pod_seq: HashMap<String, u64>,
}

/// Where the state's history stood when a direct read of the API began: the read may
/// only replace objects that have not changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadMark(u64);

/// Everything known about one namespace.
#[derive(Debug, Default)]
pub(crate) struct NamespaceState {
    steps: HashMap<String, BTreeMap<u32, Attempt>>,
    notify: HashMap<String, watch::Sender<u64>>,
    deletions: u32,
    /// Changes applied so far; stamps every change.
    seq: u64,
}

impl NamespaceState {
    fn attempt_mut(&mut self, meta: &ObjectMeta) -> Option<(&mut Attempt, String)> {
        let (step_run, attempt) = key_of(meta)?;
        let entry = self
            .steps
            .entry(step_run.clone())
            .or_default()
            .entry(attempt)
            .or_default();
        Some((entry, step_run))
    }

    fn notify(&self, step_run: &str) {
        if let Some(sender) = self.notify.get(step_run) {
            sender.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Wakes every waiter (after a relist or an error).
    pub(crate) fn notify_all(&self) {
        for sender in self.notify.values() {
            sender.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// The mark a direct read takes before it asks the API.
    pub(crate) fn mark(&self) -> ReadMark {
        ReadMark(self.seq)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The watch delivered a Job that was added or changed.
    pub(crate) fn apply_job(&mut self, job: Job) {
        self.put_job(job, None);
    }

    /// A Job read directly from the API, in a read that began at `since`: applied unless
    /// the Job changed meanwhile (then the state is at least as new). Returns whether it
    /// was applied.
    pub(crate) fn offer_job(&mut self, job: Job, since: ReadMark) -> bool {
        self.put_job(job, Some(since))
    }

    fn put_job(&mut self, mut job: Job, since: Option<ReadMark>) -> bool {
        slim_job(&mut job);
        let seq = self.next_seq();
        let Some((attempt, step_run)) = self.attempt_mut(&job.metadata) else {
            return false;
        };
        if since.is_some_and(|m| attempt.job_seq > m.0) {
            return false;
        }
        attempt.job = Some(Arc::new(job));
        attempt.job_deleted = false;
        attempt.deleted_at = None;
        attempt.job_seq = seq;
        self.notify(&step_run);
        true
    }

    /// A Job was deleted; its last state is kept.
    pub(crate) fn delete_job(&mut self, mut job: Job) {
        slim_job(&mut job);
        let seq = self.next_seq();
        if let Some((attempt, step_run)) = self.attempt_mut(&job.metadata) {
            attempt.job_seq = seq;
            // Keep the richest status we saw: the deletion event may carry an older one.
            let keep_old = attempt
                .job
                .as_ref()
                .is_some_and(|old| is_finished(old) && !is_finished(&job));
            if !keep_old {
                attempt.job = Some(Arc::new(job));
            }
            attempt.job_deleted = true;
            attempt.deleted_at.get_or_insert_with(Instant::now);
            self.notify(&step_run);
        }
        self.deletions = self.deletions.wrapping_add(1);
        if self.deletions.is_multiple_of(SWEEP_EVERY) {
            self.sweep(TOMBSTONE_TTL);
        }
    }

    /// Forgets step runs whose Jobs were all deleted more than `ttl` ago and that nobody
    /// waits for, so a long-lived process does not grow without bound.
    pub(crate) fn sweep(&mut self, ttl: Duration) {
        let notify = &self.notify;
        self.steps.retain(|step_run, attempts| {
            notify.contains_key(step_run)
                || !attempts
                    .values()
                    .all(|a| a.job_deleted && a.deleted_at.is_some_and(|t| t.elapsed() >= ttl))
        });
    }

    /// The watch delivered a pod that was added or changed.
    pub(crate) fn apply_pod(&mut self, pod: Pod) {
        self.put_pod(pod, None);
    }

    /// A pod read directly from the API, in a read that began at `since`: applied unless
    /// the pod changed meanwhile. Returns whether it was applied.
    pub(crate) fn offer_pod(&mut self, pod: Pod, since: ReadMark) -> bool {
        self.put_pod(pod, Some(since))
    }

    fn put_pod(&mut self, mut pod: Pod, since: Option<ReadMark>) -> bool {
        slim_pod(&mut pod);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let seq = self.next_seq();
        let Some((attempt, step_run)) = self.attempt_mut(&pod.metadata) else {
            return false;
        };
        if since.is_some_and(|m| attempt.pod_seq.get(&name).is_some_and(|s| *s > m.0)) {
            return false;
        }
        attempt.pods.insert(name.clone(), Arc::new(pod));
        attempt.pod_seq.insert(name, seq);
        self.notify(&step_run);
        true
    }

    /// A pod was deleted; it is kept, marked as deleted, so its last status still
    /// explains a failure.
    pub(crate) fn delete_pod(&mut self, mut pod: Pod) {
        if pod.metadata.deletion_timestamp.is_none() {
            pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        }
        self.apply_pod(pod);
    }

    /// All managed Jobs, listed in a list that began at `since`: those not listed any
    /// more were deleted meanwhile (unless they changed after the list began, e.g. a
    /// Job created since). The watch's own list (`authoritative`: the watch goes on from
    /// it) replaces every listed Job; a list made because the watch keeps failing only
    /// replaces those that did not change since it began.
    pub(crate) fn relist_jobs(&mut self, jobs: Vec<Job>, since: ReadMark, authoritative: bool) {
        let listed: HashMap<(String, u32), Job> = jobs
            .into_iter()
            .filter_map(|j| key_of(&j.metadata).map(|k| (k, j)))
            .collect();
        let seq = self.next_seq();
        for (step_run, attempts) in &mut self.steps {
            for (n, attempt) in attempts.iter_mut() {
                if attempt.job.is_some()
                    && !attempt.job_deleted
                    && attempt.job_seq <= since.0
                    && !listed.contains_key(&(step_run.clone(), *n))
                {
                    attempt.job_deleted = true;
                    attempt.deleted_at.get_or_insert_with(Instant::now);
                    attempt.job_seq = seq;
                }
            }
        }
        for (_, job) in listed {
            self.put_job(job, (!authoritative).then_some(since));
        }
        self.sweep(TOMBSTONE_TTL);
        self.notify_all();
    }

    /// All managed pods, listed in a list that began at `since`: those not listed any
    /// more were deleted meanwhile (as for [`Self::relist_jobs`]).
    pub(crate) fn relist_pods(&mut self, pods: Vec<Pod>, since: ReadMark, authoritative: bool) {
        let names: std::collections::HashSet<String> = pods
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let seq = self.next_seq();
        for attempts in self.steps.values_mut() {
            for attempt in attempts.values_mut() {
                for (name, pod) in attempt.pods.iter_mut() {
                    let changed_since = attempt.pod_seq.get(name).is_some_and(|s| *s > since.0);
                    if !names.contains(name)
                        && !changed_since
                        && pod.metadata.deletion_timestamp.is_none()
                    {
                        let mut gone = pod.as_ref().clone();
                        gone.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
                        *pod = Arc::new(gone);
                        attempt.pod_seq.insert(name.clone(), seq);
                    }
                }
            }
        }
        for pod in pods {
            self.put_pod(pod, (!authoritative).then_some(since));
        }
        self.notify_all();
    }

    /// What is known about every attempt of `step_run`.
    pub(crate) fn snapshot(&self, step_run: &str) -> BTreeMap<u32, AttemptSnapshot> {
        self.steps
            .get(step_run)
            .map(|attempts| {
                attempts
                    .iter()
                    .map(|(n, a)| {
                        (
                            *n,
                            AttemptSnapshot {
                                job: a.job.clone(),
                                job_deleted: a.job_deleted,
                                pods: a.pods.values().cloned().collect(),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A receiver that changes whenever something about `step_run` changes.
    pub(crate) fn subscribe(&mut self, step_run: &str) -> watch::Receiver<u64> {
        self.notify
            .entry(step_run.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Drops the channel of `step_run` when nobody listens any more.
    pub(crate) fn unsubscribe(&mut self, step_run: &str) {
        if self
            .notify
            .get(step_run)
            .is_some_and(|s| s.receiver_count() == 0)
        {
            self.notify.remove(step_run);
        }
    }

    /// How many step runs are tracked (for tests and metrics).
    pub(crate) fn step_runs(&self) -> usize {
        self.steps.len()
    }
}

/// Drops what the operator never reads from a Job: the managed fields, and once the Job
/// has succeeded, its pod template and other labels (only a retry of a failed attempt
/// copies them).
fn slim_job(job: &mut Job) {
    job.metadata.managed_fields = None;
    if !has_condition(job, &["Complete", "SuccessCriteriaMet"]) {
        return;
    }
    if let Some(spec) = job.spec.as_mut() {
        spec.template = PodTemplateSpec::default();
        spec.selector = None;
    }
    let meta = &mut job.metadata;
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|k, _| matches!(k.as_str(), STEP_RUN_LABEL | ATTEMPT_LABEL));
    }
    // The stepstack annotations (a recorded failure) still count.
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| k.starts_with("stepstack.dev/"));
    }
}

/// Keeps of a pod only what judging the step and following its logs read: name,
/// timestamps, the step-run, attempt and index labels and the index annotation, the
/// node it is bound to, and the status. The rest of the spec (containers, volumes,
/// tolerations) is most of a pod's size.
fn slim_pod(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.generate_name = None;
    meta.finalizers = None;
    let kept = |key: &String| matches!(key.as_str(), STEP_RUN_LABEL | ATTEMPT_LABEL | INDEX_KEY);
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|k, _| kept(k));
    }
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| kept(k));
    }
    if let Some(spec) = pod.spec.as_mut() {
        *spec = PodSpec {
            node_name: spec.node_name.take(),
            ..PodSpec::default()
        };
    }
}

fn has_condition(job: &Job, types: &[&str]) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.status == "True" && types.contains(&c.type_.as_str()))
        })
}

fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.status == "True" && matches!(c.type_.as_str(), "Complete" | "Failed"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(name: &str, step_run: &str, attempt: u32, complete: bool) -> Job {
        let conditions = if complete {
            json!([{"type": "Complete", "status": "True"}])
        } else {
            json!([])
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {STEP_RUN_LABEL: step_run, ATTEMPT_LABEL: attempt.to_string()}},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    #[test]
    fn deleted_jobs_keep_their_finished_status() {
        let mut state = NamespaceState::default();
        let mut rx = state.subscribe("sr");
        state.apply_job(job("j", "sr", 0, true));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        state.delete_job(job("j", "sr", 0, false));
        assert!(rx.has_changed().unwrap());
        let snap = state.snapshot("sr");
        assert!(snap[&0].job_deleted);
        assert!(is_finished(snap[&0].job.as_ref().unwrap()));
    }

    /// The lost wake-up of issue 15: a direct read of a running Job answered before the
    /// watch delivered the Job's completion, and was applied after it. Applied blindly,
    /// the state reads "running" for good (no event follows a finished Job), and every
    /// waiter that looks afterwards waits forever.
    #[test]
    fn a_direct_read_never_replaces_what_the_watch_delivered_meanwhile() {
        let mut state = NamespaceState::default();
        let since = state.mark();
        // The watch delivers the Job running, then complete, while the read is out.
        state.apply_job(job("j", "sr", 0, false));
        state.apply_job(job("j", "sr", 0, true));
        // The read's (older) answer arrives.
        assert!(!state.offer_job(job("j", "sr", 0, false), since));
        assert!(is_finished(state.snapshot("sr")[&0].job.as_ref().unwrap()));
        // The same for pods, and for a read that began after the last change.
        let pod = |phase: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "labels": {STEP_RUN_LABEL: "sr", ATTEMPT_LABEL: "0"}},
                "status": {"phase": phase}
            }))
            .unwrap()
        };
        let since = state.mark();
        state.apply_pod(pod("Succeeded"));
        assert!(!state.offer_pod(pod("Running"), since));
        let phase = |state: &NamespaceState| {
            state.snapshot("sr")[&0].pods[0]
                .status
                .as_ref()
                .unwrap()
                .phase
                .clone()
        };
        assert_eq!(phase(&state).as_deref(), Some("Succeeded"));
        // A read that began after the last change is newer: it is applied and wakes.
        let mut rx = state.subscribe("sr2");
        let since = state.mark();
        assert!(state.offer_job(job("k", "sr2", 0, true), since));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        // A list made because the watch fails does not mark deleted what changed after
        // it began (a Job created meanwhile), nor replace it.
        let since = state.mark();
        state.apply_job(job("new", "sr3", 0, false));
        state.relist_jobs(
            vec![job("j", "sr", 0, true), job("k", "sr2", 0, true)],
            since,
            false,
        );
        assert!(!state.snapshot("sr3")[&0].job_deleted);
        let since = state.mark();
        state.relist_jobs(vec![job("j", "sr", 0, true)], since, false);
        assert!(
            state.snapshot("sr2")[&0].job_deleted,
            "k is gone from the list"
        );
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn relist_marks_missing_jobs_deleted_and_groups_attempts() {
        let mut state = NamespaceState::default();
        state.apply_job(job("a0", "sr", 0, false));
        state.apply_job(job("a1", "sr", 1, false));
        state.apply_job(job("other", "sr2", 0, false));
        let mark = state.mark();
        state.relist_jobs(vec![job("a1", "sr", 1, false)], mark, true);
        let snap = state.snapshot("sr");
        assert_eq!(snap.len(), 2);
        assert!(snap[&0].job_deleted);
        assert!(!snap[&1].job_deleted);
        assert!(state.snapshot("sr2")[&0].job_deleted);
        assert_eq!(state.step_runs(), 2);
        let rx = state.subscribe("sr");
        drop(rx);
        state.unsubscribe("sr");
        assert!(state.notify.is_empty());
        // Old tombstones are forgotten unless someone waits for them.
        let _rx = state.subscribe("sr2");
        state.sweep(Duration::ZERO);
        assert!(
            state.snapshot("sr").contains_key(&1),
            "sr still has a live Job"
        );
        assert!(state.snapshot("sr2").contains_key(&0), "sr2 has a waiter");
        state.delete_job(job("a1", "sr", 1, false));
        state.sweep(Duration::ZERO);
        assert!(state.snapshot("sr").is_empty());
    }

    #[test]
    fn cached_objects_keep_only_what_the_operator_reads() {
        let mut state = NamespaceState::default();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "generateName": "j-", "labels": {
                STEP_RUN_LABEL: "sr", ATTEMPT_LABEL: "0", INDEX_KEY: "1", "job-name": "j"},
                "annotations": {INDEX_KEY: "1", "other": "x"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "busybox"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "main", "image": "busybox",
                "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        }))
        .unwrap();
        state.apply_pod(pod);
        let running = job("j", "sr", 0, false);
        let mut running = running;
        running.spec = Some(
            serde_json::from_value(json!({
                "completions": 2, "activeDeadlineSeconds": 60,
                "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}
            }))
            .unwrap(),
        );
        running
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("pipeline".into(), "p".into());
        state.apply_job(running.clone());
        let snap = &state.snapshot("sr")[&0];
        let pod = &snap.pods[0];
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.len(), 3, "{labels:?}");
        assert_eq!(pod.metadata.annotations.as_ref().unwrap().len(), 1);
        assert!(pod.metadata.owner_references.is_none());
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert!(spec.containers.is_empty());
        assert_eq!(
            pod.status
                .as_ref()
                .unwrap()
                .container_statuses
                .as_ref()
                .unwrap()
                .len(),
            1
        );
        // A running Job keeps its template (a retry copies it) and labels.
        let job_spec = snap.job.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!(job_spec.template.spec.as_ref().unwrap().containers.len(), 1);
        assert_eq!(
            snap.job
                .as_ref()
                .unwrap()
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .len(),
            3
        );
        // A succeeded one keeps what judging it reads.
        let mut done = running;
        done.status = job("j", "sr", 0, true).status;
        done.metadata.annotations = Some(
            [
                (
                    crate::labels::FAILURE_ANNOTATION.to_owned(),
                    "{}".to_owned(),
                ),
                ("other".to_owned(), "x".to_owned()),
            ]
            .into(),
        );
        state.apply_job(done);
        let snap = &state.snapshot("sr")[&0];
        let job = snap.job.as_ref().unwrap();
        assert!(is_finished(job));
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(
            (spec.completions, spec.active_deadline_seconds),
            (Some(2), Some(60))
        );
        assert!(spec.template.spec.is_none());
        assert_eq!(job.metadata.labels.as_ref().unwrap().len(), 2);
        let annotations = job.metadata.annotations.as_ref().unwrap();
        assert!(
            annotations.contains_key(crate::labels::FAILURE_ANNOTATION) && annotations.len() == 1
        );
    }
}
