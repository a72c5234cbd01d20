//! Step logs: the `main` container of every pod of the step, with timestamps.
//!
//! A follower per pod streams `…/log?container=main&timestamps=true&follow=true`. When
//! the stream drops before the container has ended, it reconnects with `sinceTime` set
//! to the last timestamp it saw and skips the lines it already delivered (by timestamp,
//! and by position among lines with the same timestamp), so no line is lost or
//! repeated. Every line is also appended (once, whoever streams it) to a JSON-lines file
//! per step run under the operator's state directory, so the logs outlive the pod.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
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
use crate::operator::Inner;
use crate::outcome::main_status;
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

/// A step's kept log, read from its file without a cluster.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct KeptLog {
    /// Every kept line, once, in the order it was kept.
    pub lines: Vec<LogLine>,
    /// Why lines are missing, when the capture could not read every line.
    pub incomplete: Option<String>,
}

/// Reads the kept log file of a step (`KubernetesHandle::log_file`): each line once
/// (a file two processes wrote without the lock may repeat lines), and whether the
/// capture could not read every line. A missing file is an empty log.
pub fn read_kept_log(path: &Path) -> KeptLog {
    let (lines, incomplete) = read_kept(path);
    KeptLog {
        lines: lines.into_iter().map(|s| s.line).collect(),
        incomplete,
    }
}

/// The record a kept log file ends with when its capture could not read every line.
#[derive(serde::Serialize, serde::Deserialize)]
struct IncompleteRecord {
    incomplete: String,
}

/// The log file of a step run, if logs are kept.
pub(crate) fn log_file(state_dir: Option<&Path>, step_run_id: &str, keep: bool) -> Option<PathBuf> {
    let dir = state_dir.filter(|_| keep)?;
    let safe: String = step_run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(dir.join("logs").join(format!("{safe}.jsonl")))
}

/// Position of a line within its pod's log: its timestamp and its ordinal among the lines
/// with that timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Position {
    ts: Option<Timestamp>,
    ordinal: u32,
}

impl Position {
    /// Whether a line at `next` comes after `self`.
    fn is_before(&self, next: &Position) -> bool {
        match (self.ts, next.ts) {
            (Some(a), Some(b)) => a < b || (a == b && self.ordinal < next.ordinal),
            _ => true,
        }
    }
}

/// Writes each line of a step run to its file exactly once, whichever stream saw it,
/// in this process or another (`step run` and `step attach` follow the same step).
///
/// A write takes an exclusive lock on the file (`flock`), first reads what other
/// processes appended since this one last looked, and appends only the lines after the
/// last one the file holds for that pod. Replaying the file also skips repeated
/// positions, so a file written before this rule (or by a process without locks)
/// still reads once.
#[derive(Debug, Default)]
pub(crate) struct LogFiles {
    files: Mutex<HashMap<PathBuf, Arc<Mutex<FileState>>>>,
}

#[derive(Debug, Default)]
struct FileState {
    /// Last written position per pod index (`u32::MAX` for single-pod steps).
    last: HashMap<u32, Position>,
    /// How many bytes of the file `last` accounts for (whole lines).
    len: u64,
    broken: bool,
}

impl FileState {
    /// Takes in the lines of the file after `self.len` (up to its last newline); reads
    /// the whole file again if it shrank (replaced). Returns whether the file ends in
    /// a partial line (a writer died mid-line).
    fn catch_up(&mut self, path: &Path, file_len: u64) -> std::io::Result<bool> {
        use std::io::{Read as _, Seek as _};
        if file_len < self.len {
            *self = FileState::default();
        }
        if file_len == self.len {
            return Ok(false);
        }
        let mut file = std::fs::File::open(path)?;
        file.seek(std::io::SeekFrom::Start(self.len))?;
        let mut tail = Vec::new();
        file.take(file_len - self.len).read_to_end(&mut tail)?;
        let whole = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in tail[..whole].split(|b| *b == b'\n') {
            if let Ok(stored) = serde_json::from_slice::<StoredLine>(line) {
                self.last.insert(
                    stored.line.pod_index.unwrap_or(u32::MAX),
                    Position {
                        ts: stored.line.timestamp,
                        ordinal: stored.ordinal,
                    },
                );
            }
        }
        self.len += whole as u64;
        Ok(whole < tail.len())
    }
}

impl LogFiles {
    fn state(&self, path: &Path) -> Arc<Mutex<FileState>> {
        self.files
            .lock()
            .entry(path.to_owned())
            .or_default()
            .clone()
    }

    /// Records in the file that its capture could not read every line (why, for the
    /// readers of the file).
    pub(crate) fn mark_incomplete(&self, path: &Path, why: &str) {
        let state = self.state(path);
        let mut state = state.lock();
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                stepstack_core::private_fs::create_dir_all(dir)?;
            }
            let mut file = stepstack_core::private_fs::append(path)?;
            file.lock()?;
            let file_len = file.metadata()?.len();
            let partial = state.catch_up(path, file_len)?;
            let mut text = if partial { vec![b'\n'] } else { Vec::new() };
            serde_json::to_writer(
                &mut text,
                &IncompleteRecord {
                    incomplete: why.to_owned(),
                },
            )?;
            text.push(b'\n');
            file.write_all(&text)?;
            state.len = file_len + text.len() as u64;
            Ok(())
        })();
        if let Err(err) = result {
            tracing::warn!(file = %path.display(), error = %err, "cannot mark the step's log file incomplete");
        }
    }

    /// Appends the lines of one pod (all with the same pod index) that come after the
    /// last line the file holds for that pod, in one write.
    fn write(&self, path: &Path, lines: &[(LogLine, Position)]) {
        let Some((first, _)) = lines.first() else {
            return;
        };
        let key = first.pod_index.unwrap_or(u32::MAX);
        let state = self.state(path);
        let mut state = state.lock();
        if state.broken {
            return;
        }
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                stepstack_core::private_fs::create_dir_all(dir)?;
            }
            let mut file = stepstack_core::private_fs::append(path)?;
            // One writer at a time across processes; the lock goes with `file`.
            file.lock()?;
            let file_len = file.metadata()?.len();
            let partial = state.catch_up(path, file_len)?;
            let last = state.last.get(&key).copied();
            let mut text = Vec::new();
            if partial {
                // End the dead writer's partial line, so ours start on a line of their own.
                text.push(b'\n');
            }
            let mut written = None;
            // The lines of one write share their timestamp: render it once.
            let mut rendered: Option<(Timestamp, Vec<u8>)> = None;
            for (line, position) in lines {
                if last.is_some_and(|last| !last.is_before(position))
                    || written.is_some_and(|w: Position| !w.is_before(position))
                {
                    continue;
                }
                encode_line(&mut text, line, position.ordinal, &mut rendered)
                    .map_err(std::io::Error::other)?;
                written = Some(*position);
            }
            let Some(written) = written else {
                return Ok(());
            };
            file.write_all(&text)?;
            state.last.insert(key, written);
            state.len = file_len + text.len() as u64;
            Ok(())
        })();
        if let Err(err) = result {
            tracing::warn!(file = %path.display(), error = %err, "cannot write the step's log file; logs are not kept");
            state.broken = true;
        }
    }
}

/// Appends one line of the log file: the [`LogLine`] fields (as `LogLine` serializes
/// them) and the line's ordinal among those with its timestamp, then a newline.
/// `rendered` caches the JSON of the last timestamp.
fn encode_line(
    out: &mut Vec<u8>,
    line: &LogLine,
    ordinal: u32,
    rendered: &mut Option<(Timestamp, Vec<u8>)>,
) -> serde_json::Result<()> {
    out.push(b'{');
    if let Some(ts) = line.timestamp {
        let json = match rendered {
            Some((at, json)) if *at == ts => json,
            _ => &mut rendered.insert((ts, serde_json::to_vec(&ts)?)).1,
        };
        out.extend_from_slice(b"\"timestamp\":");
        out.extend_from_slice(json);
        out.push(b',');
    }
    if let Some(index) = line.pod_index {
        out.extend_from_slice(format!("\"pod_index\":{index},").as_bytes());
    }
    out.extend_from_slice(b"\"text\":");
    serde_json::to_writer(&mut *out, &line.text)?;
    out.extend_from_slice(format!(",\"ordinal\":{ordinal}}}\n").as_bytes());
    Ok(())
}

#[derive(serde::Deserialize)]
struct StoredLine {
    #[serde(flatten)]
    line: LogLine,
    #[serde(default)]
    ordinal: u32,
}

/// The lines of a kept log file, each position once (a file written by two processes
/// without the lock may repeat lines; lines without a timestamp cannot be told apart
/// and are all kept).
#[cfg(test)]
fn read_stored(path: &Path) -> Vec<StoredLine> {
    read_kept(path).0
}

/// The lines of a kept log file (as [`read_stored`]) and, if its capture was cut off,
/// why.
fn read_kept(path: &Path) -> (Vec<StoredLine>, Option<String>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (Vec::new(), None);
    };
    let mut seen = std::collections::HashSet::new();
    let mut incomplete = None;
    let lines = text
        .lines()
        .filter_map(|l| match serde_json::from_str::<StoredLine>(l) {
            Ok(stored) => Some(stored),
            Err(_) => {
                if let Ok(record) = serde_json::from_str::<IncompleteRecord>(l) {
                    incomplete = Some(record.incomplete);
                }
                None
            }
        })
        .filter(|s| {
            s.line.timestamp.is_none()
                || seen.insert((s.line.pod_index, s.line.timestamp, s.ordinal))
        })
        .collect();
    (lines, incomplete)
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
            tracing::debug!(error = %err, "could not list the step's pods");
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
                tracing::debug!(pod, error = %err, "log stream failed; retrying");
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
                tracing::debug!(error = %err, "log stream broke off");
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

    #[test]
    fn positions_order_by_timestamp_then_ordinal() {
        let t1: Timestamp = "2026-01-01T00:00:01Z".parse().unwrap();
        let t2: Timestamp = "2026-01-01T00:00:02Z".parse().unwrap();
        let a = Position {
            ts: Some(t1),
            ordinal: 1,
        };
        let b = Position {
            ts: Some(t1),
            ordinal: 2,
        };
        let c = Position {
            ts: Some(t2),
            ordinal: 1,
        };
        assert!(a.is_before(&b) && b.is_before(&c) && a.is_before(&c));
        assert!(!b.is_before(&a) && !a.is_before(&a));
    }

    /// Issue 15, item 2: two processes (`step run` and `step attach`) follow the same
    /// step and both write the kept file. Over many generated logs, chunkings and
    /// interleavings, the file holds every line exactly once, in order per pod.
    mod two_writers {
        use super::*;
        use proptest::prelude::*;

        /// One network read of one writer: (writer, lines).
        type Chunk<'a> = (usize, &'a [(LogLine, Position)]);

        /// The lines of one pod: (second, text), seconds non-decreasing.
        fn pod_lines() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(0u8..3, 1..25)
        }

        fn positioned(steps: &[u8], pod: Option<u32>) -> Vec<(LogLine, Position)> {
            let mut second = 0i64;
            let mut previous: Option<Position> = None;
            steps
                .iter()
                .enumerate()
                .map(|(i, step)| {
                    second += i64::from(*step);
                    let ts = Timestamp::from_second(1_700_000_000 + second).unwrap();
                    let ordinal = match previous {
                        Some(p) if p.ts == Some(ts) => p.ordinal + 1,
                        _ => 1,
                    };
                    let position = Position {
                        ts: Some(ts),
                        ordinal,
                    };
                    previous = Some(position);
                    let mut line = LogLine::new(Some(ts), format!("{pod:?}-{i}"));
                    if let Some(index) = pod {
                        line = line.with_pod_index(index);
                    }
                    (line, position)
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
            #[test]
            fn every_line_is_kept_once_whoever_writes_it(
                pods in proptest::collection::vec(pod_lines(), 1..3),
                cuts in proptest::collection::vec(1usize..6, 64),
                order in proptest::collection::vec(0usize..64, 128),
                late_start in 0usize..20,
            ) {
                let dir = tempfile::tempdir().unwrap();
                let path = log_file(Some(dir.path()), "sr", true).unwrap();
                let multi = pods.len() > 1;
                let lines: Vec<Vec<(LogLine, Position)>> = pods
                    .iter()
                    .enumerate()
                    .map(|(i, p)| positioned(p, multi.then_some(i as u32)))
                    .collect();
                // Each writer (process) delivers every pod's log from its start, in
                // chunks (network reads); the chunks of all writers interleave.
                let mut chunks: Vec<Vec<Chunk<'_>>> = Vec::new();
                let mut cut = cuts.iter().cycle();
                for writer in 0..2 {
                    let mut queue = Vec::new();
                    for pod in &lines {
                        let mut rest = pod.as_slice();
                        while !rest.is_empty() {
                            let n = (*cut.next().unwrap()).min(rest.len());
                            queue.push((writer, &rest[..n]));
                            rest = &rest[n..];
                        }
                    }
                    chunks.push(queue);
                }
                let writers = [LogFiles::default(), LogFiles::default()];
                let mut next = [0usize; 2];
                let mut picks = order.iter().cycle();
                let mut steps = 0;
                while next[0] < chunks[0].len() || next[1] < chunks[1].len() {
                    // The second process starts late: only the first writes at first.
                    let writer = if steps < late_start { 0 } else { picks.next().unwrap() % 2 };
                    steps += 1;
                    let writer = if next[writer] < chunks[writer].len() { writer } else { 1 - writer };
                    let (w, chunk) = chunks[writer][next[writer]];
                    writers[w].write(&path, chunk);
                    next[writer] += 1;
                }
                let raw: Vec<StoredLine> = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                for (i, pod) in lines.iter().enumerate() {
                    let index = multi.then_some(i as u32);
                    let expected: Vec<&str> = pod.iter().map(|(l, _)| l.text.as_str()).collect();
                    let kept: Vec<&str> = raw
                        .iter()
                        .filter(|s| s.line.pod_index == index)
                        .map(|s| s.line.text.as_str())
                        .collect();
                    prop_assert_eq!(kept, expected);
                }
            }
        }

        #[test]
        fn a_file_with_repeated_lines_replays_each_once() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("old.jsonl");
            let lines = positioned(&[0, 1, 1, 0, 1], None);
            let mut text = Vec::new();
            // How a file written by two processes before the lock looked: d1 d2 d3 d3 d4 d4 d5 d5.
            for i in [0, 1, 2, 2, 3, 3, 4, 4] {
                let (line, position) = &lines[i];
                encode_line(&mut text, line, position.ordinal, &mut None).unwrap();
            }
            std::fs::write(&path, text).unwrap();
            let texts: Vec<String> = read_stored(&path)
                .into_iter()
                .map(|s| s.line.text)
                .collect();
            assert_eq!(texts, ["None-0", "None-1", "None-2", "None-3", "None-4"]);
            // A process that writes after them goes on after the last line.
            let files = LogFiles::default();
            files.write(&path, &lines[3..]);
            assert_eq!(read_stored(&path).len(), 5);
            assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 8);
        }
    }

    #[test]
    fn log_files_write_each_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_file(Some(dir.path()), "sr/1", true).unwrap();
        assert!(path.ends_with("logs/sr_1.jsonl"));
        let files = LogFiles::default();
        let t1: Timestamp = "2026-01-01T00:00:01Z".parse().unwrap();
        let l = |text: &str| LogLine::new(Some(t1), text);
        files.write(
            &path,
            &[(
                l("a"),
                Position {
                    ts: Some(t1),
                    ordinal: 1,
                },
            )],
        );
        files.write(
            &path,
            &[(
                l("b"),
                Position {
                    ts: Some(t1),
                    ordinal: 2,
                },
            )],
        );
        // A second stream delivering the same lines writes nothing.
        files.write(
            &path,
            &[(
                l("a"),
                Position {
                    ts: Some(t1),
                    ordinal: 1,
                },
            )],
        );
        files.write(
            &path,
            &[(
                l("b"),
                Position {
                    ts: Some(t1),
                    ordinal: 2,
                },
            )],
        );
        let texts: Vec<String> = read_stored(&path)
            .into_iter()
            .map(|s| s.line.text)
            .collect();
        assert_eq!(texts, ["a", "b"]);
        // Another process resumes from the file.
        let other = LogFiles::default();
        other.write(
            &path,
            &[(
                l("b"),
                Position {
                    ts: Some(t1),
                    ordinal: 2,
                },
            )],
        );
        other.write(
            &path,
            &[(
                l("c"),
                Position {
                    ts: Some(t1),
                    ordinal: 3,
                },
            )],
        );
        let texts: Vec<String> = read_stored(&path)
            .into_iter()
            .map(|s| s.line.text)
            .collect();
        assert_eq!(texts, ["a", "b", "c"]);
        // One write of a batch: only the lines after the last written one.
        let at = |ordinal| Position {
            ts: Some(t1),
            ordinal,
        };
        other.write(
            &path,
            &[
                (l("b"), at(2)),
                (l("c"), at(3)),
                (l("d"), at(4)),
                (l("e"), at(5)),
            ],
        );
        let stored = read_stored(&path);
        let texts: Vec<&str> = stored.iter().map(|s| s.line.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "c", "d", "e"]);
        assert_eq!(stored[4].ordinal, 5);
        assert!(log_file(Some(dir.path()), "x", false).is_none());
    }
}
