//! The real `stepstack-agent` binary against a local store with real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use stepstack_agent::exit_code;
use stepstack_artifact_store::LocalArtifactStore;
use stepstack_core::ArtifactStore;
use stepstack_core::artifact_store::{ArtifactAddress, ReadOptions};

const AGENT: &str = env!("CARGO_BIN_EXE_stepstack-agent");

struct Fixture {
    dir: tempfile::TempDir,
    store: LocalArtifactStore,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalArtifactStore::new(dir.path().join("store")).unwrap();
        Fixture { dir, store }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn store(&self) -> &dyn ArtifactStore {
        &self.store
    }

    /// Commits a tree of `files` at `address` and returns its digest.
    async fn commit(&self, address: &str, files: &[(&str, &[u8])]) -> String {
        let source = self.path(&format!("src-{}", address.replace('/', "-")));
        for (path, content) in files {
            let path = source.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        self.store()
            .write_tree(&address.parse().unwrap(), &source)
            .await
            .unwrap()
            .digest
            .to_string()
    }

    fn spec(&self, inputs: serde_json::Value, outputs: serde_json::Value) -> PathBuf {
        let spec = serde_json::json!({
            "store": {"flavor": "local", "config": {"path": self.store.root()}},
            "inputs": inputs,
            "outputs": outputs,
            "termination_log": self.path("termination-log"),
        });
        let path = self.path("spec.json");
        std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
        path
    }

    fn termination(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("termination-log")).unwrap();
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        assert!(text.len() <= 4096);
        serde_json::from_str(&text).unwrap()
    }
}

fn agent(spec: &Path, script: &str) -> Output {
    Command::new(AGENT)
        .args(["run", "--spec"])
        .arg(spec)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_are_placed_and_outputs_committed_with_their_digests() {
    let fx = Fixture::new();
    let digest = fx
        .commit(
            "p/run-1/prep/data",
            &[("rows.csv", b"a,b\n1,2\n"), ("meta/info.txt", b"x")],
        )
        .await;
    let input = fx.path("work/inputs/data");
    let output = fx.path("work/outputs/model");
    let spec = fx.spec(
        serde_json::json!({"data": {"address": "p/run-1/prep/data", "path": input, "digest": digest}}),
        serde_json::json!({"model": {"address": "p/run-1/train/model", "path": output}}),
    );
    let script = format!(
        "cat {i}/rows.csv {i}/meta/info.txt > {o}/model.bin && mkdir {o}/sub && : > {o}/sub/empty",
        i = input.display(),
        o = output.display()
    );
    let out = agent(&spec, &script);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let message = fx.termination();
    assert_eq!(message["reason"], "succeeded");
    assert_eq!(message["exit_code"], 0);
    let address: ArtifactAddress = "p/run-1/train/model".parse().unwrap();
    let back = fx.path("readback");
    let manifest = fx
        .store()
        .read_tree(&address, &back, &ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(message["outputs"]["model"], manifest.digest.to_string());
    assert_eq!(
        std::fs::read(back.join("model.bin")).unwrap(),
        b"a,b\n1,2\nx"
    );
    assert_eq!(std::fs::read(back.join("sub/empty")).unwrap(), b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_input_is_refused_before_the_command_runs() {
    let fx = Fixture::new();
    fx.commit("p/run-1/prep/data", &[("rows.csv", b"original")])
        .await;
    let address: ArtifactAddress = "p/run-1/prep/data".parse().unwrap();
    let manifest = fx.store().manifest(&address).await.unwrap();
    let stored = fx
        .store
        .file_path(&address.data_key(&manifest.upload_id, "rows.csv"));
    std::fs::write(&stored, b"tampered").unwrap();

    let marker = fx.path("command-ran");
    let spec = fx.spec(
        serde_json::json!({"data": {"address": "p/run-1/prep/data", "path": fx.path("in/data")}}),
        serde_json::json!({}),
    );
    let out = agent(&spec, &format!("touch {}", marker.display()));
    assert_eq!(out.status.code(), Some(exit_code::ARTIFACT_DOWNLOAD));
    assert!(!marker.exists(), "the command ran on a tampered input");
    let message = fx.termination();
    assert_eq!(message["reason"], "artifact_download");
    assert_eq!(message["artifact"], "data");
    assert!(
        message["message"].as_str().unwrap().contains("rows.csv"),
        "{message}"
    );
    assert!(
        !fx.path("in/data/rows.csv").exists(),
        "the tampered file was left in place"
    );

    // A digest the producer recorded that does not match: refused too.
    let spec = fx.spec(
        serde_json::json!({"data": {"address": "p/run-1/prep/data", "path": fx.path("in/other"),
            "digest": format!("sha256:{}", "0".repeat(64))}}),
        serde_json::json!({}),
    );
    let out = agent(&spec, "true");
    assert_eq!(out.status.code(), Some(exit_code::ARTIFACT_DOWNLOAD));
    // A missing input as well.
    let spec = fx.spec(
        serde_json::json!({"data": {"address": "p/run-1/prep/nothing", "path": fx.path("in/none")}}),
        serde_json::json!({}),
    );
    let out = agent(&spec, "true");
    assert_eq!(out.status.code(), Some(exit_code::ARTIFACT_DOWNLOAD));
    assert!(
        fx.termination()["message"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
}

#[test]
fn the_commands_exit_code_is_kept_and_outputs_are_not_uploaded() {
    let fx = Fixture::new();
    let output = fx.path("out/model");
    let spec = fx.spec(
        serde_json::json!({}),
        serde_json::json!({"model": {"address": "p/run-1/train/model", "path": output}}),
    );
    for code in [1, 3, 42, 255] {
        let out = agent(
            &spec,
            &format!("echo partial > {}/f; exit {code}", output.display()),
        );
        assert_eq!(out.status.code(), Some(code));
        let message = fx.termination();
        assert_eq!(message["reason"], "non_zero_exit");
        assert_eq!(message["exit_code"], code);
    }
    assert!(
        !fx.store.root().join("p").exists(),
        "a failed command's output was uploaded"
    );
    // A command that cannot start has its own code.
    let out = Command::new(AGENT)
        .args(["run", "--spec"])
        .arg(&spec)
        .args(["--", "/nonexistent/program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit_code::COMMAND_START));
    assert_eq!(fx.termination()["reason"], "command_start");
}

#[test]
fn sigterm_reaches_the_command_and_its_exit_code_is_kept() {
    let fx = Fixture::new();
    let spec = fx.spec(serde_json::json!({}), serde_json::json!({}));
    let ready = fx.path("ready");
    let got = fx.path("got-term");
    let script = format!(
        "trap 'echo term > {got}; kill $pid; exit 7' TERM; sleep 30 & pid=$!; touch {ready}; wait; exit 0",
        got = got.display(),
        ready = ready.display()
    );
    let mut child = Command::new(AGENT)
        .args(["run", "--spec"])
        .arg(&spec)
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the command to have installed its trap (a condition, not a timing).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(7),
        "the agent did not keep the command's code"
    );
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "term\n");
    assert_eq!(fx.termination()["reason"], "non_zero_exit");
}

#[test]
fn a_declared_output_not_written_is_missing_output() {
    let fx = Fixture::new();
    let model = fx.path("out/model");
    let metrics = fx.path("out/metrics");
    let spec = fx.spec(
        serde_json::json!({}),
        serde_json::json!({
            "model": {"address": "p/run-1/train/model", "path": model},
            "metrics": {"address": "p/run-1/train/metrics", "path": metrics},
        }),
    );
    // The command writes the model but leaves metrics empty.
    let out = agent(&spec, &format!("echo w > {}/weights", model.display()));
    assert_eq!(out.status.code(), Some(exit_code::MISSING_OUTPUT));
    let message = fx.termination();
    assert_eq!(message["reason"], "missing_output");
    assert_eq!(message["artifact"], "metrics");
    // Removed altogether, too.
    let out = agent(
        &spec,
        &format!(
            "echo w > {}/weights; rm -r {}",
            model.display(),
            metrics.display()
        ),
    );
    assert_eq!(out.status.code(), Some(exit_code::MISSING_OUTPUT));
    assert!(
        !fx.store
            .root()
            .join("p/run-1/train/model/manifest.json")
            .exists(),
        "an output was committed although the step failed"
    );
    // allow_empty makes an empty output a valid one.
    let spec = fx.spec(
        serde_json::json!({}),
        serde_json::json!({"metrics": {"address": "p/run-1/train/metrics", "path": metrics, "allow_empty": true}}),
    );
    let out = agent(&spec, "true");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_cannot_be_committed_is_an_upload_failure() {
    let fx = Fixture::new();
    // Already committed by an earlier attempt: artifacts are never overwritten.
    fx.commit("p/run-1/train/model", &[("weights", b"first")])
        .await;
    let model = fx.path("out/model");
    let spec = fx.spec(
        serde_json::json!({}),
        serde_json::json!({"model": {"address": "p/run-1/train/model", "path": model}}),
    );
    let out = agent(&spec, &format!("echo second > {}/weights", model.display()));
    assert_eq!(out.status.code(), Some(exit_code::ARTIFACT_UPLOAD));
    let message = fx.termination();
    assert_eq!(message["reason"], "artifact_upload");
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{message}"
    );
    // An output holding a symlink out of its directory is refused, nothing committed.
    let leak = fx.path("out/leak");
    let spec = fx.spec(
        serde_json::json!({}),
        serde_json::json!({"leak": {"address": "p/run-1/train/leak", "path": leak}}),
    );
    let out = agent(&spec, &format!("ln -s /etc/hostname {}/h", leak.display()));
    assert_eq!(out.status.code(), Some(exit_code::ARTIFACT_UPLOAD));
    assert!(
        !fx.store()
            .exists(&"p/run-1/train/leak".parse().unwrap())
            .await
            .unwrap()
    );
}

#[test]
fn a_bad_spec_has_its_own_code() {
    let fx = Fixture::new();
    let spec = fx.path("spec.json");
    std::fs::write(
        &spec,
        br#"{"store": {"flavor": "local", "config": {"path": "/x"}}, "inputz": {}}"#,
    )
    .unwrap();
    let out = agent(&spec, "true");
    assert_eq!(out.status.code(), Some(exit_code::SPEC));
    let spec = fx.spec(serde_json::json!({}), serde_json::json!({}));
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("\"local\"", "\"s4\"");
    std::fs::write(&spec, text).unwrap();
    let out = agent(&spec, "true");
    assert_eq!(out.status.code(), Some(exit_code::SPEC));
    assert!(
        fx.termination()["message"]
            .as_str()
            .unwrap()
            .contains("available flavors: azure, gcs, local, s3")
    );
}

#[test]
fn install_copies_a_runnable_agent() {
    let fx = Fixture::new();
    let dir = fx.path("stepstack/bin");
    let out = Command::new(AGENT)
        .arg("install")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = dir.join("stepstack-agent");
    let version = Command::new(&copy).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("stepstack-agent "));
}
