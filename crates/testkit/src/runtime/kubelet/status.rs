//! The kubelet's model of a pod (container states, restart counts) and the pod status
//! built from it: phase as the real kubelet's `getPhase`, conditions, container statuses.

use serde_json::{Map, Value, json};

/// A terminated container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Terminated {
    pub(crate) exit_code: i32,
    pub(crate) signal: Option<i32>,
    pub(crate) reason: String,
    pub(crate) message: Option<String>,
    pub(crate) started_at: Option<String>,
    pub(crate) finished_at: String,
    pub(crate) container_id: Option<String>,
}

impl Terminated {
    fn to_json(&self) -> Value {
        let mut t = json!({
            "exitCode": self.exit_code,
            "reason": self.reason,
            "finishedAt": self.finished_at,
        });
        if let Some(s) = &self.started_at {
            t["startedAt"] = json!(s);
        }
        if let Some(m) = self.message.as_deref().filter(|m| !m.is_empty()) {
            t["message"] = json!(m);
        }
        if let Some(sig) = self.signal {
            t["signal"] = json!(sig);
        }
        if let Some(id) = &self.container_id {
            t["containerID"] = json!(id);
        }
        t
    }
}

/// A container's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: String,
    },
    Terminated(Terminated),
}

impl CState {
    pub(crate) fn waiting(reason: &str, message: Option<String>) -> Self {
        CState::Waiting {
            reason: reason.to_string(),
            message,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            CState::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            CState::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            CState::Terminated(t) => json!({"terminated": t.to_json()}),
        }
    }
}

/// One container as the kubelet tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerRecord {
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) image_id: String,
    pub(crate) container_id: Option<String>,
    pub(crate) state: CState,
    pub(crate) last: Option<Terminated>,
    pub(crate) restart_count: i32,
    /// An init container with `restartPolicy: Always`.
    pub(crate) sidecar: bool,
    /// Has been running at least once.
    pub(crate) started_once: bool,
}

impl ContainerRecord {
    pub(crate) fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.to_string(),
            image: image.to_string(),
            image_id: String::new(),
            container_id: None,
            state: CState::waiting("ContainerCreating", None),
            last: None,
            restart_count: 0,
            sidecar: false,
            started_once: false,
        }
    }

    fn running(&self) -> bool {
        matches!(self.state, CState::Running { .. })
    }

    fn succeeded(&self) -> bool {
        matches!(&self.state, CState::Terminated(t) if t.exit_code == 0)
    }

    fn to_json(&self) -> Value {
        let mut c = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.running(),
            "started": self.running(),
            "restartCount": self.restart_count,
            "state": self.state.to_json(),
            "lastState": self.last.as_ref().map_or(json!({}), |t| json!({"terminated": t.to_json()})),
        });
        if let Some(id) = &self.container_id {
            c["containerID"] = json!(id);
        }
        c
    }
}

/// A terminal phase forced from outside the containers (eviction, node loss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forced {
    pub(crate) reason: String,
    pub(crate) message: String,
}

/// The kubelet's record of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodRecord {
    pub(crate) init: Vec<ContainerRecord>,
    pub(crate) containers: Vec<ContainerRecord>,
    pub(crate) restart_policy: String,
    pub(crate) start_time: String,
    pub(crate) pod_ip: String,
    pub(crate) host_ip: String,
    pub(crate) sandbox_ready: bool,
    pub(crate) forced: Option<Forced>,
}

impl PodRecord {
    /// The container (app or init) with this name.
    pub(crate) fn container_mut(&mut self, name: &str, init: bool) -> Option<&mut ContainerRecord> {
        let list = if init {
            &mut self.init
        } else {
            &mut self.containers
        };
        list.iter_mut().find(|c| c.name == name)
    }

    /// Regular init containers succeeded and sidecars have started.
    fn initialized(&self) -> bool {
        self.init.iter().all(|c| {
            if c.sidecar {
                c.started_once
            } else {
                c.succeeded()
            }
        })
    }

    /// The pod phase, as the real kubelet computes it.
    pub(crate) fn phase(&self) -> &'static str {
        if self.forced.is_some() {
            return "Failed";
        }
        if !self.initialized() {
            let failed_init = self
                .init
                .iter()
                .any(|c| matches!(&c.state, CState::Terminated(t) if t.exit_code != 0));
            if failed_init && self.restart_policy == "Never" {
                return "Failed";
            }
            return "Pending";
        }
        let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
        for c in &self.containers {
            match &c.state {
                CState::Running { .. } => running += 1,
                CState::Terminated(t) => {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                CState::Waiting { .. } => {
                    if c.last.is_some() {
                        stopped += 1;
                    } else {
                        waiting += 1;
                    }
                }
            }
        }
        if waiting > 0 {
            "Pending"
        } else if running > 0 {
            "Running"
        } else if stopped > 0 {
            if self.restart_policy == "Always" {
                "Running"
            } else if stopped == succeeded {
                "Succeeded"
            } else if self.restart_policy == "Never" {
                "Failed"
            } else {
                "Running"
            }
        } else {
            "Pending"
        }
    }

    /// Whether the pod reached a phase it never leaves.
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self.phase(), "Succeeded" | "Failed")
    }

    /// The pod `status`, merged with the stored one: `PodScheduled` and
    /// `DisruptionTarget` conditions are kept, and unchanged conditions keep their
    /// `lastTransitionTime`.
    pub(crate) fn to_status(&self, old: &Value, now: &str) -> Value {
        let phase = self.phase();
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let names = |pred: &dyn Fn(&ContainerRecord) -> bool, list: &[ContainerRecord]| {
            list.iter()
                .filter(|c| pred(c))
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        let unready = names(&|c| !c.running(), &self.containers);
        let uninit = names(
            &|c| {
                if c.sidecar {
                    !c.started_once
                } else {
                    !c.succeeded()
                }
            },
            &self.init,
        );
        let mut conds: Vec<Value> = Vec::new();
        let cond = |t: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
            let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null});
            if let Some(r) = reason {
                c["reason"] = json!(r);
            }
            if let Some(m) = message {
                c["message"] = json!(m);
            }
            c
        };
        let list = |v: &[String]| format!("[{}]", v.join(" "));
        conds.push(cond(
            "PodReadyToStartContainers",
            self.sandbox_ready && !terminal,
            None,
            None,
        ));
        conds.push(if self.initialized() {
            cond("Initialized", true, None, None)
        } else {
            cond(
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: {}",
                    list(&uninit)
                )),
            )
        });
        let ready = unready.is_empty() && !terminal && !self.containers.is_empty();
        for t in ["Ready", "ContainersReady"] {
            conds.push(if ready {
                cond(t, true, None, None)
            } else if terminal {
                cond(t, false, Some("PodCompleted"), None)
            } else {
                cond(
                    t,
                    false,
                    Some("ContainersNotReady"),
                    Some(format!(
                        "containers with unready status: {}",
                        list(&unready)
                    )),
                )
            });
        }
        let old_conds: Vec<Value> = old
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in conds.iter_mut() {
            let prev = old_conds.iter().find(|o| o.get("type") == c.get("type"));
            let since = match prev {
                Some(p) if p.get("status") == c.get("status") => p
                    .get("lastTransitionTime")
                    .cloned()
                    .unwrap_or_else(|| json!(now)),
                _ => json!(now),
            };
            c["lastTransitionTime"] = since;
        }
        for keep in ["PodScheduled", "DisruptionTarget"] {
            match old_conds
                .iter()
                .find(|o| o.get("type").and_then(Value::as_str) == Some(keep))
            {
                Some(p) => conds.push(p.clone()),
                // A pod created with `spec.nodeName` never met the scheduler; the
                // kubelet reports it scheduled, as the real one does.
                None if keep == "PodScheduled" => conds.push(json!({
                    "type": "PodScheduled", "status": "True",
                    "lastProbeTime": null, "lastTransitionTime": now,
                })),
                None => {}
            }
        }
        let mut status = Map::new();
        status.insert("phase".into(), json!(phase));
        status.insert("conditions".into(), Value::Array(conds));
        status.insert("hostIP".into(), json!(self.host_ip));
        status.insert("hostIPs".into(), json!([{"ip": self.host_ip}]));
        if !self.pod_ip.is_empty() {
            status.insert("podIP".into(), json!(self.pod_ip));
            status.insert("podIPs".into(), json!([{"ip": self.pod_ip}]));
        }
        status.insert("startTime".into(), json!(self.start_time));
        if !self.init.is_empty() {
            status.insert(
                "initContainerStatuses".into(),
                Value::Array(self.init.iter().map(ContainerRecord::to_json).collect()),
            );
        }
        status.insert(
            "containerStatuses".into(),
            Value::Array(
                self.containers
                    .iter()
                    .map(ContainerRecord::to_json)
                    .collect(),
            ),
        );
        if let Some(q) = old.get("qosClass") {
            status.insert("qosClass".into(), q.clone());
        }
        if let Some(f) = &self.forced {
            status.insert("reason".into(), json!(f.reason));
            status.insert("message".into(), json!(f.message));
        }
        Value::Object(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(code: i32) -> CState {
        CState::Terminated(Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Some("t0".into()),
            finished_at: "t1".into(),
            container_id: Some("containerd://x".into()),
        })
    }

    fn record(policy: &str, states: Vec<CState>) -> PodRecord {
        PodRecord {
            init: vec![],
            containers: states
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut c = ContainerRecord::new(&format!("c{i}"), "busybox");
                    c.state = s;
                    c
                })
                .collect(),
            restart_policy: policy.into(),
            start_time: "t0".into(),
            pod_ip: "127.0.0.1".into(),
            host_ip: "127.0.0.1".into(),
            sandbox_ready: true,
            forced: None,
        }
    }

    #[test]
    fn phases_follow_the_kubelet() {
        let running = CState::Running {
            started_at: "t".into(),
        };
        let creating = CState::waiting("ContainerCreating", None);
        assert_eq!(record("Never", vec![creating.clone()]).phase(), "Pending");
        assert_eq!(record("Never", vec![running.clone()]).phase(), "Running");
        assert_eq!(record("Never", vec![term(0)]).phase(), "Succeeded");
        assert_eq!(record("Never", vec![term(3)]).phase(), "Failed");
        assert_eq!(
            record("Never", vec![term(0), running.clone()]).phase(),
            "Running"
        );
        assert_eq!(record("OnFailure", vec![term(1)]).phase(), "Running");
        assert_eq!(record("OnFailure", vec![term(0)]).phase(), "Succeeded");
        assert_eq!(record("Always", vec![term(0)]).phase(), "Running");
        // Crash-looping: waiting with a last state counts as stopped.
        let mut r = record("Always", vec![CState::waiting("CrashLoopBackOff", None)]);
        r.containers[0].last = Some(match term(1) {
            CState::Terminated(t) => t,
            _ => unreachable!(),
        });
        assert_eq!(r.phase(), "Running");
        let mut r = record("Never", vec![running.clone()]);
        r.forced = Some(Forced {
            reason: "Evicted".into(),
            message: "m".into(),
        });
        assert_eq!(r.phase(), "Failed");
        let mut r = record("Never", vec![creating]);
        r.init = vec![ContainerRecord::new("init", "busybox")];
        assert_eq!(r.phase(), "Pending");
        r.init[0].state = term(1);
        assert_eq!(r.phase(), "Failed");
    }

    #[test]
    fn status_shape() {
        let old = json!({"qosClass": "BestEffort", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "s"},
            {"type": "Initialized", "status": "True", "lastTransitionTime": "early"},
        ]});
        let r = record("Never", vec![term(3)]);
        let s = r.to_status(&old, "now");
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["qosClass"], "BestEffort");
        let conds = s["conditions"].as_array().unwrap();
        let get = |t: &str| conds.iter().find(|c| c["type"] == t).unwrap().clone();
        assert_eq!(get("PodScheduled")["lastTransitionTime"], "s");
        assert_eq!(get("Initialized")["lastTransitionTime"], "early");
        assert_eq!(get("Ready")["reason"], "PodCompleted");
        assert_eq!(get("Ready")["lastTransitionTime"], "now");
        let cs = &s["containerStatuses"][0];
        assert_eq!(cs["state"]["terminated"]["exitCode"], 3);
        assert_eq!(cs["state"]["terminated"]["reason"], "Error");
        assert_eq!(cs["ready"], false);
        assert_eq!(cs["lastState"], json!({}));

        let r = record("Never", vec![CState::waiting("ContainerCreating", None)]);
        let s = r.to_status(&json!({}), "now");
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["message"], "containers with unready status: [c0]");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
    }
}
