//! Drives the emulator with kube-rs: CRUD, Status error shapes, selectors, pagination,
//! watch resume and 410 relist, faults, authentication/authorization and accounting.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube_runtime::watcher;
use serde_json::json;
use stepstack_testkit::{
    Cluster, ClusterOptions, FaultMatch, NewUser, ResourceKind, Rule, UserInfo,
};

async fn cluster() -> Cluster {
    Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster starts")
}

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_and_status_error_shapes() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = cms
        .create(&PostParams::default(), &cm("a", json!({"app": "x"})))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.resource_version.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let s = api_err(
        cms.create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(s.message, "configmaps \"a\" already exists");

    let s = api_err(cms.get("nope").await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.details.as_ref().unwrap().kind, "configmaps");

    // Optimistic concurrency: a stale resourceVersion is a 409 Conflict.
    let mut fresh = cms.get("a").await.unwrap();
    let mut stale = fresh.clone();
    fresh.data = Some([("k".to_string(), "v2".to_string())].into());
    let updated = cms
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        stale.metadata.resource_version
    );
    stale.data = Some([("k".to_string(), "v3".to_string())].into());
    let s = api_err(
        cms.replace("a", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));

    // Merge, JSON and apply patches.
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"m": "1"}}})),
    )
    .await
    .unwrap();
    let p: Patch<()> = Patch::Json(
        serde_json::from_value(json!([{"op": "add", "path": "/data/j", "value": "2"}])).unwrap(),
    );
    cms.patch("a", &PatchParams::default(), &p).await.unwrap();
    let applied = cms
        .patch("b", &PatchParams::apply("test"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"x": "y"}})))
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["x"], "y");
    let got = cms.get("a").await.unwrap();
    assert_eq!(got.metadata.labels.unwrap()["m"], "1");
    assert_eq!(got.data.unwrap()["j"], "2");

    // 422 Invalid with field causes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let bad: Pod = serde_json::from_value(json!({"metadata": {"name": "Bad_Name", "labels": {"ok": "-nope"}}, "spec": {"containers": []}})).unwrap();
    let s = api_err(pods.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = s
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(
        fields,
        vec!["metadata.name", "metadata.labels", "spec.containers"]
    );

    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job: Job = serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "busybox:1"}]}}}})).unwrap();
    let s = api_err(jobs.create(&PostParams::default(), &job).await.unwrap_err());
    assert_eq!(s.code, 422);
    let cause = &s.details.unwrap().causes[0];
    assert_eq!(cause.field, "spec.template.spec.restartPolicy");
    assert_eq!(cause.reason, "FieldValueNotSupported");

    // generateName, dryRun, strict field validation.
    let gen_cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let g = cms.create(&PostParams::default(), &gen_cm).await.unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    cms.create(&dry, &cm("dry", json!({}))).await.unwrap();
    assert_eq!(api_err(cms.get("dry").await.unwrap_err()).code, 404);
    let raw = kube::core::Request::new("/api/v1/namespaces/default/configmaps")
        .create(
            &PostParams::default(),
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strict"}, "bogus": 1})).unwrap(),
        )
        .unwrap();
    let mut raw = raw;
    *raw.uri_mut() = "/api/v1/namespaces/default/configmaps?fieldValidation=Strict"
        .parse()
        .unwrap();
    let err = client.request::<ConfigMap>(raw).await.unwrap_err();
    let s = api_err(err);
    assert_eq!(s.code, 400);
    assert!(
        s.message.contains("unknown field \"bogus\""),
        "{}",
        s.message
    );

    // Delete returns a Status for immediately deleted objects.
    let d = cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(d.is_right());
    assert_eq!(api_err(cms.get("a").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn selectors_and_pagination() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (i, tier) in ["web", "web", "db", "cache", "db"].iter().enumerate() {
        let labels = if i == 4 {
            json!({"tier": tier, "legacy": "true"})
        } else {
            json!({"tier": tier})
        };
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}"), labels))
            .await
            .unwrap();
    }
    let names = |l: kube::api::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier=web"))
                .await
                .unwrap()
        ),
        vec!["cm-0", "cm-1"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier in (db,cache)"))
                .await
                .unwrap()
        ),
        vec!["cm-2", "cm-3", "cm-4"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier notin (web),!legacy"))
                .await
                .unwrap()
        ),
        vec!["cm-2", "cm-3"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("legacy"))
                .await
                .unwrap()
        ),
        vec!["cm-4"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=cm-3"))
                .await
                .unwrap()
        ),
        vec!["cm-3"]
    );
    let s = api_err(
        cms.list(&ListParams::default().fields("spec.nope=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 400);
    let s = api_err(
        cms.list(&ListParams::default().labels("tier in web"))
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 400);

    // limit/continue.
    let mut all = Vec::new();
    let mut lp = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        let cont = page.metadata.continue_.clone();
        all.extend(names(page));
        match cont {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all, vec!["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);

    // All-namespace list, and pods by field selector.
    let all_cms: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all_cms
            .list(&ListParams::default().labels("tier"))
            .await
            .unwrap()
            .items
            .len(),
        5
    );
    let nss: Api<Namespace> = Api::all(client);
    let ns_names = names_ns(nss.list(&ListParams::default()).await.unwrap());
    assert!(ns_names.contains(&"kube-system".to_string()));
}

fn names_ns(l: kube::api::ObjectList<Namespace>) -> Vec<String> {
    l.items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect()
}

#[tokio::test]
async fn watch_resume_from_resource_version() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv0 = list.metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &cm("w1", json!({"a": "1"})))
        .await
        .unwrap();
    cms.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v2"}})),
    )
    .await
    .unwrap();
    cms.delete("w1", &DeleteParams::default()).await.unwrap();

    // Resuming from rv0 replays the three changes in order.
    let stream = cms
        .watch(&WatchParams::default().timeout(5), &rv0)
        .await
        .unwrap();
    let events: Vec<_> = stream.take(3).try_collect().await.unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) => "BOOKMARK",
            WatchEvent::Error(_) => "ERROR",
        })
        .collect();
    assert_eq!(kinds, vec!["ADDED", "MODIFIED", "DELETED"]);

    // A label-filtered watch sees objects entering and leaving the selection.
    let rv1 = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    cms.create(&PostParams::default(), &cm("w2", json!({"sel": "no"})))
        .await
        .unwrap();
    cms.patch(
        "w2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sel": "yes"}}})),
    )
    .await
    .unwrap();
    cms.patch(
        "w2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sel": "no"}}})),
    )
    .await
    .unwrap();
    let stream = cms
        .watch(&WatchParams::default().labels("sel=yes").timeout(5), &rv1)
        .await
        .unwrap();
    let events: Vec<_> = stream.take(2).try_collect().await.unwrap();
    assert!(matches!(events[0], WatchEvent::Added(_)));
    assert!(matches!(events[1], WatchEvent::Deleted(_)));

    // Bookmarks.
    let c2 = Cluster::start(ClusterOptions {
        bookmark_interval: Duration::from_millis(50),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let cms2: Api<ConfigMap> = Api::namespaced(c2.client().await.unwrap(), "default");
    let rv = cms2
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms2
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, WatchEvent::Bookmark(_)));
}

#[tokio::test]
async fn too_old_resource_version_is_410_and_watcher_relists() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv0 = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    cms.create(&PostParams::default(), &cm("old", json!({})))
        .await
        .unwrap();
    c.store().compact();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &rv0)
        .await
        .unwrap()
        .boxed();
    match stream.next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // kube-runtime's watcher: list, watch; dropping the watch and compacting makes the
    // re-watch get 410, after which the watcher relists (a second Init).
    let w = watcher(cms.clone(), watcher::Config::default().timeout(5));
    let mut w = w.boxed();
    let mut inits = 0;
    let mut saw_new = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.next()).await;
        let Ok(Some(ev)) = ev else { break };
        match ev {
            Ok(watcher::Event::Init) => inits += 1,
            Ok(watcher::Event::InitDone) if inits == 2 => {
                // Relisted after 410; create an object to see the new watch deliver it.
                cms.create(&PostParams::default(), &cm("after-relist", json!({})))
                    .await
                    .unwrap();
            }
            Ok(watcher::Event::InitDone) if inits == 1 => {
                // Make the next re-watch start from a compacted resourceVersion.
                cms.create(&PostParams::default(), &cm("bump", json!({})))
                    .await
                    .unwrap();
                c.store().compact();
                c.faults().drop_watches_now();
            }
            Ok(watcher::Event::Apply(o)) if o.metadata.name.as_deref() == Some("after-relist") => {
                saw_new = true;
                break;
            }
            _ => {}
        }
    }
    assert!(
        inits >= 2,
        "the watcher relisted after 410 (inits = {inits})"
    );
    assert!(saw_new);
}

#[tokio::test]
async fn injected_faults() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // 429 with Retry-After: kube's default retry policy waits and succeeds.
    c.accounting().reset();
    c.faults()
        .throttle_next(1, FaultMatch::verb_resource("list", "configmaps"), 1);
    cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(c.requests().count("list", "configmaps"), 2);

    // 500 for the next get in namespace default.
    c.faults().fail_next(
        1,
        FaultMatch::verb_resource("get", "configmaps").namespace("default"),
        500,
    );
    let s = api_err(cms.get("x").await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
    assert_eq!(api_err(cms.get("x").await.unwrap_err()).code, 404);

    // Connection reset.
    c.faults()
        .reset_connections_next(1, FaultMatch::verb_resource("get", "configmaps"));
    assert!(!matches!(
        cms.get("x").await.unwrap_err(),
        kube::Error::Api(_)
    ));

    // Latency (asserting only that the request completes).
    c.faults().add_latency(
        FaultMatch::verb_resource("list", "configmaps"),
        Duration::from_millis(20),
        Some(1),
    );
    cms.list(&ListParams::default()).await.unwrap();

    // Dropped watch after N events.
    c.faults().drop_watches_after(Some(2));
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..4 {
        cms.create(&PostParams::default(), &cm(&format!("d{i}"), json!({})))
            .await
            .unwrap();
    }
    let events: Vec<_> = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(events.len(), 2);
    c.faults().clear();

    // Dropped at once.
    let mut stream = cms
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    for _ in 0..4 {
        stream.next().await.unwrap().unwrap();
    }
    assert_eq!(c.requests().watches_open, 1);
    c.faults().drop_watches_now();
    assert!(stream.next().await.is_none());

    // Same via the admin endpoint.
    let req = http::Request::post("/_testkit/faults")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"match": {"verb": "get", "resource": "configmaps"}, "action": {"type": "status", "code": 503}, "times": 1})).unwrap())
        .unwrap();
    client.request_text(req).await.unwrap();
    // 503 is retried by kube's default policy, so the get succeeds (as a 404).
    assert_eq!(api_err(cms.get("x").await.unwrap_err()).code, 404);
    let req = http::Request::get("/_testkit/requests")
        .body(Vec::new())
        .unwrap();
    let counts: serde_json::Value = client.request(req).await.unwrap();
    assert!(
        counts["by_key"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"] == "configmaps")
    );
}

#[tokio::test]
async fn authentication_and_authorization() {
    let c = cluster().await;
    // Unauthenticated: 401.
    let anon = kube::config::Kubeconfig::from_yaml(&c.kubeconfig_yaml_for(
        &stepstack_testkit::UserCredentials {
            name: "anon".into(),
            token: None,
            client_cert_pem: None,
            client_key_pem: None,
            password: None,
        },
    ))
    .unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(anon, &Default::default())
        .await
        .unwrap();
    let anon_client = kube::Client::try_from(cfg).unwrap();
    let s = api_err(
        Api::<ConfigMap>::namespaced(anon_client, "default")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized"));

    // A token user allowed to read pods in "team" only.
    let admin = c.client().await.unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
        )
        .await
        .unwrap();
    let alice = c
        .add_user(NewUser::token(
            "alice",
            vec![Rule::new(&["get", "list", "watch"], &["pods"], &["team"])],
        ))
        .unwrap();
    let ac = c.client_for(&alice).await.unwrap();
    Api::<Pod>::namespaced(ac.clone(), "team")
        .list(&ListParams::default())
        .await
        .unwrap();
    let s = api_err(
        Api::<Pod>::namespaced(ac.clone(), "default")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let s = api_err(
        Api::<ConfigMap>::namespaced(ac.clone(), "team")
            .get("x")
            .await
            .unwrap_err(),
    );
    assert_eq!(
        s.message,
        "configmaps \"x\" is forbidden: User \"alice\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"team\""
    );

    // SelfSubjectAccessReview answers from the rule set.
    let ssar = |verb: &str, ns: &str| json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {"verb": verb, "resource": "pods", "namespace": ns}}});
    for (verb, ns, want) in [
        ("list", "team", true),
        ("create", "team", false),
        ("list", "default", false),
    ] {
        let req = http::Request::post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&ssar(verb, ns)).unwrap())
            .unwrap();
        let out: serde_json::Value = ac.request(req).await.unwrap();
        assert_eq!(out["status"]["allowed"], want, "{verb} in {ns}");
    }

    // A client-certificate user.
    let bob = c
        .add_user(NewUser::client_cert("bob", vec![Rule::read_only(&["*"])]))
        .unwrap();
    let bc = c.client_for(&bob).await.unwrap();
    Api::<Namespace>::all(bc.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let s = api_err(
        Api::<ConfigMap>::namespaced(bc, "default")
            .create(&PostParams::default(), &cm("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 403);

    // Token validator hook and expiring a token.
    c.set_token_validator(Some(std::sync::Arc::new(|t: &str| {
        t.strip_prefix("cloud-")
            .map(|u| UserInfo::new(u, vec!["system:masters".into()]))
    })));
    let cloud = stepstack_testkit::UserCredentials {
        name: "carol".into(),
        token: Some("cloud-carol".into()),
        client_cert_pem: None,
        client_key_pem: None,
        password: None,
    };
    let cc = c.client_for(&cloud).await.unwrap();
    Api::<Pod>::namespaced(cc, "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    c.faults().expire_token(alice.token.as_deref().unwrap());
    let s = api_err(
        Api::<Pod>::namespaced(ac, "team")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 401);

    // Accounting by user.
    let counts = c.requests();
    // The request with the expired token is counted as anonymous (authentication failed).
    assert_eq!(counts.count_for("alice", "list", "pods"), 2);
    assert_eq!(counts.count_for("system:anonymous", "list", "pods"), 1);
    assert_eq!(
        counts.count_for("system:anonymous", "list", "configmaps"),
        1
    );
}

#[tokio::test]
async fn delete_propagation_and_accounting() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let store = c.store();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = cms
        .create(&PostParams::default(), &cm("owner", json!({})))
        .await
        .unwrap();
    for i in 0..2 {
        let mut d = cm(&format!("dep-{i}"), json!({"owned": "yes"}));
        d.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "owner".into(),
                uid: owner.metadata.uid.clone().unwrap(),
                ..Default::default()
            },
        ]);
        cms.create(&PostParams::default(), &d).await.unwrap();
    }
    // Background (default for core kinds): dependents are collected.
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        cms.list(&ListParams::default().labels("owned"))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Collection delete by label selector.
    for i in 0..3 {
        cms.create(
            &PostParams::default(),
            &cm(&format!("col-{i}"), json!({"batch": "b"})),
        )
        .await
        .unwrap();
    }
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=b"),
    )
    .await
    .unwrap();
    assert!(
        cms.list(&ListParams::default().labels("batch"))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Accounting: one create = one request.
    let before = c.requests();
    cms.create(&PostParams::default(), &cm("counted", json!({})))
        .await
        .unwrap();
    let delta = c.requests().since(&before);
    assert_eq!(delta.count("create", "configmaps"), 1);
    assert_eq!(delta.total(), 1);

    // Direct store access sees the same objects.
    assert!(
        store
            .get(ResourceKind::ConfigMap, Some("default"), "counted")
            .is_ok()
    );
}

#[tokio::test]
async fn status_subresource_and_namespaces() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    // A pod on a node that does not exist stays Pending and unbound, so the runtime
    // leaves its status alone.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "s"},
        "spec": {"nodeSelector": {"no-such": "node"}, "containers": [{"name": "c", "image": "busybox:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // Status changes through the main resource are ignored...
    let p = pods
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"a": "b"}}, "status": {"message": "ignored"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.labels.unwrap()["a"], "b");
    assert_ne!(p.status.unwrap().message.as_deref(), Some("ignored"));
    // ...and spec changes through /status are ignored.
    let p = pods
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"message": "set"}, "spec": {"activeDeadlineSeconds": 5}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.status.unwrap().message.as_deref(), Some("set"));
    assert_eq!(p.spec.unwrap().active_deadline_seconds, None);
    // Pod spec updates are mostly forbidden.
    let s = api_err(
        pods.patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"restartPolicy": "Never"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(s.code, 422);

    // Namespaces: creating in a missing namespace is 404; a namespace with a Terminating
    // phase disappears with its contents.
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let s = api_err(
        missing
            .create(&PostParams::default(), &cm("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "tmp"}})).unwrap(),
    )
    .await
    .unwrap();
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "tmp");
    sas.get("default").await.unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "tmp")
        .create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap();
    nss.delete("tmp", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(nss.get("tmp").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn pod_logs_follow_through_the_api() {
    use futures::AsyncBufReadExt;
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "talker"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36",
            "command": ["sh", "-c", "echo one; sleep 0.5; echo two"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    kube_runtime::wait::await_condition(pods.clone(), "talker", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref())
            .is_some_and(|ph| ph != "Pending")
    })
    .await
    .unwrap();
    let params = kube::api::LogParams {
        follow: true,
        ..Default::default()
    };
    let lines: Vec<String> = pods
        .log_stream("talker", &params)
        .await
        .unwrap()
        .lines()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(lines, vec!["one", "two"]);
    assert_eq!(c.requests().count("get", "pods/log"), 1);
    let s = api_err(pods.logs("missing", &Default::default()).await.unwrap_err());
    assert_eq!(s.code, 404);
}

#[tokio::test]
async fn malformed_requests_get_status_errors() {
    let c = cluster().await;
    let client = c.client().await.unwrap();
    let cases: Vec<(http::Method, &str, &str, &[u8], u16)> = vec![
        (
            http::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            b"{not json",
            400,
        ),
        (
            http::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            b"[1,2]",
            400,
        ),
        (
            http::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            br#"{"metadata": "x"}"#,
            400,
        ),
        (
            http::Method::POST,
            "/api/v1/namespaces/default/pods",
            "application/json",
            br#"{"metadata": {"name": "p"}, "spec": {"containers": "x"}}"#,
            400,
        ),
        (
            http::Method::POST,
            "/api/v1/namespaces/default/pods",
            "application/json",
            br#"{"kind": "Service", "metadata": {"name": "p"}}"#,
            400,
        ),
        (
            http::Method::POST,
            "/api/v1/namespaces/default/pods",
            "application/vnd.kubernetes.protobuf",
            b"garbage",
            415,
        ),
        (
            http::Method::POST,
            "/api/v1/namespaces/default/secrets",
            "application/vnd.kubernetes.protobuf",
            b"k8s\x00\x12\xff",
            400,
        ),
        (
            http::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "application/yaml",
            b"metadata: [",
            400,
        ),
        (
            http::Method::PATCH,
            "/api/v1/namespaces/default/configmaps/kube-root",
            "text/plain",
            b"{}",
            415,
        ),
        (
            http::Method::PATCH,
            "/api/v1/namespaces/default/serviceaccounts/default",
            "application/json-patch+json",
            b"{}",
            400,
        ),
        (
            http::Method::PATCH,
            "/api/v1/namespaces/default/serviceaccounts/default",
            "application/json-patch+json",
            br#"[{"op": "remove", "path": "/nope"}]"#,
            422,
        ),
        (
            http::Method::PATCH,
            "/api/v1/namespaces/default/serviceaccounts/default",
            "application/merge-patch+json",
            br#"{"metadata": {"labels": "x"}}"#,
            400,
        ),
        (
            http::Method::PUT,
            "/api/v1/namespaces/default/serviceaccounts/default",
            "application/json",
            br#"{"metadata": {"name": "other"}}"#,
            400,
        ),
        (
            http::Method::GET,
            "/api/v1/namespaces/default/pods?labelSelector=a+in+b",
            "",
            b"",
            400,
        ),
        (
            http::Method::GET,
            "/api/v1/namespaces/default/pods?limit=x",
            "",
            b"",
            400,
        ),
        (
            http::Method::GET,
            "/api/v1/namespaces/default/pods?continue=%%%",
            "",
            b"",
            400,
        ),
        (
            http::Method::GET,
            "/api/v1/namespaces/default/pods?watch=true&resourceVersion=abc",
            "",
            b"",
            400,
        ),
        (
            http::Method::GET,
            "/api/v1/namespaces/default/pods/x/log?tailLines=z",
            "",
            b"",
            400,
        ),
        (
            http::Method::GET,
            "/api/v1/namespaces/default/widgets",
            "",
            b"",
            404,
        ),
        (http::Method::GET, "/apis/apps/v1/deployments", "", b"", 404),
        (
            http::Method::PUT,
            "/api/v1/namespaces/default/pods",
            "application/json",
            b"{}",
            405,
        ),
        (
            http::Method::DELETE,
            "/api/v1/namespaces/default/pods/x?propagationPolicy=Sideways",
            "",
            b"",
            400,
        ),
        (
            http::Method::POST,
            "/api/v1/nodes",
            "application/json",
            br#"{"metadata": {"name": "n"}}"#,
            405,
        ),
        (
            http::Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "application/json",
            b"nope",
            400,
        ),
    ];
    for (method, path, ct, body, want) in cases {
        let mut req = http::Request::builder().method(method.clone()).uri(path);
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let req = req.body(body.to_vec()).unwrap();
        match client.request_text(req).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, want, "{method} {path}: {s:?}");
                assert!(!s.reason.is_empty(), "{method} {path}: {s:?}");
            }
            other => panic!("{method} {path}: expected a Status error, got {other:?}"),
        }
    }
    // The server is still healthy.
    Api::<ConfigMap>::namespaced(client, "default")
        .list(&ListParams::default())
        .await
        .unwrap();
}

#[test]
fn public_handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Cluster>();
    check::<stepstack_testkit::Store>();
    check::<stepstack_testkit::Faults>();
    check::<stepstack_testkit::Accounting>();
    check::<stepstack_testkit::ApiError>();
}
