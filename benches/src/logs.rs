//! Log throughput: a step printing many lines, every one delivered once, in order.

use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use stepstack_core::{StepLaunch, StepOperator};

use crate::env::IMAGE;

/// What streaming one large log cost.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LogThroughput {
    pub(crate) lines: u64,
    pub(crate) bytes: u64,
    pub(crate) seconds: f64,
    pub(crate) lines_per_second: f64,
    pub(crate) megabytes_per_second: f64,
    pub(crate) all_lines_once_in_order: bool,
}

/// Streams the log of a step that prints the numbers 1..=`lines` (`seq`).
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
    Ok(LogThroughput {
        lines: seen,
        bytes,
        seconds,
        lines_per_second: seen as f64 / seconds,
        megabytes_per_second: bytes as f64 / seconds / 1_048_576.0,
        all_lines_once_in_order: in_order && seen == lines,
    })
}
