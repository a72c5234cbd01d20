//! Shared helpers: an emulated cluster with a namespace, and operators connected to it.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use stepstack_core::{
    ClusterConnection, LogLine, StepHandle, StepLaunch, StepOperator, StepOperatorContext,
    StepOutcome,
};
use stepstack_k8s_operator::KubernetesStepOperator;
use stepstack_settings::KubernetesStepOperatorConfig;
use stepstack_testkit::{Cluster, ClusterOptions, NodeConfig, ResourceKind, RuntimeOptions};

/// The namespace the tests run steps in.
pub const NS: &str = "ml";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A cluster with one CPU node and one GPU-less node setup, and namespace `ml`.
pub async fn cluster() -> Cluster {
    cluster_with(ClusterOptions {
        runtime: RuntimeOptions {
            nodes: vec![NodeConfig::new("node-1").with_capacity("64", "128Gi")],
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

pub async fn cluster_with(options: ClusterOptions) -> Cluster {
    init_tracing();
    let cluster = Cluster::start(options).await.expect("the emulator starts");
    cluster
        .store()
        .create(
            ResourceKind::Namespace,
            None,
            json!({"metadata": {"name": NS}}),
        )
        .expect("namespace ml");
    cluster
}

/// The admin connection of `cluster`.
pub async fn connection(cluster: &Cluster) -> ClusterConnection {
    let config = kube::Config::from_custom_kubeconfig(
        cluster.kubeconfig().unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    ClusterConnection::new(config)
}

/// Test settings: short deadlines and fast retries.
pub fn fast_settings() -> Value {
    json!({
        "scheduling_timeout": 2,
        "startup_timeout": 10,
        "retry": {"max_retries": 0, "delay_seconds": 0},
        "infrastructure_retry": {"max_retries": 2, "delay_seconds": 0},
        "logs": {"tail_lines_on_failure": 10}
    })
}

/// An operator on `cluster` for namespace `ml`.
pub async fn operator(
    cluster: &Cluster,
    state_dir: Option<&std::path::Path>,
) -> KubernetesStepOperator {
    operator_in(cluster, NS, state_dir).await
}

pub async fn operator_in(
    cluster: &Cluster,
    namespace: &str,
    state_dir: Option<&std::path::Path>,
) -> KubernetesStepOperator {
    let config = KubernetesStepOperatorConfig {
        kubernetes_namespace: namespace.into(),
        ..Default::default()
    };
    let mut context = StepOperatorContext::new("k8s").with_connection(connection(cluster).await);
    if let Some(dir) = state_dir {
        context = context.with_state_dir(dir);
    }
    KubernetesStepOperator::new(config, context)
}

/// A launch of `sh -c script` with `settings` merged over [`fast_settings`].
pub fn launch(pipeline: &str, step: &str, script: &str, settings: Value) -> StepLaunch {
    let mut merged = fast_settings();
    merge(&mut merged, settings);
    StepLaunch::new(pipeline, step, "busybox:1.36", ["sh", "-c", script]).with_settings(merged)
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(e) => merge(e, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Every line of the step's log stream.
pub async fn read_logs(op: &dyn StepOperator, handle: &StepHandle, follow: bool) -> Vec<LogLine> {
    let stream = op.logs(handle, follow).await.expect("logs");
    stream.map(|l| l.expect("log line")).collect().await
}

/// `wait` for the step in a task of its own, so the test can act on the cluster meanwhile.
pub fn spawn_wait(
    op: &KubernetesStepOperator,
    handle: &StepHandle,
) -> tokio::task::JoinHandle<stepstack_core::Result<StepOutcome>> {
    let (op, handle) = (op.clone(), handle.clone());
    tokio::spawn(async move { op.wait(&handle).await })
}

/// Follows the step's logs to their end in a task of its own.
pub fn spawn_follow(
    op: &KubernetesStepOperator,
    handle: &StepHandle,
) -> tokio::task::JoinHandle<Vec<LogLine>> {
    let (op, handle) = (op.clone(), handle.clone());
    tokio::spawn(async move { read_logs(&op, &handle, true).await })
}

/// The Jobs in `ml` (wire JSON) of one step run.
pub fn jobs_of(cluster: &Cluster, step_run_id: &str) -> Vec<Value> {
    let filter = stepstack_testkit::store::ListFilter::labels(&format!(
        "stepstack.dev/step-run-id={step_run_id}"
    ))
    .unwrap();
    cluster.store().list(ResourceKind::Job, Some(NS), &filter).0
}

/// The pods in `ml` (wire JSON) of one step run.
pub fn pods_of(cluster: &Cluster, step_run_id: &str) -> Vec<Value> {
    let filter = stepstack_testkit::store::ListFilter::labels(&format!(
        "stepstack.dev/step-run-id={step_run_id}"
    ))
    .unwrap();
    cluster.store().list(ResourceKind::Pod, Some(NS), &filter).0
}

/// Polls `f` (a check of the emulator's state, not of the operator) until it holds.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The name of the running pod of a step run, once it runs.
pub async fn running_pod(cluster: &Cluster, step_run_id: &str) -> String {
    let mut name = String::new();
    eventually("a running pod", Duration::from_secs(30), || {
        pods_of(cluster, step_run_id)
            .into_iter()
            .find(|p| p["status"]["phase"] == "Running")
            .map(|p| {
                name = p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .is_some()
    })
    .await;
    name
}

pub type Shared<T> = Arc<T>;

pub mod gate;
