//! Container logs: one file per container instance in the CRI log format
//! (`<RFC3339Nano timestamp> <stdout|stderr> <F|P> <text>` per record), written line by
//! line as the process prints, and read back with the `pods/log` options.
//!
//! Files keep memory bounded whatever the process prints: the writer holds at most one
//! partial line (16 KiB, longer lines are split into `P` records as containerd does) and
//! readers stream the file in chunks.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncSeekExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::error::{ApiError, StatusCause};

/// Longest record; longer lines are split into partial (`P`) records.
const MAX_RECORD: usize = 16 * 1024;

/// How far a log file has been written, for followers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LogProgress {
    /// Bytes written so far.
    pub(crate) len: u64,
    /// The container instance has exited and its pipes are drained.
    pub(crate) closed: bool,
}

/// The log file of one container instance. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<Option<std::fs::File>>>,
    progress: Arc<watch::Sender<LogProgress>>,
}

impl LogFile {
    /// Creates (truncates) the log file at `path`.
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(Some(file))),
            progress: Arc::new(watch::channel(LogProgress::default()).0),
        })
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records `(stream, full line?, text)` for one chunk of output, all with
    /// the current time. Errors are logged and dropped: a full disk must not kill the
    /// container.
    fn append(&self, records: &[(&'static str, bool, &[u8])]) {
        use std::io::Write as _;
        if records.is_empty() {
            return;
        }
        let ts = rfc3339_nano(jiff::Timestamp::now());
        let mut out = Vec::new();
        for (stream, full, text) in records {
            out.extend_from_slice(ts.as_bytes());
            out.push(b' ');
            out.extend_from_slice(stream.as_bytes());
            out.extend_from_slice(if *full { b" F " } else { b" P " });
            out.extend_from_slice(text);
            out.push(b'\n');
        }
        let Ok(mut guard) = self.file.lock() else {
            return;
        };
        let Some(file) = guard.as_mut() else {
            return;
        };
        match file.write_all(&out) {
            Ok(()) => self.progress.send_modify(|p| p.len += out.len() as u64),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot write container log")
            }
        }
    }

    /// Marks the instance finished: followers stop at the end of the file.
    pub(crate) fn close(&self) {
        if let Ok(mut g) = self.file.lock() {
            *g = None;
        }
        self.progress.send_modify(|p| p.closed = true);
    }

    /// Whether [`LogFile::close`] was called.
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.progress.borrow().closed
    }

    /// The last `max_bytes` bytes of output text (without timestamps), for
    /// `terminationMessagePolicy: FallbackToLogsOnError` (last 80 lines, 2048 bytes).
    pub(crate) fn tail_text(&self, max_lines: usize, max_bytes: usize) -> String {
        let Ok(data) = std::fs::read(&self.path) else {
            return String::new();
        };
        let start = data.len().saturating_sub(max_bytes * 4 + MAX_RECORD * 2);
        let mut text = Vec::new();
        for line in data[start..].split(|b| *b == b'\n') {
            if let Some(rec) = parse_record(line) {
                text.extend_from_slice(rec.text);
                if rec.full {
                    text.push(b'\n');
                }
            }
        }
        let s = String::from_utf8_lossy(&text).into_owned();
        let lines: Vec<&str> = s.lines().collect();
        let kept = lines[lines.len().saturating_sub(max_lines)..].join("\n");
        let cut = kept.len().saturating_sub(max_bytes);
        let mut cut = cut;
        while !kept.is_char_boundary(cut) {
            cut += 1;
        }
        kept[cut..].to_string()
    }

    /// Streams this file with the given options.
    pub(crate) fn stream(&self, opts: ReadOptions) -> BoxStream<'static, Result<Bytes, io::Error>> {
        let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
        let path = self.path.clone();
        let progress = self.progress.subscribe();
        tokio::spawn(async move {
            if let Err(e) = read_into(path, progress, opts, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}

/// Copies a child's stdout or stderr into the log, record by record.
pub(crate) async fn pump<R: AsyncRead + Unpin>(mut reader: R, stream: &'static str, log: LogFile) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            if !pending.is_empty() {
                // The last line without a newline counts as a full line (containerd does so).
                log.append(&[(stream, true, &pending)]);
            }
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        let mut records: Vec<(&'static str, bool, &[u8])> = Vec::new();
        let mut start = 0;
        loop {
            let rest = &pending[start..];
            match rest.iter().position(|b| *b == b'\n') {
                Some(i) if i < MAX_RECORD => {
                    records.push((stream, true, &rest[..i]));
                    start += i + 1;
                }
                _ if rest.len() >= MAX_RECORD => {
                    records.push((stream, false, &rest[..MAX_RECORD]));
                    start += MAX_RECORD;
                }
                _ => break,
            }
        }
        log.append(&records);
        pending.drain(..start);
    }
}

/// The `pods/log` options that apply to reading one file.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadOptions {
    /// Keep streaming until the instance closes.
    pub(crate) follow: bool,
    /// Prefix each line with its RFC3339Nano timestamp.
    pub(crate) timestamps: bool,
    /// Only records at or after this time.
    pub(crate) since: Option<jiff::Timestamp>,
    /// Only the last N records.
    pub(crate) tail_lines: Option<u64>,
    /// Stop after this many bytes.
    pub(crate) limit_bytes: Option<u64>,
}

/// One parsed record of a log file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) timestamp: &'a str,
    pub(crate) stream: &'a str,
    pub(crate) full: bool,
    pub(crate) text: &'a [u8],
}

/// Parses one line of a log file (without its newline).
pub(crate) fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or(&[]);
    if timestamp.is_empty() {
        return None;
    }
    Some(Record {
        timestamp,
        stream,
        full: tag != b"P",
        text,
    })
}

/// Formats a timestamp as Go's RFC3339Nano does (trailing zeros of the fraction dropped).
pub(crate) fn rfc3339_nano(ts: jiff::Timestamp) -> String {
    ts.to_string()
}

/// Renders one record as `kubectl logs` shows it.
fn render(rec: &Record<'_>, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(rec.timestamp.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(rec.text);
    if rec.full {
        out.push(b'\n');
    }
}

/// The offset where the last `n` records of the file start.
async fn tail_offset(file: &mut tokio::fs::File, len: u64, n: u64) -> io::Result<u64> {
    if n == 0 {
        return Ok(len);
    }
    const BLOCK: u64 = 64 * 1024;
    let mut end = len;
    let mut newlines = 0u64;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(&mut buf[..size]).await?;
        for i in (0..size).rev() {
            if buf[i] == b'\n' {
                // The newline that ends the file doesn't start a record.
                if start + i as u64 + 1 == len {
                    continue;
                }
                newlines += 1;
                if newlines == n {
                    return Ok(start + i as u64 + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

async fn read_into(
    path: PathBuf,
    mut progress: watch::Receiver<LogProgress>,
    opts: ReadOptions,
    tx: &mpsc::Sender<Result<Bytes, io::Error>>,
) -> io::Result<()> {
    let mut file = tokio::fs::File::open(&path).await?;
    let len_now = progress.borrow_and_update().len;
    let start = match opts.tail_lines {
        Some(n) => tail_offset(&mut file, len_now, n).await?,
        None => 0,
    };
    file.seek(SeekFrom::Start(start)).await?;
    let mut pos = start;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut remaining = opts.limit_bytes;
    let mut line = Vec::new();
    let mut out = Vec::new();
    loop {
        let n = reader.read_until(b'\n', &mut line).await?;
        pos += n as u64;
        if line.ends_with(b"\n") {
            line.pop();
            if let Some(rec) = parse_record(&line) {
                let keep = match opts.since {
                    None => true,
                    Some(since) => rec
                        .timestamp
                        .parse::<jiff::Timestamp>()
                        .map_or(true, |t| t >= since),
                };
                if keep {
                    render(&rec, opts.timestamps, &mut out);
                }
            }
            line.clear();
            if out.len() < 32 * 1024 {
                continue;
            }
        }
        if !out.is_empty() {
            let mut chunk = std::mem::take(&mut out);
            let mut done = false;
            if let Some(rem) = remaining.as_mut() {
                if chunk.len() as u64 >= *rem {
                    chunk.truncate(*rem as usize);
                    done = true;
                }
                *rem -= chunk.len() as u64;
            }
            if !chunk.is_empty() && tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return Ok(());
            }
            if done {
                return Ok(());
            }
        }
        if n > 0 {
            // More may be buffered, or a record is half written: read on.
            continue;
        }
        // At the end of what is written so far.
        if !opts.follow {
            return Ok(());
        }
        let p = *progress.borrow_and_update();
        if pos < p.len {
            continue;
        }
        if p.closed {
            return Ok(());
        }
        tokio::select! {
            changed = progress.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            () = tx.closed() => return Ok(()),
        }
    }
}

/// Picks the container a `pods/log` request is about and checks that it has a log of
/// the requested instance, with the real API server's and kubelet's 400 messages.
pub(crate) fn resolve_container(
    pod: &Value,
    container: Option<&str>,
    previous: bool,
) -> Result<String, ApiError> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let names = |list: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    let inits = names("initContainers");
    let name = match container.filter(|c| !c.is_empty()) {
        Some(c) => {
            if !containers.iter().chain(inits.iter()).any(|n| n == c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )));
            }
            c.to_string()
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !inits.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            return Err(ApiError::bad_request(msg));
        }
    };
    let status = ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|l| {
            pod.pointer(&format!("/status/{l}"))
                .and_then(Value::as_array)
        })
        .flatten()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(name.as_str()));
    let waiting_msg = |reason: &str| {
        ApiError::bad_request(format!(
            "container \"{name}\" in pod \"{pod_name}\" is waiting to start: {reason}"
        ))
    };
    let Some(status) = status else {
        return Err(waiting_msg("ContainerCreating"));
    };
    let last_terminated = status
        .pointer("/lastState/terminated")
        .filter(|t| t.get("containerID").is_some());
    if previous {
        return match last_terminated {
            Some(_) => Ok(name),
            None => Err(ApiError::bad_request(format!(
                "previous terminated container \"{name}\" in pod \"{pod_name}\" not found"
            ))),
        };
    }
    let state = status.get("state");
    if state.and_then(|s| s.get("running")).is_some() {
        return Ok(name);
    }
    if let Some(t) = state.and_then(|s| s.get("terminated")) {
        if t.get("containerID").is_some() || last_terminated.is_some() {
            return Ok(name);
        }
        return Err(ApiError::bad_request(format!(
            "container \"{name}\" in pod \"{pod_name}\" is terminated"
        )));
    }
    if last_terminated.is_some() {
        return Ok(name);
    }
    match state
        .and_then(|s| s.pointer("/waiting/reason"))
        .and_then(Value::as_str)
    {
        Some("ErrImagePull") => Err(waiting_msg("image can't be pulled")),
        Some("ImagePullBackOff") => Err(waiting_msg("trying and failing to pull image")),
        Some(reason) => Err(waiting_msg(reason)),
        None => Err(ApiError::bad_request(format!(
            "container \"{name}\" in pod \"{pod_name}\" is waiting to start - no logs yet"
        ))),
    }
}

/// Validates the time and size options of a `pods/log` request.
pub(crate) fn read_options(
    pod_name: &str,
    follow: bool,
    timestamps: bool,
    since_seconds: Option<i64>,
    since_time: Option<&str>,
    tail_lines: Option<i64>,
    limit_bytes: Option<i64>,
) -> Result<ReadOptions, ApiError> {
    let mut causes = Vec::new();
    if since_seconds.is_some() && since_time.is_some() {
        causes.push(StatusCause::new(
            "",
            "FieldValueForbidden",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    if let Some(s) = since_seconds
        && s < 1
    {
        causes.push(StatusCause::new(
            "sinceSeconds",
            "FieldValueInvalid",
            format!("Invalid value: {s}: must be greater than 0"),
        ));
    }
    if let Some(t) = tail_lines
        && t < 0
    {
        causes.push(StatusCause::new(
            "tailLines",
            "FieldValueInvalid",
            format!("Invalid value: {t}: must be greater than or equal to 0"),
        ));
    }
    if let Some(b) = limit_bytes
        && b < 1
    {
        causes.push(StatusCause::new(
            "limitBytes",
            "FieldValueInvalid",
            format!("Invalid value: {b}: must be greater than 0"),
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("PodLogOptions", pod_name, causes));
    }
    let since = match (since_seconds, since_time) {
        (Some(s), _) => Some(
            jiff::Timestamp::now()
                .saturating_sub(jiff::SignedDuration::from_secs(s))
                .unwrap_or(jiff::Timestamp::MIN),
        ),
        (None, Some(t)) => Some(t.parse::<jiff::Timestamp>().map_err(|_| {
            ApiError::bad_request(format!(
                "parsing time \"{t}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse"
            ))
        })?),
        (None, None) => None,
    };
    Ok(ReadOptions {
        follow,
        timestamps,
        since,
        tail_lines: tail_lines.map(|t| t as u64),
        limit_bytes: limit_bytes.map(|b| b as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn collect(log: &LogFile, opts: ReadOptions) -> String {
        let mut s = log.stream(opts);
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    fn new_log() -> (tempfile::TempDir, LogFile) {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::create(&dir.path().join("c/0.log")).unwrap();
        (dir, log)
    }

    #[test]
    fn parses_records() {
        let r = parse_record(b"2026-01-01T00:00:00.5Z stdout F hello world").unwrap();
        assert_eq!(r.timestamp, "2026-01-01T00:00:00.5Z");
        assert_eq!(r.stream, "stdout");
        assert!(r.full);
        assert_eq!(r.text, b"hello world");
        let r = parse_record(b"2026-01-01T00:00:00Z stderr P ").unwrap();
        assert!(!r.full);
        assert_eq!(r.text, b"");
        assert!(parse_record(b"").is_none());
        assert!(parse_record(b"garbage").is_none());
    }

    #[test]
    fn container_choice_and_state_errors() {
        use serde_json::json;
        let pod = |containers: serde_json::Value, statuses: serde_json::Value| {
            json!({"metadata": {"name": "x"}, "spec": {"containers": containers},
                "status": {"containerStatuses": statuses}})
        };
        let one = json!([{"name": "main"}]);
        let two = json!([{"name": "a"}, {"name": "b"}]);
        let e = resolve_container(&pod(two, json!([])), None, false).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "a container name must be specified for pod x, choose one of: [a b]"
        );
        let e = resolve_container(&pod(one.clone(), json!([])), Some("zzz"), false).unwrap_err();
        assert_eq!(e.message, "container zzz is not valid for pod x");
        let e = resolve_container(&pod(one.clone(), json!([])), None, false).unwrap_err();
        assert_eq!(
            e.message,
            "container \"main\" in pod \"x\" is waiting to start: ContainerCreating"
        );
        let waiting = |reason: &str| json!([{"name": "main", "state": {"waiting": {"reason": reason}}, "lastState": {}}]);
        let e = resolve_container(&pod(one.clone(), waiting("ImagePullBackOff")), None, false)
            .unwrap_err();
        assert_eq!(
            e.message,
            "container \"main\" in pod \"x\" is waiting to start: trying and failing to pull image"
        );
        let e = resolve_container(&pod(one.clone(), waiting("ContainerCreating")), None, true)
            .unwrap_err();
        assert_eq!(
            e.message,
            "previous terminated container \"main\" in pod \"x\" not found"
        );
        let running = json!([{"name": "main", "state": {"running": {}}, "lastState": {"terminated": {"containerID": "c://1", "exitCode": 1}}}]);
        assert_eq!(
            resolve_container(&pod(one.clone(), running.clone()), None, false).unwrap(),
            "main"
        );
        assert_eq!(
            resolve_container(&pod(one, running), None, true).unwrap(),
            "main"
        );
    }

    #[test]
    fn log_option_validation() {
        assert!(
            read_options(
                "x",
                false,
                false,
                Some(5),
                Some("2026-01-01T00:00:00Z"),
                None,
                None
            )
            .is_err()
        );
        assert_eq!(
            read_options("x", false, false, None, None, Some(-1), None)
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            read_options("x", false, false, None, None, None, Some(0))
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            read_options("x", false, false, None, Some("yesterday"), None, None)
                .unwrap_err()
                .code,
            400
        );
        let o = read_options(
            "x",
            true,
            true,
            None,
            Some("2026-01-01T00:00:00Z"),
            Some(3),
            Some(10),
        )
        .unwrap();
        assert!(o.follow && o.timestamps);
        assert_eq!(o.tail_lines, Some(3));
        assert_eq!(o.limit_bytes, Some(10));
        assert!(o.since.is_some());
    }

    #[tokio::test]
    async fn pump_splits_lines_and_reads_back() {
        let (_d, log) = new_log();
        let input: &[u8] = b"one\ntwo\nthree";
        pump(input, "stdout", log.clone()).await;
        log.close();
        assert_eq!(
            collect(&log, ReadOptions::default()).await,
            "one\ntwo\nthree\n"
        );
        let tail = ReadOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(collect(&log, tail).await, "two\nthree\n");
        let zero = ReadOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert_eq!(collect(&log, zero).await, "");
        let many = ReadOptions {
            tail_lines: Some(10),
            ..Default::default()
        };
        assert_eq!(collect(&log, many).await, "one\ntwo\nthree\n");
        let limit = ReadOptions {
            limit_bytes: Some(5),
            ..Default::default()
        };
        assert_eq!(collect(&log, limit).await, "one\nt");
        let ts = collect(
            &log,
            ReadOptions {
                timestamps: true,
                ..Default::default()
            },
        )
        .await;
        let first = ts.lines().next().unwrap();
        let (stamp, text) = first.split_once(' ').unwrap();
        assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{stamp}");
        assert_eq!(text, "one");
        let future = ReadOptions {
            since: Some(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60)),
            ..Default::default()
        };
        assert_eq!(collect(&log, future).await, "");
        let past = ReadOptions {
            since: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)),
            ..Default::default()
        };
        assert_eq!(collect(&log, past).await, "one\ntwo\nthree\n");
        assert_eq!(log.tail_text(2, 100), "two\nthree");
        assert_eq!(log.tail_text(80, 4), "hree");
    }

    #[tokio::test]
    async fn long_lines_are_split_into_partial_records() {
        let (_d, log) = new_log();
        let long = vec![b'x'; MAX_RECORD * 2 + 10];
        let mut input = long.clone();
        input.push(b'\n');
        pump(&input[..], "stderr", log.clone()).await;
        log.close();
        let raw = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(raw.lines().count(), 3);
        assert!(raw.lines().next().unwrap().contains(" stderr P "));
        let out = collect(&log, ReadOptions::default()).await;
        assert_eq!(out.len(), long.len() + 1);
    }

    #[tokio::test]
    async fn follow_streams_until_closed() {
        let (_d, log) = new_log();
        let mut s = log.stream(ReadOptions {
            follow: true,
            ..Default::default()
        });
        let (mut w, r) = tokio::io::duplex(64);
        let pumping = tokio::spawn(pump(r, "stdout", log.clone()));
        use tokio::io::AsyncWriteExt as _;
        w.write_all(b"first\n").await.unwrap();
        let chunk = s.next().await.unwrap().unwrap();
        assert_eq!(&chunk[..], b"first\n");
        w.write_all(b"second\n").await.unwrap();
        drop(w);
        pumping.await.unwrap();
        log.close();
        let mut rest = Vec::new();
        while let Some(c) = s.next().await {
            rest.extend_from_slice(&c.unwrap());
        }
        assert_eq!(rest, b"second\n");
    }
}
