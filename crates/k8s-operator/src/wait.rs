//! Waiting for a step and reporting its status, from the shared watch.
//!
//! A waiter reads the latest attempt of its step run from the namespace's state, judges
//! it ([`crate::outcome::evaluate`]) and sleeps until the next change of that step run
//! or the next deadline. When an attempt fails it gathers the evidence once (the last
//! log lines and the pods' warning events), deletes the Job if stepstack itself decided
//! the failure (a deadline or a fail-fast waiting reason), and either starts the next
//! attempt (retry policy or infrastructure budget, with backoff and jitter) or returns
//! the failure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use stepstack_core::{
    Error, ErrorKind, FailureReason, Result, StepFailure, StepHandle, StepOutcome, StepStatus,
    StepTimings,
};
use stepstack_settings::MAIN_CONTAINER;

use crate::api::{Api, Call, CallPolicy, encode};
use crate::deadlines::sleep_until;
use crate::handle::KubernetesHandle;
use crate::jobs::{attach, create_job, job_path};
use crate::labels::ATTEMPT_LABEL;
use crate::labels::FAILURE_ANNOTATION;
use crate::outcome::{AttemptSnapshot, Failure, Verdict, evaluate};
use crate::retry::job::{retry_counts, retry_job, secret_of};
use crate::retry::{RetryCounts, RetryDecision};
use crate::state::Inner;
use crate::watch::NamespaceWatch;

/// How long a waiter lets the watch deliver a Job this operator created before reading
/// it directly (a safety net: the watch normally delivers it in milliseconds).
const OWN_JOB_GRACE: Duration = Duration::from_secs(60);
/// The same for a Job another process created (reattach): the watch has listed the
/// namespace already, so a Job it does not show is probably gone; read it soon.
const OTHER_JOB_GRACE: Duration = Duration::from_millis(200);

struct Waiter<'a> {
    inner: &'a Arc<Inner>,
    handle: &'a StepHandle,
    data: KubernetesHandle,
    api: &'a Api,
    calls: CallPolicy,
    watch: Arc<NamespaceWatch>,
}

impl<'a> Waiter<'a> {
    async fn new(inner: &'a Arc<Inner>, handle: &'a StepHandle) -> Result<Self> {
        let data = KubernetesHandle::from_handle(handle)?;
        let api = inner.api_for(&data).await?;
        let calls = data.policy.calls();
        let watch = inner
            .watch(api, &data.namespace, calls)
            .await
            .map_err(|e| e.with_context("job", data.job_name.clone()))?;
        Ok(Waiter {
            inner,
            handle,
            data,
            api,
            calls,
            watch,
        })
    }

    fn context(&self, err: Error) -> Error {
        err.with_context("namespace", self.data.namespace.clone())
            .with_context("job", self.data.job_name.clone())
            .with_context("step", self.handle.step_name.clone())
    }

    /// The latest attempt the watch knows (at least the handle's).
    fn latest(&self) -> (u32, AttemptSnapshot) {
        let attempts: BTreeMap<u32, AttemptSnapshot> =
            self.watch.snapshot(&self.data.step_run_label);
        attempts
            .into_iter()
            .rfind(|(n, a)| *n >= self.data.attempt && a.job.is_some())
            .unwrap_or((self.data.attempt, AttemptSnapshot::default()))
    }

    /// Reads the Job of `attempt` directly; `None` when it does not exist.
    async fn read_job(&self, attempt: u32) -> Result<Option<Job>> {
        let name = self.data.job_name_of_attempt(self.handle, attempt);
        let call = Call::get(
            format!("get Job {}/{name}", self.data.namespace),
            job_path(&self.data.namespace, &name),
        );
        let since = self.watch.read_mark();
        match self.api.json::<Job>(&call, self.calls).await {
            Ok(job) => {
                self.watch.insert_job(job.clone(), since);
                Ok(Some(job))
            }
            Err(err) if err.code() == Some(404) => Ok(None),
            Err(err) => Err(self.context(err.into_core())),
        }
    }

    /// Where `snapshot` is now; any failure of a step this operator cancelled is the
    /// cancellation (the pods' watch may show the killed container first).
    fn judge(&self, snapshot: &AttemptSnapshot) -> Verdict {
        let verdict = evaluate(snapshot, &self.data.policy.deadlines, Timestamp::now());
        match verdict {
            Verdict::Failed(failure)
                if failure.reason != FailureReason::Cancelled
                    && self
                        .inner
                        .cancelled
                        .lock()
                        .contains(&self.data.step_run_label) =>
            {
                Verdict::Failed(Failure {
                    reason: FailureReason::Cancelled,
                    message: "the step was cancelled and its Job deleted".into(),
                    decided_here: false,
                    no_pod: false,
                    ..failure
                })
            }
            other => other,
        }
    }

    /// Reads the pods of `attempt` directly into the state (when the watch lags).
    async fn list_pods(&self, attempt: u32) {
        #[derive(serde::Deserialize)]
        struct PodList {
            items: Vec<k8s_openapi::api::core::v1::Pod>,
        }
        let selector = format!(
            "{}={},{ATTEMPT_LABEL}={attempt}",
            crate::labels::STEP_RUN_LABEL,
            self.data.step_run_label
        );
        let call = Call::get(
            format!(
                "list the pods of step run {} in {}",
                self.data.step_run_label, self.data.namespace
            ),
            format!(
                "/api/v1/namespaces/{}/pods?labelSelector={}",
                self.data.namespace,
                encode(&selector)
            ),
        );
        let since = self.watch.read_mark();
        match self.api.json::<PodList>(&call, self.calls).await {
            Ok(list) => {
                for pod in list.items {
                    self.watch.insert_pod(pod, since);
                }
            }
            Err(err) => {
                tracing::debug!(error = %stepstack_core::error_chain(&err), "could not list the step's pods")
            }
        }
    }

    fn gone_error(&self) -> Error {
        self.context(Error::new(
            ErrorKind::NotFound,
            format!(
                "Job `{}` does not exist in namespace `{}`: it was deleted (cancelled, or removed by ttl_seconds_after_finished) before this process saw how it ended",
                self.data.job_name, self.data.namespace
            ),
        ))
    }
}

/// Waits until the step of `handle` has finished, retrying failed attempts.
pub(crate) async fn wait(inner: &Arc<Inner>, handle: &StepHandle) -> Result<StepOutcome> {
    let w = Box::pin(Waiter::new(inner, handle)).await?;
    let mut sub = w.watch.subscribe(&w.data.step_run_label);
    let capture = Box::pin(crate::logs::capture(inner, handle))
        .await
        .ok()
        .flatten();
    let outcome = wait_loop(&w, &mut sub).await;
    if let Some(capture) = capture {
        // The kept log gets every line: let the capture read the end of the log for as
        // long as it makes progress (it is marked incomplete if it cannot).
        Box::pin(capture.finish()).await;
    }
    if let Ok(outcome) = &outcome {
        inner.record_outcome(handle, outcome);
    }
    outcome
}

/// The failure paths (evidence, retries, direct reads) are boxed: they are rare, and a
/// thousand steps waiting at once should not each carry their state machines.
async fn wait_loop(w: &Waiter<'_>, sub: &mut crate::watch::Subscription) -> Result<StepOutcome> {
    let mut read_directly = false;
    let mut no_pod_checks = 0u32;
    let mut listed_pods: Option<u32> = None;
    loop {
        let (attempt, snapshot) = w.latest();
        if snapshot.job.is_none() {
            if read_directly {
                if let Some(outcome) = w.inner.recorded_outcome(w.handle) {
                    return Ok(outcome);
                }
                return Err(w.gone_error());
            }
            let name = w.data.job_name_of_attempt(w.handle, attempt);
            let grace = if w.inner.submitted.lock().contains(&name) {
                OWN_JOB_GRACE
            } else {
                OTHER_JOB_GRACE
            };
            tokio::select! {
                _ = sub.changed() => continue,
                _ = tokio::time::sleep(grace) => {}
            }
            read_directly = true;
            if Box::pin(w.read_job(attempt)).await?.is_none() {
                if let Some(outcome) = w.inner.recorded_outcome(w.handle) {
                    return Ok(outcome);
                }
                return Err(w.gone_error());
            }
            continue;
        }
        match w.judge(&snapshot) {
            Verdict::Succeeded => {
                tracing::info!(namespace = %w.data.namespace, step = %w.handle.step_name, attempts = attempt + 1, "step succeeded");
                return Ok(StepOutcome::Succeeded {
                    attempts: attempt + 1,
                });
            }
            Verdict::Waiting { wake_at, .. } => {
                tokio::select! {
                    _ = sub.changed() => {}
                    _ = sleep_until(wake_at) => {}
                }
            }
            Verdict::Failed(failure) if failure.no_pod => {
                let Some(job) = snapshot.job.clone() else {
                    continue;
                };
                let job_name = job.metadata.name.clone().unwrap_or_default();
                let events = Box::pin(warning_events(
                    w.api,
                    &w.data.namespace,
                    "Job",
                    &job_name,
                    w.calls,
                ))
                .await;
                if let Some(create) = events.iter().find(|e| e.starts_with("FailedCreate")) {
                    let failure = StepFailure::new(
                        FailureReason::CreateFailed {
                            api_reason: "FailedCreate".into(),
                        },
                        format!("the job controller could not create the step's pod: {create}"),
                    )
                    .with_warning_events(events.clone())
                    .with_attempts(attempt + 1);
                    if let Err(err) = Box::pin(crate::jobs::delete_job(
                        w.api,
                        &w.data.namespace,
                        &job_name,
                        w.calls,
                    ))
                    .await
                    {
                        tracing::warn!(job = %job_name, error = %stepstack_core::error_chain(&err), "could not delete the Job");
                    }
                    return Ok(StepOutcome::Failed(failure));
                }
                // No pod yet and no reason why: keep waiting, checking the events again
                // later (2 s, 4 s, … up to a minute).
                let delay =
                    Duration::from_secs(2u64.saturating_pow(no_pod_checks.min(5) + 1).min(60));
                no_pod_checks = no_pod_checks.saturating_add(1);
                tokio::select! {
                    _ = sub.changed() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Verdict::Failed(failure)
                if failure.reason == FailureReason::Unknown
                    && failure.pod.is_none()
                    && listed_pods != Some(attempt) =>
            {
                // The Job failed but the pods' watch has not shown why yet: read the
                // attempt's pods once directly.
                listed_pods = Some(attempt);
                Box::pin(w.list_pods(attempt)).await;
            }
            Verdict::Failed(failure) => {
                let Some(job) = snapshot.job.clone() else {
                    continue;
                };
                let concluded = Box::pin(conclude(w, &job, failure)).await;
                let used = retry_counts(&job);
                match w.data.policy.retry.decide(&concluded.reason, used) {
                    RetryDecision::Retry { counts, delay } => {
                        tracing::warn!(
                            namespace = %w.data.namespace,
                            step = %w.handle.step_name,
                            attempt = attempt + 1,
                            reason = %concluded.reason,
                            delay_ms = delay.as_millis() as u64,
                            "attempt failed; retrying"
                        );
                        tokio::time::sleep(delay).await;
                        Box::pin(next_attempt(w, &job, attempt + 1, counts)).await?;
                    }
                    RetryDecision::GiveUp => {
                        tracing::info!(namespace = %w.data.namespace, step = %w.handle.step_name, reason = %concluded.reason, "step failed");
                        return Ok(StepOutcome::Failed(concluded.with_attempts(attempt + 1)));
                    }
                }
            }
        }
    }
}

/// Where the step's time went, from the watch's view of its Jobs and pods (a pod deleted
/// right away, e.g. by `ttl_seconds_after_finished: 0`, takes its phases with it).
pub(crate) async fn timings(
    inner: &Arc<Inner>,
    handle: &StepHandle,
) -> Result<Option<StepTimings>> {
    let w = Waiter::new(inner, handle).await?;
    let attempts = w.watch.snapshot(&w.data.step_run_label);
    Ok(crate::timings::of_attempts(&attempts, Timestamp::now()))
}

/// Where the step of `handle` is now.
pub(crate) async fn status(inner: &Arc<Inner>, handle: &StepHandle) -> Result<StepStatus> {
    let w = Waiter::new(inner, handle).await?;
    let (mut attempt, mut snapshot) = w.latest();
    if snapshot.job.is_none() {
        match w.read_job(attempt).await? {
            Some(job) => {
                attempt = w.data.attempt;
                snapshot = AttemptSnapshot {
                    job: Some(Arc::new(job)),
                    ..Default::default()
                };
            }
            None => {
                return match inner.recorded_outcome(handle) {
                    Some(StepOutcome::Failed(failure)) => Ok(StepStatus::Failed(failure)),
                    Some(_) => Ok(StepStatus::Succeeded),
                    None => Err(w.gone_error()),
                };
            }
        }
    }
    Ok(match w.judge(&snapshot) {
        Verdict::Waiting { status, .. } => status,
        Verdict::Succeeded => StepStatus::Succeeded,
        Verdict::Failed(failure) if failure.no_pod => StepStatus::Pending {
            message: Some("waiting for the Job's pod to be created".into()),
        },
        Verdict::Failed(failure) => {
            let used = snapshot
                .job
                .as_deref()
                .map(retry_counts)
                .unwrap_or_default();
            match w.data.policy.retry.decide(&failure.reason, used) {
                RetryDecision::Retry { .. } => StepStatus::Pending {
                    message: Some(format!(
                        "attempt {} failed ({}): {}; the next attempt starts while the step is waited for",
                        attempt + 1,
                        failure.reason,
                        failure.message
                    )),
                },
                RetryDecision::GiveUp => StepStatus::Failed(
                    StepFailure::new(failure.reason, failure.message).with_attempts(attempt + 1),
                ),
            }
        }
    })
}

/// Turns a failure into the user's report: the evidence, and the Job deleted when
/// stepstack decided the failure while the Job was still alive.
async fn conclude(w: &Waiter<'_>, job: &Job, failure: Failure) -> StepFailure {
    let namespace = &w.data.namespace;
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let tail = w.data.policy.tail_lines_on_failure;
    let mut lines = Vec::new();
    let events;
    match &failure.pod {
        Some(pod) => {
            if tail > 0 {
                // After a container restart, the crashed instance's output comes first.
                let restarted = w
                    .watch
                    .snapshot(&w.data.step_run_label)
                    .into_values()
                    .flat_map(|a| a.pods)
                    .find(|p| p.metadata.name.as_deref() == Some(pod.as_str()))
                    .and_then(|p| crate::outcome::main_status(&p).map(|c| c.restart_count > 0))
                    .unwrap_or(false);
                if restarted {
                    lines = tail_lines(w.api, namespace, pod, tail, true, w.calls).await;
                }
                lines.extend(tail_lines(w.api, namespace, pod, tail, false, w.calls).await);
            }
            events = warning_events(w.api, namespace, "Pod", pod, w.calls).await;
        }
        None => {
            events = warning_events(w.api, namespace, "Job", &job_name, w.calls).await;
        }
    }
    if failure.decided_here && job.metadata.deletion_timestamp.is_none() {
        let recorded = Failure {
            decided_here: false,
            ..failure.clone()
        };
        let patch = serde_json::json!({"metadata": {"annotations": {
            FAILURE_ANNOTATION: serde_json::to_string(&recorded).unwrap_or_default()
        }}});
        let call = Call::merge_patch(
            format!("annotate Job {namespace}/{job_name}"),
            job_path(namespace, &job_name),
            &patch,
        );
        if let Err(err) = w.api.bytes(&call, w.calls).await {
            tracing::debug!(error = %stepstack_core::error_chain(&err), "could not record the failure on the Job");
        }
        if let Err(err) = crate::jobs::delete_job(w.api, namespace, &job_name, w.calls).await {
            tracing::warn!(namespace = %namespace, job = %job_name, error = %stepstack_core::error_chain(&err), "could not delete the failed Job");
        }
    }
    StepFailure::new(failure.reason, failure.message)
        .with_last_log_lines(lines)
        .with_warning_events(events)
}

/// The last `n` lines of the `main` container of `pod` (empty if they cannot be read).
async fn tail_lines(
    api: &Api,
    namespace: &str,
    pod: &str,
    n: u32,
    previous: bool,
    calls: CallPolicy,
) -> Vec<String> {
    let previous = if previous { "&previous=true" } else { "" };
    let call = Call::get(
        format!("read the log of pod {namespace}/{pod}"),
        format!(
            "/api/v1/namespaces/{namespace}/pods/{pod}/log?container={MAIN_CONTAINER}&tailLines={n}{previous}"
        ),
    );
    match api.bytes(&call, calls).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect(),
        Err(err) => {
            tracing::debug!(pod, error = %stepstack_core::error_chain(&err), "could not read the last log lines");
            Vec::new()
        }
    }
}

/// The warning events of one object, as `Reason: message`, oldest first.
async fn warning_events(
    api: &Api,
    namespace: &str,
    kind: &str,
    name: &str,
    calls: CallPolicy,
) -> Vec<String> {
    let selector = format!("involvedObject.kind={kind},involvedObject.name={name}");
    let call = Call::get(
        format!("list the events of {kind} {namespace}/{name}"),
        format!(
            "/api/v1/namespaces/{namespace}/events?fieldSelector={}",
            encode(&selector)
        ),
    );
    #[derive(serde::Deserialize)]
    struct EventList {
        items: Vec<Event>,
    }
    match api.json::<EventList>(&call, calls).await {
        Ok(list) => {
            let mut items: Vec<Event> = list
                .items
                .into_iter()
                .filter(|e| e.type_.as_deref() == Some("Warning"))
                .filter(|e| e.involved_object.name.as_deref() == Some(name))
                .collect();
            items.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
            items
                .into_iter()
                .map(|e| {
                    let count = e
                        .count
                        .filter(|c| *c > 1)
                        .map(|c| format!(" (x{c})"))
                        .unwrap_or_default();
                    format!(
                        "{}: {}{count}",
                        e.reason.unwrap_or_default(),
                        e.message.unwrap_or_default().trim()
                    )
                })
                .collect()
        }
        Err(err) => {
            tracing::debug!(error = %stepstack_core::error_chain(&err), "could not list events");
            Vec::new()
        }
    }
}

/// Creates attempt `attempt` as a copy of the previous attempt's Job.
async fn next_attempt(
    w: &Waiter<'_>,
    previous: &Job,
    attempt: u32,
    counts: RetryCounts,
) -> Result<()> {
    let job = retry_job(
        previous,
        &w.data.job_name_of_attempt(w.handle, attempt),
        attempt,
        counts,
    );
    let secret = secret_of(&job);
    w.inner
        .submitted
        .lock()
        .insert(job.metadata.name.clone().unwrap_or_default());
    let since = w.watch.read_mark();
    let created = create_job(w.api, &job, w.calls)
        .await
        .map_err(|e| w.context(e.error))?;
    attach(w.api, &created, secret.as_deref(), w.calls)
        .await
        .map_err(|e| w.context(e.error))?;
    w.watch.insert_job(created, since);
    Ok(())
}

#[cfg(test)]
mod size_probe {
    /// A thousand steps wait at once: the waiting state machine must stay small (the
    /// failure paths are boxed).
    #[test]
    fn a_waiting_step_is_small() {
        let op = crate::KubernetesStepOperator::new(
            Default::default(),
            stepstack_core::StepOperatorContext::new("k8s"),
        );
        let launch = stepstack_core::StepLaunch::new("p", "s", "img", ["true"]);
        let handle = stepstack_core::StepHandle::new("kubernetes", &launch, serde_json::json!({}));
        let waiting = super::wait(&op.inner, &handle);
        assert!(
            std::mem::size_of_val(&waiting) < 3 * 1024,
            "{}",
            std::mem::size_of_val(&waiting)
        );
    }
}
