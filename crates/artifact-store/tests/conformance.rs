//! The artifact-store behaviour suite against the `local` flavor, plus what only a
//! directory store can show (its files on disk, two stores on one directory).

use std::sync::Arc;

use futures::StreamExt;
use stepstack_artifact_store::{LocalArtifactStore, register};
use stepstack_core::artifact_store::{
    ArtifactAddress, ArtifactError, ReadOptions, TransferOptions,
};
use stepstack_core::conformance::check_artifact_store;
use stepstack_core::registry::ArtifactStoreContext;
use stepstack_core::{ArtifactStore, ErrorKind, Registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_flavor_passes_the_suite() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalArtifactStore::new(root.path().join("store")).unwrap();
    let report = check_artifact_store(&store).await;
    report.assert_passed();
    assert_eq!(report.checks.len(), 5, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_flavor_passes_the_suite_with_small_parts() {
    // Parts of 64 KiB, 3 in flight: many multipart uploads with parts in flight at once.
    let root = tempfile::tempdir().unwrap();
    let store = LocalArtifactStore::new(root.path().join("store"))
        .unwrap()
        .with_transfer_options(TransferOptions::new(64 * 1024, 3));
    check_artifact_store(&store).await.assert_passed();
}

#[tokio::test]
async fn the_registry_builds_a_local_store_and_refuses_bad_config() {
    let mut registry = Registry::new();
    register(&mut registry).unwrap();
    let flavor = registry.artifact_store("local").unwrap();
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("artifacts");
    let store: Arc<dyn ArtifactStore> = flavor
        .build(
            &serde_json::json!({"path": path}),
            ArtifactStoreContext::new("artifacts"),
        )
        .unwrap();
    assert_eq!(store.flavor(), "local");
    assert!(path.is_dir(), "the root is created");
    for bad in [
        serde_json::json!({}),
        serde_json::json!({"path": "relative/dir"}),
        serde_json::json!({"path": "/x", "pth": "/y"}),
    ] {
        let err = flavor.validate_config(&bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{bad}: {err}");
    }
    let err = registry.artifact_store("hdfs").err().unwrap();
    for name in ["local", "s3", "gcs", "azure"] {
        assert!(err.message().contains(name), "{err}");
    }
}

#[tokio::test]
async fn files_live_under_the_documented_layout_and_commit_with_a_hard_link() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalArtifactStore::new(root.path().join("store")).unwrap();
    let source = root.path().join("out");
    std::fs::create_dir_all(source.join("sub")).unwrap();
    std::fs::write(source.join("sub/x#1.txt"), b"x").unwrap();
    let address: ArtifactAddress = "p/run-1/train/model".parse().unwrap();
    let manifest = (&store as &dyn ArtifactStore)
        .write_tree(&address, &source)
        .await
        .unwrap();
    let on_disk = store.file_path(&address.data_key(&manifest.upload_id, "sub/x#1.txt"));
    assert!(
        on_disk.starts_with(root.path().join("store/p/run-1/train/model/data")),
        "{}",
        on_disk.display()
    );
    assert_eq!(std::fs::read(&on_disk).unwrap(), b"x");
    assert!(
        root.path()
            .join("store/p/run-1/train/model/manifest.json")
            .is_file()
    );

    // A second process (another store value on the same directory) cannot commit again.
    let other = LocalArtifactStore::new(root.path().join("store")).unwrap();
    match (&other as &dyn ArtifactStore)
        .write_tree(&address, &source)
        .await
    {
        Err(ArtifactError::Conflict { .. }) => {}
        other => panic!("a second store committed over the first: {other:?}"),
    }
    // Removing the manifest by hand leaves an incomplete artifact, never a readable one.
    std::fs::remove_file(root.path().join("store/p/run-1/train/model/manifest.json")).unwrap();
    match (&other as &dyn ArtifactStore)
        .read_tree(&address, &root.path().join("in"), &ReadOptions::default())
        .await
    {
        Err(ArtifactError::Incomplete { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn local_trees_store_links_inside_and_refuse_links_out_and_special_files() {
    let root = tempfile::tempdir().unwrap();
    let store = LocalArtifactStore::new(root.path().join("store")).unwrap();
    let store: &dyn ArtifactStore = &store;
    let source = root.path().join("out");
    std::fs::create_dir_all(source.join("blobs")).unwrap();
    std::fs::write(source.join("blobs/abc"), b"blob").unwrap();
    std::os::unix::fs::symlink("blobs/abc", source.join("model.bin")).unwrap();
    let address: ArtifactAddress = "p/run-1/s/linked".parse().unwrap();
    let manifest = store.write_tree(&address, &source).await.unwrap();
    let paths: Vec<_> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["blobs/abc", "model.bin"]);
    let back = root.path().join("back");
    store
        .read_tree(&address, &back, &ReadOptions::default())
        .await
        .unwrap();
    let meta = std::fs::symlink_metadata(back.join("model.bin")).unwrap();
    assert!(
        meta.is_file(),
        "a link inside the tree is read back as a copy"
    );
    assert_eq!(std::fs::read(back.join("model.bin")).unwrap(), b"blob");

    let outward = root.path().join("outward");
    std::fs::create_dir(&outward).unwrap();
    std::os::unix::fs::symlink(root.path().join("out/blobs/abc"), outward.join("x")).unwrap();
    std::os::unix::fs::symlink("/", outward.join("root")).unwrap();
    let fifo = root.path().join("fifo");
    std::fs::create_dir(&fifo).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(fifo.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    for (dir, name) in [(&outward, "outward"), (&fifo, "fifo")] {
        let address: ArtifactAddress = format!("p/run-1/s/{name}").parse().unwrap();
        match store.write_tree(&address, dir).await {
            Err(ArtifactError::UnsupportedEntry { .. }) => {}
            other => panic!("{name}: {other:?}"),
        }
        assert!(
            store.list_objects(&address.prefix()).next().await.is_none(),
            "{name}: a refused tree uploaded something"
        );
    }
}
