//! Many concurrent steps: API requests per step as the count grows, and the operator
//! process's wall time and peak memory for the largest count.
//!
//! The largest run happens in a child process (`stepstack-bench scale-child`) so its
//! peak memory is the operator's alone, not the emulator's.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::Context;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use stepstack_core::{StepLaunch, StepOperator};
use stepstack_testkit::RequestCounts;

use crate::env::{Bench, IMAGE, NAMESPACE};

/// What one concurrent run cost.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScaleRun {
    pub(crate) steps: usize,
    pub(crate) requests: u64,
    pub(crate) requests_per_step: f64,
    pub(crate) watches_opened: u64,
    pub(crate) wall_ms: f64,
    pub(crate) all_succeeded: bool,
    /// Peak resident memory of the operator process (child runs only).
    pub(crate) peak_rss_mb: Option<f64>,
}

/// What the child process reports.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChildReport {
    pub(crate) wall_ms: f64,
    pub(crate) succeeded: usize,
    pub(crate) peak_rss_mb: f64,
}

/// Runs `steps` trivial steps at once on a fresh operator in this process.
pub(crate) async fn in_process(bench: &Bench, steps: usize) -> anyhow::Result<ScaleRun> {
    let operator = bench.operator(&format!("scale-{steps}")).await?;
    let before = bench.cluster.requests();
    let start = Instant::now();
    let succeeded = run_steps(&operator, steps).await?;
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
    let after = bench.cluster.requests();
    Ok(run_of(steps, &before, &after, wall_ms, succeeded, None))
}

/// Runs `steps` trivial steps at once in a child process.
pub(crate) async fn in_child(bench: &Bench, steps: usize) -> anyhow::Result<ScaleRun> {
    let kubeconfig = bench.state.path().join("child-kubeconfig");
    bench.cluster.write_kubeconfig(&kubeconfig)?;
    let exe = std::env::current_exe()?;
    let before = bench.cluster.requests();
    let output = tokio::process::Command::new(exe)
        .args(["scale-child", "--steps", &steps.to_string(), "--kubeconfig"])
        .arg(&kubeconfig)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running the scale child")?;
    anyhow::ensure!(
        output.status.success(),
        "the scale child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: ChildReport =
        serde_json::from_slice(&output.stdout).context("reading the child's report")?;
    let after = bench.cluster.requests();
    Ok(run_of(
        steps,
        &before,
        &after,
        report.wall_ms,
        report.succeeded,
        Some(report.peak_rss_mb),
    ))
}

/// The child's side: an operator from the kubeconfig running `steps` steps at once.
pub(crate) async fn child(
    kubeconfig: &Path,
    steps: usize,
    state: &Path,
) -> anyhow::Result<ChildReport> {
    let operator = operator_from(kubeconfig, state).await?;
    let start = Instant::now();
    let succeeded = run_steps(&operator, steps).await?;
    Ok(ChildReport {
        wall_ms: start.elapsed().as_secs_f64() * 1000.0,
        succeeded,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// An operator for the bench namespace of the cluster in `kubeconfig`, keeping its
/// state in `state`.
pub(crate) async fn operator_from(
    kubeconfig: &Path,
    state: &Path,
) -> anyhow::Result<stepstack_k8s_operator::KubernetesStepOperator> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(stepstack_k8s_operator::KubernetesStepOperator::new(
        stepstack_settings::KubernetesStepOperatorConfig {
            kubernetes_namespace: NAMESPACE.into(),
            ..Default::default()
        },
        stepstack_core::StepOperatorContext::new("bench-child")
            .with_connection(stepstack_core::ClusterConnection::new(config))
            .with_state_dir(state),
    ))
}

async fn run_steps(operator: &dyn StepOperator, steps: usize) -> anyhow::Result<usize> {
    let launches = (0..steps).map(|i| {
        operator.launch(StepLaunch::new(
            "bench",
            format!("scale-{i}"),
            IMAGE,
            ["true"],
        ))
    });
    let outcomes = join_all(launches).await;
    let mut succeeded = 0;
    for outcome in outcomes {
        if outcome?.is_success() {
            succeeded += 1;
        }
    }
    Ok(succeeded)
}

fn run_of(
    steps: usize,
    before: &RequestCounts,
    after: &RequestCounts,
    wall_ms: f64,
    succeeded: usize,
    peak_rss_mb: Option<f64>,
) -> ScaleRun {
    let requests = total(after).saturating_sub(total(before));
    ScaleRun {
        steps,
        requests,
        requests_per_step: requests as f64 / steps as f64,
        watches_opened: after.watches_opened.saturating_sub(before.watches_opened),
        wall_ms,
        all_succeeded: succeeded == steps,
        peak_rss_mb,
    }
}

fn total(counts: &RequestCounts) -> u64 {
    counts.by_key.values().sum()
}

/// This process's peak resident set size, from /proc.
pub(crate) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
