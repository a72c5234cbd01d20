//! The cluster every benchmark runs against, and operators and clients for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use stepstack_core::{ClusterConnection, StepOperatorContext};
use stepstack_k8s_operator::KubernetesStepOperator;
use stepstack_settings::KubernetesStepOperatorConfig;
use stepstack_testkit::{Cluster, ClusterOptions, NodeConfig, RuntimeOptions};

/// The namespace benchmark steps run in.
pub(crate) const NAMESPACE: &str = "bench";
/// The image of benchmark steps (the emulator runs the command locally).
pub(crate) const IMAGE: &str = "busybox:1.36";
/// The label carrying the step-run id.
const STEP_RUN_LABEL: &str = "stepstack.dev/step-run-id";

/// A running emulated cluster sized for a thousand concurrent steps.
pub(crate) struct Bench {
    pub(crate) cluster: Cluster,
    pub(crate) state: tempfile::TempDir,
    finished: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Bench {
    pub(crate) async fn start() -> anyhow::Result<Bench> {
        let mut node = NodeConfig::new("big-node-1");
        node.cpu = "4000".into();
        node.memory = "64Ti".into();
        node.pods = 5000;
        let state = tempfile::tempdir()?;
        let cluster = Cluster::start(ClusterOptions {
            runtime: RuntimeOptions {
                nodes: vec![node],
                root_dir: Some(state.path().join("cluster")),
                ..RuntimeOptions::default()
            },
            ..ClusterOptions::default()
        })
        .await
        .context("starting the emulated cluster")?;
        let client = cluster.client().await?;
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(NAMESPACE.into());
        Api::<Namespace>::all(client)
            .create(&PostParams::default(), &namespace)
            .await?;
        let finished = Arc::new(Mutex::new(HashMap::new()));
        spawn_finish_recorder(&cluster, finished.clone());
        Ok(Bench {
            cluster,
            state,
            finished,
        })
    }

    /// A connection as the admin user, as a service connector would produce it.
    pub(crate) async fn connection(&self) -> anyhow::Result<ClusterConnection> {
        let kubeconfig = self.cluster.kubeconfig()?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(ClusterConnection::new(config))
    }

    /// A fresh operator (with its own shared watch) for the bench namespace.
    pub(crate) async fn operator(&self, name: &str) -> anyhow::Result<KubernetesStepOperator> {
        let config = KubernetesStepOperatorConfig {
            kubernetes_namespace: NAMESPACE.into(),
            ..KubernetesStepOperatorConfig::default()
        };
        let context = StepOperatorContext::new(name)
            .with_connection(self.connection().await?)
            .with_state_dir(self.state.path().join(name));
        Ok(KubernetesStepOperator::new(config, context))
    }

    /// When the emulator marked the pod of `step_run_id` finished, if it has.
    pub(crate) fn finished_at(&self, step_run_id: &str) -> Option<Instant> {
        self.finished.lock().ok()?.get(step_run_id).copied()
    }
}

/// Records the instant each step's pod reaches a terminal phase, straight from the
/// emulator's store (no API round trip in between).
fn spawn_finish_recorder(cluster: &Cluster, finished: Arc<Mutex<HashMap<String, Instant>>>) {
    let mut events = cluster.store().subscribe_all();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let now = Instant::now();
            if event.resource != stepstack_testkit::ResourceKind::Pod {
                continue;
            }
            let phase = event
                .object
                .pointer("/status/phase")
                .and_then(|p| p.as_str());
            if !matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            let Some(id) = event
                .object
                .pointer("/metadata/labels")
                .and_then(|l| l.get(STEP_RUN_LABEL))
                .and_then(|v| v.as_str())
            else {
                continue;
            };
            if let Ok(mut map) = finished.lock() {
                map.entry(id.to_owned()).or_insert(now);
            }
        }
    });
}
