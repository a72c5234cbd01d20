//! Behaviour checks for artifact-store flavors, in the style of OpenDAL's behaviour tests:
//! one suite of functions over `&dyn ArtifactStore`, run against every flavor (a local
//! directory here, emulators of the remote services in their crates).
//!
//! ```no_run
//! # async fn example(store: std::sync::Arc<dyn stepstack_core::ArtifactStore>) {
//! let report = stepstack_core::conformance::check_artifact_store(store.as_ref()).await;
//! report.assert_passed();
//! # }
//! ```
//!
//! Every check works under its own pipeline name (`conformance-<random>`), so the suite
//! can share a bucket with other data, and removes what it wrote when it passes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use bytes::Bytes;
use futures::TryStreamExt;

use super::checks::{self, Check, CheckOutcome, CheckResult, ensure, run_check};
use crate::artifact_store::{
    ArtifactAddress, ArtifactError, ArtifactPrefix, ArtifactStore, MANIFEST_FORMAT, Manifest,
    ManifestFile, PutMode, ReadOptions,
};

/// Every check of an artifact-store conformance run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a report is only useful when looked at: call `assert_passed`"]
pub struct ArtifactStoreReport {
    /// The flavor checked.
    pub flavor: String,
    /// One entry per check.
    pub checks: Vec<CheckResult>,
}

impl ArtifactStoreReport {
    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        checks::failures(&self.checks)
    }

    /// The outcome of the check called `name`, if the suite has one.
    pub fn outcome(&self, name: &str) -> Option<&CheckOutcome> {
        checks::outcome(&self.checks, name)
    }

    /// Panics with the whole report when any check failed.
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(
            self.failures().next().is_none(),
            "artifact store `{}` broke the contract:\n{self}",
            self.flavor
        );
    }
}

/// One line per check: `PASS name` or `FAIL name: why`.
impl fmt::Display for ArtifactStoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        checks::write_checks(f, &self.checks)
    }
}

/// `?` for fallible steps inside a check: the error becomes the check's failure.
trait OrFail<T> {
    fn or_fail(self, what: &str) -> Result<T, String>;
}

impl<T, E: std::error::Error> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {}", crate::error_chain(&e)))
    }
}

/// Runs every artifact-store check against `store`; never stops early.
pub async fn check_artifact_store(store: &dyn ArtifactStore) -> ArtifactStoreReport {
    let mut report = ArtifactStoreReport {
        flavor: store.flavor().to_owned(),
        checks: Vec::new(),
    };
    run_check(
        &mut report.checks,
        "round_trip_keeps_the_tree",
        None,
        round_trip(store),
    )
    .await;
    run_check(
        &mut report.checks,
        "an_uncommitted_write_is_never_read",
        None,
        uncommitted_write(store),
    )
    .await;
    run_check(
        &mut report.checks,
        "a_second_commit_is_a_conflict",
        None,
        second_commit(store),
    )
    .await;
    run_check(
        &mut report.checks,
        "tampered_content_is_detected",
        None,
        tampered_content(store),
    )
    .await;
    run_check(
        &mut report.checks,
        "hostile_manifests_are_refused",
        None,
        hostile_manifests(store),
    )
    .await;
    report
}

fn pipeline() -> String {
    format!(
        "conformance-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn address(pipeline: &str, step: &str, output: &str) -> ArtifactAddress {
    ArtifactAddress::new(pipeline, "run-1", step, output).expect("valid test address")
}

/// Deterministic, incompressible-looking bytes (xorshift), so a 20 MB file is not all
/// zeros and a shifted part would be noticed.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every entry under `root`: relative path → `None` for a directory, `Some(bytes)` for a
/// file.
fn snapshot(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![(root.to_owned(), String::new())];
    while let Some((dir, relative)) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a test directory") {
            let entry = entry.expect("read a test directory");
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            if entry.file_type().expect("file type").is_dir() {
                out.insert(path.clone(), None);
                pending.push((entry.path(), path));
            } else {
                out.insert(
                    path,
                    Some(std::fs::read(entry.path()).expect("read a test file")),
                );
            }
        }
    }
    out
}

fn write(root: &Path, path: &str, content: &[u8]) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("create test directories");
    std::fs::write(path, content).expect("write a test file");
}

fn small_tree(root: &Path, marker: &str) {
    write(root, "a.txt", marker.as_bytes());
    write(root, "sub/b.txt", format!("{marker}-b").as_bytes());
}

async fn round_trip(store: &dyn ArtifactStore) -> Check {
    let scratch = tempfile::tempdir().or_fail("create a scratch directory")?;
    let source = scratch.path().join("source");
    let big = pseudo_random(20 * 1024 * 1024 + 123, 7);
    write(&source, "model/weights.bin", &big);
    write(&source, "model/config.json", b"{\"layers\": 3}");
    write(&source, "empty.txt", b"");
    write(&source, "deep/a/b/c/d/leaf.txt", b"leaf");
    write(&source, "odd names/#1 ü%20 [x].txt", b"odd");
    std::fs::create_dir_all(source.join("empty-dir/nested-empty")).or_fail("create a directory")?;
    let pipeline = pipeline();
    let model = address(&pipeline, "train", "model");
    // An output whose name extends the other's: prefixes must match whole segments.
    let sibling = address(&pipeline, "train", "model-2");

    let manifest = store
        .write_tree(&model, &source)
        .await
        .or_fail("write the tree")?;
    ensure!(
        manifest.format == MANIFEST_FORMAT,
        "manifest format {}",
        manifest.format
    );
    ensure!(
        manifest.files.len() == 5,
        "the manifest lists {} files, not 5: {:?}",
        manifest.files.len(),
        manifest.files.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
    ensure!(
        manifest.directories == ["empty-dir/nested-empty"],
        "empty directories recorded as {:?}",
        manifest.directories
    );
    let weights = manifest
        .files
        .iter()
        .find(|f| f.path == "model/weights.bin")
        .ok_or("model/weights.bin is not in the manifest")?;
    ensure!(
        weights.size == big.len() as u64,
        "weights.bin recorded as {} bytes",
        weights.size
    );
    store
        .write_tree(&sibling, &source)
        .await
        .or_fail("write the sibling")?;

    ensure!(
        store.exists(&model).await.or_fail("exists")?,
        "a committed artifact does not exist"
    );
    let read_manifest = store.manifest(&model).await.or_fail("read the manifest")?;
    ensure!(
        read_manifest == manifest,
        "the manifest read back differs from the one written"
    );
    ensure!(
        store.digest(&sibling).await.or_fail("digest")? == manifest.digest,
        "the same tree at another address has another digest"
    );

    let destination = scratch.path().join("read/model");
    let read = store
        .read_tree(
            &model,
            &destination,
            &ReadOptions::default().expect_digest(manifest.digest.clone()),
        )
        .await
        .or_fail("read the tree")?;
    ensure!(read == manifest, "read_tree returned another manifest");
    let (written, copied) = (snapshot(&source), snapshot(&destination));
    ensure!(
        written == copied,
        "the tree read back differs: written {:?}, read {:?}",
        written.keys().collect::<Vec<_>>(),
        copied.keys().collect::<Vec<_>>()
    );

    let prefix = ArtifactPrefix::pipeline(&pipeline)
        .and_then(|p| p.run("run-1"))
        .or_fail("prefix")?;
    let listed = store.list(&prefix).await.or_fail("list")?;
    ensure!(
        listed == [model.clone(), sibling.clone()],
        "listed {listed:?}"
    );

    ensure!(
        store.delete(&model).await.or_fail("delete")?,
        "delete said nothing was there"
    );
    ensure!(
        !store.exists(&model).await.or_fail("exists")?,
        "a deleted artifact still exists"
    );
    let leftover: Vec<_> = store
        .list_objects(&model.prefix())
        .try_collect()
        .await
        .or_fail("list objects")?;
    ensure!(
        leftover.is_empty(),
        "delete left objects behind: {leftover:?}"
    );
    match store
        .read_tree(
            &model,
            &scratch.path().join("again"),
            &ReadOptions::default(),
        )
        .await
    {
        Err(ArtifactError::NotFound { .. }) => {}
        other => return Err(format!("reading a deleted artifact gave {other:?}")),
    }
    ensure!(
        store.exists(&sibling).await.or_fail("exists")?,
        "deleting {model} deleted {sibling} too"
    );
    store
        .read_tree(
            &sibling,
            &scratch.path().join("sibling"),
            &ReadOptions::default(),
        )
        .await
        .or_fail("read the sibling after deleting its neighbour")?;
    store.delete(&sibling).await.or_fail("delete")?;
    Ok(())
}

async fn uncommitted_write(store: &dyn ArtifactStore) -> Check {
    let scratch = tempfile::tempdir().or_fail("create a scratch directory")?;
    let first = scratch.path().join("first");
    small_tree(&first, "first");
    write(&first, "only-in-first.txt", b"stale");
    let pipeline = pipeline();
    let output = address(&pipeline, "step", "out");

    // A write that stops after its files are up, before the manifest: the process died.
    let mut writer = store.begin_write(&output).await.or_fail("begin a write")?;
    writer
        .put_file("a.txt", &first.join("a.txt"))
        .await
        .or_fail("upload a file")?;
    writer
        .put_file("only-in-first.txt", &first.join("only-in-first.txt"))
        .await
        .or_fail("upload a file")?;
    writer
        .put_bytes("big.bin", Bytes::from(pseudo_random(1024, 3)))
        .await
        .or_fail("upload bytes")?;
    drop(writer);

    let destination = scratch.path().join("read");
    match store
        .read_tree(&output, &destination, &ReadOptions::default())
        .await
    {
        Err(ArtifactError::Incomplete { .. }) => {}
        other => return Err(format!("reading an uncommitted artifact gave {other:?}")),
    }
    ensure!(
        !destination.exists() || snapshot(&destination).is_empty(),
        "reading an uncommitted artifact wrote files"
    );
    match store.manifest(&output).await {
        Err(ArtifactError::Incomplete { .. }) => {}
        other => {
            return Err(format!(
                "the manifest of an uncommitted artifact: {other:?}"
            ));
        }
    }
    ensure!(
        !store.exists(&output).await.or_fail("exists")?,
        "an uncommitted artifact exists"
    );
    let prefix = ArtifactPrefix::pipeline(&pipeline).or_fail("prefix")?;
    let listed = store.list(&prefix).await.or_fail("list")?;
    ensure!(
        listed.is_empty(),
        "an uncommitted artifact is listed: {listed:?}"
    );

    // A later complete write succeeds, and nothing of the interrupted one shows through.
    let second = scratch.path().join("second");
    small_tree(&second, "second");
    store
        .write_tree(&output, &second)
        .await
        .or_fail("write after an interrupted write")?;
    let destination = scratch.path().join("read-second");
    store
        .read_tree(&output, &destination, &ReadOptions::default())
        .await
        .or_fail("read")?;
    ensure!(
        snapshot(&destination) == snapshot(&second),
        "the committed artifact mixes in files of the interrupted write: {:?}",
        snapshot(&destination).keys().collect::<Vec<_>>()
    );
    store.delete(&output).await.or_fail("delete")?;
    ensure!(
        store
            .list_objects(&output.prefix())
            .try_collect::<Vec<_>>()
            .await
            .or_fail("list objects")?
            .is_empty(),
        "delete left the interrupted write's files behind"
    );
    Ok(())
}

async fn second_commit(store: &dyn ArtifactStore) -> Check {
    let scratch = tempfile::tempdir().or_fail("create a scratch directory")?;
    let (one, two) = (scratch.path().join("one"), scratch.path().join("two"));
    small_tree(&one, "one");
    small_tree(&two, "two");
    let pipeline = pipeline();

    // One after the other: the second is refused and the first stays intact.
    let output = address(&pipeline, "step", "out");
    let first = store
        .write_tree(&output, &one)
        .await
        .or_fail("first write")?;
    match store.write_tree(&output, &two).await {
        Err(ArtifactError::Conflict { .. }) => {}
        other => {
            return Err(format!(
                "a second write of a committed artifact gave {other:?}"
            ));
        }
    }
    let destination = scratch.path().join("read");
    let read = store
        .read_tree(&output, &destination, &ReadOptions::default())
        .await
        .or_fail("read the first artifact after the refused second write")?;
    ensure!(
        read.digest == first.digest,
        "the committed artifact changed"
    );
    ensure!(
        snapshot(&destination) == snapshot(&one),
        "the committed content changed"
    );

    // Both writers start before either commits: the first commit wins, the second is a
    // conflict, and the winner's files are untouched by the loser's uploads.
    let raced = address(&pipeline, "step", "raced");
    let mut a = store.begin_write(&raced).await.or_fail("begin writer a")?;
    let mut b = store.begin_write(&raced).await.or_fail("begin writer b")?;
    ensure!(
        a.upload_id() != b.upload_id(),
        "two writers share an upload id"
    );
    for (writer, dir) in [(&mut a, &one), (&mut b, &two)] {
        writer
            .put_file("a.txt", &dir.join("a.txt"))
            .await
            .or_fail("upload")?;
        writer
            .put_file("sub/b.txt", &dir.join("sub/b.txt"))
            .await
            .or_fail("upload")?;
    }
    let a_upload = a.upload_id().to_owned();
    let won = a.commit().await.or_fail("commit writer a")?;
    match b.commit().await {
        Err(ArtifactError::Conflict { .. }) => {}
        other => return Err(format!("the second commit gave {other:?}")),
    }
    let destination = scratch.path().join("read-raced");
    let read = store
        .read_tree(&raced, &destination, &ReadOptions::default())
        .await
        .or_fail("read the raced artifact")?;
    ensure!(read == won, "the raced artifact is not the winner's");
    ensure!(
        snapshot(&destination) == snapshot(&one),
        "the raced artifact's content is not the winner's"
    );
    let objects: Vec<_> = store
        .list_objects(&raced.prefix())
        .try_collect()
        .await
        .or_fail("list objects")?;
    let stray: Vec<_> = objects
        .iter()
        .filter(|o| {
            o.key != raced.manifest_key() && !o.key.segments().iter().any(|s| s == &a_upload)
        })
        .collect();
    ensure!(
        stray.is_empty(),
        "the losing writer left objects behind: {stray:?}"
    );
    store.delete(&output).await.or_fail("delete")?;
    store.delete(&raced).await.or_fail("delete")?;
    Ok(())
}

async fn tampered_content(store: &dyn ArtifactStore) -> Check {
    let scratch = tempfile::tempdir().or_fail("create a scratch directory")?;
    let source = scratch.path().join("source");
    small_tree(&source, "original");
    let pipeline = pipeline();
    let cases: [(&str, &[u8]); 3] = [
        ("same-size", b"ORIGINAL"),
        ("shorter", b"orig"),
        ("longer", b"original plus more"),
    ];
    for (name, replacement) in cases {
        let output = address(&pipeline, "step", name);
        let manifest = store.write_tree(&output, &source).await.or_fail("write")?;
        let key = output.data_key(&manifest.upload_id, "a.txt");
        store
            .put_object(&key, Bytes::from_static(replacement), PutMode::Overwrite)
            .await
            .or_fail("tamper with a stored file")?;
        let destination = scratch.path().join(name);
        match store
            .read_tree(&output, &destination, &ReadOptions::default())
            .await
        {
            Err(ArtifactError::ContentMismatch { path, .. }) if path == "a.txt" => {}
            other => return Err(format!("reading a {name} tampered file gave {other:?}")),
        }
        ensure!(
            snapshot(&destination).is_empty(),
            "a failed read left files behind: {:?}",
            snapshot(&destination).keys().collect::<Vec<_>>()
        );
        store.delete(&output).await.or_fail("delete")?;
    }

    // A stored file that vanished is a mismatch too, not a silently shorter tree.
    let output = address(&pipeline, "step", "vanished");
    let manifest = store.write_tree(&output, &source).await.or_fail("write")?;
    store
        .delete_object(&output.data_key(&manifest.upload_id, "sub/b.txt"))
        .await
        .or_fail("delete a stored file")?;
    match store
        .read_tree(
            &output,
            &scratch.path().join("vanished"),
            &ReadOptions::default(),
        )
        .await
    {
        Err(ArtifactError::ContentMismatch { path, .. }) if path == "sub/b.txt" => {}
        other => return Err(format!("reading with a vanished file gave {other:?}")),
    }

    // A reader that knows the digest refuses another artifact before downloading.
    let other = scratch.path().join("other");
    small_tree(&other, "other");
    let other_digest = store
        .write_tree(&address(&pipeline, "step", "other"), &other)
        .await
        .or_fail("write")?
        .digest;
    let unchanged = address(&pipeline, "step", "unchanged");
    store
        .write_tree(&unchanged, &source)
        .await
        .or_fail("write")?;
    match store
        .read_tree(
            &unchanged,
            &scratch.path().join("expected"),
            &ReadOptions::default().expect_digest(other_digest),
        )
        .await
    {
        Err(ArtifactError::DigestMismatch { .. }) => {}
        other => {
            return Err(format!(
                "reading with another expected digest gave {other:?}"
            ));
        }
    }
    for output in ["vanished", "other", "unchanged"] {
        store
            .delete(&address(&pipeline, "step", output))
            .await
            .or_fail("delete")?;
    }
    Ok(())
}

async fn hostile_manifests(store: &dyn ArtifactStore) -> Check {
    let scratch = tempfile::tempdir().or_fail("create a scratch directory")?;
    let outside = scratch.path().join("outside");
    std::fs::create_dir(&outside).or_fail("create a directory")?;
    let pipeline = pipeline();
    let hostile = [
        "../escape.txt",
        "a/../../escape.txt",
        "/tmp/escape.txt",
        "..",
        "./a",
        "a//b",
        "a/",
        "",
        "a\\..\\..\\escape.txt",
        "nul\0byte",
        "line\nbreak",
    ];
    for (i, path) in hostile.iter().enumerate() {
        let output = address(&pipeline, "step", &format!("hostile-{i}"));
        // A manifest as an attacker with write access to the store would write it: a
        // consistent digest, a file that exists, only the path is hostile.
        let content = Bytes::from_static(b"pwned");
        let upload_id = "u1";
        store
            .put_object(
                &output.data_key(upload_id, "x"),
                content.clone(),
                PutMode::Overwrite,
            )
            .await
            .or_fail("put a data object")?;
        let files = vec![ManifestFile {
            path: (*path).to_owned(),
            size: content.len() as u64,
            sha256: "2f5b0b9d2d5a0b5e0a0f0f5a8d6f3c7d6d1d9f1e4d7c9b0a3e6f5d4c3b2a1908".to_owned(),
            executable: false,
        }];
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            address: output.clone(),
            upload_id: upload_id.to_owned(),
            digest: Manifest::digest_of(&files, &[]),
            files,
            directories: Vec::new(),
        };
        let body = serde_json::to_vec(&manifest).or_fail("serialize")?;
        store
            .put_object(&output.manifest_key(), Bytes::from(body), PutMode::Create)
            .await
            .or_fail("put a hostile manifest")?;
        let destination = outside.join("inside/dest");
        match store
            .read_tree(&output, &destination, &ReadOptions::default())
            .await
        {
            Err(ArtifactError::UnsafePath { .. }) => {}
            other => return Err(format!("a manifest with path {path:?} gave {other:?}")),
        }
        let entries = snapshot(&outside);
        ensure!(
            entries.keys().all(|k| k == "inside" || k == "inside/dest"),
            "a hostile manifest ({path:?}) wrote {:?}",
            entries.keys().collect::<Vec<_>>()
        );
        store.delete(&output).await.or_fail("delete")?;
    }

    // A manifest copied from another address is refused.
    let source = scratch.path().join("source");
    small_tree(&source, "x");
    let real = address(&pipeline, "step", "real");
    store.write_tree(&real, &source).await.or_fail("write")?;
    let copied = address(&pipeline, "step", "copied");
    let mut stream = store
        .get_object(&real.manifest_key())
        .await
        .or_fail("get")?;
    let mut body = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        body.extend_from_slice(&chunk.or_fail("get")?);
    }
    store
        .put_object(&copied.manifest_key(), Bytes::from(body), PutMode::Create)
        .await
        .or_fail("put a copied manifest")?;
    match store
        .read_tree(
            &copied,
            &scratch.path().join("copied"),
            &ReadOptions::default(),
        )
        .await
    {
        Err(ArtifactError::InvalidManifest { .. }) => {}
        other => {
            return Err(format!(
                "a manifest copied from another address gave {other:?}"
            ));
        }
    }
    // Garbage instead of a manifest.
    let garbage = address(&pipeline, "step", "garbage");
    store
        .put_object(
            &garbage.manifest_key(),
            Bytes::from_static(b"{not json"),
            PutMode::Create,
        )
        .await
        .or_fail("put garbage")?;
    match store.manifest(&garbage).await {
        Err(ArtifactError::InvalidManifest { .. }) => {}
        other => return Err(format!("a garbage manifest gave {other:?}")),
    }

    // A destination that is not empty (here: a symlink leading out) is refused, so no
    // existing entry can redirect a write.
    let destination = scratch.path().join("not-empty");
    std::fs::create_dir(&destination).or_fail("create a directory")?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, destination.join("sub")).or_fail("create a symlink")?;
    #[cfg(not(unix))]
    std::fs::write(destination.join("sub"), b"").or_fail("create a file")?;
    match store
        .read_tree(&real, &destination, &ReadOptions::default())
        .await
    {
        Err(ArtifactError::BadDirectory { .. }) => {}
        other => return Err(format!("reading into a non-empty directory gave {other:?}")),
    }
    ensure!(
        !outside.join("b.txt").exists(),
        "reading wrote through a symlink in the destination"
    );
    for output in [real, copied, garbage] {
        store.delete(&output).await.or_fail("delete")?;
    }
    Ok(())
}
