//! `kubectl drain` against the emulator while a step runs: the real kubectl cordons the
//! node and evicts the step's pod through the Eviction API, and the operator must see an
//! eviction (the pod's `DisruptionTarget` condition, reason `EvictionByEvictionAPI`),
//! not a cancellation: the step is retried on its infrastructure budget, or fails with
//! reason `Evicted` when the budget is spent.
//!
//! Skipped (with a message) only when `kubectl` is not installed; `.ci/run` installs it.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;
use stepstack_core::{FailureReason, StepOperator, StepOutcome};
use stepstack_testkit::{Cluster, ClusterOptions, NodeConfig, RuntimeOptions};

#[allow(clippy::print_stderr)]
fn kubectl_available() -> bool {
    let ok = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: kubectl is not installed (apt-get install -y kubernetes-client); the drain tests did not run"
        );
    }
    ok
}

/// Two schedulable nodes, so a retried attempt has somewhere to go once one is drained.
async fn two_node_cluster() -> Cluster {
    cluster_with(ClusterOptions {
        runtime: RuntimeOptions {
            nodes: vec![
                NodeConfig::new("node-1").with_capacity("64", "128Gi"),
                NodeConfig::new("node-2").with_capacity("64", "128Gi"),
            ],
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

/// Runs the real `kubectl drain` of `node` with the admin kubeconfig; returns stdout.
async fn drain(cluster: &Cluster, dir: &Path, node: &str) -> String {
    let kubeconfig = dir.join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args([
                "drain",
                node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=90s",
            ])
            .env("HOME", dir)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl drain finishes")
    .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kubectl drain failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The node a pod of the step run is bound to.
fn node_of(cluster: &Cluster, step_run_id: &str, pod: &str) -> String {
    pods_of(cluster, step_run_id)
        .into_iter()
        .find(|p| p["metadata"]["name"] == pod)
        .and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_owned))
        .expect("the running pod is bound to a node")
}

/// A script that blocks on its first attempt and succeeds on the next: the first run
/// leaves `marker` behind (the process kubelet runs containers as local processes).
fn first_attempt_blocks(marker: &Path) -> String {
    let m = marker.display();
    format!("if [ -e '{m}' ]; then echo second-attempt; else touch '{m}'; exec sleep 3600; fi")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_retries_the_step_on_the_infrastructure_budget() {
    if !kubectl_available() {
        return;
    }
    let cluster = two_node_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let op = operator(&cluster, None).await;
    // Step retries are off: only the infrastructure budget can retry.
    let launch = launch(
        "p",
        "drained",
        &first_attempt_blocks(&dir.path().join("marker")),
        json!({"retry": {"max_retries": 0}, "infrastructure_retry": {"max_retries": 1, "delay_seconds": 0}}),
    );
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let waiter = spawn_wait(&op, &handle);
    let pod = running_pod(&cluster, &step_run_id).await;
    let node = node_of(&cluster, &step_run_id, &pod);

    let out = drain(&cluster, dir.path(), &node).await;
    assert!(out.contains(&format!("pod/{pod} evicted")), "{out}");

    let outcome = waiter.await.unwrap().unwrap();
    assert_eq!(outcome, StepOutcome::Succeeded { attempts: 2 });
    assert_eq!(jobs_of(&cluster, &step_run_id).len(), 2);
    let lines: Vec<String> = read_logs(&op, &handle, false)
        .await
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(lines, ["second-attempt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_without_budget_fails_the_step_as_evicted() {
    if !kubectl_available() {
        return;
    }
    let cluster = two_node_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let op = operator(&cluster, None).await;
    let launch = launch(
        "p",
        "drained-no-budget",
        "exec sleep 3600",
        json!({"retry": {"max_retries": 0}, "infrastructure_retry": {"max_retries": 0}}),
    );
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let waiter = spawn_wait(&op, &handle);
    let pod = running_pod(&cluster, &step_run_id).await;
    let node = node_of(&cluster, &step_run_id, &pod);

    drain(&cluster, dir.path(), &node).await;

    let outcome = waiter.await.unwrap().unwrap();
    let failure = outcome.failure().expect("the step fails");
    assert_eq!(
        failure.reason,
        FailureReason::Evicted,
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("EvictionByEvictionAPI"),
        "{}",
        failure.message
    );
    assert_eq!(jobs_of(&cluster, &step_run_id).len(), 1);
}
