//! Mixed pipelines: local steps and a step on the real Kubernetes step operator, on the
//! testkit emulator over HTTPS. The emulator's pods are processes on this machine, so the
//! operator step reads and writes the run's workspace directories that its placeholders
//! name (the in-pod agent that moves artifacts inside a real pod is a later piece).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;
use stepstack_artifact_store::LocalArtifactStore;
use stepstack_core::artifact_store::{ArtifactStore, ReadOptions};
use stepstack_core::{ClusterConnection, StepOperatorContext};
use stepstack_k8s_operator::KubernetesStepOperator;
use stepstack_pipeline::{
    Format, InMemoryRunStore, LogSink, Orchestrator, RunStatus, RunStore, StepOperatorEntry,
    StepRunStatus, load_str,
};
use stepstack_settings::KubernetesStepOperatorConfig;
use stepstack_testkit::store::ListFilter;
use stepstack_testkit::{Cluster, ClusterOptions, NodeConfig, ResourceKind, RuntimeOptions};
use tokio_util::sync::CancellationToken;

const NS: &str = "ml";

async fn cluster() -> Cluster {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let cluster = Cluster::start(ClusterOptions {
        runtime: RuntimeOptions {
            nodes: vec![NodeConfig::new("node-1").with_capacity("64", "128Gi")],
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("the emulator starts");
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

/// A Kubernetes step operator on `cluster`, as a new process would build it.
async fn operator(cluster: &Cluster) -> StepOperatorEntry {
    let config = kube::Config::from_custom_kubeconfig(
        cluster.kubeconfig().unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let context = StepOperatorContext::new("k8s").with_connection(ClusterConnection::new(config));
    let operator = KubernetesStepOperator::new(
        KubernetesStepOperatorConfig {
            kubernetes_namespace: NS.into(),
            ..Default::default()
        },
        context,
    );
    StepOperatorEntry::new(Arc::new(operator))
}

fn jobs(cluster: &Cluster) -> usize {
    cluster
        .store()
        .list(ResourceKind::Job, Some(NS), &ListFilter::default())
        .0
        .len()
}

struct Fixture {
    dir: tempfile::TempDir,
    runs: Arc<InMemoryRunStore>,
    artifacts: Arc<LocalArtifactStore>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = Arc::new(LocalArtifactStore::new(dir.path().join("artifacts")).unwrap());
        Fixture {
            dir,
            runs: Arc::new(InMemoryRunStore::new()),
            artifacts,
            lines: Arc::default(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn orchestrator(
        &self,
        cluster: &Cluster,
        yaml: &str,
        on_line: Option<LogSink>,
    ) -> Orchestrator {
        let pipeline = load_str(yaml, Format::Yaml, "pipeline.yaml")
            .unwrap()
            .pipeline;
        let lines = Arc::clone(&self.lines);
        let sink: LogSink = Arc::new(move |step: &str, line: &str| {
            lines.lock().unwrap().push(format!("{step} | {line}"));
            if let Some(f) = &on_line {
                f(step, line);
            }
        });
        Orchestrator::new(
            pipeline,
            self.runs.clone(),
            self.artifacts.clone(),
            self.path("work"),
        )
        .with_step_operator("k8s", operator(cluster).await)
        .with_log_sink(sink)
    }

    async fn read(
        &self,
        address: &stepstack_core::artifact_store::ArtifactAddress,
        file: &str,
    ) -> String {
        let dest = self.path(&format!("read-{}", address.to_string().replace('/', "_")));
        let store: &dyn ArtifactStore = self.artifacts.as_ref();
        store
            .read_tree(address, &dest, &ReadOptions::default())
            .await
            .unwrap();
        std::fs::read_to_string(dest.join(file)).unwrap()
    }
}

fn executions(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A local data step, a training step on the Kubernetes operator, a local evaluation.
fn mixed(f: &Fixture, train_script: &str) -> String {
    format!(
        r#"
name: mixed
settings:
  step_operator:
    scheduling_timeout: 10
    startup_timeout: 30
    retry: {{max_retries: 0, delay_seconds: 0}}
steps:
  prepare:
    command: [sh, -c, 'echo prepare >> {log}; echo "3 4" > {{{{outputs.data}}}}/data.txt']
    outputs: [data]
  train:
    step_operator: k8s
    image: busybox:1.36
    command: [sh, -c, '{train_script}']
    inputs: {{data: prepare.data}}
    outputs: [model]
  evaluate:
    command: [sh, -c, 'echo evaluate >> {log}; cat {{{{inputs.model}}}}/model.txt > {{{{outputs.report}}}}/report.txt; echo evaluated']
    inputs: {{model: train.model}}
    outputs: [report]
"#,
        log = f.path("executions").display(),
    )
}

fn train_script(f: &Fixture) -> String {
    format!(
        "echo train >> {log}; read a b < {{{{inputs.data}}}}/data.txt; echo $((a*b)) > {{{{outputs.model}}}}/model.txt; echo trained on the cluster",
        log = f.path("executions").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_step_between_local_steps_passes_real_files_and_is_cached_without_cluster_requests()
 {
    let cluster = cluster().await;
    let f = Fixture::new();
    let yaml = mixed(&f, &train_script(&f));

    let first = f
        .orchestrator(&cluster, &yaml, None)
        .await
        .run(CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(first.status, RunStatus::Succeeded, "{first}");
    let report = &first.step("evaluate").unwrap().outputs["report"];
    assert_eq!(f.read(&report.address, "report.txt").await, "12\n");
    assert_eq!(
        executions(&f.path("executions")),
        "prepare\ntrain\nevaluate\n"
    );
    assert_eq!(jobs(&cluster), 1);
    let lines = f.lines.lock().unwrap().clone();
    assert!(
        lines.contains(&"train | trained on the cluster".to_string()),
        "{lines:?}"
    );
    let snapshot = f.runs.load_run(&first.run_id).await.unwrap();
    let handle = snapshot.steps["train"]
        .handle
        .as_ref()
        .expect("the handle is recorded");
    assert_eq!(handle.step_run_id, snapshot.steps["train"].step_run_id);

    // Run again: every step cached, and not one request to the cluster.
    let before = cluster.requests();
    let second = f
        .orchestrator(&cluster, &yaml, None)
        .await
        .run(CancellationToken::new())
        .await
        .unwrap();
    assert!(
        second
            .steps
            .iter()
            .all(|s| s.status == StepRunStatus::Cached),
        "{second}"
    );
    assert_eq!(cluster.requests().since(&before).total(), 0);
    assert_eq!(
        executions(&f.path("executions")),
        "prepare\ntrain\nevaluate\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_adopts_a_kubernetes_step_that_kept_running_after_the_crash() {
    let cluster = cluster().await;
    let f = Fixture::new();
    let go = f.path("go");
    // The training step runs until the test lets it finish.
    let script = format!(
        "echo train >> {log}; echo started; while [ ! -f {go} ]; do sleep 0.05; done; read a b < {{{{inputs.data}}}}/data.txt; echo $((a+b)) > {{{{outputs.model}}}}/model.txt",
        log = f.path("executions").display(),
        go = go.display()
    );
    let yaml = mixed(&f, &script);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Mutex::new(Some(started_tx));
    let on_line: LogSink = Arc::new(move |step: &str, line: &str| {
        if step == "train"
            && line == "started"
            && let Some(tx) = started_tx.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
    });
    let orchestrator = f.orchestrator(&cluster, &yaml, Some(on_line)).await;
    let run_id = orchestrator.create_run().await.unwrap();
    tokio::select! {
        _ = orchestrator.resume(&run_id, CancellationToken::new()) => panic!("the run ended before the crash"),
        _ = started_rx => {}
    }
    drop(orchestrator);
    let snapshot = f.runs.load_run(&run_id).await.unwrap();
    assert_eq!(snapshot.steps["prepare"].status, StepRunStatus::Succeeded);
    assert_eq!(snapshot.steps["train"].status, StepRunStatus::Running);
    assert!(snapshot.steps["train"].handle.is_some());
    assert_eq!(jobs(&cluster), 1, "the Job outlives the orchestrator");

    // A new orchestrator (a new operator, as after a restart) adopts the running Job.
    std::fs::write(&go, "").unwrap();
    let summary = f
        .orchestrator(&cluster, &yaml, None)
        .await
        .resume(&run_id, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded, "{summary}");
    assert_eq!(
        executions(&f.path("executions")),
        "prepare\ntrain\nevaluate\n",
        "nothing ran twice"
    );
    assert_eq!(cluster.requests().count("create", "jobs"), 1);
    let report = &summary.step("evaluate").unwrap().outputs["report"];
    assert_eq!(f.read(&report.address, "report.txt").await, "7\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_deletes_the_running_job_and_marks_the_run_cancelled() {
    let cluster = cluster().await;
    let f = Fixture::new();
    let script = "echo started; exec sleep 600";
    let yaml = mixed(&f, script);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let on_line: LogSink = Arc::new(move |step: &str, line: &str| {
        if step == "train" && line == "started" {
            trigger.cancel();
        }
    });
    let summary = f
        .orchestrator(&cluster, &yaml, Some(on_line))
        .await
        .run(cancel)
        .await
        .unwrap();
    assert_eq!(summary.status, RunStatus::Cancelled, "{summary}");
    assert_eq!(summary.status_of("prepare"), Some(StepRunStatus::Succeeded));
    assert_eq!(summary.status_of("train"), Some(StepRunStatus::Cancelled));
    assert_eq!(summary.status_of("evaluate"), Some(StepRunStatus::Skipped));
    // Cancel deleted the Job (foreground propagation: it is gone, or marked for
    // deletion until the emulator's garbage collector has removed its pods).
    let (left, _) = cluster
        .store()
        .list(ResourceKind::Job, Some(NS), &ListFilter::default());
    assert!(
        left.iter()
            .all(|job| job["metadata"]["deletionTimestamp"].is_string()),
        "no Job is left behind: {left:?}"
    );
    let requests = cluster.requests();
    assert!(
        requests.count("delete", "jobs") + requests.count("deletecollection", "jobs") >= 1,
        "the operator's cancel deleted the Job"
    );
}
