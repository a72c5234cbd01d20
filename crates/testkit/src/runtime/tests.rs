//! The runtime driven through the store alone (no API server): real processes, real
//! status transitions. Timeouts only guard against hangs.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use super::*;
use crate::store::{DeleteOptions, ListFilter};

const GUARD: Duration = Duration::from_secs(60);

fn fast_options() -> RuntimeOptions {
    RuntimeOptions {
        image_pull_backoff: Duration::from_millis(100),
        crash_loop_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        ..RuntimeOptions::default()
    }
}

fn start() -> (Store, Arc<Runtime>) {
    let store = Store::new();
    let rt = Runtime::start(store.clone(), fast_options());
    (store, rt)
}

async fn wait_for(
    store: &Store,
    kind: ResourceKind,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        if let Ok(obj) = store.get(kind, Some(ns), name)
            && pred(&obj)
        {
            return obj;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for {name}: {what}; last state: {:#}",
                store.get(kind, Some(ns), name).unwrap_or(Value::Null)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_gone(store: &Store, kind: ResourceKind, ns: &str, name: &str) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while store.get(kind, Some(ns), name).is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} was not removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cond<'a>(obj: &'a Value, t: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

fn has_cond(obj: &Value, t: &str) -> bool {
    cond(obj, t).is_some_and(|c| c["status"] == "True")
}

fn events_for(store: &Store, ns: &str, name: &str) -> Vec<(String, String)> {
    let (evs, _) = store.list(ResourceKind::Event, Some(ns), &ListFilter::default());
    evs.iter()
        .filter(|e| e["involvedObject"]["name"] == name)
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn pod(name: &str, script: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "default"},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}]}})
}

fn job(name: &str, script: &str, extra: Value) -> Value {
    let mut j = json!({"metadata": {"name": name, "namespace": "default"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}]}}}});
    if let (Some(spec), Some(extra)) = (j["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    j
}

fn job_pods(store: &Store, job: &str) -> Vec<Value> {
    let filter = ListFilter::labels(&format!("job-name={job}")).unwrap();
    store.list(ResourceKind::Pod, Some("default"), &filter).0
}

async fn read_log(rt: &Runtime, pod: &str, q: LogQuery) -> String {
    let mut s = rt.pod_log("default", pod, q).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

fn terminated(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]["state"]["terminated"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_completes_with_logs_events_and_status() {
    let (store, rt) = start();
    let node = store.get(ResourceKind::Node, None, "node-1").unwrap();
    assert_eq!(cond(&node, "Ready").unwrap()["status"], "True");
    store
        .create(
            ResourceKind::Job,
            Some("default"),
            job("hello", "echo one; echo two >&2; echo three", json!({})),
        )
        .unwrap();
    let j = wait_for(
        &store,
        ResourceKind::Job,
        "default",
        "hello",
        "Complete",
        |j| has_cond(j, "Complete"),
    )
    .await;
    assert_eq!(j["status"]["succeeded"], 1);
    assert_eq!(j["status"]["active"], 0);
    assert!(j["status"]["startTime"].is_string());
    assert!(j["status"]["completionTime"].is_string());
    assert!(has_cond(&j, "SuccessCriteriaMet"));
    let pods = job_pods(&store, "hello");
    assert_eq!(pods.len(), 1);
    let p = &pods[0];
    let pname = p["metadata"]["name"].as_str().unwrap();
    assert_eq!(p["status"]["phase"], "Succeeded");
    assert_eq!(terminated(p)["exitCode"], 0);
    assert_eq!(terminated(p)["reason"], "Completed");
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert_eq!(p["spec"]["nodeName"], "node-1");
    assert_eq!(cond(p, "PodScheduled").unwrap()["status"], "True");
    assert_eq!(cond(p, "Ready").unwrap()["reason"], "PodCompleted");
    // stdout and stderr interleave in arrival order, as with a real runtime.
    let all = read_log(&rt, pname, LogQuery::default()).await;
    let mut lines: Vec<&str> = all.lines().collect();
    assert!(all.find("one") < all.find("three"), "{all}");
    lines.sort();
    assert_eq!(lines, ["one", "three", "two"]);
    let tail = LogQuery {
        tail_lines: Some(1),
        ..Default::default()
    };
    assert_eq!(read_log(&rt, pname, tail).await.lines().count(), 1);
    let reasons: Vec<String> = events_for(&store, "default", pname)
        .into_iter()
        .map(|e| e.0)
        .collect();
    for r in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(reasons.iter().any(|x| x == r), "missing {r} in {reasons:?}");
    }
    let job_events = events_for(&store, "default", "hello");
    assert!(
        job_events
            .iter()
            .any(|e| e.0 == "SuccessfulCreate" && e.1 == format!("Created pod: {pname}"))
    );
    assert!(job_events.iter().any(|e| e.0 == "Completed"));
    let scheduled = events_for(&store, "default", pname)
        .into_iter()
        .find(|e| e.0 == "Scheduled")
        .unwrap();
    assert_eq!(
        scheduled.1,
        format!("Successfully assigned default/{pname} to node-1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_container_exhausts_backoff_limit() {
    let (store, _rt) = start();
    store
        .create(
            ResourceKind::Job,
            Some("default"),
            job("fail", "exit 3", json!({"backoffLimit": 1})),
        )
        .unwrap();
    let j = wait_for(
        &store,
        ResourceKind::Job,
        "default",
        "fail",
        "Failed",
        |j| has_cond(j, "Failed"),
    )
    .await;
    assert_eq!(
        cond(&j, "Failed").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(
        cond(&j, "FailureTarget").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(j["status"]["failed"], 2);
    let pods = job_pods(&store, "fail");
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Failed");
        assert_eq!(terminated(p)["exitCode"], 3);
        assert_eq!(terminated(p)["reason"], "Error");
    }
    assert!(
        events_for(&store, "default", "fail")
            .iter()
            .any(|e| e.0 == "BackoffLimitExceeded")
    );
}

/// A Job's pod that is deleted before it finishes (an eviction, a drain) counts as failed
/// as soon as it is terminating, as for the real controller without a podFailurePolicy,
/// and only once: not again when it finally goes away. The pod ignores SIGTERM and has a
/// long grace period, so it stays terminating while the Job is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_job_pod_counts_as_failed_while_it_terminates() {
    let (store, _rt) = start();
    let mut j = job(
        "deleted",
        "trap '' TERM; sleep 3600",
        json!({"backoffLimit": 1}),
    );
    j["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(3600);
    store.create(ResourceKind::Job, Some("default"), j).unwrap();
    let running = |store: &Store| -> Option<String> {
        job_pods(store, "deleted")
            .into_iter()
            .find(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .and_then(|p| p["metadata"]["name"].as_str().map(str::to_owned))
    };
    let deadline = tokio::time::Instant::now() + GUARD;
    let first = loop {
        if let Some(n) = running(&store) {
            break n;
        }
        assert!(tokio::time::Instant::now() < deadline, "no running pod");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let graceful = DeleteOptions::default();
    store
        .delete(ResourceKind::Pod, Some("default"), &first, graceful)
        .unwrap();
    let j = wait_for(
        &store,
        ResourceKind::Job,
        "default",
        "deleted",
        "one failure while the pod terminates",
        |j| j["status"]["failed"] == 1 && j["status"]["terminating"] == 1,
    )
    .await;
    assert!(!has_cond(&j, "Failed"), "{j:#}");
    let p = store
        .get(ResourceKind::Pod, Some("default"), &first)
        .expect("the deleted pod is still terminating");
    assert!(p["metadata"]["deletionTimestamp"].is_string());

    // backoffLimit 1 leaves room for a replacement.
    let deadline = tokio::time::Instant::now() + GUARD;
    let second = loop {
        if let Some(n) = running(&store).filter(|n| *n != first) {
            break n;
        }
        assert!(tokio::time::Instant::now() < deadline, "no replacement pod");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let now = DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    store
        .delete(ResourceKind::Pod, Some("default"), &first, now.clone())
        .unwrap();
    wait_gone(&store, ResourceKind::Pod, "default", &first).await;
    let j = wait_for(
        &store,
        ResourceKind::Job,
        "default",
        "deleted",
        "nothing terminating once the first pod is gone",
        |j| j["status"]["terminating"] == 0,
    )
    .await;
    assert_eq!(j["status"]["failed"], 1, "counted once: {j:#}");
    assert!(!has_cond(&j, "Failed"), "{j:#}");

    // The second deletion exceeds backoffLimit 1.
    store
        .delete(ResourceKind::Pod, Some("default"), &second, now)
        .unwrap();
    let j = wait_for(
        &store,
        ResourceKind::Job,
        "default",
        "deleted",
        "Failed",
        |j| has_cond(j, "Failed"),
    )
    .await;
    assert_eq!(
        cond(&j, "Failed").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(j["status"]["failed"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pods_wait_and_gpu_pods_land_on_gpu_nodes() {
    let store = Store::new();
    let opts = RuntimeOptions {
        nodes: vec![
            NodeConfig::new("node-1"),
            NodeConfig::gpu("gpu-1", "a100", 4),
        ],
        ..fast_options()
    };
    let _rt = Runtime::start(store.clone(), opts);
    let mut p = pod("picky", "true");
    p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    store.create(ResourceKind::Pod, Some("default"), p).unwrap();
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "picky",
        "Unschedulable",
        |p| cond(p, "PodScheduled").is_some_and(|c| c["reason"] == "Unschedulable"),
    )
    .await;
    let c = cond(&p, "PodScheduled").unwrap();
    assert_eq!(c["status"], "False");
    assert_eq!(
        c["message"],
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {nvidia.com/gpu: present}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    assert_eq!(p["status"]["phase"], "Pending");
    let ev = events_for(&store, "default", "picky");
    assert!(
        ev.iter()
            .any(|e| e.0 == "FailedScheduling" && e.1 == c["message"])
    );

    let mut g = pod("trainer", "true");
    g["spec"]["nodeSelector"] = json!({"gpu-type": "a100"});
    g["spec"]["tolerations"] =
        json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
    g["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": "2"}});
    store.create(ResourceKind::Pod, Some("default"), g).unwrap();
    let g = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "trainer",
        "Succeeded",
        |p| p["status"]["phase"] == "Succeeded",
    )
    .await;
    assert_eq!(g["spec"]["nodeName"], "gpu-1");

    // Too many GPUs: insufficient on the GPU node.
    let mut big = pod("huge", "true");
    big["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
    big["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": "8"}});
    store
        .create(ResourceKind::Pod, Some("default"), big)
        .unwrap();
    let big = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "huge",
        "Unschedulable",
        |p| cond(p, "PodScheduled").is_some_and(|c| c["reason"] == "Unschedulable"),
    )
    .await;
    assert!(
        cond(&big, "PodScheduled").unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("0/2 nodes are available: 2 Insufficient nvidia.com/gpu."),
        "{big:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_failures() {
    let (store, rt) = start();
    let mut p = pod("nopull", "true");
    p["spec"]["containers"][0]["image"] = json!("registry.invalid/x:1");
    store.create(ResourceKind::Pod, Some("default"), p).unwrap();
    let waiting = |reason: &'static str| {
        move |p: &Value| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == reason
    };
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "nopull",
        "ErrImagePull",
        waiting("ErrImagePull"),
    )
    .await;
    assert!(
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("no such host")
    );
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "nopull",
        "ImagePullBackOff",
        waiting("ImagePullBackOff"),
    )
    .await;
    assert_eq!(p["status"]["phase"], "Pending");
    let ev = events_for(&store, "default", "nopull");
    assert!(ev.iter().any(|e| {
        e.0 == "Failed"
            && e.1
                .starts_with("Failed to pull image \"registry.invalid/x:1\"")
    }));
    assert!(ev.iter().any(|e| e.0 == "BackOff"));
    let e = rt
        .pod_log("default", "nopull", LogQuery::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.code, 400);
    assert!(e.message.contains("is waiting to start"), "{}", e.message);

    let mut bad = pod("badname", "true");
    bad["spec"]["containers"][0]["image"] = json!("Bad:Image");
    store
        .create(ResourceKind::Pod, Some("default"), bad)
        .unwrap();
    wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "badname",
        "InvalidImageName",
        waiting("InvalidImageName"),
    )
    .await;

    // Deleting a pod stuck in image pulls finishes at once.
    store
        .delete(
            ResourceKind::Pod,
            Some("default"),
            "nopull",
            DeleteOptions::default(),
        )
        .unwrap();
    wait_gone(&store, ResourceKind::Pod, "default", "nopull").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_rule_and_missing_executable() {
    let (store, _rt) = start();
    let mut p = pod("hog", "sleep 30");
    p["metadata"]["annotations"] = json!({SIMULATE_OOM_ANNOTATION: "true"});
    p["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "16Mi"}});
    store.create(ResourceKind::Pod, Some("default"), p).unwrap();
    let p = wait_for(&store, ResourceKind::Pod, "default", "hog", "Failed", |p| {
        p["status"]["phase"] == "Failed"
    })
    .await;
    assert_eq!(terminated(&p)["reason"], "OOMKilled");
    assert_eq!(terminated(&p)["exitCode"], 137);

    let mut p = pod("nobin", "");
    p["spec"]["containers"][0]["command"] = json!(["definitely-not-a-binary"]);
    store.create(ResourceKind::Pod, Some("default"), p).unwrap();
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "nobin",
        "Failed",
        |p| p["status"]["phase"] == "Failed",
    )
    .await;
    assert_eq!(terminated(&p)["reason"], "StartError");
    assert_eq!(terminated(&p)["exitCode"], 128);
    assert!(
        terminated(&p)["message"]
            .as_str()
            .unwrap()
            .contains("exec: \"definitely-not-a-binary\": executable file not found in $PATH")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_and_node_loss() {
    let (store, rt) = start();
    store
        .create(
            ResourceKind::Pod,
            Some("default"),
            pod("victim", "sleep 30"),
        )
        .unwrap();
    wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "victim",
        "Running",
        |p| p["status"]["phase"] == "Running",
    )
    .await;
    rt.evict_pod("default", "victim").await.unwrap();
    let p = store
        .get(ResourceKind::Pod, Some("default"), "victim")
        .unwrap();
    assert_eq!(p["status"]["phase"], "Failed");
    assert_eq!(p["status"]["reason"], "Evicted");
    assert_eq!(
        p["status"]["message"],
        "The node was low on resource: memory."
    );
    assert_eq!(
        cond(&p, "DisruptionTarget").unwrap()["reason"],
        "TerminationByKubelet"
    );
    assert_eq!(terminated(&p)["exitCode"], 137);
    assert!(
        events_for(&store, "default", "victim")
            .iter()
            .any(|e| e.0 == "Evicted")
    );
    assert_eq!(
        rt.evict_pod("default", "victim").await.unwrap_err().code,
        400
    );
    assert_eq!(
        rt.evict_pod("default", "nobody").await.unwrap_err().code,
        404
    );

    store
        .create(
            ResourceKind::Pod,
            Some("default"),
            pod("stranded", "sleep 30"),
        )
        .unwrap();
    wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "stranded",
        "Running",
        |p| p["status"]["phase"] == "Running",
    )
    .await;
    rt.lose_node("node-1").unwrap();
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "stranded",
        "Failed",
        |p| p["status"]["phase"] == "Failed",
    )
    .await;
    assert_eq!(p["status"]["reason"], "NodeLost");
    assert!(has_cond(&p, "DisruptionTarget"));
    let node = store.get(ResourceKind::Node, None, "node-1").unwrap();
    assert_eq!(cond(&node, "Ready").unwrap()["status"], "Unknown");
    // Nothing new lands on the lost node.
    store
        .create(ResourceKind::Pod, Some("default"), pod("late", "true"))
        .unwrap();
    let late = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "late",
        "Unschedulable",
        |p| cond(p, "PodScheduled").is_some_and(|c| c["reason"] == "Unschedulable"),
    )
    .await;
    assert!(
        cond(&late, "PodScheduled").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("untolerated taint {node.kubernetes.io/unreachable: }")
    );
    rt.restore_node("node-1").unwrap();
    wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "late",
        "Succeeded",
        |p| p["status"]["phase"] == "Succeeded",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_and_indexed_jobs() {
    let (store, rt) = start();
    store
        .create(
            ResourceKind::Job,
            Some("default"),
            job(
                "slow",
                "sleep 30",
                json!({"activeDeadlineSeconds": 1, "backoffLimit": 6}),
            ),
        )
        .unwrap();
    store
        .create(
            ResourceKind::Job,
            Some("default"),
            job(
                "idx",
                "echo index=$JOB_COMPLETION_INDEX host=$HOSTNAME",
                json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3}),
            ),
        )
        .unwrap();
    let j = wait_for(
        &store,
        ResourceKind::Job,
        "default",
        "idx",
        "Complete",
        |j| has_cond(j, "Complete"),
    )
    .await;
    assert_eq!(j["status"]["completedIndexes"], "0-2");
    assert_eq!(j["status"]["succeeded"], 3);
    let mut seen = Vec::new();
    for p in job_pods(&store, "idx") {
        let name = p["metadata"]["name"].as_str().unwrap().to_string();
        let idx = p["metadata"]["annotations"][job_controller::COMPLETION_INDEX]
            .as_str()
            .unwrap()
            .to_string();
        assert!(name.starts_with(&format!("idx-{idx}-")), "{name}");
        let log = read_log(&rt, &name, LogQuery::default()).await;
        assert_eq!(log, format!("index={idx} host=idx-{idx}\n"));
        seen.push(idx);
    }
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);

    let j = wait_for(
        &store,
        ResourceKind::Job,
        "default",
        "slow",
        "Failed",
        |j| has_cond(j, "Failed"),
    )
    .await;
    assert_eq!(cond(&j, "Failed").unwrap()["reason"], "DeadlineExceeded");
    // Its pod is killed and removed.
    let deadline = tokio::time::Instant::now() + GUARD;
    while !job_pods(&store, "slow").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow job's pod was not removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_after_finished_deletes_the_job() {
    let (store, _rt) = start();
    store
        .create(
            ResourceKind::Job,
            Some("default"),
            job("brief", "true", json!({"ttlSecondsAfterFinished": 0})),
        )
        .unwrap();
    wait_gone(&store, ResourceKind::Job, "default", "brief").await;
    let deadline = tokio::time::Instant::now() + GUARD;
    while !job_pods(&store, "brief").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job's pods were not collected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_tail_since_and_previous() {
    let (store, rt) = start();
    store
        .create(
            ResourceKind::Pod,
            Some("default"),
            pod("chatty", "for i in 1 2 3; do echo line$i; done; while [ ! -e stop ]; do sleep 0.05; done; echo bye"),
        )
        .unwrap();
    wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "chatty",
        "Running",
        |p| p["status"]["phase"] == "Running",
    )
    .await;
    let follow = LogQuery {
        follow: true,
        ..Default::default()
    };
    let mut stream = rt.pod_log("default", "chatty", follow).await.unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("line3\n") {
        let chunk = tokio::time::timeout(GUARD, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8_lossy(&got), "line1\nline2\nline3\n");
    let tail = LogQuery {
        tail_lines: Some(2),
        timestamps: true,
        ..Default::default()
    };
    let t = read_log(&rt, "chatty", tail).await;
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].ends_with(" line2") && lines[1].ends_with(" line3"),
        "{t}"
    );
    let future = LogQuery {
        since_time: Some(
            (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string(),
        ),
        ..Default::default()
    };
    assert_eq!(read_log(&rt, "chatty", future).await, "");
    let recent = LogQuery {
        since_seconds: Some(3600),
        limit_bytes: Some(8),
        ..Default::default()
    };
    assert_eq!(read_log(&rt, "chatty", recent).await, "line1\nli");
    let prev = LogQuery {
        previous: true,
        ..Default::default()
    };
    let e = rt.pod_log("default", "chatty", prev).await.err().unwrap();
    assert_eq!(
        e.message,
        "previous terminated container \"main\" in pod \"chatty\" not found"
    );
    // Let it finish: the follower sees the rest and ends.
    let root = rt.pod_root("default", "chatty").unwrap();
    std::fs::write(root.join("stop"), "").unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(GUARD, stream.next()).await.unwrap() {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8_lossy(&rest), "bye\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_keep_the_previous_log() {
    let (store, rt) = start();
    let mut p = pod(
        "flaky",
        "echo run; if [ -e ran ]; then exit 0; fi; touch ran; exit 1",
    );
    p["spec"]["restartPolicy"] = json!("OnFailure");
    store.create(ResourceKind::Pod, Some("default"), p).unwrap();
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "flaky",
        "Succeeded",
        |p| p["status"]["phase"] == "Succeeded",
    )
    .await;
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 1);
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
    let prev = LogQuery {
        previous: true,
        ..Default::default()
    };
    assert_eq!(read_log(&rt, "flaky", prev).await, "run\n");
    assert_eq!(read_log(&rt, "flaky", LogQuery::default()).await, "run\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_volumes_and_config_errors() {
    let (store, rt) = start();
    store
        .create(
            ResourceKind::ConfigMap,
            Some("default"),
            json!({"metadata": {"name": "cfg"}, "data": {"greeting": "hello", "app.conf": "x=1"}}),
        )
        .unwrap();
    let mut p = pod(
        "envy",
        "echo $GREETING $TOKEN $POD $NODE; cat etc/app/app.conf; echo; echo done > scratch/out; cat scratch/out",
    );
    p["spec"]["containers"][0]["env"] = json!([
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "cfg", "mountPath": "/etc/app"}, {"name": "scratch", "mountPath": "/scratch"}]);
    p["spec"]["volumes"] =
        json!([{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "scratch", "emptyDir": {}}]);
    store.create(ResourceKind::Pod, Some("default"), p).unwrap();
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "envy",
        "CreateContainerConfigError",
        |p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "CreateContainerConfigError"
        },
    )
    .await;
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        "secret \"later\" not found"
    );
    store
        .create(
            ResourceKind::Secret,
            Some("default"),
            json!({"metadata": {"name": "later"}, "stringData": {"token": "s3cret"}}),
        )
        .unwrap();
    wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "envy",
        "Succeeded",
        |p| p["status"]["phase"] == "Succeeded",
    )
    .await;
    assert_eq!(
        read_log(&rt, "envy", LogQuery::default()).await,
        "hello s3cret envy node-1\nx=1\ndone\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_sends_sigterm_then_removes_the_pod() {
    let (store, _rt) = start();
    let out = tempfile::tempdir().unwrap();
    let mut p = pod(
        "graceful",
        "trap 'echo got-term > out/term; exit 0' TERM; echo ready > out/ready; while true; do sleep 0.05; done",
    );
    p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "out", "mountPath": "/out"}]);
    p["spec"]["volumes"] =
        json!([{"name": "out", "hostPath": {"path": out.path().to_str().unwrap()}}]);
    store.create(ResourceKind::Pod, Some("default"), p).unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    while !out.path().join("ready").exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the container never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store
        .delete(
            ResourceKind::Pod,
            Some("default"),
            "graceful",
            DeleteOptions::default(),
        )
        .unwrap();
    wait_gone(&store, ResourceKind::Pod, "default", "graceful").await;
    assert_eq!(
        std::fs::read_to_string(out.path().join("term")).unwrap(),
        "got-term\n"
    );
    assert!(
        events_for(&store, "default", "graceful")
            .iter()
            .any(|e| e.0 == "Killing" && e.1 == "Stopping container main")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_ends_in_sigkill() {
    let (store, _rt) = start();
    let mut p = pod("stubborn", "trap '' TERM; while true; do sleep 0.05; done");
    p["spec"]["terminationGracePeriodSeconds"] = json!(1);
    store.create(ResourceKind::Pod, Some("default"), p).unwrap();
    wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "stubborn",
        "Running",
        |p| p["status"]["phase"] == "Running",
    )
    .await;
    store
        .delete(
            ResourceKind::Pod,
            Some("default"),
            "stubborn",
            DeleteOptions::default(),
        )
        .unwrap();
    wait_gone(&store, ResourceKind::Pod, "default", "stubborn").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_goes_to_files() {
    let (store, rt) = start();
    // 20 MB of output: memory stays bounded (the log is a file); tail and limit work.
    store
        .create(
            ResourceKind::Pod,
            Some("default"),
            pod(
                "loud",
                "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -n 540000; echo last",
            ),
        )
        .unwrap();
    wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "loud",
        "Succeeded",
        |p| p["status"]["phase"] == "Succeeded",
    )
    .await;
    let tail = LogQuery {
        tail_lines: Some(2),
        ..Default::default()
    };
    assert_eq!(
        read_log(&rt, "loud", tail).await,
        "0123456789abcdefghijklmnopqrstuvwxyz\nlast\n"
    );
    let limited = LogQuery {
        limit_bytes: Some(1000),
        ..Default::default()
    };
    assert_eq!(read_log(&rt, "loud", limited).await.len(), 1000);
    let mut s = rt
        .pod_log("default", "loud", LogQuery::default())
        .await
        .unwrap();
    let mut total = 0usize;
    while let Some(chunk) = s.next().await {
        total += chunk.unwrap().len();
    }
    assert_eq!(total, 540_000 * 37 + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_and_termination_messages() {
    let (store, _rt) = start();
    let mut p = pod(
        "staged",
        "cat shared/seed; echo finished > $TESTKIT_TERMINATION_MESSAGE_PATH; exit 4",
    );
    p["spec"]["initContainers"] = json!([{"name": "prep", "image": "busybox:1.36",
        "command": ["sh", "-c", "echo seeded > shared/seed"],
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}]);
    p["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "shared", "mountPath": "/shared"}]);
    p["spec"]["volumes"] = json!([{"name": "shared", "emptyDir": {}}]);
    store.create(ResourceKind::Pod, Some("default"), p).unwrap();
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "staged",
        "Failed",
        |p| p["status"]["phase"] == "Failed",
    )
    .await;
    assert_eq!(
        p["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert!(has_cond(&p, "Initialized"));
    assert_eq!(terminated(&p)["exitCode"], 4);
    assert_eq!(terminated(&p)["message"], "finished\n");

    let mut p = pod("fallback", "echo something broke; exit 2");
    p["spec"]["containers"][0]["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    store.create(ResourceKind::Pod, Some("default"), p).unwrap();
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "fallback",
        "Failed",
        |p| p["status"]["phase"] == "Failed",
    )
    .await;
    assert_eq!(terminated(&p)["message"], "something broke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_run_beside_the_main_container_and_stop_after_it() {
    let (store, rt) = start();
    let mut p = pod(
        "withside",
        "while [ ! -e side-up ]; do sleep 0.02; done; echo main-done",
    );
    p["spec"]["initContainers"] = json!([{"name": "side", "image": "busybox:1.36", "restartPolicy": "Always",
        "command": ["sh", "-c", "echo side-up; touch side-up; while true; do sleep 0.05; done"]}]);
    store.create(ResourceKind::Pod, Some("default"), p).unwrap();
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "withside",
        "Succeeded",
        |p| {
            p["status"]["phase"] == "Succeeded"
                && p["status"]["initContainerStatuses"][0]["state"]["terminated"].is_object()
        },
    )
    .await;
    assert_eq!(terminated(&p)["exitCode"], 0);
    let side = LogQuery {
        container: Some("side".into()),
        ..Default::default()
    };
    assert_eq!(read_log(&rt, "withside", side).await, "side-up\n");
    let main = LogQuery {
        container: Some("main".into()),
        ..Default::default()
    };
    assert_eq!(read_log(&rt, "withside", main).await, "main-done\n");
    // With one app container, it is the default (as the API server picks it).
    assert_eq!(
        read_log(&rt, "withside", LogQuery::default()).await,
        "main-done\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_fit_counts_running_pods() {
    let store = Store::new();
    let opts = RuntimeOptions {
        nodes: vec![NodeConfig::new("small").with_capacity("1", "1Gi")],
        ..fast_options()
    };
    let rt = Runtime::start(store.clone(), opts);
    let mut a = pod("first", "while [ ! -e stop ]; do sleep 0.05; done");
    a["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "600m"}});
    store.create(ResourceKind::Pod, Some("default"), a).unwrap();
    wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "first",
        "Running",
        |p| p["status"]["phase"] == "Running",
    )
    .await;
    let mut b = pod("second", "true");
    b["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "600m"}});
    store.create(ResourceKind::Pod, Some("default"), b).unwrap();
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "second",
        "Unschedulable",
        |p| cond(p, "PodScheduled").is_some_and(|c| c["reason"] == "Unschedulable"),
    )
    .await;
    assert!(
        cond(&p, "PodScheduled").unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("0/1 nodes are available: 1 Insufficient cpu.")
    );
    // Once the first pod finishes, the second fits.
    let root = rt.pod_root("default", "first").unwrap();
    std::fs::write(root.join("stop"), "").unwrap();
    let p = wait_for(
        &store,
        ResourceKind::Pod,
        "default",
        "second",
        "Succeeded",
        |p| p["status"]["phase"] == "Succeeded",
    )
    .await;
    assert_eq!(p["spec"]["nodeName"], "small");
}
