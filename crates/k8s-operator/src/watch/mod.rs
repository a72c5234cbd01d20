//! One shared watch per namespace over the managed Jobs and pods
//! (`app.kubernetes.io/managed-by=stepstack`), feeding every waiter of the operator.
//!
//! Each namespace gets one `kube_runtime::watcher` for Jobs and one for pods. The
//! watcher lists once, then watches from the list's resourceVersion; after a dropped
//! connection it resumes from the last resourceVersion it saw, after `410 Gone` it
//! relists, and errors are retried with exponential backoff and jitter. Events update
//! [`state::NamespaceState`], which wakes only the waiters of the step run concerned.

pub(crate) mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube_runtime::utils::{Backoff, StreamBackoff};
use kube_runtime::watcher::{self, Event};
use parking_lot::Mutex;
use stepstack_core::{Error, ErrorKind, Result};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::api::Api;
use crate::outcome::AttemptSnapshot;
use state::NamespaceState;

/// The label selector of everything stepstack manages.
pub(crate) const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=stepstack";

/// Consecutive errors of a kind that retrying will not fix (401, 403, 404) after which
/// waiters are told instead of waiting forever.
const FATAL_AFTER: u32 = 3;

/// How far the watch of a namespace is.
#[derive(Debug, Clone, Default)]
struct Readiness {
    jobs_listed: bool,
    pods_listed: bool,
    /// The last error that retrying does not fix, with how often it happened in a row.
    fatal: Option<(u16, String, u32)>,
}

#[derive(Debug)]
struct Shared {
    namespace: String,
    state: Mutex<NamespaceState>,
    readiness: watch::Sender<Readiness>,
}

/// The watch of one namespace. Dropping it stops the watch.
#[derive(Debug)]
pub(crate) struct NamespaceWatch {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl Drop for NamespaceWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The watches of an operator, one per namespace, started on first use.
#[derive(Debug, Default)]
pub(crate) struct WatchHub {
    namespaces: Mutex<HashMap<String, Arc<NamespaceWatch>>>,
}

impl WatchHub {
    /// The watch of `namespace`, started now if it is not running yet.
    pub(crate) fn namespace(&self, api: &Api, namespace: &str) -> Arc<NamespaceWatch> {
        let mut namespaces = self.namespaces.lock();
        if let Some(existing) = namespaces.get(namespace) {
            return existing.clone();
        }
        let shared = Arc::new(Shared {
            namespace: namespace.to_owned(),
            state: Mutex::new(NamespaceState::default()),
            readiness: watch::channel(Readiness::default()).0,
        });
        let client = api.client().clone();
        let jobs = tokio::spawn(run::<Job>(
            shared.clone(),
            kube::Api::namespaced(client.clone(), namespace),
        ));
        let pods = tokio::spawn(run::<Pod>(
            shared.clone(),
            kube::Api::namespaced(client, namespace),
        ));
        tracing::debug!(
            namespace,
            "started the shared watch of managed Jobs and pods"
        );
        let watch = Arc::new(NamespaceWatch {
            shared,
            tasks: vec![jobs.abort_handle(), pods.abort_handle()],
        });
        namespaces.insert(namespace.to_owned(), watch.clone());
        watch
    }
}

impl NamespaceWatch {
    /// Waits until both initial lists are in, failing after `timeout` or when the watch
    /// keeps failing in a way retries cannot fix.
    pub(crate) async fn ready(&self, timeout: Duration) -> Result<()> {
        let mut rx = self.shared.readiness.subscribe();
        let wait = rx.wait_for(|r| {
            (r.jobs_listed && r.pods_listed) || r.fatal.as_ref().is_some_and(|f| f.2 >= FATAL_AFTER)
        });
        let namespace = self.shared.namespace.clone();
        let readiness = match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(r)) => r.clone(),
            Ok(Err(_)) => {
                return Err(
                    Error::new(ErrorKind::Internal, "the namespace watch stopped")
                        .with_context("namespace", namespace),
                );
            }
            Err(_) => {
                let last = self.shared.readiness.borrow().fatal.clone();
                let detail = last.map(|(_, m, _)| format!(": {m}")).unwrap_or_default();
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("could not list the managed Jobs and pods within {timeout:?}{detail}"),
                )
                .with_context("namespace", namespace));
            }
        };
        if readiness.jobs_listed && readiness.pods_listed {
            return Ok(());
        }
        let (code, message, _) = readiness.fatal.unwrap_or_default();
        let kind = match code {
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            _ => ErrorKind::Unavailable,
        };
        let hint = match code {
            403 => "; grant list and watch on jobs and pods in the namespace",
            404 => "; check that the namespace exists",
            _ => "",
        };
        Err(Error::new(
            kind,
            format!("cannot watch the step's Jobs and pods: {message}{hint}"),
        )
        .with_context("namespace", namespace))
    }

    /// Every attempt of `step_run` as the watch last saw it.
    pub(crate) fn snapshot(&self, step_run: &str) -> BTreeMap<u32, AttemptSnapshot> {
        self.shared.state.lock().snapshot(step_run)
    }

    /// Notifications for `step_run`; dropping the subscription unregisters it.
    pub(crate) fn subscribe(self: &Arc<Self>, step_run: &str) -> Subscription {
        let rx = self.shared.state.lock().subscribe(step_run);
        Subscription {
            watch: self.clone(),
            step_run: step_run.to_owned(),
            rx: Some(rx),
        }
    }

    /// Puts a Job read directly from the API into the state (when the watch has not
    /// delivered it yet).
    pub(crate) fn insert_job(&self, job: Job) {
        self.shared.state.lock().apply_job(job);
    }

    /// Puts a pod read directly from the API into the state.
    pub(crate) fn insert_pod(&self, pod: Pod) {
        self.shared.state.lock().apply_pod(pod);
    }

    /// How many step runs this namespace tracks.
    #[allow(dead_code)]
    pub(crate) fn step_runs(&self) -> usize {
        self.shared.state.lock().step_runs()
    }
}

/// Notifications about one step run.
#[derive(Debug)]
pub(crate) struct Subscription {
    watch: Arc<NamespaceWatch>,
    step_run: String,
    rx: Option<watch::Receiver<u64>>,
}

impl Subscription {
    /// Waits for the next change of the step run.
    pub(crate) async fn changed(&mut self) {
        match self.rx.as_mut() {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.watch.shared.state.lock().unsubscribe(&self.step_run);
    }
}

/// How a watched kind updates the state.
trait Tracked:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;
    fn apply(state: &mut NamespaceState, obj: Self);
    fn delete(state: &mut NamespaceState, obj: Self);
    fn relist(state: &mut NamespaceState, objs: Vec<Self>);
    fn listed(readiness: &mut Readiness);
}

impl Tracked for Job {
    const KIND: &'static str = "jobs";
    fn apply(state: &mut NamespaceState, obj: Self) {
        state.apply_job(obj);
    }
    fn delete(state: &mut NamespaceState, obj: Self) {
        state.delete_job(obj);
    }
    fn relist(state: &mut NamespaceState, objs: Vec<Self>) {
        state.relist_jobs(objs);
    }
    fn listed(readiness: &mut Readiness) {
        readiness.jobs_listed = true;
    }
}

impl Tracked for Pod {
    const KIND: &'static str = "pods";
    fn apply(state: &mut NamespaceState, obj: Self) {
        state.apply_pod(obj);
    }
    fn delete(state: &mut NamespaceState, obj: Self) {
        state.delete_pod(obj);
    }
    fn relist(state: &mut NamespaceState, objs: Vec<Self>) {
        state.relist_pods(objs);
    }
    fn listed(readiness: &mut Readiness) {
        readiness.pods_listed = true;
    }
}

async fn run<K: Tracked>(shared: Arc<Shared>, api: kube::Api<K>) {
    let config = watcher::Config::default().labels(MANAGED_SELECTOR);
    let mut stream =
        StreamBackoff::new(watcher::watcher(api, config), WatchBackoff::default()).boxed();
    let mut relist: Option<Vec<K>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => relist = Some(Vec::new()),
            Ok(Event::InitApply(obj)) => relist.get_or_insert_with(Vec::new).push(obj),
            Ok(Event::InitDone) => {
                let objs = relist.take().unwrap_or_default();
                tracing::debug!(namespace = %shared.namespace, kind = K::KIND, count = objs.len(), "listed");
                K::relist(&mut shared.state.lock(), objs);
                shared.readiness.send_modify(|r| {
                    K::listed(r);
                    r.fatal = None;
                });
            }
            Ok(Event::Apply(obj)) => {
                K::apply(&mut shared.state.lock(), obj);
                clear_fatal(&shared);
            }
            Ok(Event::Delete(obj)) => {
                K::delete(&mut shared.state.lock(), obj);
                clear_fatal(&shared);
            }
            Err(err) => {
                let code = error_code(&err);
                tracing::debug!(namespace = %shared.namespace, kind = K::KIND, error = %err, "watch error; retrying with backoff");
                if let Some(code) = code.filter(|c| matches!(c, 401 | 403 | 404)) {
                    shared.readiness.send_modify(|r| {
                        let count = r.fatal.as_ref().filter(|f| f.0 == code).map_or(0, |f| f.2) + 1;
                        r.fatal = Some((code, err.to_string(), count));
                    });
                    if shared
                        .readiness
                        .borrow()
                        .fatal
                        .as_ref()
                        .is_some_and(|f| f.2 == FATAL_AFTER)
                    {
                        tracing::warn!(namespace = %shared.namespace, kind = K::KIND, error = %err, "the watch keeps failing");
                        shared.state.lock().notify_all();
                    }
                }
            }
        }
    }
}

fn clear_fatal(shared: &Shared) {
    if shared.readiness.borrow().fatal.is_some() {
        shared.readiness.send_modify(|r| r.fatal = None);
    }
}

fn error_code(err: &watcher::Error) -> Option<u16> {
    let client_err = match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        watcher::Error::WatchError(status) => return Some(status.code),
        watcher::Error::NoResourceVersion => return None,
    };
    match client_err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Backoff of the watch after errors: 100 ms doubling to 5 s, with jitter; reset by
/// every successful event.
#[derive(Debug, Default)]
struct WatchBackoff {
    retries: u32,
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = crate::api::backoff_delay(self.retries);
        self.retries = self.retries.saturating_add(1);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.retries = 0;
    }
}
