//! One shared watch per namespace over the managed Jobs and pods
//! (`app.kubernetes.io/managed-by=stepstack`), feeding every waiter of the operator.
//!
//! Each namespace gets one `kube_runtime::watcher` for Jobs and one for pods. The
//! watcher lists once, then watches from the list's resourceVersion; after a dropped
//! connection it resumes from the last resourceVersion it saw, after `410 Gone` it
//! relists, and errors are retried with exponential backoff and jitter. Events update
//! [`state::NamespaceState`], which wakes only the waiters of the step run concerned.
//!
//! When the watch of a kind fails [`POLL_AFTER`] times in a row (a 500 on every watch
//! request, say), the kind is also listed every [`POLL_EVERY`] until the watch
//! delivers again: one list per namespace, not one request per step, and the waiters
//! (and their deadlines) go on from what the lists show.

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
pub(crate) use state::ReadMark;

use crate::labels::MANAGED_SELECTOR;

/// Consecutive errors of a kind that retrying will not fix (401, 403, 404) after which
/// waiters are told instead of waiting forever.
const FATAL_AFTER: u32 = 3;

/// Failed watch attempts in a row after which a kind is read by listing instead, until
/// its watch delivers again (a watch that fails with 500 forever must not leave the
/// waiters without news).
const POLL_AFTER: u32 = 3;
/// How often a kind whose watch keeps failing is listed.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// How long one such list may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// How far the watch of a namespace is.
#[derive(Debug, Clone, Default)]
struct Readiness {
    jobs_listed: bool,
    pods_listed: bool,
    /// Whether the kind is listed every [`POLL_EVERY`] because its watch keeps failing.
    polling_jobs: bool,
    polling_pods: bool,
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

    /// The mark to take before reading a Job or pod directly from the API, for
    /// [`Self::insert_job`] and [`Self::insert_pod`].
    pub(crate) fn read_mark(&self) -> ReadMark {
        self.shared.state.lock().mark()
    }

    /// Puts a Job read directly from the API (in a read that began at `since`) into the
    /// state, unless the watch delivered a change of it meanwhile: an older copy must
    /// not replace a newer one, or a finished Job could read as running forever.
    pub(crate) fn insert_job(&self, job: Job, since: ReadMark) {
        self.shared.state.lock().offer_job(job, since);
    }

    /// Puts a pod read directly from the API into the state, as [`Self::insert_job`].
    pub(crate) fn insert_pod(&self, pod: Pod, since: ReadMark) {
        self.shared.state.lock().offer_pod(pod, since);
    }

    /// Whether the state of a kind is being read by listing because its watch keeps
    /// failing (for tests and diagnostics).
    #[allow(dead_code)]
    pub(crate) fn polling(&self) -> bool {
        let r = self.shared.readiness.borrow();
        r.polling_jobs || r.polling_pods
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
    fn relist(state: &mut NamespaceState, objs: Vec<Self>, since: ReadMark, authoritative: bool);
    fn listed(readiness: &mut Readiness);
    fn set_polling(readiness: &mut Readiness, polling: bool);
}

impl Tracked for Job {
    const KIND: &'static str = "jobs";
    fn apply(state: &mut NamespaceState, obj: Self) {
        state.apply_job(obj);
    }
    fn delete(state: &mut NamespaceState, obj: Self) {
        state.delete_job(obj);
    }
    fn relist(state: &mut NamespaceState, objs: Vec<Self>, since: ReadMark, authoritative: bool) {
        state.relist_jobs(objs, since, authoritative);
    }
    fn listed(readiness: &mut Readiness) {
        readiness.jobs_listed = true;
    }
    fn set_polling(readiness: &mut Readiness, polling: bool) {
        readiness.polling_jobs = polling;
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
    fn relist(state: &mut NamespaceState, objs: Vec<Self>, since: ReadMark, authoritative: bool) {
        state.relist_pods(objs, since, authoritative);
    }
    fn listed(readiness: &mut Readiness) {
        readiness.pods_listed = true;
    }
    fn set_polling(readiness: &mut Readiness, polling: bool) {
        readiness.polling_pods = polling;
    }
}

async fn run<K: Tracked>(shared: Arc<Shared>, api: kube::Api<K>) {
    let config = watcher::Config::default().labels(MANAGED_SELECTOR);
    let mut stream = StreamBackoff::new(
        watcher::watcher(api.clone(), config),
        WatchBackoff::default(),
    )
    .boxed();
    let mut relist: Option<(Vec<K>, ReadMark)> = None;
    // Failed watch attempts in a row; from POLL_AFTER on, the kind is also listed every
    // POLL_EVERY until the watch delivers again.
    let mut failures = 0u32;
    let mut next_poll: Option<tokio::time::Instant> = None;
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            () = poll_due(next_poll) => {
                poll(&shared, &api).await;
                next_poll = Some(tokio::time::Instant::now() + POLL_EVERY);
                continue;
            }
        };
        let Some(event) = event else { break };
        if event.is_ok() && failures > 0 {
            if failures >= POLL_AFTER {
                tracing::info!(namespace = %shared.namespace, kind = K::KIND, "the watch delivers again; no more listing");
                shared.readiness.send_modify(|r| K::set_polling(r, false));
            }
            failures = 0;
            next_poll = None;
        }
        match event {
            Ok(Event::Init) => relist = Some((Vec::new(), shared.state.lock().mark())),
            Ok(Event::InitApply(obj)) => relist
                .get_or_insert_with(|| (Vec::new(), shared.state.lock().mark()))
                .0
                .push(obj),
            Ok(Event::InitDone) => {
                let (objs, since) = relist
                    .take()
                    .unwrap_or_else(|| (Vec::new(), shared.state.lock().mark()));
                tracing::debug!(namespace = %shared.namespace, kind = K::KIND, count = objs.len(), "listed");
                K::relist(&mut shared.state.lock(), objs, since, true);
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
                failures = failures.saturating_add(1);
                if failures == POLL_AFTER {
                    tracing::warn!(namespace = %shared.namespace, kind = K::KIND, error = %err, "the watch keeps failing; listing every {POLL_EVERY:?} until it delivers again");
                    shared.readiness.send_modify(|r| K::set_polling(r, true));
                    next_poll = Some(tokio::time::Instant::now());
                }
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

/// Sleeps until `at`; never returns without one.
async fn poll_due(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Lists every managed object of a kind whose watch keeps failing and puts what changed
/// into the state, so waiters still learn how their steps end (and their deadlines are
/// judged on what the cluster shows now).
async fn poll<K: Tracked>(shared: &Shared, api: &kube::Api<K>) {
    let since = shared.state.lock().mark();
    let params = kube::api::ListParams::default().labels(MANAGED_SELECTOR);
    match tokio::time::timeout(POLL_TIMEOUT, api.list(&params)).await {
        Ok(Ok(list)) => {
            tracing::debug!(namespace = %shared.namespace, kind = K::KIND, count = list.items.len(), "listed while the watch fails");
            K::relist(&mut shared.state.lock(), list.items, since, false);
            shared.readiness.send_modify(K::listed);
        }
        Ok(Err(err)) => {
            tracing::debug!(namespace = %shared.namespace, kind = K::KIND, error = %err, "listing failed too");
        }
        Err(_) => {
            tracing::debug!(namespace = %shared.namespace, kind = K::KIND, "listing took longer than {POLL_TIMEOUT:?}");
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
