//! The `gcs` flavor against the testkit's fake GCS (`stepstack_testkit::cloud::gcs`),
//! which serves the XML API subset `object_store`'s GCS client uses: core's artifact-store
//! suite, transient 503s retried, a refused token reported without the token.

use stepstack_artifact_store::{GcsStoreConfig, open_gcs, register};
use stepstack_core::artifact_store::{ArtifactAddress, ObjectKey, TransferOptions};
use stepstack_core::conformance::check_artifact_store;
use stepstack_core::registry::ArtifactStoreContext;
use stepstack_core::{ArtifactStore, ErrorKind, Registry};
use stepstack_testkit::cloud::gcs::{FakeGcs, FakeGcsOptions};

const TOKEN: &str = "ya29.fake-gcs-token";

fn config(gcs: &FakeGcs, bucket: &str, prefix: Option<&str>) -> serde_json::Value {
    let mut config = serde_json::json!({
        "bucket": bucket,
        "endpoint_url": gcs.endpoint_url(),
        "allow_http": true,
        "credentials": {"bearer_token": TOKEN},
        "retry": {"max_retries": 3, "retry_timeout_secs": 30}
    });
    if let Some(prefix) = prefix {
        config["prefix"] = prefix.into();
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_flavor_passes_the_suite_on_the_fake_with_paged_listings() {
    // Pages of 3 entries: every listing of a tree crosses pages.
    let gcs = FakeGcs::start(
        FakeGcsOptions::default()
            .with_token(TOKEN)
            .with_page_size(3),
    )
    .await
    .unwrap();
    gcs.create_bucket("artifacts");
    let config = GcsStoreConfig::from_json(&config(&gcs, "artifacts", Some("team/store"))).unwrap();
    let store = open_gcs(&config).unwrap();
    assert_eq!(store.location(), "gs://artifacts/team/store");
    let report = check_artifact_store(&store).await;
    report.assert_passed();
    assert_eq!(report.checks.len(), 5, "{report}");
    // Every object request stayed under the prefix (listings name the bucket only).
    let calls = gcs.calls();
    let outside: Vec<_> = calls
        .iter()
        .filter(|c| c.path != "/artifacts" && !c.path.starts_with("/artifacts/team/store/"))
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
    assert!(calls.iter().any(|c| c.method == "PUT"));
    assert!(
        calls.iter().any(|c| c.query.contains("continuation-token")),
        "no listing crossed a page"
    );
    // The suite's 20 MB file went up as an XML multipart upload, and every upload ended.
    assert!(
        gcs.calls()
            .iter()
            .any(|c| c.method == "POST" && c.query.starts_with("uploads")),
        "no multipart upload was made"
    );
    assert_eq!(gcs.open_uploads(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_flavor_from_the_registry_passes_at_the_bucket_root_with_parts_in_flight() {
    let gcs = FakeGcs::start(FakeGcsOptions::default().with_token(TOKEN))
        .await
        .unwrap();
    gcs.create_bucket("root-store");
    let mut registry = Registry::new();
    register(&mut registry).unwrap();
    let flavor = registry.artifact_store("gcs").unwrap();
    let normalised = flavor
        .validate_config(&config(&gcs, "root-store", None))
        .unwrap();
    let store = flavor
        .build(
            &normalised,
            ArtifactStoreContext::new("artifacts")
                .with_transfer(TransferOptions::new(64 * 1024, 3)),
        )
        .unwrap();
    // GCS refuses parts under 5 MiB but the last: the flavor raises the part size.
    assert_eq!(store.transfer_options().part_size, 5 * 1024 * 1024);
    check_artifact_store(store.as_ref()).await.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_a_refused_token_is_not_echoed() {
    let gcs = FakeGcs::start(FakeGcsOptions::default().with_token_for(TOKEN, "allowed"))
        .await
        .unwrap();
    gcs.create_bucket("allowed");
    gcs.create_bucket("other");
    let config = GcsStoreConfig::from_json(&config(&gcs, "allowed", None)).unwrap();
    let store = open_gcs(&config).unwrap();
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("a.txt"), b"hello").unwrap();
    let address: ArtifactAddress = "p/run-1/train/model".parse().unwrap();

    // Two 503s, then success: the write goes through on the retries.
    gcs.fail_next(2);
    let manifest = (&store as &dyn ArtifactStore)
        .write_tree(&address, source.path())
        .await
        .unwrap();
    assert_eq!(manifest.files.len(), 1);
    let statuses: Vec<u16> = gcs.calls().iter().map(|c| c.status).collect();
    assert_eq!(&statuses[..2], &[503, 503], "{statuses:?}");

    // More failures than retries: the error is transient-looking, not a conflict.
    gcs.fail_next(10);
    let key = ObjectKey::from_segments(["p", "run-1", "train", "model", "manifest.json"]);
    let err = store.head_object(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    gcs.fail_next(0);

    // A token the bucket does not accept, and one no one issued.
    let other = GcsStoreConfig::from_json(&config_for(&gcs, "other", TOKEN)).unwrap();
    let err = open_gcs(&other)
        .unwrap()
        .head_object(&key)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err:?}");
    let forged = "ya29.not-issued";
    let bad = GcsStoreConfig::from_json(&config_for(&gcs, "allowed", forged)).unwrap();
    let err = open_gcs(&bad).unwrap().head_object(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err:?}");
    let chain = stepstack_core::error_chain(&err);
    assert!(!chain.contains(forged), "{chain}");
    assert!(!format!("{bad:?}").contains(forged), "{bad:?}");
}

fn config_for(gcs: &FakeGcs, bucket: &str, token: &str) -> serde_json::Value {
    let mut config = config(gcs, bucket, None);
    config["credentials"]["bearer_token"] = token.into();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_nobody_listens_on_is_unavailable_after_the_retries() {
    // A port that was free a moment ago: connecting is refused, which object_store
    // retries as a connection error, then reports.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = GcsStoreConfig::from_json(&serde_json::json!({
        "bucket": "gone",
        "endpoint_url": format!("http://127.0.0.1:{port}"),
        "allow_http": true,
        "credentials": {"bearer_token": TOKEN},
        "retry": {"max_retries": 1, "retry_timeout_secs": 10}
    }))
    .unwrap();
    let key = ObjectKey::from_segments(["p", "manifest.json"]);
    let err = open_gcs(&config)
        .unwrap()
        .head_object(&key)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    let chain = stepstack_core::error_chain(&err);
    assert!(chain.contains("after 1 retries"), "{chain}");
    assert!(!chain.contains(TOKEN), "{chain}");
}
