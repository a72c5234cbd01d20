//! Log throughput: a step printing many lines, every one delivered once, in order —
//! through the operator, and read straight from the emulator's log endpoint with a
//! plain kube-rs client (no parsing), to tell the two sides apart.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use serde::Serialize;
use stepstack_core::{StepLaunch, StepOperator};
use stepstack_k8s_operator::KubernetesStepOperator;

use crate::env::{IMAGE, NAMESPACE};

/// What streaming one large log cost.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LogThroughput {
    pub(crate) lines: u64,
    /// Text bytes (with the newline, without the timestamp).
    pub(crate) bytes: u64,
    pub(crate) seconds: f64,
    pub(crate) lines_per_second: f64,
    pub(crate) megabytes_per_second: f64,
    pub(crate) all_lines_once_in_order: bool,
}

impl LogThroughput {
    fn new(lines: u64, bytes: u64, seconds: f64, in_order: bool) -> Self {
        LogThroughput {
            lines,
            bytes,
            seconds,
            lines_per_second: lines as f64 / seconds,
            megabytes_per_second: bytes as f64 / seconds / 1_048_576.0,
            all_lines_once_in_order: in_order,
        }
    }
}

/// Streams the log of a step that prints the numbers 1..=`lines` (`seq`) through the
/// operator.
pub(crate) async fn throughput(
    operator: &dyn StepOperator,
    lines: u64,
) -> anyhow::Result<LogThroughput> {
    let launch = StepLaunch::new("bench", "logs", IMAGE, ["seq", "1", &lines.to_string()]);
    let handle = operator.submit(launch).await?;
    let start = Instant::now();
    let mut stream = operator.logs(&handle, true).await?;
    let (mut seen, mut bytes, mut in_order) = (0u64, 0u64, true);
    while let Some(line) = stream.next().await {
        let line = line?;
        seen += 1;
        bytes += line.text.len() as u64 + 1;
        if line.text.parse::<u64>().ok() != Some(seen) {
            in_order = false;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let outcome = operator.wait(&handle).await?;
    anyhow::ensure!(outcome.is_success(), "the log step failed: {outcome:?}");
    Ok(LogThroughput::new(
        seen,
        bytes,
        seconds,
        in_order && seen == lines,
    ))
}

/// The emulator's side alone: the same step's log followed with `timestamps=true` by a
/// plain kube-rs client that only counts lines (no decoding into `LogLine`s, no log
/// file).
pub(crate) async fn raw_throughput(
    operator: &KubernetesStepOperator,
    client: &kube::Client,
    lines: u64,
) -> anyhow::Result<LogThroughput> {
    let launch = StepLaunch::new("bench", "logs-raw", IMAGE, ["seq", "1", &lines.to_string()]);
    let handle = operator.submit(launch).await?;
    let label = operator.handle_data(&handle)?.step_run_label;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let selector = format!("stepstack.dev/step-run-id={label}");
    let params = LogParams {
        container: Some("main".into()),
        follow: true,
        timestamps: true,
        ..LogParams::default()
    };
    // The bench may poll: wait until the container has started, then follow its log.
    let deadline = Instant::now() + Duration::from_secs(60);
    let start;
    let mut reader = loop {
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        if let Some(name) = list.items.first().and_then(|p| p.metadata.name.clone()) {
            let started = Instant::now();
            if let Ok(reader) = pods.log_stream(&name, &params).await {
                start = started;
                break reader;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the raw log step did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (mut seen, mut bytes, mut in_order) = (0u64, 0u64, true);
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let buf = reader.fill_buf().await.context("reading the raw log")?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        let mut rest = buf;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let line: &[u8] = if partial.is_empty() {
                &rest[..end]
            } else {
                partial.extend_from_slice(&rest[..end]);
                &partial
            };
            seen += 1;
            let text = line
                .iter()
                .position(|b| *b == b' ')
                .map_or(line, |i| &line[i + 1..]);
            bytes += text.len() as u64 + 1;
            if in_order && std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()) != Some(seen)
            {
                in_order = false;
            }
            partial.clear();
            rest = &rest[end + 1..];
        }
        partial.extend_from_slice(rest);
        reader.consume_unpin(n);
    }
    let seconds = start.elapsed().as_secs_f64();
    let outcome = operator.wait(&handle).await?;
    anyhow::ensure!(outcome.is_success(), "the raw log step failed: {outcome:?}");
    Ok(LogThroughput::new(
        seen,
        bytes,
        seconds,
        in_order && seen == lines,
    ))
}
