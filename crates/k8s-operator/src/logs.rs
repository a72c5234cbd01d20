//! Step logs: the `main` container of every pod of the step, with timestamps.
//!
//! A follower per pod streams `…/log?container=main&timestamps=true&follow=true`. When
//! the stream drops before the container has ended, it reconnects with `sinceTime` set
//! to the last timestamp it saw and skips the lines it already delivered (by timestamp,
//! and by position among lines with the same timestamp), so no line is lost or
//! repeated. Every line is also appended (once, whoever streams it) to a JSON-lines file
//! per step run under the operator's state directory, so the logs outlive the pod.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use http_body_util::BodyExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use stepstack_core::{Error, ErrorKind, LogLine, LogStream, Result, StepHandle};
use stepstack_settings::MAIN_CONTAINER;
use tokio::sync::mpsc;

use crate::api::{Api, ApiError, Call, CallPolicy, encode};
use crate::handle::KubernetesHandle;
use crate::labels::INDEX_KEY;
use crate::outcome::main_status;
use crate::state::Inner;
use crate::state_dir::kept_log::{Position, read_kept};
use crate::watch::NamespaceWatch;

/// How long a log stream waits for the pods of a finished Job to show up.
const POD_GRACE: Duration = Duration::from_secs(2);

/// The context key of the error that ends a log stream whose lines are not all there.
pub const LOG_STREAM_CONTEXT: &str = "log_stream";
/// Its value.
pub const INCOMPLETE: &str = "incomplete";

/// Whether `err` is the last item of a log stream that could not deliver every line
/// (a pod deleted before its log was read to the end, a kept log whose capture was cut
/// off). The lines before it are real; the message says what is missing. A consumer
/// shows it as a warning rather than as a failure of the step.
pub fn is_incomplete_log(err: &Error) -> bool {
    err.context_value(LOG_STREAM_CONTEXT) == Some(INCOMPLETE)
}

fn incomplete(message: String) -> Error {
    Error::new(ErrorKind::Unavailable, message).with_context(LOG_STREAM_CONTEXT, INCOMPLETE)
}

/// The last timestamp parsed and its text: the lines of one write of the container
/// share their timestamp, so most lines skip parsing it.
type TimestampCache = Option<(Vec<u8>, Timestamp)>;

/// Parses a line of `timestamps=true` output: `2026-01-01T00:00:00.123456789Z text`.
fn parse_line(raw: &[u8], cache: &mut TimestampCache) -> (Option<Timestamp>, String) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let (first, rest) = match raw.iter().position(|b| *b == b' ') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let ts = match cache {
        Some((text, ts)) if text.as_slice() == first => Some(*ts),
        _ => {
            let parsed = std::str::from_utf8(first)
                .ok()
                .and_then(|t| t.parse::<Timestamp>().ok());
            if let Some(ts) = parsed {
                *cache = Some((first.to_vec(), ts));
            }
            parsed
        }
    };
    match (ts, rest) {
        (Some(ts), Some(rest)) => (Some(ts), String::from_utf8_lossy(rest).into_owned()),
        (Some(ts), None) => (Some(ts), String::new()),
        (None, _) => (None, String::from_utf8_lossy(raw).into_owned()),
    }
}

/// Where followers send lines: a batch per network chunk (the stream hands them out one
/// by one), so the channel costs per chunk, not per line.
type Tx = mpsc::Sender<Result<Vec<LogLine>>>;

/// Batches a stream holds before its followers wait for the reader.
const BATCHES_IN_FLIGHT: usize = 8;

/// Lines per message when the kept log file is replayed.
const REPLAY_BATCH: usize = 1024;

/// Everything a follower needs.
struct Ctx {
    api: Api,
    namespace: String,
    calls: CallPolicy,
    watch: Arc<NamespaceWatch>,
    step_run: String,
    file: Option<PathBuf>,
    files: Arc<Inner>,
    multi: bool,
    /// Only lines written after this time.
    after: Option<Timestamp>,
    /// Set by `wait` once the step's outcome is known.
    over: Arc<StepOver>,
}

/// That the step's outcome is known: a capture with nothing left to read (no Job, no
/// pod) may end then, instead of waiting for pods that will never come.
#[derive(Debug, Default)]
struct StepOver {
    flag: std::sync::atomic::AtomicBool,
    /// Stores a wake-up if the capture is not waiting at that moment.
    notify: tokio::sync::Notify,
}

impl StepOver {
    fn set(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_one();
    }

    fn is_set(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The logs of the step of `handle`.
pub(crate) async fn logs(
    inner: &Arc<Inner>,
    handle: &StepHandle,
    follow: bool,
    after: Option<Timestamp>,
) -> Result<LogStream> {
    let (mut rx, _task) = start(inner, handle, follow, after, Arc::default()).await?;
    let mut pending = Vec::new().into_iter();
    Ok(futures::stream::poll_fn(move |cx| {
        loop {
            if let Some(line) = pending.next() {
                return Poll::Ready(Some(Ok(line)));
            }
            match std::task::ready!(rx.poll_recv(cx)) {
                Some(Ok(batch)) => pending = batch.into_iter(),
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => return Poll::Ready(None),
            }
        }
    })
    .boxed())
}

/// How long the end of a step's log capture may go without a new line before `wait`
/// stops it (and marks the kept log incomplete). A capture that keeps reading is never
/// cut off.
const CAPTURE_IDLE: Duration = Duration::from_secs(30);

/// The log capture of a step being waited for.
pub(crate) struct Capture {
    task: tokio::task::JoinHandle<Option<String>>,
    over: Arc<StepOver>,
    /// Batches captured so far.
    progress: tokio::sync::watch::Receiver<u64>,
    inner: Arc<Inner>,
    file: PathBuf,
}

impl Capture {
    /// Lets the capture read the end of the log (as long as it makes progress), and
    /// marks the kept log incomplete if it could not read every line.
    pub(crate) async fn finish(mut self) {
        self.over.set();
        let task = &mut self.task;
        let why = loop {
            tokio::select! {
                ended = &mut *task => break ended.unwrap_or_else(|_| Some("the log capture stopped".into())),
                changed = self.progress.changed() => {
                    if changed.is_err() {
                        // The capture has ended; its result follows.
                        break (&mut *task).await.unwrap_or(None);
                    }
                }
                () = tokio::time::sleep(CAPTURE_IDLE) => {
                    task.abort();
                    break Some(format!("no new line for {CAPTURE_IDLE:?} after the step ended; the capture was stopped"));
                }
            }
        };
        if let Some(why) = why {
            tracing::warn!(file = %self.file.display(), %why, "the kept log of the step is incomplete");
            self.inner.log_files.mark_incomplete(&self.file, &why);
        }
    }
}

/// Follows the logs of the step of `handle` into its log file only (used while
/// waiting, so the logs are kept even if nobody reads them).
pub(crate) async fn capture(inner: &Arc<Inner>, handle: &StepHandle) -> Result<Option<Capture>> {
    let data = KubernetesHandle::from_handle(handle)?;
    let Some(file) = data.log_file.clone() else {
        return Ok(None);
    };
    let over = Arc::new(StepOver::default());
    let (mut rx, task) = start(inner, handle, true, None, over.clone()).await?;
    let (progress_tx, progress) = tokio::sync::watch::channel(0u64);
    let task = tokio::spawn(async move {
        let mut why = None;
        while let Some(batch) = rx.recv().await {
            match batch {
                Ok(_) => progress_tx.send_modify(|n| *n += 1),
                // An incomplete stream, or one that failed: the file lacks lines.
                Err(err) => why = Some(err.to_string()),
            }
        }
        drop(task);
        why
    });
    Ok(Some(Capture {
        task,
        over,
        progress,
        inner: inner.clone(),
        file,
    }))
}

async fn start(
    inner: &Arc<Inner>,
    handle: &StepHandle,
    follow: bool,
    after: Option<Timestamp>,
    over: Arc<StepOver>,
) -> Result<(
    mpsc::Receiver<Result<Vec<LogLine>>>,
    tokio::task::JoinHandle<()>,
)> {
    let data = KubernetesHandle::from_handle(handle)?;
    let api = inner.api_for(&data).await?.clone();
    let calls = data.policy.calls();
    let watch = inner.watch(&api, &data.namespace, calls).await?;
    let ctx = Arc::new(Ctx {
        api,
        namespace: data.namespace.clone(),
        calls,
        watch,
        step_run: data.step_run_label.clone(),
        file: data.log_file.clone(),
        files: inner.clone(),
        multi: data.pod_count > 1,
        after,
        over,
    });
    let (tx, rx) = mpsc::channel(BATCHES_IN_FLIGHT);
    let task = tokio::spawn(produce(ctx, data, follow, tx));
    Ok((rx, task))
}

async fn produce(ctx: Arc<Ctx>, data: KubernetesHandle, follow: bool, tx: Tx) {
    let mut sub = ctx.watch.subscribe(&ctx.step_run);
    let mut started: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    // Signalled by each pod's stream when it ends, so the stream as a whole ends as soon
    // as the last pod's log does (no watch event follows that moment).
    let stream_ended = Arc::new(tokio::sync::Notify::new());
    // Pods whose log could not be read to its end (deleted first): the stream says so
    // at its end instead of ending as if it were complete.
    let cut_off: Arc<Mutex<Vec<String>>> = Arc::default();
    // When the Job was first seen finished: its pods may still be on their way through
    // the pods' watch, so the stream waits a little for them.
    let mut done_since: Option<tokio::time::Instant> = None;
    // When the latest attempt was first seen failed with a retry due.
    let mut retry_since: Option<tokio::time::Instant> = None;
    let mut latest_n: Option<u32> = None;
    let mut listed_after_done = false;
    let mut listed_when_over = false;
    loop {
        let attempts = ctx.watch.snapshot(&ctx.step_run);
        let latest = attempts
            .range(data.attempt..)
            .next_back()
            .map(|(_, a)| a.clone());
        let pods: Vec<Arc<Pod>> = latest.as_ref().map(|a| a.pods.clone()).unwrap_or_default();
        if !follow {
            let mut pods = pods;
            if pods.is_empty() && latest.as_ref().is_some_and(|a| !a.job_deleted) {
                // The pods' watch may lag behind: read the pods directly.
                pods = list_pods(
                    &ctx,
                    data.attempt.max(latest_attempt(&attempts, data.attempt)),
                )
                .await;
            }
            pods.sort_by_key(|p| pod_index(p));
            if pods.is_empty() {
                replay_file(&ctx, &tx).await;
                return;
            }
            for pod in pods {
                let name = pod.metadata.name.clone().unwrap_or_default();
                match follow_pod(&ctx, &name, pod_index(&pod), false, &tx).await {
                    Ok(()) => {}
                    Err(err) if err.kind() == ErrorKind::NotFound => {
                        replay_file(&ctx, &tx).await;
                        return;
                    }
                    // 400: the container has not started, so it has no log yet.
                    Err(err) if err.kind() == ErrorKind::InvalidSettings => {}
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                }
            }
            return;
        }
        for pod in &pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            if started.contains_key(&name)
                || pod.metadata.deletion_timestamp.is_some() && !container_started(pod)
            {
                continue;
            }
            let ctx = ctx.clone();
            let tx = tx.clone();
            let index = pod_index(pod);
            let pod_name = name.clone();
            let ended = stream_ended.clone();
            let cut_off = cut_off.clone();
            started.insert(
                name,
                tokio::spawn(async move {
                    match follow_pod(&ctx, &pod_name, index, true, &tx).await {
                        Ok(()) => {}
                        Err(err) if err.kind() == ErrorKind::NotFound => {
                            cut_off.lock().push(pod_name);
                        }
                        Err(err) => {
                            let _ = tx.send(Err(err)).await;
                        }
                    }
                    ended.notify_one();
                }),
            );
        }
        let finished = latest.as_ref().is_some_and(|a| {
            let job_done = a.job_deleted
                || a.job.as_ref().is_some_and(|j| {
                    j.metadata.deletion_timestamp.is_some()
                        || j.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| {
                                    c.status == "True"
                                        && (c.type_ == "Complete" || c.type_ == "Failed")
                                })
                            })
                });
            let all_pods = a.pods.len() >= data.pod_count as usize;
            (all_pods && (job_done || a.pods.iter().all(|p| pod_terminal(p)))) || {
                if job_done {
                    let since = *done_since.get_or_insert_with(tokio::time::Instant::now);
                    since.elapsed() >= POD_GRACE && listed_after_done
                } else {
                    false
                }
            }
        });
        // The Job is done but its pods have not come through the watch: read them.
        if !finished
            && !listed_after_done
            && done_since.is_some_and(|since| since.elapsed() >= POD_GRACE)
        {
            listed_after_done = true;
            let n = latest_attempt(&attempts, data.attempt);
            list_pods(&ctx, n).await;
            continue;
        }
        let n = attempts
            .range(data.attempt..)
            .next_back()
            .map_or(data.attempt, |(n, _)| *n);
        if latest_n != Some(n) {
            latest_n = Some(n);
            done_since = None;
            retry_since = None;
            listed_after_done = false;
        }
        if finished && started.values().all(|t| t.is_finished()) {
            // A failed attempt that will be retried: follow the next attempt too.
            if let Some(limit) = latest.as_ref().and_then(|a| retry_due(a, &data)) {
                let since = *retry_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() < limit && !tx.is_closed() {
                    tokio::select! {
                        _ = sub.changed() => {}
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = tx.closed() => {}
                    }
                    continue;
                }
            }
            if started.is_empty() && tx.capacity() == tx.max_capacity() {
                replay_file(&ctx, &tx).await;
            }
            let cut_off = std::mem::take(&mut *cut_off.lock());
            if !cut_off.is_empty() {
                let _ = tx
                    .send(Err(incomplete(format!(
                        "the live log of step run {} is incomplete: pod {} was deleted before its log was read to the end{}",
                        ctx.step_run,
                        cut_off.join(", "),
                        if ctx.file.is_some() {
                            "; the kept log may have the rest"
                        } else {
                            ""
                        }
                    ))))
                    .await;
            }
            return;
        }
        if tx.is_closed() {
            for task in started.values() {
                task.abort();
            }
            return;
        }
        if ctx.over.is_set() && started.is_empty() && pods.is_empty() {
            // The step is over and it has no pod to read (its Job was never created,
            // or is gone with its pods): read the pods once directly, in case the
            // watch lags, and end if there are none.
            if !listed_when_over {
                listed_when_over = true;
                list_pods(&ctx, latest_attempt(&attempts, data.attempt)).await;
                continue;
            }
            return;
        }
        tokio::select! {
            () = ctx.over.notify.notified() => {}
            _ = sub.changed() => {}
            _ = stream_ended.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)), if finished || done_since.is_some() => {}
            _ = tx.closed() => {}
        }
    }
}

/// If `attempt` failed and `wait` will start another one, how long to wait for it.
fn retry_due(
    attempt: &crate::outcome::AttemptSnapshot,
    data: &KubernetesHandle,
) -> Option<Duration> {
    let job = attempt.job.as_deref()?;
    let failure = match crate::outcome::evaluate(attempt, &data.policy.deadlines, Timestamp::now())
    {
        crate::outcome::Verdict::Failed(failure) => failure,
        crate::outcome::Verdict::Succeeded => return None,
        // Not judged yet although its pods ended (the Job failed but the pods' watch has
        // not shown why, or the Job is not marked complete yet): wait for the verdict,
        // or the stream could end before a retry it should follow.
        crate::outcome::Verdict::Waiting { .. } => return Some(Duration::from_secs(30)),
    };
    match data
        .policy
        .retry
        .decide(&failure.reason, crate::retry::job::retry_counts(job))
    {
        crate::retry::RetryDecision::Retry { delay, .. } => {
            Some(delay * 2 + Duration::from_secs(30))
        }
        crate::retry::RetryDecision::GiveUp => None,
    }
}

fn latest_attempt(
    attempts: &std::collections::BTreeMap<u32, crate::outcome::AttemptSnapshot>,
    from: u32,
) -> u32 {
    attempts.range(from..).next_back().map_or(from, |(n, _)| *n)
}

/// The pods of `attempt`, read directly from the API.
async fn list_pods(ctx: &Ctx, attempt: u32) -> Vec<Arc<Pod>> {
    #[derive(serde::Deserialize)]
    struct PodList {
        items: Vec<Pod>,
    }
    let selector = format!(
        "{}={},{}={attempt}",
        crate::labels::STEP_RUN_LABEL,
        ctx.step_run,
        crate::labels::ATTEMPT_LABEL
    );
    let call = Call::get(
        format!(
            "list the pods of step run {} in {}",
            ctx.step_run, ctx.namespace
        ),
        format!(
            "/api/v1/namespaces/{}/pods?labelSelector={}",
            ctx.namespace,
            encode(&selector)
        ),
    );
    let since = ctx.watch.read_mark();
    match ctx.api.json::<PodList>(&call, ctx.calls).await {
        Ok(list) => list
            .items
            .into_iter()
            .map(|p| {
                ctx.watch.insert_pod(p.clone(), since);
                Arc::new(p)
            })
            .collect(),
        Err(err) => {
            tracing::debug!(error = %stepstack_core::error_chain(&err), "could not list the step's pods");
            Vec::new()
        }
    }
}

/// Sends the kept log of a step whose pods are gone.
async fn replay_file(ctx: &Ctx, tx: &Tx) {
    let Some(path) = &ctx.file else { return };
    let (lines, cut_off) = read_kept(path);
    let mut lines = lines.into_iter().map(|stored| stored.line).filter(|line| {
        match (ctx.after, line.timestamp) {
            (Some(after), Some(ts)) => ts > after,
            _ => true,
        }
    });
    loop {
        let batch: Vec<LogLine> = lines.by_ref().take(REPLAY_BATCH).collect();
        if batch.is_empty() {
            break;
        }
        if tx.send(Ok(batch)).await.is_err() {
            return;
        }
    }
    if let Some(why) = cut_off {
        let _ = tx
            .send(Err(incomplete(format!(
                "the kept log of step run {} is incomplete: {why}",
                ctx.step_run
            ))))
            .await;
    }
}

fn pod_index(pod: &Pod) -> Option<u32> {
    let meta = &pod.metadata;
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_KEY))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(INDEX_KEY)))
        .and_then(|v| v.parse().ok())
}

fn container_started(pod: &Pod) -> bool {
    main_status(pod)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        || main_status(pod)
            .and_then(|c| c.last_state.as_ref())
            .is_some_and(|s| s.terminated.is_some())
}

fn pod_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
        || main_status(pod)
            .and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.terminated.is_some())
}

/// The pod as the watch last saw it; `None` when it is gone.
fn current_pod(ctx: &Ctx, name: &str) -> Option<Arc<Pod>> {
    ctx.watch
        .snapshot(&ctx.step_run)
        .into_values()
        .flat_map(|a| a.pods)
        .find(|p| p.metadata.name.as_deref() == Some(name))
}

/// Streams the log of one pod, resuming after drops, until its container has ended.
async fn follow_pod(ctx: &Ctx, pod: &str, index: Option<u32>, follow: bool, tx: &Tx) -> Result<()> {
    let index = if ctx.multi { index } else { None };
    // Resuming after a given time: every line at or before it counts as delivered.
    let mut last = Position {
        ts: ctx.after,
        ordinal: if ctx.after.is_some() { u32::MAX } else { 0 },
    };
    let mut sub = ctx.watch.subscribe(&ctx.step_run);
    let mut reconnects = 0u32;
    loop {
        if follow {
            // Wait until the container has started (or the pod is gone).
            loop {
                match current_pod(ctx, pod) {
                    None => return Ok(()),
                    Some(p) if container_started(&p) => break,
                    Some(p) if p.metadata.deletion_timestamp.is_some() || pod_terminal(&p) => {
                        return Ok(());
                    }
                    Some(_) => sub.changed().await,
                }
            }
        }
        let mut query = format!("container={MAIN_CONTAINER}&timestamps=true");
        if follow {
            query.push_str("&follow=true");
        }
        if let Some(ts) = last.ts {
            query.push_str(&format!("&sinceTime={}", encode(&ts.to_string())));
        }
        let call = Call::get(
            format!("read the log of pod {}/{pod}", ctx.namespace),
            format!(
                "/api/v1/namespaces/{}/pods/{pod}/log?{query}",
                ctx.namespace
            ),
        );
        let clean_end = match ctx.api.stream(&call, ctx.calls).await {
            Ok(body) => read_body(ctx, body, index, &mut last, tx).await?,
            Err(err) if err.code() == Some(404) => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("pod {}/{pod} is gone", ctx.namespace),
                ));
            }
            Err(err) if err.code() == Some(400) && follow => {
                // The container is not running yet; wait for the next change.
                tokio::select! {
                    _ = sub.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            Err(err) if err.is_transient() && follow => {
                tracing::debug!(pod, error = %stepstack_core::error_chain(&err), "log stream failed; retrying");
                tokio::time::sleep(crate::api::backoff_delay(reconnects)).await;
                reconnects = reconnects.saturating_add(1);
                continue;
            }
            Err(err) => {
                return Err(
                    ApiError::into_core(err).with_context("namespace", ctx.namespace.clone())
                );
            }
        };
        if !follow || tx.is_closed() {
            return Ok(());
        }
        // The stream ended: finished, or dropped?
        if clean_end {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            loop {
                match current_pod(ctx, pod) {
                    None => return Ok(()),
                    Some(p) if pod_terminal(&p) || p.metadata.deletion_timestamp.is_some() => {
                        return Ok(());
                    }
                    Some(_) => {}
                }
                tokio::select! {
                    _ = sub.changed() => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        tracing::debug!(pod, since = ?last.ts, "log stream dropped; resuming");
        tokio::time::sleep(crate::api::backoff_delay(reconnects.min(3))).await;
        reconnects = reconnects.saturating_add(1);
    }
}

/// Reads one log response; returns whether it ended cleanly (not dropped).
///
/// Lines are handled a network chunk at a time: one write to the log file per chunk,
/// then each line to the stream.
async fn read_body(
    ctx: &Ctx,
    body: kube::client::Body,
    index: Option<u32>,
    last: &mut Position,
    tx: &Tx,
) -> Result<bool> {
    let mut stream = body.into_data_stream();
    let mut buffer = BytesMut::new();
    let mut lines = Lines {
        index,
        current: Position::default(),
        timestamps: None,
        batch: Vec::new(),
    };
    loop {
        match stream.next().await {
            Some(Ok(chunk)) => {
                buffer.extend_from_slice(&chunk);
                let mut start = 0;
                while let Some(n) = buffer[start..].iter().position(|b| *b == b'\n') {
                    lines.push(&buffer[start..start + n], last);
                    start += n + 1;
                }
                buffer.advance(start);
                if !deliver(ctx, &mut lines.batch, tx).await {
                    return Ok(true);
                }
            }
            Some(Err(err)) => {
                tracing::debug!(error = %stepstack_core::error_chain(&err), "log stream broke off");
                // A partial last line is dropped: it is read again after resuming.
                return Ok(false);
            }
            None => {
                if !buffer.is_empty() {
                    lines.push(buffer.chunk(), last);
                    buffer.clear();
                    deliver(ctx, &mut lines.batch, tx).await;
                }
                return Ok(true);
            }
        }
    }
}

/// The lines of one log response, parsed and not delivered yet.
struct Lines {
    index: Option<u32>,
    /// The position of the previous line of this connection (its ordinal counts the
    /// lines with the same timestamp).
    current: Position,
    timestamps: TimestampCache,
    batch: Vec<(LogLine, Position)>,
}

impl Lines {
    /// Adds one raw line unless it was delivered before.
    ///
    /// `last` is the position of the last line delivered by any connection of this
    /// follower. A reconnect with `sinceTime` replays the lines at the resume timestamp,
    /// which compare as not after `last` and are skipped.
    fn push(&mut self, raw: &[u8], last: &mut Position) {
        let (ts, text) = parse_line(raw, &mut self.timestamps);
        let position = match (ts, self.current.ts) {
            (Some(ts), Some(prev)) if ts == prev => Position {
                ts: Some(ts),
                ordinal: self.current.ordinal + 1,
            },
            (ts, _) => Position { ts, ordinal: 1 },
        };
        self.current = position;
        if last.ts.is_some() && !last.is_before(&position) {
            return;
        }
        *last = position;
        let mut line = LogLine::new(ts, text);
        if let Some(i) = self.index {
            line = line.with_pod_index(i);
        }
        self.batch.push((line, position));
    }
}

/// Appends `batch` to the log file and sends it on as one message; false when nobody
/// listens.
async fn deliver(ctx: &Ctx, batch: &mut Vec<(LogLine, Position)>, tx: &Tx) -> bool {
    if batch.is_empty() {
        return true;
    }
    if let Some(file) = &ctx.file {
        ctx.files.log_files.write(file, batch);
    }
    let lines = batch.drain(..).map(|(line, _)| line).collect();
    tx.send(Ok(lines)).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamped_lines() {
        let mut cache = None;
        let (ts, text) = parse_line(b"2026-01-01T00:00:00.123456789Z hello world", &mut cache);
        assert_eq!(ts.unwrap().to_string(), "2026-01-01T00:00:00.123456789Z");
        assert_eq!(text, "hello world");
        // The next line with the same timestamp reuses the parsed one.
        let (again, text) = parse_line(b"2026-01-01T00:00:00.123456789Z  two\r", &mut cache);
        assert_eq!(again, ts);
        assert_eq!(text, " two");
        let (ts, text) = parse_line(b"no timestamp here", &mut cache);
        assert!(ts.is_none());
        assert_eq!(text, "no timestamp here");
        let (ts, text) = parse_line(b"2026-01-01T00:00:00Z", &mut cache);
        assert_eq!(ts.unwrap().to_string(), "2026-01-01T00:00:00Z");
        assert_eq!(text, "");
        let (ts, text) = parse_line(b"2026-01-01T00:00:00Z caf\xc3\xa9 \xff", &mut cache);
        assert!(ts.is_some());
        assert_eq!(text, "caf\u{e9} \u{fffd}");
    }

    #[test]
    fn lines_skip_what_was_delivered_before() {
        let mut last = Position::default();
        let mut lines = Lines {
            index: Some(2),
            current: Position::default(),
            timestamps: None,
            batch: Vec::new(),
        };
        for raw in [
            "2026-01-01T00:00:01Z a",
            "2026-01-01T00:00:01Z b",
            "2026-01-01T00:00:02Z c",
        ] {
            lines.push(raw.as_bytes(), &mut last);
        }
        let texts: Vec<&str> = lines.batch.iter().map(|(l, _)| l.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "c"]);
        assert!(lines.batch.iter().all(|(l, _)| l.pod_index == Some(2)));
        assert_eq!(lines.batch[1].1.ordinal, 2);
        // A reconnect with sinceTime=00:00:01 replays a and b, then brings d.
        let mut again = Lines {
            index: Some(2),
            current: Position::default(),
            timestamps: None,
            batch: Vec::new(),
        };
        for raw in [
            "2026-01-01T00:00:01Z a",
            "2026-01-01T00:00:01Z b",
            "2026-01-01T00:00:02Z c",
            "2026-01-01T00:00:02Z d",
        ] {
            again.push(raw.as_bytes(), &mut last);
        }
        let texts: Vec<&str> = again.batch.iter().map(|(l, _)| l.text.as_str()).collect();
        assert_eq!(texts, ["d"]);
    }
}
