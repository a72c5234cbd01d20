//! Drives the runtime (scheduler, job controller, process kubelet, logs) through the
//! HTTPS API with kube-rs, as stepstack's Kubernetes connector will. Timeouts only guard
//! against hangs; nothing asserts on wall-clock durations.

use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use serde_json::{Value, json};
use stepstack_testkit::runtime::SIMULATE_OOM_ANNOTATION;
use stepstack_testkit::{Cluster, ClusterOptions, NodeConfig, RuntimeOptions};

const GUARD: Duration = Duration::from_secs(60);

async fn cluster_with(nodes: Vec<NodeConfig>) -> Cluster {
    let runtime = RuntimeOptions {
        nodes,
        image_pull_backoff: Duration::from_millis(100),
        crash_loop_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        ..RuntimeOptions::default()
    };
    Cluster::start(ClusterOptions {
        runtime,
        ..ClusterOptions::default()
    })
    .await
    .expect("cluster starts")
}

async fn cluster() -> Cluster {
    cluster_with(vec![NodeConfig::new("node-1")]).await
}

/// Polls `get` until `pred` holds (the guard only catches hangs).
async fn wait_until<K, F>(api: &Api<K>, name: &str, what: &str, pred: F) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(&K) -> bool,
{
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        if let Ok(obj) = api.get(name).await
            && pred(&obj)
        {
            return obj;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {name}: {what}; last: {:?}",
            api.get(name).await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn job(name: &str, script: &str, extra: Value) -> Job {
    let mut j = json!({"metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}]}}}});
    if let (Some(spec), Some(extra)) = (j["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(j).unwrap()
}

fn pod(name: &str, script: &str, patch: impl FnOnce(&mut Value)) -> Pod {
    let mut p = json!({"metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}]}});
    patch(&mut p);
    serde_json::from_value(p).unwrap()
}

fn job_condition(j: &Job, t: &str) -> Option<(String, String)> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

fn pod_condition(p: &Pod, t: &str) -> Option<(String, String, String)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn main_state(p: &Pod) -> Option<k8s_openapi::api::core::v1::ContainerState> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .clone()
}

fn waiting_reason(p: &Pod) -> Option<String> {
    main_state(p)?.waiting?.reason
}

async fn events_about(client: &kube::Client, name: &str) -> Vec<(String, String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
    events
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

async fn job_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_to_completion_and_keeps_its_logs() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("hello", "echo one; echo two; echo three", json!({})),
    )
    .await
    .unwrap();
    let j = wait_until(&jobs, "hello", "Complete", |j| {
        job_condition(j, "Complete").is_some()
    })
    .await;
    let status = j.status.clone().unwrap();
    assert_eq!(status.succeeded, Some(1));
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let list = job_pods(&pods, "hello").await;
    assert_eq!(list.len(), 1);
    let p = &list[0];
    let name = p.metadata.name.clone().unwrap();
    assert_eq!(phase(p), "Succeeded");
    let t = main_state(p).unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    let logs = pods.logs(&name, &LogParams::default()).await.unwrap();
    assert_eq!(logs, "one\ntwo\nthree\n");
    let reasons: Vec<String> = events_about(&client, &name)
        .await
        .into_iter()
        .map(|e| e.1)
        .collect();
    for r in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "no {r} event in {reasons:?}"
        );
    }
    let job_events = events_about(&client, "hello").await;
    assert!(job_events.iter().any(|e| e.1 == "SuccessfulCreate"));
    assert!(job_events.iter().any(|e| e.1 == "Completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_3_fails_the_job_with_backoff_limit_exceeded() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("three", "echo failing; exit 3", json!({"backoffLimit": 1})),
    )
    .await
    .unwrap();
    let j = wait_until(&jobs, "three", "Failed", |j| {
        job_condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(
        job_condition(&j, "Failed").unwrap(),
        (
            "BackoffLimitExceeded".to_string(),
            "Job has reached the specified backoff limit".to_string()
        )
    );
    assert_eq!(j.status.unwrap().failed, Some(2));
    for p in job_pods(&pods, "three").await {
        assert_eq!(phase(&p), "Failed");
        let t = main_state(&p).unwrap().terminated.unwrap();
        assert_eq!(t.exit_code, 3);
        assert_eq!(t.reason.as_deref(), Some("Error"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_node_selector_stays_pending_unschedulable() {
    let c = cluster_with(vec![
        NodeConfig::new("node-1"),
        NodeConfig::gpu("gpu-1", "a100", 4),
    ])
    .await;
    let client = c.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = pod("picky", "true", |p| {
        p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    });
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = wait_until(&pods, "picky", "Unschedulable", |p| {
        pod_condition(p, "PodScheduled").is_some_and(|c| c.1 == "Unschedulable")
    })
    .await;
    let (status, _, message) = pod_condition(&p, "PodScheduled").unwrap();
    assert_eq!(status, "False");
    assert!(
        message.starts_with("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {nvidia.com/gpu: present}. preemption: 0/2 nodes are available:"),
        "{message}"
    );
    assert_eq!(phase(&p), "Pending");
    let events = events_about(&client, "picky").await;
    assert!(
        events
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "FailedScheduling" && e.2 == message),
        "{events:?}"
    );
    // A GPU pod that tolerates the taint lands on the GPU node.
    let g = pod("gpu", "true", |p| {
        p["spec"]["nodeSelector"] = json!({"gpu-type": "a100"});
        p["spec"]["tolerations"] = json!([{"key": "nvidia.com/gpu", "operator": "Exists"}]);
        p["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": "1"}});
    });
    pods.create(&PostParams::default(), &g).await.unwrap();
    let g = wait_until(&pods, "gpu", "Succeeded", |p| phase(p) == "Succeeded").await;
    assert_eq!(g.spec.unwrap().node_name.as_deref(), Some("gpu-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_registry_gives_err_image_pull_then_backoff() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = pod("nopull", "true", |p| {
        p["spec"]["containers"][0]["image"] = json!("registry.invalid/x:1");
    });
    pods.create(&PostParams::default(), &p).await.unwrap();
    wait_until(&pods, "nopull", "ErrImagePull", |p| {
        waiting_reason(p).as_deref() == Some("ErrImagePull")
    })
    .await;
    let p = wait_until(&pods, "nopull", "ImagePullBackOff", |p| {
        waiting_reason(p).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(phase(&p), "Pending");
    let events = events_about(&client, "nopull").await;
    assert!(events.iter().any(|e| {
        e.1 == "Failed"
            && e.2
                .starts_with("Failed to pull image \"registry.invalid/x:1\"")
    }));
    assert!(events.iter().any(|e| e.1 == "BackOff"));
    let err = pods
        .logs("nopull", &LogParams::default())
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert!(s.message.contains("is waiting to start"), "{}", s.message);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_annotation_with_memory_limit_gives_oomkilled() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client().await.unwrap(), "default");
    let p = pod("hog", "sleep 30", |p| {
        p["metadata"]["annotations"] = json!({SIMULATE_OOM_ANNOTATION: "true"});
        p["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "16Mi"}});
    });
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = wait_until(&pods, "hog", "Failed", |p| phase(p) == "Failed").await;
    let t = main_state(&p).unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_fails_the_pod() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client().await.unwrap(), "default");
    pods.create(&PostParams::default(), &pod("victim", "sleep 30", |_| {}))
        .await
        .unwrap();
    wait_until(&pods, "victim", "Running", |p| phase(p) == "Running").await;
    c.runtime().evict_pod("default", "victim").await.unwrap();
    let p = wait_until(&pods, "victim", "Failed", |p| phase(p) == "Failed").await;
    let st = p.status.clone().unwrap();
    assert_eq!(st.reason.as_deref(), Some("Evicted"));
    assert_eq!(
        st.message.as_deref(),
        Some("The node was low on resource: memory.")
    );
    assert_eq!(pod_condition(&p, "DisruptionTarget").unwrap().0, "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_fails_the_pod_as_a_disruption_target_then_deletes_it() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("victim", "sleep 30", |_| {}))
        .await
        .unwrap();
    let running = wait_until(&pods, "victim", "Running", |p| phase(p) == "Running").await;
    let from = running.metadata.resource_version.clone().unwrap();
    let mut events = pods
        .watch(
            &kube::api::WatchParams::default().fields("metadata.name=victim"),
            &from,
        )
        .await
        .unwrap()
        .boxed();
    c.runtime().preempt_pod("default", "victim").await.unwrap();
    let mut failed = None;
    tokio::time::timeout(GUARD, async {
        while let Some(event) = events.try_next().await.unwrap() {
            match event {
                kube::api::WatchEvent::Modified(p) if phase(&p) == "Failed" => failed = Some(p),
                kube::api::WatchEvent::Deleted(_) => return,
                _ => {}
            }
        }
    })
    .await
    .expect("the pod is deleted");
    let failed = failed.expect("the pod was seen Failed before it was deleted");
    let (status, reason, _) = pod_condition(&failed, "DisruptionTarget").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PreemptionByScheduler")
    );
    assert_eq!(failed.status.unwrap().reason, None, "no pod-level reason");
    let recorded: Api<Event> = Api::namespaced(client, "default");
    let recorded = recorded.list(&ListParams::default()).await.unwrap();
    assert!(
        recorded
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Preempted")
                && e.involved_object.name.as_deref() == Some("victim")),
        "a Preempted event"
    );
    assert!(c.runtime().preempt_pod("default", "victim").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_quota_refuses_pods_from_anyone_and_finished_pods_do_not_count() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    c.store().set_pod_quota("default", Some(1));
    pods.create(&PostParams::default(), &pod("first", "sleep 30", |_| {}))
        .await
        .unwrap();
    let err = pods
        .create(&PostParams::default(), &pod("second", "true", |_| {}))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                "pods \"second\" is forbidden: exceeded quota: pod-quota, requested: pods=1, used: pods=1, limited: pods=1"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // The job controller meets the same quota and says so on the Job.
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("blocked", "true", json!({})))
        .await
        .unwrap();
    tokio::time::timeout(GUARD, async {
        loop {
            let events = events_about(&client, "blocked").await;
            if events.iter().any(|(t, r, m)| {
                t == "Warning" && r == "FailedCreate" && m.contains("exceeded quota")
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a FailedCreate event on the Job");
    // A finished pod frees its place (the Job goes first, so it cannot take it).
    jobs.delete("blocked", &DeleteParams::background())
        .await
        .unwrap();
    c.runtime().evict_pod("default", "first").await.unwrap();
    pods.create(&PostParams::default(), &pod("third", "true", |_| {}))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_with_deadline_exceeded() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "slow",
            "sleep 30",
            json!({"activeDeadlineSeconds": 1, "backoffLimit": 3}),
        ),
    )
    .await
    .unwrap();
    let j = wait_until(&jobs, "slow", "Failed", |j| {
        job_condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(job_condition(&j, "Failed").unwrap().0, "DeadlineExceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_runs_three_indexed_pods() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "idx",
            "echo index=$JOB_COMPLETION_INDEX",
            json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3}),
        ),
    )
    .await
    .unwrap();
    let j = wait_until(&jobs, "idx", "Complete", |j| {
        job_condition(j, "Complete").is_some()
    })
    .await;
    assert_eq!(j.status.unwrap().completed_indexes.as_deref(), Some("0-2"));
    let mut logs = Vec::new();
    for p in job_pods(&pods, "idx").await {
        let name = p.metadata.name.clone().unwrap();
        logs.push(pods.logs(&name, &LogParams::default()).await.unwrap());
    }
    logs.sort();
    assert_eq!(logs, ["index=0\n", "index=1\n", "index=2\n"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_tail_and_since() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client().await.unwrap(), "default");
    let p = pod(
        "chatty",
        "echo a; echo b; echo c; while [ ! -e stop ]; do sleep 0.05; done; echo done",
        |_| {},
    );
    pods.create(&PostParams::default(), &p).await.unwrap();
    wait_until(&pods, "chatty", "Running", |p| phase(p) == "Running").await;
    let follow = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut lines = pods.log_stream("chatty", &follow).await.unwrap().lines();
    let mut got = Vec::new();
    while got.len() < 3 {
        let line = tokio::time::timeout(GUARD, lines.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push(line);
    }
    assert_eq!(got, ["a", "b", "c"]);
    let tail = LogParams {
        tail_lines: Some(1),
        ..LogParams::default()
    };
    assert_eq!(pods.logs("chatty", &tail).await.unwrap(), "c\n");
    let since = LogParams {
        since_seconds: Some(3600),
        timestamps: true,
        ..LogParams::default()
    };
    let stamped = pods.logs("chatty", &since).await.unwrap();
    assert_eq!(stamped.lines().count(), 3);
    assert!(
        stamped
            .lines()
            .all(|l| l.split_once(' ').is_some_and(|(ts, _)| ts.contains('T')))
    );
    let root = c.runtime().pod_root("default", "chatty").unwrap();
    std::fs::write(root.join("stop"), "").unwrap();
    let rest: Vec<String> = tokio::time::timeout(GUARD, lines.try_collect())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, ["done"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pod_delivers_sigterm_and_removes_it() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let out = tempfile::tempdir().unwrap();
    let path = out.path().to_str().unwrap().to_string();
    let p = pod(
        "graceful",
        "trap 'echo got-term > out/term; exit 0' TERM; echo up > out/up; while true; do sleep 0.05; done",
        |p| {
            p["spec"]["containers"][0]["volumeMounts"] =
                json!([{"name": "out", "mountPath": "/out"}]);
            p["spec"]["volumes"] = json!([{"name": "out", "hostPath": {"path": path}}]);
        },
    );
    pods.create(&PostParams::default(), &p).await.unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    while !out.path().join("up").exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the container never started"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    pods.delete("graceful", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&pods, "graceful").await;
    assert_eq!(
        std::fs::read_to_string(out.path().join("term")).unwrap(),
        "got-term\n"
    );
    let events = events_about(&client, "graceful").await;
    assert!(events.iter().any(|e| e.1 == "Killing"), "{events:?}");
}

async fn wait_gone(pods: &Api<Pod>, name: &str) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while pods.get_opt(name).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} was not removed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
