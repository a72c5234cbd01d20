//! The process kubelet: runs the containers of pods bound to the emulated nodes as
//! local processes and reports their status, events and logs.
//!
//! Each pod gets a worker task (`run_pod`): sandbox (pod directory, volumes), init
//! containers in order, then one task per app container that pulls the (simulated)
//! image, resolves the environment, starts the process, waits for it and restarts it
//! per `restartPolicy`. Deletion, eviction and node loss stop the worker and signal the
//! process groups.
//!
//! # Conventions
//!
//! - Each pod gets a root directory, `<runtime root>/pods/<namespace>/<pod>-<uid prefix>/`
//!   ([`crate::runtime::Runtime::pod_root`]). It is every container's working directory
//!   (or `<pod root>/<workingDir>` when `workingDir` is set); `$TESTKIT_POD_ROOT` and
//!   `$HOME` point to it, `$HOSTNAME` is the pod's hostname.
//! - Volumes are directories under `<pod root>/.volumes/<name>/` (a `hostPath` volume is
//!   the host path itself); each `volumeMount` is a symlink at `<pod root>/<mountPath>`
//!   to the volume (or its `subPath`). A container that mounts a volume at `/data` finds
//!   it at `./data`. Supported: `emptyDir`, `hostPath`, `configMap`, `secret`,
//!   `projected` (configMap, secret, serviceAccountToken) and `downwardAPI` (fieldRef);
//!   any other type is an empty directory. A missing config map or secret keeps the pod
//!   in `ContainerCreating` with `FailedMount` events until it appears.
//! - No `command` and no `args`: the image's entrypoint is unknown, so the container
//!   runs `sleep infinity` (a long-running server). Only `args`: they are the command.
//! - The termination message is read from `<pod root>/<terminationMessagePath>`
//!   (default `<pod root>/dev/termination-log`; also given as
//!   `$TESTKIT_TERMINATION_MESSAGE_PATH`), at most 4096 bytes.
//! - Simulated OOM: with the pod annotation `testkit.stepstack.dev/simulate-oom`, every
//!   container that has `resources.limits.memory` is SIGKILLed once it has started and
//!   reported `terminated` with reason `OOMKilled` and exit code 137. The value `"true"`
//!   kills at once; a duration (`"500ms"`, `"2s"`) lets the process run that long first;
//!   a comma-separated list of container names limits it to those containers.
//! - Pod IP and host IP are `127.0.0.1`: the processes really run on loopback.
//! - Probes are not run: a running container is ready at once.
//! - Init containers run in order; one with `restartPolicy: Always` is a sidecar: the
//!   next container starts once it runs, and it gets SIGTERM when the app containers
//!   are done (its exit code doesn't affect the pod phase).
//! - Images are simulated; the rules are on `ImageOptions`. With `imagePullPolicy:
//!   Never`, any image that would pull counts as present.

mod container;
pub(crate) mod disrupt;
pub(crate) mod env;
pub(crate) mod image;
mod process;
pub(crate) mod status;
pub(crate) mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use self::env::{Lookup, Source};
use self::status::{CState, ContainerRecord, PodRecord};
use super::RuntimeOptions;
use super::logs::LogFile;
use super::quantity::Resources;
use crate::error::ApiError;
use crate::store::{ResourceKind, Store, now_rfc3339};

/// The pod annotation that turns on simulated OOM kills (see the module docs).
pub const SIMULATE_OOM_ANNOTATION: &str = "testkit.stepstack.dev/simulate-oom";

/// The pod IP and host IP reported for every pod.
const LOOPBACK: &str = "127.0.0.1";

/// The log files of one container: the running (or last) instance and the one before.
#[derive(Debug, Default)]
pub(crate) struct ContainerLogs {
    pub(crate) current: Option<LogFile>,
    pub(crate) previous: Option<LogFile>,
}

/// The logs of one pod, kept until the pod is deleted.
#[derive(Debug)]
pub(crate) struct PodLogs {
    pub(crate) uid: String,
    pub(crate) containers: Mutex<BTreeMap<String, ContainerLogs>>,
}

/// One pod's worker state.
struct PodWorker {
    uid: String,
    ns: String,
    name: String,
    node: String,
    root: PathBuf,
    pod: Pod,
    /// The pod as an event's involved object.
    involved: Value,
    record: Mutex<PodRecord>,
    /// Stops pulls, restarts and backoffs.
    stop: CancellationToken,
    /// Running container → process group.
    procs: Mutex<BTreeMap<String, i32>>,
    procs_changed: Notify,
    /// Signalled when a container starts (sidecar ordering).
    sandbox_changed: Notify,
    /// Containers the OOM simulation killed.
    oom_killed: Mutex<HashSet<String>>,
    /// True once `run_pod` has returned.
    done: watch::Sender<bool>,
    /// No more status writes (the node is gone).
    silenced: AtomicBool,
    deleting: AtomicBool,
}

/// The process kubelet for all emulated nodes.
pub(crate) struct Kubelet {
    store: Store,
    opts: Arc<RuntimeOptions>,
    root: PathBuf,
    node_alloc: HashMap<String, Resources>,
    workers: Mutex<HashMap<String, Arc<PodWorker>>>,
    logs: Mutex<HashMap<(String, String), Arc<PodLogs>>>,
    pulled: Mutex<HashSet<(String, String)>>,
    lost_nodes: Mutex<HashSet<String>>,
    config_gen: watch::Sender<u64>,
    cancel: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads config maps and secrets of one namespace from the store.
struct StoreLookup<'a> {
    store: &'a Store,
    ns: &'a str,
}

impl Lookup for StoreLookup<'_> {
    fn data(&self, source: Source, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let kind = match source {
            Source::ConfigMap => ResourceKind::ConfigMap,
            Source::Secret => ResourceKind::Secret,
        };
        let obj = self.store.get(kind, Some(self.ns), name).ok()?;
        let mut out = BTreeMap::new();
        let b64 = base64::engine::general_purpose::STANDARD;
        let strings = |field: &str| {
            obj.get(field)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect::<Vec<_>>()
        };
        match source {
            Source::ConfigMap => {
                for (k, v) in strings("data") {
                    out.insert(k, v.into_bytes());
                }
                for (k, v) in strings("binaryData") {
                    out.insert(k, b64.decode(v).unwrap_or_default());
                }
            }
            Source::Secret => {
                for (k, v) in strings("data") {
                    out.insert(k, b64.decode(v).unwrap_or_default());
                }
                for (k, v) in strings("stringData") {
                    out.insert(k, v.into_bytes());
                }
            }
        }
        Some(out)
    }
}

impl Kubelet {
    pub(crate) fn new(
        store: Store,
        opts: Arc<RuntimeOptions>,
        root: PathBuf,
        cancel: CancellationToken,
    ) -> Self {
        let node_alloc = opts
            .nodes
            .iter()
            .map(|n| {
                let alloc: BTreeMap<String, String> = n.allocatable();
                let mut r = Resources::default();
                for (k, v) in alloc {
                    if let Some(q) = super::quantity::parse_milli(&v) {
                        r.0.insert(k, q);
                    }
                }
                (n.name.clone(), r)
            })
            .collect();
        Self {
            store,
            opts,
            root,
            node_alloc,
            workers: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
            pulled: Mutex::new(HashSet::new()),
            lost_nodes: Mutex::new(HashSet::new()),
            config_gen: watch::channel(0).0,
            cancel,
        }
    }

    /// A config map or secret changed: wake workers waiting for one.
    pub(crate) fn config_changed(&self) {
        self.config_gen.send_modify(|g| *g += 1);
    }

    pub(crate) fn is_lost(&self, node: &str) -> bool {
        lock(&self.lost_nodes).contains(node)
    }

    /// The pod's root directory.
    fn pod_dir(&self, ns: &str, name: &str, uid: &str) -> PathBuf {
        let short: String = uid.chars().filter(|c| *c != '-').take(8).collect();
        self.root
            .join("pods")
            .join(ns)
            .join(format!("{name}-{short}"))
    }

    /// The root directory of a pod this kubelet runs (or ran).
    pub(crate) fn pod_root(&self, ns: &str, name: &str) -> Option<PathBuf> {
        lock(&self.workers)
            .values()
            .find(|w| w.ns == ns && w.name == name)
            .map(|w| w.root.clone())
    }

    /// The logs of a pod, if it ran here.
    pub(crate) fn pod_logs(&self, ns: &str, name: &str) -> Option<Arc<PodLogs>> {
        lock(&self.logs)
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Reacts to a pod change (from the store's event stream).
    pub(crate) fn sync_pod(self: &Arc<Self>, pod: &Value, deleted: bool) {
        let uid = pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ns = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if deleted {
            self.forget(&uid, &ns, &name);
            return;
        }
        let Some(node) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| self.node_alloc.contains_key(*n))
        else {
            return;
        };
        let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
        if self.is_lost(node) {
            // No kubelet answers on a lost node; let deletions finish.
            if deleting {
                let _ = self
                    .store
                    .finalize_delete(ResourceKind::Pod, Some(&ns), &name);
            }
            return;
        }
        let existing = lock(&self.workers).get(&uid).cloned();
        match existing {
            Some(w) => {
                if deleting && !w.deleting.swap(true, Ordering::SeqCst) {
                    let grace = pod
                        .pointer("/metadata/deletionGracePeriodSeconds")
                        .and_then(Value::as_i64)
                        .unwrap_or(30)
                        .max(0);
                    let me = self.clone();
                    tokio::spawn(async move { me.terminate(w, grace).await });
                }
            }
            None => {
                if deleting {
                    let _ = self
                        .store
                        .finalize_delete(ResourceKind::Pod, Some(&ns), &name);
                    return;
                }
                let phase = pod.pointer("/status/phase").and_then(Value::as_str);
                if matches!(phase, Some("Succeeded" | "Failed")) {
                    return;
                }
                match serde_json::from_value::<Pod>(pod.clone()) {
                    Ok(p) => self.start_worker(p, pod, node),
                    Err(e) => {
                        tracing::warn!(%ns, %name, error = %e, "cannot run a pod that doesn't parse");
                    }
                }
            }
        }
    }

    fn start_worker(self: &Arc<Self>, pod: Pod, raw: &Value, node: &str) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let record = PodRecord {
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| {
                    let mut r = ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or(""));
                    r.sidecar = c.restart_policy.as_deref() == Some("Always");
                    r
                })
                .collect(),
            containers: spec
                .containers
                .iter()
                .map(|c| ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or("")))
                .collect(),
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
            start_time: now_rfc3339(),
            pod_ip: String::new(),
            host_ip: LOOPBACK.into(),
            sandbox_ready: false,
            forced: None,
        };
        let involved = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": uid,
                "resourceVersion": raw.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)},
        });
        let worker = Arc::new(PodWorker {
            root: self.pod_dir(&ns, &name, &uid),
            uid: uid.clone(),
            ns: ns.clone(),
            name: name.clone(),
            node: node.to_string(),
            pod,
            involved,
            record: Mutex::new(record),
            stop: self.cancel.child_token(),
            procs: Mutex::new(BTreeMap::new()),
            procs_changed: Notify::new(),
            sandbox_changed: Notify::new(),
            oom_killed: Mutex::new(HashSet::new()),
            done: watch::channel(false).0,
            silenced: AtomicBool::new(false),
            deleting: AtomicBool::new(false),
        });
        lock(&self.workers).insert(uid.clone(), worker.clone());
        lock(&self.logs).insert(
            (ns, name),
            Arc::new(PodLogs {
                uid,
                containers: Mutex::new(BTreeMap::new()),
            }),
        );
        let me = self.clone();
        tokio::spawn(async move {
            me.run_pod(&worker).await;
            worker.done.send_replace(true);
        });
    }

    /// The pod is gone from the store: kill what still runs, drop logs and files.
    fn forget(&self, uid: &str, ns: &str, name: &str) {
        let worker = lock(&self.workers).remove(uid);
        {
            let mut logs = lock(&self.logs);
            if logs
                .get(&(ns.to_string(), name.to_string()))
                .is_some_and(|l| l.uid == uid)
            {
                logs.remove(&(ns.to_string(), name.to_string()));
            }
        }
        if let Some(w) = worker {
            Self::silence(&w);
            Self::stop_worker(&w);
            Self::signal_all(&w, Signal::SIGKILL);
            tokio::spawn(async move {
                let mut done = w.done.subscribe();
                let _ = tokio::time::timeout(Duration::from_secs(30), done.wait_for(|d| *d)).await;
                let root = w.root.clone();
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(root)).await;
            });
        }
    }

    /// No more status writes or events from this worker.
    fn silence(w: &PodWorker) {
        let _guard = lock(&w.record);
        w.silenced.store(true, Ordering::SeqCst);
    }

    fn stop_worker(w: &PodWorker) {
        w.stop.cancel();
    }

    fn signal_all(w: &PodWorker, sig: Signal) -> usize {
        let procs = lock(&w.procs).clone();
        for pgid in procs.values() {
            process::signal_group(*pgid, sig);
        }
        procs.len()
    }

    /// Writes the worker's status to the pod.
    fn publish(&self, w: &PodWorker) {
        // Checked under the record lock: `silence` takes it too, so no write slips
        // in after a node was lost.
        let rec = lock(&w.record);
        if w.silenced.load(Ordering::SeqCst) {
            return;
        }
        let now = now_rfc3339();
        let res = self
            .store
            .modify(ResourceKind::Pod, Some(&w.ns), &w.name, |p| {
                if p.pointer("/metadata/uid").and_then(Value::as_str) != Some(w.uid.as_str()) {
                    return Err(ApiError::conflict("pods", &w.name));
                }
                let old = p.get("status").cloned().unwrap_or(json!({}));
                p["status"] = rec.to_status(&old, &now);
                Ok(())
            });
        if let Err(e) = res
            && e.code != 404
        {
            tracing::debug!(pod = %w.name, error = %e, "status write skipped");
        }
    }

    fn event(&self, w: &PodWorker, type_: &str, reason: &str, message: &str) {
        if w.silenced.load(Ordering::SeqCst) {
            return;
        }
        let _ = self.store.record_event_from(
            "kubelet",
            Some(&w.node),
            &w.ns,
            &w.involved,
            type_,
            reason,
            message,
        );
    }

    fn set_state(&self, w: &PodWorker, name: &str, init: bool, state: CState) {
        {
            let mut rec = lock(&w.record);
            if let Some(c) = rec.container_mut(name, init) {
                c.state = state;
            }
        }
        self.publish(w);
    }

    async fn run_pod(self: &Arc<Self>, w: &Arc<PodWorker>) {
        if let Err(e) = std::fs::create_dir_all(&w.root) {
            tracing::warn!(pod = %w.name, error = %e, "cannot create the pod directory");
        }
        self.publish(w);
        // The sandbox: volumes (retried until their config maps / secrets exist).
        let mut cfg = self.config_gen.subscribe();
        let volumes = loop {
            let lookup = StoreLookup {
                store: &self.store,
                ns: &w.ns,
            };
            match volumes::prepare(&w.pod, &w.root, &lookup, LOOPBACK) {
                Ok(v) => break v,
                Err(msg) => {
                    self.event(w, "Warning", "FailedMount", &msg);
                    tokio::select! {
                        _ = cfg.changed() => {}
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                        () = w.stop.cancelled() => return,
                    }
                }
            }
        };
        {
            let mut rec = lock(&w.record);
            rec.sandbox_ready = true;
            rec.pod_ip = LOOPBACK.into();
        }
        self.publish(w);
        let spec = w.pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        // Sidecars (init containers with `restartPolicy: Always`) run beside the app
        // containers and are stopped once those are done.
        let sidecar_stop = w.stop.child_token();
        let mut sidecars = Vec::new();
        for c in spec.init_containers.iter().flatten() {
            if c.restart_policy.as_deref() == Some("Always") {
                let me = self.clone();
                let wc = w.clone();
                let volumes = volumes.clone();
                let stop = sidecar_stop.clone();
                let c2 = c.clone();
                sidecars.push(tokio::spawn(async move {
                    me.run_container(&wc, &c2, true, "Always", &volumes, &stop)
                        .await;
                }));
                // The next init container starts once the sidecar has started.
                loop {
                    // Registered before the check, so a start in between isn't missed.
                    let notified = w.sandbox_changed.notified();
                    let started = {
                        let rec = lock(&w.record);
                        rec.init.iter().any(|r| r.name == c.name && r.started_once)
                    };
                    if started {
                        break;
                    }
                    tokio::select! {
                        () = notified => {}
                        () = w.stop.cancelled() => return,
                    }
                }
                continue;
            }
            // Init containers are retried until they succeed unless the policy is Never.
            let init_policy = if policy == "Never" {
                "Never"
            } else {
                "OnFailure"
            };
            let ok = self
                .run_container(w, c, true, init_policy, &volumes, &w.stop)
                .await;
            if !ok {
                sidecar_stop.cancel();
                self.stop_sidecars(w, &spec);
                self.publish(w);
                return;
            }
        }
        let mut tasks = Vec::new();
        for c in spec.containers.clone() {
            let me = self.clone();
            let wc = w.clone();
            let volumes = volumes.clone();
            let policy = policy.clone();
            tasks.push(tokio::spawn(async move {
                let stop = wc.stop.clone();
                me.run_container(&wc, &c, false, &policy, &volumes, &stop)
                    .await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        sidecar_stop.cancel();
        self.stop_sidecars(w, &spec);
        for t in sidecars {
            let _ = t.await;
        }
        self.publish(w);
    }

    /// Sends SIGTERM to the running sidecars (their restarts are already cancelled).
    fn stop_sidecars(&self, w: &PodWorker, spec: &k8s_openapi::api::core::v1::PodSpec) {
        let procs = lock(&w.procs).clone();
        for c in spec.init_containers.iter().flatten() {
            if c.restart_policy.as_deref() == Some("Always")
                && let Some(pgid) = procs.get(&c.name)
            {
                self.event(
                    w,
                    "Normal",
                    "Killing",
                    &format!("Stopping container {}", c.name),
                );
                process::signal_group(*pgid, Signal::SIGTERM);
            }
        }
    }
}
