//! The cluster's moving parts: nodes, a scheduler, a Job controller, a process kubelet
//! and pod logs, all driven by the store's change feed.
//!
//! [`Runtime::start`] creates the Node objects from [`RuntimeOptions::nodes`] and spawns
//! the control loops on the current Tokio runtime. Tests trigger disruptions through
//! [`Runtime::evict_pod`], [`Runtime::preempt_pod`], [`Runtime::lose_node`] and
//! [`Runtime::restore_node`]; a
//! simulated OOM kill is asked for with the pod annotation
//! [`SIMULATE_OOM_ANNOTATION`] (see the [`kubelet`] module docs for the process
//! conventions: working directory, volumes, termination messages).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::store::{ResourceKind, Store, StoreEvent, WatchEventType, now_rfc3339};

mod job_controller;
pub mod kubelet;
mod logs;
mod nodes;
mod quantity;
mod scheduler;
#[cfg(test)]
mod tests;

pub use kubelet::SIMULATE_OOM_ANNOTATION;
pub use kubelet::image::ImageOptions;
pub use nodes::{NodeConfig, NodesFileError, TaintConfig};

/// Runtime options. Build with `RuntimeOptions { nodes, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The nodes to create (default: one `node-1`, 8 CPUs, 32Gi, no GPU).
    pub nodes: Vec<NodeConfig>,
    /// Where pod directories and logs live (`<root>/pods/<ns>/<pod>-<uid prefix>/`).
    /// Default: a new temporary directory, removed when the runtime is dropped.
    pub root_dir: Option<PathBuf>,
    /// Image rules (missing images, private registries, pull delay).
    pub images: ImageOptions,
    /// First wait after a failed image pull (`ErrImagePull` → `ImagePullBackOff` →
    /// retry), doubling up to `max_backoff`. Default 1s.
    pub image_pull_backoff: Duration,
    /// First wait before restarting a container (`CrashLoopBackOff`), doubling up to
    /// `max_backoff`. Default 1s.
    pub crash_loop_backoff: Duration,
    /// Cap of both backoffs. Default 10s.
    pub max_backoff: Duration,
    /// Extra environment for every container process (for example
    /// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT` pointing at the emulator).
    pub container_env: BTreeMap<String, String>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            nodes: vec![NodeConfig::new("node-1")],
            root_dir: None,
            images: ImageOptions::default(),
            image_pull_backoff: Duration::from_secs(1),
            crash_loop_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            container_env: BTreeMap::new(),
        }
    }
}

/// The query of `GET /api/v1/namespaces/{ns}/pods/{name}/log`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct LogQuery {
    /// `container`: required when the pod has several containers.
    pub container: Option<String>,
    /// `follow`: stream until the container instance exits.
    pub follow: bool,
    /// `previous`: the instance before the last restart.
    pub previous: bool,
    /// `timestamps`: prefix each line with its RFC3339Nano timestamp.
    pub timestamps: bool,
    /// `sinceSeconds`.
    pub since_seconds: Option<i64>,
    /// `sinceTime` (RFC 3339).
    pub since_time: Option<String>,
    /// `tailLines`.
    pub tail_lines: Option<i64>,
    /// `limitBytes`.
    pub limit_bytes: Option<i64>,
}

/// The scheduler, job controller and process kubelet over one store.
pub struct Runtime {
    store: Store,
    kubelet: Arc<kubelet::Kubelet>,
    jobs: Arc<job_controller::JobController>,
    scheduler_wake: Arc<Notify>,
    bound: Arc<scheduler::BoundPods>,
    cancel: CancellationToken,
    root: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("root", &self.root).finish()
    }
}

impl Runtime {
    /// Creates the nodes and starts the controllers. Must be called from within a Tokio
    /// runtime (the loops are spawned on it).
    pub fn start(store: Store, options: RuntimeOptions) -> Arc<Runtime> {
        let (tempdir, root) = match &options.root_dir {
            Some(r) => (None, r.clone()),
            None => match tempfile::Builder::new()
                .prefix("stepstack-testkit-")
                .tempdir()
            {
                Ok(t) => {
                    let p = t.path().to_path_buf();
                    (Some(t), p)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no temporary directory; using the current directory");
                    (None, PathBuf::from("stepstack-testkit-pods"))
                }
            },
        };
        let cancel = CancellationToken::new();
        let opts = Arc::new(options);
        // Subscribe before anything is written so no change is missed.
        let events = store.subscribe_all();
        let now = now_rfc3339();
        for n in &opts.nodes {
            if let Err(e) = store.create(ResourceKind::Node, None, n.to_object(&now))
                && e.code != 409
            {
                tracing::warn!(node = %n.name, error = %e, "cannot create node");
            }
        }
        let kubelet = Arc::new(kubelet::Kubelet::new(
            store.clone(),
            opts.clone(),
            root.clone(),
            cancel.clone(),
        ));
        let (jobs, job_rx) = job_controller::JobController::new(store.clone(), cancel.clone());
        let rt = Arc::new(Runtime {
            store: store.clone(),
            kubelet,
            jobs: jobs.clone(),
            scheduler_wake: Arc::new(Notify::new()),
            bound: Arc::new(scheduler::BoundPods::default()),
            cancel: cancel.clone(),
            root,
            _tempdir: tempdir,
        });
        tokio::spawn(jobs.run(job_rx));
        {
            let store = store.clone();
            let wake = rt.scheduler_wake.clone();
            let cancel = cancel.clone();
            let bound = rt.bound.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = wake.notified() => scheduler::schedule_pass(&store, &bound),
                        () = cancel.cancelled() => return,
                    }
                }
            });
        }
        let d = Dispatcher {
            kubelet: rt.kubelet.clone(),
            jobs: rt.jobs.clone(),
            scheduler_wake: rt.scheduler_wake.clone(),
            bound: rt.bound.clone(),
            store,
        };
        d.resync();
        tokio::spawn(d.run(events, cancel));
        rt
    }

    /// Streams a pod's logs (`GET …/pods/{name}/log`) with the real API server's errors.
    pub async fn pod_log(
        &self,
        namespace: &str,
        pod: &str,
        query: LogQuery,
    ) -> Result<BoxStream<'static, Result<bytes::Bytes, std::io::Error>>, ApiError> {
        let obj = self.store.get(ResourceKind::Pod, Some(namespace), pod)?;
        let container = logs::resolve_container(&obj, query.container.as_deref(), query.previous)?;
        let mut opts = logs::read_options(
            pod,
            query.follow,
            query.timestamps,
            query.since_seconds,
            query.since_time.as_deref(),
            query.tail_lines,
            query.limit_bytes,
        )?;
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let file = self
            .kubelet
            .pod_logs(namespace, pod)
            .filter(|l| l.uid == uid)
            .and_then(|l| {
                let map = l.containers.lock().ok()?;
                let c = map.get(&container)?;
                if query.previous {
                    c.previous.clone()
                } else {
                    c.current.clone()
                }
            });
        match file {
            Some(f) => {
                if query.previous {
                    opts.follow = false;
                }
                Ok(f.stream(opts))
            }
            None => Ok(Box::pin(futures::stream::empty())),
        }
    }

    /// Evicts a running pod as the kubelet does under memory pressure: its containers are
    /// killed, the pod ends `Failed` with reason `Evicted`, message "The node was low on
    /// resource: memory.", and a `DisruptionTarget` condition (reason
    /// `TerminationByKubelet`); an `Evicted` event is recorded. The pod is not deleted.
    pub async fn evict_pod(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        self.store.get(ResourceKind::Pod, Some(namespace), name)?;
        self.kubelet.evict(namespace, name).await
    }

    /// Preempts a running pod as the scheduler does to make room for a pod of higher
    /// priority: a `DisruptionTarget` condition (reason `PreemptionByScheduler`), a
    /// `Preempted` event, its containers killed (the pod ends `Failed`), and the pod deleted.
    pub async fn preempt_pod(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        self.store.get(ResourceKind::Pod, Some(namespace), name)?;
        self.kubelet.preempt(namespace, name).await
    }

    /// Simulates losing a node: it turns `Ready=Unknown` (reason `NodeStatusUnknown`) with
    /// the `node.kubernetes.io/unreachable` NoSchedule and NoExecute taints, its processes
    /// are killed, and its unfinished pods end `Failed` with reason `NodeLost` and a
    /// `DisruptionTarget` condition (reason `DeletionByTaintManager`). Pods deleted later
    /// are removed at once (nobody answers on the node). No new pods are scheduled there.
    pub fn lose_node(&self, name: &str) -> Result<(), ApiError> {
        let now = now_rfc3339();
        self.store.modify(ResourceKind::Node, None, name, |n| {
            n["status"]["conditions"] = nodes::node_conditions(false, &now);
            let mut taints: Vec<Value> = n
                .pointer("/spec/taints")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            taints.retain(|t| {
                t.get("key").and_then(Value::as_str) != Some("node.kubernetes.io/unreachable")
            });
            taints.extend(nodes::unreachable_taints(&now));
            n["spec"]["taints"] = Value::Array(taints);
            Ok(())
        })?;
        let node = self.store.get(ResourceKind::Node, None, name)?;
        let _ = self.store.record_event_from(
            "node-controller",
            None,
            "default",
            &node,
            "Normal",
            "NodeNotReady",
            &format!("Node {name} status is now: NodeNotReady"),
        );
        self.kubelet.lose_node(name);
        Ok(())
    }

    /// Brings a lost node back: `Ready=True`, the unreachable taints removed.
    pub fn restore_node(&self, name: &str) -> Result<(), ApiError> {
        let now = now_rfc3339();
        self.kubelet.restore_node(name);
        self.store.modify(ResourceKind::Node, None, name, |n| {
            n["status"]["conditions"] = nodes::node_conditions(true, &now);
            if let Some(taints) = n.pointer_mut("/spec/taints").and_then(Value::as_array_mut) {
                taints.retain(|t| {
                    t.get("key").and_then(Value::as_str) != Some("node.kubernetes.io/unreachable")
                });
            }
            Ok(())
        })?;
        Ok(())
    }

    /// The local directory of a pod this runtime runs (its containers' working
    /// directory; volume mounts are symlinks inside it). `None` for pods not started here.
    pub fn pod_root(&self, namespace: &str, name: &str) -> Option<PathBuf> {
        self.kubelet.pod_root(namespace, name)
    }

    /// The directory under which pod directories are created.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// Stops the control loops and kills every container process.
    pub fn shutdown(&self) {
        self.cancel.cancel();
        self.kubelet.shutdown();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Routes store changes to the scheduler, the job controller and the kubelet.
struct Dispatcher {
    store: Store,
    kubelet: Arc<kubelet::Kubelet>,
    jobs: Arc<job_controller::JobController>,
    scheduler_wake: Arc<Notify>,
    bound: Arc<scheduler::BoundPods>,
}

fn owning_job(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| {
            r.get("kind").and_then(Value::as_str) == Some("Job")
                && r.get("controller").and_then(Value::as_bool) == Some(true)
        })?
        .get("name")?
        .as_str()
}

fn phase(pod: &Value) -> Option<&str> {
    pod.pointer("/status/phase").and_then(Value::as_str)
}

impl Dispatcher {
    /// Looks at everything again (at start and after falling behind).
    fn resync(&self) {
        let (pods, _) = self.store.list(
            ResourceKind::Pod,
            None,
            &crate::store::ListFilter::default(),
        );
        self.bound.reset(&pods);
        for p in &pods {
            self.kubelet.sync_pod(p, false);
        }
        self.jobs.enqueue_all();
        self.kubelet.config_changed();
        self.scheduler_wake.notify_one();
    }

    fn handle(&self, ev: &StoreEvent) {
        let deleted = ev.kind == WatchEventType::Deleted;
        match ev.resource {
            ResourceKind::Pod => {
                self.bound.observe(&ev.object, deleted);
                self.kubelet.sync_pod(&ev.object, deleted);
                let unbound = ev
                    .object
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty);
                let phase_changed = ev.old_object.as_ref().map(phase) != Some(phase(&ev.object));
                if deleted || unbound || phase_changed {
                    self.scheduler_wake.notify_one();
                }
                if let (Some(job), Some(ns)) = (owning_job(&ev.object), ev.namespace.as_deref()) {
                    self.jobs.enqueue(ns, job);
                }
            }
            ResourceKind::Job => {
                if deleted {
                    if let Some(uid) = ev.object.pointer("/metadata/uid").and_then(Value::as_str) {
                        self.jobs.forget(uid);
                    }
                } else if let Some(ns) = ev.namespace.as_deref() {
                    self.jobs.enqueue(ns, &ev.name);
                }
            }
            ResourceKind::Node => self.scheduler_wake.notify_one(),
            ResourceKind::Secret | ResourceKind::ConfigMap => self.kubelet.config_changed(),
            _ => {}
        }
    }

    async fn run(
        self,
        mut events: broadcast::Receiver<Arc<StoreEvent>>,
        cancel: CancellationToken,
    ) {
        loop {
            let ev = tokio::select! {
                ev = events.recv() => ev,
                () = cancel.cancelled() => return,
            };
            match ev {
                Ok(ev) => self.handle(&ev),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "runtime fell behind the store; resyncing");
                    self.resync();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
