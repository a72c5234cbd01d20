//! Deletion, eviction, node loss and shutdown.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::status::Forced;
use super::{Kubelet, PodWorker, lock};
use crate::error::ApiError;
use crate::store::{ResourceKind, now_rfc3339};

impl Kubelet {
    /// Graceful deletion: SIGTERM, SIGKILL after the grace period, then remove the pod.
    pub(super) async fn terminate(self: Arc<Self>, w: Arc<PodWorker>, grace: i64) {
        Self::stop_worker(&w);
        let running: Vec<String> = lock(&w.procs).keys().cloned().collect();
        for name in &running {
            self.event(
                &w,
                "Normal",
                "Killing",
                &format!("Stopping container {name}"),
            );
        }
        Self::signal_all(&w, Signal::SIGTERM);
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(grace.clamp(0, 86_400) as u64);
        loop {
            let notified = w.procs_changed.notified();
            if lock(&w.procs).is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                Self::signal_all(&w, Signal::SIGKILL);
                break;
            }
        }
        let mut done = w.done.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(10), done.wait_for(|d| *d)).await;
        let _ = self
            .store
            .finalize_delete(ResourceKind::Pod, Some(&w.ns), &w.name);
    }

    /// Evicts a running pod: kills its containers, marks it Failed/Evicted.
    pub(crate) async fn evict(&self, ns: &str, name: &str) -> Result<(), ApiError> {
        let message = "The node was low on resource: memory.";
        let w = self.running_worker(ns, name)?;
        self.kill_disrupted(
            &w,
            "TerminationByKubelet",
            message,
            Some(Forced {
                reason: "Evicted".into(),
                message: message.into(),
            }),
        )
        .await;
        Ok(())
    }

    /// Preempts a running pod as the scheduler does to make room for a pod of higher
    /// priority: a `DisruptionTarget` condition (reason `PreemptionByScheduler`) and a
    /// `Preempted` event from the scheduler, the containers killed (the pod ends `Failed`
    /// without a pod-level reason, as on a real cluster), then the pod deleted.
    pub(crate) async fn preempt(&self, ns: &str, name: &str) -> Result<(), ApiError> {
        let w = self.running_worker(ns, name)?;
        let _ = self.store.record_event_from(
            "default-scheduler",
            None,
            &w.ns,
            &w.involved,
            "Normal",
            "Preempted",
            &format!(
                "Preempted by pod {} on node {}",
                crate::store::new_uid(),
                w.node
            ),
        );
        self.kill_disrupted(
            &w,
            "PreemptionByScheduler",
            "default-scheduler: preempting to accommodate a higher priority pod",
            None,
        )
        .await;
        let options = crate::store::DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        self.store
            .delete(ResourceKind::Pod, Some(ns), name, options)
            .map(|_| ())
    }

    /// The worker of a pod that runs here and has not finished.
    fn running_worker(&self, ns: &str, name: &str) -> Result<Arc<PodWorker>, ApiError> {
        let w = lock(&self.workers)
            .values()
            .find(|w| w.ns == ns && w.name == name)
            .cloned()
            .ok_or_else(|| {
                ApiError::bad_request(format!("pod \"{name}\" is not running on a node"))
            })?;
        if lock(&w.record).is_terminal() {
            return Err(ApiError::bad_request(format!(
                "pod \"{name}\" has already terminated"
            )));
        }
        Ok(w)
    }

    /// Marks the pod as a disruption target, kills its containers and publishes the
    /// terminal status (with `forced` as the pod's reason and message, if given).
    async fn kill_disrupted(
        &self,
        w: &Arc<PodWorker>,
        condition_reason: &str,
        message: &str,
        forced: Option<Forced>,
    ) {
        let now = now_rfc3339();
        let _ = self
            .store
            .modify(ResourceKind::Pod, Some(&w.ns), &w.name, |p| {
                add_condition(p, "DisruptionTarget", condition_reason, message, &now);
                Ok(())
            });
        if let Some(forced) = forced {
            self.event(w, "Warning", &forced.reason, &forced.message);
            lock(&w.record).forced = Some(forced);
        }
        Self::stop_worker(w);
        for name in lock(&w.procs).keys() {
            self.event(
                w,
                "Normal",
                "Killing",
                &format!("Stopping container {name}"),
            );
        }
        Self::signal_all(w, Signal::SIGKILL);
        let mut done = w.done.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(10), done.wait_for(|d| *d)).await;
        self.publish(w);
    }

    /// The node stops responding: its processes die, its pods fail with `NodeLost`.
    pub(crate) fn lose_node(&self, node: &str) {
        lock(&self.lost_nodes).insert(node.to_string());
        let workers: Vec<Arc<PodWorker>> = lock(&self.workers)
            .values()
            .filter(|w| w.node == node)
            .cloned()
            .collect();
        let now = now_rfc3339();
        for w in workers {
            Self::silence(&w);
            Self::stop_worker(&w);
            Self::signal_all(&w, Signal::SIGKILL);
            let message = format!(
                "Node {node} which was running pod {} is unresponsive",
                w.name
            );
            let res = self.store.modify(ResourceKind::Pod, Some(&w.ns), &w.name, |p| {
                if p.pointer("/metadata/uid").and_then(Value::as_str) != Some(w.uid.as_str())
                    || matches!(
                        p.pointer("/status/phase").and_then(Value::as_str),
                        Some("Succeeded" | "Failed")
                    )
                {
                    // Already finished (or another pod of that name): nothing to mark.
                    return Err(ApiError::conflict("pods", &w.name));
                }
                let status = &mut p["status"];
                if !status.is_object() {
                    *status = json!({});
                }
                status["phase"] = json!("Failed");
                status["reason"] = json!("NodeLost");
                status["message"] = json!(message);
                for list in ["containerStatuses", "initContainerStatuses"] {
                    if let Some(cs) = status.get_mut(list).and_then(Value::as_array_mut) {
                        for c in cs {
                            if c.pointer("/state/terminated").is_none() {
                                c["ready"] = json!(false);
                                c["started"] = json!(false);
                                c["state"] = json!({"terminated": {
                                    "exitCode": 137,
                                    "reason": "ContainerStatusUnknown",
                                    "message": "The container could not be located when the pod was terminated",
                                    "finishedAt": now,
                                }});
                            }
                        }
                    }
                }
                for t in ["Ready", "ContainersReady"] {
                    set_condition_status(p, t, "False", "NodeLost", &message, &now);
                }
                add_condition(
                    p,
                    "DisruptionTarget",
                    "DeletionByTaintManager",
                    "Taint manager: deleting due to NoExecute taint",
                    &now,
                );
                Ok(())
            });
            if res.is_err() {
                continue;
            }
            let _ = self.store.record_event_from(
                "node-controller",
                None,
                &w.ns,
                &w.involved,
                "Normal",
                "TaintManagerEviction",
                &format!("Marking for deletion Pod {}/{}", w.ns, w.name),
            );
        }
    }

    /// The node answers again (new pods can run there).
    pub(crate) fn restore_node(&self, node: &str) {
        lock(&self.lost_nodes).remove(node);
    }

    /// Kills every process (cluster shutdown).
    pub(crate) fn shutdown(&self) {
        let workers: Vec<Arc<PodWorker>> = lock(&self.workers).values().cloned().collect();
        for w in workers {
            Self::silence(&w);
            Self::stop_worker(&w);
            Self::signal_all(&w, Signal::SIGKILL);
        }
    }
}

/// Adds (or replaces) a True condition on an object's status.
pub(crate) fn add_condition(obj: &mut Value, type_: &str, reason: &str, message: &str, now: &str) {
    set_condition_status(obj, type_, "True", reason, message, now);
}

fn set_condition_status(
    obj: &mut Value,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let st = &mut obj["status"];
    if !st.get("conditions").is_some_and(Value::is_array) {
        st["conditions"] = json!([]);
    }
    let Some(conds) = st["conditions"].as_array_mut() else {
        return;
    };
    let new = json!({"type": type_, "status": status, "reason": reason, "message": message,
        "lastProbeTime": null, "lastTransitionTime": now});
    match conds
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
    {
        Some(c) => {
            if c.get("status").and_then(Value::as_str) == Some(status) {
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            } else {
                *c = new;
            }
        }
        None => conds.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_added_and_replaced() {
        let mut p = json!({});
        add_condition(&mut p, "DisruptionTarget", "R", "m", "t1");
        set_condition_status(&mut p, "Ready", "False", "NodeLost", "x", "t2");
        set_condition_status(&mut p, "Ready", "True", "Ok", "y", "t3");
        let conds = p["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[1]["status"], "True");
        assert_eq!(conds[1]["lastTransitionTime"], "t3");
    }
}
