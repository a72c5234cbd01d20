//! The batch/v1 Job controller: pods from the template, parallelism and completions,
//! Indexed completion mode, backoffLimit, activeDeadlineSeconds, status and conditions,
//! ttlSecondsAfterFinished.
//!
//! Differences from the real controller, kept on purpose: failed pods are replaced at
//! once (no exponential pod-failure backoff); pods get no `batch.kubernetes.io/job-tracking`
//! finalizer (the controller remembers which pods it counted; a pod that is deleted or
//! vanishes before finishing counts as failed at once, as the real controller counts it
//! without a podFailurePolicy); `suspend`, `podFailurePolicy`,
//! `successPolicy` and `backoffLimitPerIndex` are ignored.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::{
    DeleteOptions, ListFilter, Propagation, ResourceKind, Store, now_rfc3339, random_suffix,
};

/// The annotation and label carrying a pod's completion index.
pub(crate) const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// What the controller remembers about one job (by uid).
#[derive(Debug, Default)]
struct Tracking {
    /// Pods already counted as succeeded or failed.
    counted: HashSet<String>,
    /// Pods seen active and not yet counted.
    active: HashSet<String>,
}

/// The job controller.
pub(crate) struct JobController {
    store: Store,
    queue: mpsc::UnboundedSender<(String, String)>,
    tracking: Mutex<HashMap<String, Tracking>>,
    timers: Mutex<HashSet<(String, &'static str)>>,
    cancel: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn parse_time(v: Option<&Value>) -> Option<jiff::Timestamp> {
    v?.as_str()?.parse().ok()
}

/// `t + secs`, saturating at the end of time.
fn add_secs(t: jiff::Timestamp, secs: i64) -> jiff::Timestamp {
    t.saturating_add(jiff::SignedDuration::from_secs(secs))
        .unwrap_or(jiff::Timestamp::MAX)
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// Parses `completedIndexes` (`"0-2,4"`).
pub(crate) fn parse_indexes(s: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>())
                    && a <= b
                    && b - a < 1_000_000
                {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    out.insert(a);
                }
            }
        }
    }
    out
}

/// Formats indexes as `completedIndexes` (`"0-2,4"`).
pub(crate) fn format_indexes(set: &BTreeSet<i64>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

fn is_owned_by(pod: &Value, uid: &str) -> bool {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
        })
}

fn condition_true(obj: &Value, type_: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(type_)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn condition(type_: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": type_, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now})
}

/// The pod for a job (and completion index), from its template.
pub(crate) fn pod_from_template(job: &Value, index: Option<i64>) -> Value {
    let job_name = str_at(job, "/metadata/name");
    let uid = str_at(job, "/metadata/uid");
    let tpl = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut meta = tpl
        .get("metadata")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    let mut spec = tpl
        .get("spec")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    if !meta.get("labels").is_some_and(Value::is_object) {
        meta["labels"] = json!({});
    }
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", job_name),
        ("controller-uid", uid),
        ("job-name", job_name),
    ] {
        meta["labels"][k] = json!(v);
    }
    let prefix = match index {
        Some(i) => {
            meta["labels"][COMPLETION_INDEX] = json!(i.to_string());
            if !meta.get("annotations").is_some_and(Value::is_object) {
                meta["annotations"] = json!({});
            }
            meta["annotations"][COMPLETION_INDEX] = json!(i.to_string());
            if spec
                .get("hostname")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                spec["hostname"] = json!(format!("{job_name}-{i}"));
            }
            let env_var = json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                "apiVersion": "v1",
                "fieldPath": format!("metadata.annotations['{COMPLETION_INDEX}']")}}});
            for list in ["containers", "initContainers"] {
                if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                    for c in cs.iter_mut().filter(|c| c.is_object()) {
                        if !c.get("env").is_some_and(Value::is_array) {
                            c["env"] = json!([]);
                        }
                        if let Some(env) = c["env"].as_array_mut()
                            && !env
                                .iter()
                                .any(|e| e.get("name") == Some(&json!("JOB_COMPLETION_INDEX")))
                        {
                            env.push(env_var.clone());
                        }
                    }
                }
            }
            format!("{job_name}-{i}-")
        }
        None => format!("{job_name}-"),
    };
    meta["generateName"] = json!(prefix);
    meta["name"] = json!(format!("{prefix}{}", random_suffix(5)));
    if let Some(m) = meta.as_object_mut() {
        for f in ["uid", "resourceVersion", "creationTimestamp", "namespace"] {
            m.remove(f);
        }
    }
    meta["ownerReferences"] = json!([{
        "apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": uid,
        "controller": true, "blockOwnerDeletion": true,
    }]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

impl JobController {
    /// A controller and the receiver its [`JobController::run`] loop consumes.
    pub(crate) fn new(
        store: Store,
        cancel: CancellationToken,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<(String, String)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Self {
                store,
                queue: tx,
                tracking: Mutex::new(HashMap::new()),
                timers: Mutex::new(HashSet::new()),
                cancel,
            }),
            rx,
        )
    }

    /// Queues a job for reconciliation.
    pub(crate) fn enqueue(&self, ns: &str, name: &str) {
        let _ = self.queue.send((ns.to_string(), name.to_string()));
    }

    /// Queues every job.
    pub(crate) fn enqueue_all(&self) {
        let (jobs, _) = self
            .store
            .list(ResourceKind::Job, None, &ListFilter::default());
        for j in jobs {
            self.enqueue(
                str_at(&j, "/metadata/namespace"),
                str_at(&j, "/metadata/name"),
            );
        }
    }

    /// A job was deleted: forget what we tracked.
    pub(crate) fn forget(&self, uid: &str) {
        lock(&self.tracking).remove(uid);
    }

    /// Processes the queue until cancelled.
    pub(crate) async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<(String, String)>) {
        loop {
            let first = tokio::select! {
                k = rx.recv() => k,
                () = self.cancel.cancelled() => return,
            };
            let Some(first) = first else { return };
            let mut batch = BTreeSet::from([first]);
            while let Ok(k) = rx.try_recv() {
                batch.insert(k);
            }
            for (ns, name) in batch {
                self.reconcile(&ns, &name);
            }
        }
    }

    fn event(&self, job: &Value, type_: &str, reason: &str, message: &str) {
        let ns = str_at(job, "/metadata/namespace");
        let _ =
            self.store
                .record_event_from("job-controller", None, ns, job, type_, reason, message);
    }

    fn delete_pods(&self, job: &Value, pods: &[Value]) {
        let ns = str_at(job, "/metadata/namespace");
        for p in pods {
            let name = str_at(p, "/metadata/name");
            if self
                .store
                .delete(ResourceKind::Pod, Some(ns), name, DeleteOptions::default())
                .is_ok()
            {
                self.event(
                    job,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                );
            }
        }
    }

    /// Wakes the job at `at` (once per job and purpose).
    fn wake_at(
        self: &Arc<Self>,
        uid: &str,
        purpose: &'static str,
        at: jiff::Timestamp,
        action: impl FnOnce(&Self) + Send + 'static,
    ) {
        if !lock(&self.timers).insert((uid.to_string(), purpose)) {
            return;
        }
        let wait = at
            .duration_since(jiff::Timestamp::now())
            .unsigned_abs()
            .min(Duration::from_secs(365 * 24 * 3600));
        let wait = if at > jiff::Timestamp::now() {
            wait
        } else {
            Duration::ZERO
        };
        let me = self.clone();
        let uid = uid.to_string();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = me.cancel.cancelled() => return,
            }
            lock(&me.timers).remove(&(uid, purpose));
            action(&me);
        });
    }

    fn reconcile(self: &Arc<Self>, ns: &str, name: &str) {
        let Ok(job) = self.store.get(ResourceKind::Job, Some(ns), name) else {
            return;
        };
        if job.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let uid = str_at(&job, "/metadata/uid").to_string();
        let spec = job.get("spec").cloned().unwrap_or(json!({}));
        let status = job.get("status").cloned().unwrap_or(json!({}));
        let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64);
        let parallelism = int(&spec, "parallelism").unwrap_or(1).max(0);
        let completions = int(&spec, "completions");
        let indexed = spec.get("completionMode").and_then(Value::as_str) == Some("Indexed");
        let backoff_limit = int(&spec, "backoffLimit").unwrap_or(6);
        let deadline = int(&spec, "activeDeadlineSeconds");
        let suspended = spec
            .get("suspend")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let on_failure = spec
            .pointer("/template/spec/restartPolicy")
            .and_then(Value::as_str)
            == Some("OnFailure");
        // Every pod this controller creates carries the controller-uid label.
        let owned = ListFilter::labels(&format!("batch.kubernetes.io/controller-uid={uid}"))
            .unwrap_or_default();
        let (all, _) = self.store.list(ResourceKind::Pod, Some(ns), &owned);
        let pods: Vec<Value> = all.into_iter().filter(|p| is_owned_by(p, &uid)).collect();
        let finished_ok = condition_true(&job, "Complete");
        let finished_fail = condition_true(&job, "Failed");
        if finished_ok || finished_fail {
            if finished_fail {
                let active: Vec<Value> = pods
                    .iter()
                    .filter(|p| {
                        p.pointer("/metadata/deletionTimestamp").is_none()
                            && !matches!(str_at(p, "/status/phase"), "Succeeded" | "Failed")
                    })
                    .cloned()
                    .collect();
                self.delete_pods(&job, &active);
            }
            self.schedule_ttl(&job);
            return;
        }
        let now_ts = jiff::Timestamp::now();
        let now = now_rfc3339();
        let start = parse_time(status.get("startTime")).unwrap_or(now_ts);
        let start_text = status
            .get("startTime")
            .cloned()
            .unwrap_or_else(|| json!(now));
        let mut succeeded = int(&status, "succeeded").unwrap_or(0);
        let mut failed = int(&status, "failed").unwrap_or(0);
        let mut completed = parse_indexes(
            status
                .get("completedIndexes")
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        let mut active: Vec<Value> = Vec::new();
        let mut terminating = 0;
        let mut ready = 0;
        let mut restarts = 0;
        {
            let mut tracking = lock(&self.tracking);
            let t = tracking.entry(uid.clone()).or_default();
            let mut present = HashSet::new();
            for p in &pods {
                let puid = str_at(p, "/metadata/uid").to_string();
                present.insert(puid.clone());
                match str_at(p, "/status/phase") {
                    "Succeeded" => {
                        t.active.remove(&puid);
                        if t.counted.insert(puid) {
                            succeeded += 1;
                            if let Ok(i) = str_at(
                                p,
                                &format!(
                                    "/metadata/annotations/{}",
                                    COMPLETION_INDEX.replace('/', "~1")
                                ),
                            )
                            .parse::<i64>()
                            {
                                completed.insert(i);
                            }
                        }
                    }
                    "Failed" => {
                        t.active.remove(&puid);
                        if t.counted.insert(puid) {
                            failed += 1;
                        }
                    }
                    _ => {
                        if p.pointer("/metadata/deletionTimestamp").is_some() {
                            // A pod deleted before it finished (an eviction, a drain, a
                            // `kubectl delete`) has failed, as for the real controller
                            // without a podFailurePolicy: it counts against backoffLimit
                            // now, not once it is gone, so a Job with backoffLimit 0 fails
                            // instead of quietly running a replacement.
                            terminating += 1;
                            t.active.remove(&puid);
                            if t.counted.insert(puid) {
                                failed += 1;
                            }
                            continue;
                        }
                        if t.counted.contains(&puid) {
                            continue;
                        }
                        t.active.insert(puid);
                        if condition_true(p, "Ready") {
                            ready += 1;
                        }
                        if on_failure {
                            restarts += p
                                .pointer("/status/containerStatuses")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                                .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                                .sum::<i64>();
                        }
                        active.push(p.clone());
                    }
                }
            }
            let vanished: Vec<String> = t.active.difference(&present).cloned().collect();
            for v in vanished {
                t.active.remove(&v);
                t.counted.insert(v);
                failed += 1;
            }
        }
        if indexed {
            if let Some(c) = completions {
                completed.retain(|i| *i >= 0 && *i < c);
            }
            succeeded = succeeded.max(completed.len() as i64);
        }
        let complete = if indexed {
            completions.is_some_and(|c| completed.len() as i64 >= c)
        } else {
            match completions {
                Some(c) => succeeded >= c,
                None => succeeded >= 1 && active.is_empty(),
            }
        };
        let failure = if failed + restarts > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline.is_some_and(|d| now_ts >= add_secs(start, d)) {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        let mut created = 0;
        let mut conditions: Vec<Value> = status
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut completion_time = None;
        if let Some((reason, message)) = failure {
            self.delete_pods(&job, &active);
            terminating += active.len() as i64;
            active.clear();
            ready = 0;
            conditions.push(condition("FailureTarget", reason, message, &now));
            conditions.push(condition("Failed", reason, message, &now));
            self.event(&job, "Warning", reason, message);
        } else if complete {
            let message = "Reached expected number of succeeded pods";
            conditions.push(condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                message,
                &now,
            ));
            conditions.push(condition("Complete", "CompletionsReached", message, &now));
            completion_time = Some(now.clone());
            self.delete_pods(&job, &active);
            active.clear();
            ready = 0;
            self.event(&job, "Normal", "Completed", "Job completed");
        } else if !suspended {
            let have = active.len() as i64;
            if indexed {
                let c = completions.unwrap_or(0);
                let held: BTreeSet<i64> = active
                    .iter()
                    .filter_map(|p| {
                        str_at(
                            p,
                            &format!(
                                "/metadata/annotations/{}",
                                COMPLETION_INDEX.replace('/', "~1")
                            ),
                        )
                        .parse()
                        .ok()
                    })
                    .collect();
                let room = (parallelism - have).max(0) as usize;
                let todo: Vec<i64> = (0..c)
                    .filter(|i| !completed.contains(i) && !held.contains(i))
                    .take(room)
                    .collect();
                for i in todo {
                    if self.create_pod(&job, Some(i)) {
                        created += 1;
                    }
                }
            } else {
                let want = match completions {
                    Some(c) => parallelism.min((c - succeeded).max(0)),
                    None if succeeded > 0 => 0,
                    None => parallelism,
                };
                for _ in have..want {
                    if self.create_pod(&job, None) {
                        created += 1;
                    }
                }
            }
            if let Some(d) = deadline {
                let at = add_secs(start, d);
                let me_ns = ns.to_string();
                let me_name = name.to_string();
                self.wake_at(&uid, "deadline", at, move |jc| jc.enqueue(&me_ns, &me_name));
            }
        }
        let active_count = active.len() as i64 + created;
        let res = self.store.modify(ResourceKind::Job, Some(ns), name, |j| {
            if str_at(j, "/metadata/uid") != uid {
                return Err(crate::error::ApiError::conflict("jobs.batch", name));
            }
            if !j.get("status").is_some_and(Value::is_object) {
                j["status"] = json!({});
            }
            let st = &mut j["status"];
            st["startTime"] = start_text.clone();
            st["active"] = json!(active_count);
            st["ready"] = json!(ready);
            st["succeeded"] = json!(succeeded);
            st["failed"] = json!(failed);
            st["terminating"] = json!(terminating);
            st["uncountedTerminatedPods"] = json!({});
            if indexed {
                st["completedIndexes"] = json!(format_indexes(&completed));
            }
            if !conditions.is_empty() {
                st["conditions"] = json!(conditions);
            }
            if let Some(t) = &completion_time {
                st["completionTime"] = json!(t);
            }
            Ok(())
        });
        if let Ok(j) = res
            && (failure.is_some() || complete)
        {
            self.schedule_ttl(&j);
        }
    }

    fn create_pod(&self, job: &Value, index: Option<i64>) -> bool {
        let ns = str_at(job, "/metadata/namespace");
        for _ in 0..3 {
            let pod = pod_from_template(job, index);
            match self.store.create(ResourceKind::Pod, Some(ns), pod) {
                Ok(p) => {
                    let pname = str_at(&p, "/metadata/name");
                    self.event(
                        job,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {pname}"),
                    );
                    return true;
                }
                Err(e) if e.code == 409 => continue,
                Err(e) => {
                    self.event(
                        job,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {}", e.message),
                    );
                    return false;
                }
            }
        }
        false
    }

    /// Deletes a finished job `ttlSecondsAfterFinished` after it finished (background
    /// propagation, so its pods go too).
    fn schedule_ttl(self: &Arc<Self>, job: &Value) {
        let Some(ttl) = job
            .pointer("/spec/ttlSecondsAfterFinished")
            .and_then(Value::as_i64)
        else {
            return;
        };
        let finished = job
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| {
                matches!(
                    c.get("type").and_then(Value::as_str),
                    Some("Complete" | "Failed")
                )
            })
            .find_map(|c| parse_time(c.get("lastTransitionTime")))
            .or_else(|| parse_time(job.pointer("/status/completionTime")));
        let Some(finished) = finished else { return };
        let at = add_secs(finished, ttl.max(0));
        let uid = str_at(job, "/metadata/uid").to_string();
        let ns = str_at(job, "/metadata/namespace").to_string();
        let name = str_at(job, "/metadata/name").to_string();
        let precondition = uid.clone();
        self.wake_at(&uid, "ttl", at, move |jc| {
            let opts = DeleteOptions {
                propagation: Propagation::Background,
                precondition_uid: Some(precondition),
                ..DeleteOptions::default()
            };
            if let Err(e) = jc.store.delete(ResourceKind::Job, Some(&ns), &name, opts)
                && e.code != 404
                && e.code != 409
            {
                tracing::warn!(%ns, %name, error = %e, "TTL deletion of a job failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_sets_round_trip() {
        let s = parse_indexes("0-2,4, 7-8");
        assert_eq!(s, BTreeSet::from([0, 1, 2, 4, 7, 8]));
        assert_eq!(format_indexes(&s), "0-2,4,7-8");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert!(parse_indexes("x,5-3,-").is_empty());
    }

    #[test]
    fn pods_from_template() {
        let job = json!({
            "metadata": {"name": "train", "namespace": "ns", "uid": "u-1"},
            "spec": {"template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"subdomain": "svc", "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}]}}}
        });
        let p = pod_from_template(&job, None);
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(
            name.starts_with("train-") && name.len() == "train-".len() + 5,
            "{name}"
        );
        assert!(
            name[6..]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(p["metadata"]["labels"]["job-name"], "train");
        assert_eq!(p["metadata"]["labels"]["app"], "x");
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"],
            "u-1"
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
            true
        );
        assert!(p["spec"].get("hostname").is_none());

        let p = pod_from_template(&job, Some(2));
        assert!(
            p["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("train-2-")
        );
        assert_eq!(p["metadata"]["annotations"][COMPLETION_INDEX], "2");
        assert_eq!(p["metadata"]["labels"][COMPLETION_INDEX], "2");
        assert_eq!(p["spec"]["hostname"], "train-2");
        assert_eq!(p["spec"]["subdomain"], "svc");
        assert_eq!(
            p["spec"]["containers"][0]["env"][0]["name"],
            "JOB_COMPLETION_INDEX"
        );
    }
}
