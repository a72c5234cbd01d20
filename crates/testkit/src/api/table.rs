//! Server-side printing: `meta.k8s.io/v1` `Table` responses for kubectl's default output.

use serde_json::{Value, json};

use crate::store::ResourceKind;

fn age_of(ts: Option<&str>) -> String {
    let Some(ts) = ts.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = jiff::Timestamp::now().as_second() - ts.as_second();
    human_duration(secs.max(0))
}

/// kubectl's `HumanDuration`.
pub(crate) fn human_duration(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y{}d", d / 365, d % 365)
    }
}

fn s<'a>(o: &'a Value, ptr: &str) -> &'a str {
    o.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn column_definition(name: &str, ty: &str, priority: u8) -> Value {
    let mut c = json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" }, "description": "", "priority": priority});
    if priority == 0 {
        c.as_object_mut().map(|m| m.remove("priority"));
    }
    c
}

fn pod_cells(p: &Value) -> Vec<Value> {
    let statuses = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum();
    let mut reason = {
        let r = s(p, "/status/reason");
        if r.is_empty() {
            s(p, "/status/phase").to_string()
        } else {
            r.to_string()
        }
    };
    let mut init_reason = None;
    let inits = p
        .pointer("/status/initContainerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let n_init = inits.len();
    for (i, c) in inits.iter().enumerate() {
        if let Some(t) = c.pointer("/state/terminated")
            && t.get("exitCode").and_then(Value::as_i64) == Some(0)
        {
            continue;
        }
        if let Some(t) = c.pointer("/state/terminated") {
            let r = s(t, "/reason");
            init_reason = Some(if r.is_empty() {
                format!(
                    "Init:ExitCode:{}",
                    t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                )
            } else {
                format!("Init:{r}")
            });
        } else if let Some(w) = c.pointer("/state/waiting")
            && !s(w, "/reason").is_empty()
            && s(w, "/reason") != "PodInitializing"
        {
            init_reason = Some(format!("Init:{}", s(w, "/reason")));
        } else {
            init_reason = Some(format!("Init:{i}/{n_init}"));
        }
        break;
    }
    if let Some(r) = init_reason {
        reason = r;
    } else {
        let mut has_running = false;
        for c in statuses.iter().rev() {
            if let Some(w) = c.pointer("/state/waiting")
                && !s(w, "/reason").is_empty()
            {
                reason = s(w, "/reason").to_string();
            } else if let Some(t) = c.pointer("/state/terminated") {
                let r = s(t, "/reason");
                reason = if !r.is_empty() {
                    r.to_string()
                } else if let Some(sig) =
                    t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0)
                {
                    format!("Signal:{sig}")
                } else {
                    format!(
                        "ExitCode:{}",
                        t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                    )
                };
            } else if c.pointer("/state/running").is_some()
                && c.get("ready").and_then(Value::as_bool) == Some(true)
            {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if p.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if s(p, "/status/reason") == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    let ip = s(p, "/status/podIP");
    let node = s(p, "/spec/nodeName");
    vec![
        json!(s(p, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        json!(age_of(
            p.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
        )),
        json!(if ip.is_empty() { "<none>" } else { ip }),
        json!(if node.is_empty() { "<none>" } else { node }),
        json!("<none>"),
        json!("<none>"),
    ]
}

fn job_cells(j: &Value) -> Vec<Value> {
    let cond = |t: &str| {
        j.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some(t)
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
    };
    let status = if cond("Complete") {
        "Complete"
    } else if cond("Failed") {
        "Failed"
    } else if cond("FailureTarget") {
        "FailureTarget"
    } else if cond("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if j.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        "Suspended"
    } else {
        "Running"
    };
    let succeeded = j
        .pointer("/status/succeeded")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let completions = match j.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let p = j
                .pointer("/spec/parallelism")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if p > 1 {
                format!("{succeeded}/1 of {p}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let parse = |ptr: &str| {
        j.pointer(ptr)
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    let duration = match (parse("/status/startTime"), parse("/status/completionTime")) {
        (Some(a), Some(b)) => human_duration(b.as_second() - a.as_second()),
        (Some(a), None) => human_duration(jiff::Timestamp::now().as_second() - a.as_second()),
        _ => String::new(),
    };
    vec![
        json!(s(j, "/metadata/name")),
        json!(status),
        json!(completions),
        json!(duration),
        json!(age_of(
            j.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
        )),
    ]
}

fn count(o: &Value, ptr: &str) -> usize {
    o.pointer(ptr)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

/// A column: name, type, priority (0 shows by default, 1 with `-o wide`).
type Column = (&'static str, &'static str, u8);

const POD_COLUMNS: &[Column] = &[
    ("Name", "string", 0),
    ("Ready", "string", 0),
    ("Status", "string", 0),
    ("Restarts", "string", 0),
    ("Age", "string", 0),
    ("IP", "string", 1),
    ("Node", "string", 1),
    ("Nominated Node", "string", 1),
    ("Readiness Gates", "string", 1),
];

const JOB_COLUMNS: &[Column] = &[
    ("Name", "string", 0),
    ("Status", "string", 0),
    ("Completions", "string", 0),
    ("Duration", "string", 0),
    ("Age", "string", 0),
];

const NAMESPACE_COLUMNS: &[Column] = &[
    ("Name", "string", 0),
    ("Status", "string", 0),
    ("Age", "string", 0),
];

const NODE_COLUMNS: &[Column] = &[
    ("Name", "string", 0),
    ("Status", "string", 0),
    ("Roles", "string", 0),
    ("Age", "string", 0),
    ("Version", "string", 0),
];

const SERVICE_COLUMNS: &[Column] = &[
    ("Name", "string", 0),
    ("Type", "string", 0),
    ("Cluster-IP", "string", 0),
    ("External-IP", "string", 0),
    ("Port(s)", "string", 0),
    ("Age", "string", 0),
];

const SECRET_COLUMNS: &[Column] = &[
    ("Name", "string", 0),
    ("Type", "string", 0),
    ("Data", "integer", 0),
    ("Age", "string", 0),
];

const CONFIG_MAP_COLUMNS: &[Column] = &[
    ("Name", "string", 0),
    ("Data", "integer", 0),
    ("Age", "string", 0),
];

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    ("Name", "string", 0),
    ("Secrets", "integer", 0),
    ("Age", "string", 0),
];

const EVENT_COLUMNS: &[Column] = &[
    ("Last Seen", "string", 0),
    ("Type", "string", 0),
    ("Reason", "string", 0),
    ("Object", "string", 0),
    ("Message", "string", 0),
];

/// kubectl's default columns for `kind`.
fn columns(kind: ResourceKind) -> &'static [Column] {
    match kind {
        ResourceKind::Pod => POD_COLUMNS,
        ResourceKind::Job => JOB_COLUMNS,
        ResourceKind::Namespace => NAMESPACE_COLUMNS,
        ResourceKind::Node => NODE_COLUMNS,
        ResourceKind::Service => SERVICE_COLUMNS,
        ResourceKind::Secret => SECRET_COLUMNS,
        ResourceKind::ConfigMap => CONFIG_MAP_COLUMNS,
        ResourceKind::ServiceAccount => SERVICE_ACCOUNT_COLUMNS,
        ResourceKind::Event => EVENT_COLUMNS,
    }
}

/// The cells of `o`'s row, in the order of [`columns`].
fn cells(kind: ResourceKind, o: &Value) -> Vec<Value> {
    let name = json!(s(o, "/metadata/name"));
    let age = json!(age_of(
        o.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
    ));
    match kind {
        ResourceKind::Pod => pod_cells(o),
        ResourceKind::Job => job_cells(o),
        ResourceKind::Namespace => vec![name, json!(s(o, "/status/phase")), age],
        ResourceKind::Node => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                        .map(|c| s(c, "/status") == "True")
                });
            let mut status = match ready {
                Some(true) => "Ready".to_string(),
                Some(false) => "NotReady".to_string(),
                None => "Unknown".to_string(),
            };
            if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            vec![
                name,
                json!(status),
                json!("<none>"),
                age,
                json!(s(o, "/status/nodeInfo/kubeletVersion")),
            ]
        }
        ResourceKind::Service => {
            let ports = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!(
                                "{}/{}",
                                p.get("port").and_then(Value::as_i64).unwrap_or(0),
                                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(s(o, "/spec/type")),
                json!(s(o, "/spec/clusterIP")),
                json!("<none>"),
                json!(ports),
                age,
            ]
        }
        ResourceKind::Secret => vec![name, json!(s(o, "/type")), json!(count(o, "/data")), age],
        ResourceKind::ConfigMap => vec![
            name,
            json!(count(o, "/data") + count(o, "/binaryData")),
            age,
        ],
        ResourceKind::ServiceAccount => vec![
            name,
            json!(
                o.get("secrets")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            ),
            age,
        ],
        ResourceKind::Event => {
            let last = o
                .get("lastTimestamp")
                .and_then(Value::as_str)
                .or_else(|| o.get("eventTime").and_then(Value::as_str));
            let object = format!(
                "{}/{}",
                s(o, "/involvedObject/kind").to_lowercase(),
                s(o, "/involvedObject/name")
            );
            vec![
                json!(age_of(last)),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(object),
                json!(s(o, "/message")),
            ]
        }
    }
}

/// A Table of `items` (with the full objects embedded in the rows).
pub(crate) fn table(
    kind: ResourceKind,
    items: &[Value],
    list_meta: Option<Value>,
    _include: Option<&str>,
) -> Value {
    let columns: Vec<Value> = columns(kind)
        .iter()
        .map(|&(name, ty, priority)| column_definition(name, ty, priority))
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| json!({"cells": cells(kind, o), "object": o}))
        .collect();
    let mut meta = list_meta.unwrap_or_else(|| json!({}));
    if meta.get("resourceVersion").is_none()
        && let [one] = items
        && let Some(rv) = one.pointer("/metadata/resourceVersion")
    {
        meta["resourceVersion"] = rv.clone();
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_cell_per_column() {
        for kind in ResourceKind::ALL {
            let table = table(kind, &[json!({"metadata": {"name": "x"}})], None, None);
            let columns = table["columnDefinitions"].as_array().unwrap().len();
            let cells = table["rows"][0]["cells"].as_array().unwrap().len();
            assert_eq!(cells, columns, "{kind:?}");
        }
    }

    #[test]
    fn a_failed_container_shows_its_reason_and_wide_columns_have_priority_one() {
        let pod = json!({
            "metadata": {"name": "trainer-abc", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "main"}], "nodeName": "gpu-1"},
            "status": {
                "phase": "Failed",
                "containerStatuses": [{
                    "ready": false,
                    "restartCount": 2,
                    "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
                }]
            }
        });
        let table = table(ResourceKind::Pod, &[pod], None, None);
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
        assert_eq!(table["columnDefinitions"][6]["priority"], 1);
        assert!(table["columnDefinitions"][0].get("priority").is_none());
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[0], "trainer-abc");
        assert_eq!(cells[1], "0/1");
        assert_eq!(cells[2], "OOMKilled");
        assert_eq!(cells[3], 2);
        assert_eq!(cells[6], "gpu-1");
    }
}
