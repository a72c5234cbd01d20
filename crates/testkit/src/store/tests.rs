//! Unit tests of the object store: create/get/list, conflicts, watches.

use futures::StreamExt;
use serde_json::json;

use super::*;

fn pod(name: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}})
}

#[test]
fn create_get_list_conflict() {
    let s = Store::new();
    let p = s
        .create(ResourceKind::Pod, Some("default"), pod("a"))
        .unwrap();
    assert_eq!(p["metadata"]["namespace"], "default");
    assert_eq!(p["status"]["phase"], "Pending");
    let e = s
        .create(ResourceKind::Pod, Some("default"), pod("a"))
        .unwrap_err();
    assert_eq!(e.code, 409);
    assert_eq!(e.reason, "AlreadyExists");
    let mut stale = p.clone();
    s.modify(ResourceKind::Pod, Some("default"), "a", |o| {
        o["metadata"]["labels"]["b"] = json!("1");
        Ok(())
    })
    .unwrap();
    stale["metadata"]["labels"]["c"] = json!("1");
    assert_eq!(
        s.update(ResourceKind::Pod, Some("default"), stale)
            .unwrap_err()
            .reason,
        "Conflict"
    );
    let (items, _) = s.list(ResourceKind::Pod, None, &ListFilter::labels("b=1").unwrap());
    assert_eq!(items.len(), 1);
    let e = s
        .create(ResourceKind::Pod, Some("nope"), pod("a"))
        .unwrap_err();
    assert_eq!(e.code, 404);
    let (sas, _) = s.list(
        ResourceKind::ServiceAccount,
        Some("kube-system"),
        &ListFilter::all(),
    );
    assert_eq!(sas.len(), 1);
}

#[test]
fn generate_name() {
    let s = Store::new();
    let p = s
        .create(
            ResourceKind::ConfigMap,
            Some("default"),
            json!({"metadata": {"generateName": "cm-"}}),
        )
        .unwrap();
    let name = p["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("cm-") && name.len() == 8);
}

#[tokio::test]
async fn watch_resume_and_gone() {
    let s = Store::new();
    let rv0 = s.current_resource_version();
    s.create(
        ResourceKind::ConfigMap,
        Some("default"),
        json!({"metadata": {"name": "a"}}),
    )
    .unwrap();
    let mut w = s
        .watch(ResourceKind::ConfigMap, Some("default"), Some(rv0))
        .unwrap();
    let ev = w.next().await.unwrap().unwrap();
    assert_eq!(ev.kind, WatchEventType::Added);
    s.delete(
        ResourceKind::ConfigMap,
        Some("default"),
        "a",
        DeleteOptions::default(),
    )
    .unwrap();
    let ev = w.next().await.unwrap().unwrap();
    assert_eq!(ev.kind, WatchEventType::Deleted);
    s.compact();
    assert_eq!(
        s.watch(ResourceKind::ConfigMap, None, Some(rv0))
            .err()
            .unwrap()
            .code,
        410
    );
}

#[test]
fn graceful_pod_delete_and_gc() {
    let s = Store::new();
    let job = s
        .create(ResourceKind::Job, Some("default"), json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}))
        .unwrap();
    let mut p = pod("j-1");
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": job["metadata"]["uid"], "controller": true}]);
    p["spec"]["nodeName"] = json!("node-1");
    s.create(ResourceKind::Pod, Some("default"), p).unwrap();
    let opts = DeleteOptions {
        propagation: Propagation::Foreground,
        ..Default::default()
    };
    let j = s
        .delete(ResourceKind::Job, Some("default"), "j", opts)
        .unwrap();
    assert!(j["metadata"]["deletionTimestamp"].is_string());
    let pod = s.get(ResourceKind::Pod, Some("default"), "j-1").unwrap();
    assert!(pod["metadata"]["deletionTimestamp"].is_string());
    s.finalize_delete(ResourceKind::Pod, Some("default"), "j-1")
        .unwrap();
    assert_eq!(
        s.get(ResourceKind::Job, Some("default"), "j")
            .unwrap_err()
            .code,
        404
    );
}

#[tokio::test]
async fn slow_subscriber_is_dropped_not_blocking() {
    let s = Store::with_options(StoreOptions {
        history_window: 100,
        channel_capacity: 4,
    });
    let mut w = s.watch(ResourceKind::ConfigMap, None, None).unwrap();
    for i in 0..10 {
        // Writers never block on the slow watcher.
        s.create(
            ResourceKind::ConfigMap,
            Some("default"),
            json!({"metadata": {"name": format!("c{i}")}}),
        )
        .unwrap();
    }
    let mut saw_err = false;
    while let Some(ev) = w.next().await {
        if ev.is_err() {
            saw_err = true;
        }
    }
    assert!(
        saw_err,
        "the lagging watcher got an error and its stream ended"
    );
    // Re-watching from its last resourceVersion replays the rest from history.
    let rv = w.last_resource_version();
    let mut again = s.watch(ResourceKind::ConfigMap, None, Some(rv)).unwrap();
    let first = again.next().await.unwrap().unwrap();
    assert_eq!(first.kind, WatchEventType::Added);
}
