//! Drives the emulator with the real `kubectl` through a written kubeconfig.
//!
//! Skipped (with a message) only when `kubectl` is not installed; `.ci/run` installs it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use stepstack_testkit::{Cluster, ClusterOptions, ConnectionOptions};
use tokio::io::AsyncReadExt;

struct Kubectl {
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.home.join("cache"))
            .args(args)
            .env("HOME", &self.home)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .expect("kubectl runs")
    }

    /// Runs and expects success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs and expects failure; returns stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded"
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }
}

#[allow(clippy::print_stderr)]
fn kubectl_available() -> bool {
    let ok = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: kubectl is not installed (apt-get install -y kubernetes-client); the kubectl suite did not run"
        );
    }
    ok
}

async fn setup() -> Option<(Cluster, Kubectl, tempfile::TempDir)> {
    setup_with(ClusterOptions::default()).await
}

async fn setup_with(options: ClusterOptions) -> Option<(Cluster, Kubectl, tempfile::TempDir)> {
    if !kubectl_available() {
        return None;
    }
    let cluster = Cluster::start(options).await.expect("cluster starts");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl {
        kubeconfig,
        home: dir.path().to_path_buf(),
    };
    Some((cluster, k, dir))
}

const MANIFESTS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: hello
  namespace: demo
  labels:
    pipeline: p1
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox:1.36
    command: ["sh", "-c", "echo hello; sleep 1; echo done"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: job1
  namespace: demo
  labels:
    pipeline: p1
spec:
  backoffLimit: 0
  template:
    metadata:
      labels:
        pipeline: p1
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1.36
        command: ["sh", "-c", "echo job-output; exit 0"]
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().to_string()
}

#[tokio::test]
async fn kubectl_basics() {
    let Some((_cluster, k, dir)) = setup().await else {
        return;
    };

    let v = k.ok(&["version"]).await;
    assert!(
        v.contains("Server Version: v1.33.0-stepstack-testkit"),
        "{v}"
    );

    assert_eq!(
        k.ok(&["create", "namespace", "demo"]).await.trim(),
        "namespace/demo created"
    );
    let err = k.fails(&["create", "namespace", "demo"]).await;
    assert!(
        err.contains("Error from server (AlreadyExists): namespaces \"demo\" already exists"),
        "{err}"
    );

    let manifests = write(dir.path(), "manifests.yaml", MANIFESTS);
    let out = k.ok(&["apply", "-f", &manifests]).await;
    assert!(
        out.contains("pod/hello created") && out.contains("job.batch/job1 created"),
        "{out}"
    );
    // A second apply computes a (strategic merge) patch.
    let out = k.ok(&["apply", "-f", &manifests]).await;
    assert!(
        out.contains("pod/hello unchanged") && out.contains("job.batch/job1 unchanged"),
        "{out}"
    );

    // Label selectors and JSON output.
    let json: serde_json::Value = serde_json::from_str(
        &k.ok(&[
            "get",
            "pods",
            "-n",
            "demo",
            "-l",
            "pipeline=p1",
            "-o",
            "json",
        ])
        .await,
    )
    .unwrap();
    let items = json["items"].as_array().unwrap();
    assert!(items.iter().any(|p| p["metadata"]["name"] == "hello"));
    assert!(
        items
            .iter()
            .all(|p| p["metadata"]["labels"]["pipeline"] == "p1")
    );

    let err = k.fails(&["get", "pod", "nope", "-n", "demo"]).await;
    assert!(
        err.contains("Error from server (NotFound): pods \"nope\" not found"),
        "{err}"
    );

    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: demo\nbogus: 1\n",
    );
    let err = k.fails(&["apply", "-f", &bad]).await;
    assert!(
        err.contains("strict decoding error: unknown field \"bogus\""),
        "{err}"
    );
    let invalid = write(
        dir.path(),
        "invalid.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Invalid_Name\n  namespace: demo\n",
    );
    let err = k.fails(&["apply", "-f", &invalid]).await;
    assert!(
        err.contains("is invalid: metadata.name: Invalid value: \"Invalid_Name\""),
        "{err}"
    );

    let out = k
        .ok(&["auth", "can-i", "create", "pods", "-n", "demo"])
        .await;
    assert_eq!(out.trim(), "yes");

    let out = k
        .ok(&["label", "pod", "hello", "-n", "demo", "extra=1"])
        .await;
    assert!(out.contains("pod/hello labeled"), "{out}");
    let table = k.ok(&["get", "pods", "-n", "demo", "-l", "extra=1"]).await;
    assert!(
        table.starts_with("NAME") && table.contains("hello"),
        "{table}"
    );
}

#[tokio::test]
async fn kubectl_watch_with_request_timeout() {
    let Some((_cluster, k, dir)) = setup().await else {
        return;
    };
    k.ok(&["create", "namespace", "w"]).await;
    let cm = |name: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: w\n  labels:\n    app: x\n"
        )
    };
    k.ok(&["apply", "-f", &write(dir.path(), "a.yaml", &cm("first"))])
        .await;
    let watch = k
        .command(&[
            "get",
            "configmaps",
            "-n",
            "w",
            "-l",
            "app=x",
            "-w",
            "--request-timeout=3s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Give kubectl time to list and start watching, then change something.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    k.ok(&["apply", "-f", &write(dir.path(), "b.yaml", &cm("second"))])
        .await;
    let out = tokio::time::timeout(Duration::from_secs(30), watch.wait_with_output())
        .await
        .expect("kubectl get -w ends after its request timeout")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("first"), "{stdout}");
    assert!(
        stdout.contains("second"),
        "the watch saw the new object: {stdout}"
    );
}

#[tokio::test]
async fn kubectl_runs_workloads() {
    let Some((_cluster, k, dir)) = setup().await else {
        return;
    };
    k.ok(&["create", "namespace", "demo"]).await;
    let manifests = write(dir.path(), "manifests.yaml", MANIFESTS);
    k.ok(&["apply", "-f", &manifests]).await;

    let out = k
        .ok(&[
            "wait",
            "--for=condition=complete",
            "job/job1",
            "-n",
            "demo",
            "--timeout=60s",
        ])
        .await;
    assert!(out.contains("job.batch/job1 condition met"), "{out}");
    let logs = k.ok(&["logs", "job/job1", "-n", "demo"]).await;
    assert_eq!(logs, "job-output\n");

    // `kubectl create job` sends a protobuf body.
    let out = k
        .ok(&[
            "create",
            "job",
            "j2",
            "-n",
            "demo",
            "--image=busybox:1.36",
            "--",
            "sh",
            "-c",
            "echo created",
        ])
        .await;
    assert_eq!(out.trim(), "job.batch/j2 created");
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/j2",
        "-n",
        "demo",
        "--timeout=60s",
    ])
    .await;
    assert_eq!(k.ok(&["logs", "job/j2", "-n", "demo"]).await, "created\n");

    let logs = k.ok(&["logs", "-f", "hello", "-n", "demo"]).await;
    assert_eq!(logs, "hello\ndone\n");

    let describe = k.ok(&["describe", "pod", "hello", "-n", "demo"]).await;
    assert!(describe.contains("Events:"), "{describe}");
    assert!(
        describe.contains("Scheduled")
            && describe.contains("Successfully assigned demo/hello to node-1"),
        "{describe}"
    );

    // A running pod: deletion is graceful (the kubelet stops the process, then the pod
    // goes away), and kubectl waits for it.
    let sleeper = write(
        dir.path(),
        "sleeper.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper\n  namespace: demo\n  labels:\n    pipeline: p1\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: [\"sleep\", \"300\"]\n",
    );
    k.ok(&["apply", "-f", &sleeper]).await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/sleeper",
        "-n",
        "demo",
        "--timeout=60s",
    ])
    .await;

    let out = k
        .ok(&["delete", "pod", "-l", "pipeline=p1", "-n", "demo"])
        .await;
    assert!(out.contains("pod \"hello\" deleted"), "{out}");
    assert!(out.contains("pod \"sleeper\" deleted"), "{out}");
    let err = k
        .run(&["get", "pods", "-n", "demo", "-l", "pipeline=p1"])
        .await;
    assert!(String::from_utf8_lossy(&err.stderr).contains("No resources found in demo namespace."));
}

#[tokio::test]
async fn kubectl_drain_cordons_and_evicts() {
    let Some((_cluster, k, dir)) = setup().await else {
        return;
    };
    let pod = write(
        dir.path(),
        "sleeper.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: [\"sleep\", \"300\"]\n",
    );
    k.ok(&["apply", "-f", &pod]).await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/sleeper",
        "--timeout=60s",
    ])
    .await;
    let out = k
        .ok(&[
            "drain",
            "node-1",
            "--force",
            "--ignore-daemonsets",
            "--timeout=60s",
        ])
        .await;
    assert!(out.contains("node/node-1 cordoned"), "{out}");
    assert!(out.contains("pod/sleeper evicted"), "{out}");
    assert!(out.contains("node/node-1 drained"), "{out}");
    let nodes = k.ok(&["get", "nodes"]).await;
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    k.ok(&["uncordon", "node-1"]).await;
    let nodes = k.ok(&["get", "nodes"]).await;
    assert!(!nodes.contains("SchedulingDisabled"), "{nodes}");
}

/// The eviction subresource marks the pod before deleting it, as the real API server's
/// does: a `DisruptionTarget` condition with reason `EvictionByEvictionAPI`, so whoever
/// watches the pod (the Job controller, stepstack's operator) sees an eviction, not a
/// plain deletion. The pod ignores SIGTERM and has a long grace period, so it stays
/// terminating long enough to be read back.
#[tokio::test]
async fn kubectl_eviction_marks_the_pod_as_a_disruption_target() {
    let Some((_cluster, k, dir)) = setup().await else {
        return;
    };
    let pod = write(
        dir.path(),
        "stubborn.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: stubborn\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 3600\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: [\"sh\", \"-c\", \"trap '' TERM; sleep 3600\"]\n",
    );
    k.ok(&["apply", "-f", &pod]).await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/stubborn",
        "--timeout=60s",
    ])
    .await;
    let uid = k
        .ok(&["get", "pod", "stubborn", "-o", "jsonpath={.metadata.uid}"])
        .await;
    let eviction = |preconditions: &str| {
        format!(
            r#"{{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {{"name": "stubborn", "namespace": "default"}}, "deleteOptions": {{{preconditions}}}}}"#
        )
    };
    let url = "/api/v1/namespaces/default/pods/stubborn/eviction";
    let condition = "jsonpath={.status.conditions[?(@.type==\"DisruptionTarget\")]}";

    // A dry run and an eviction whose precondition does not hold leave the pod alone.
    let plain = write(dir.path(), "evict.json", &eviction(""));
    k.ok(&[
        "create",
        "--raw",
        &format!("{url}?dryRun=All"),
        "-f",
        &plain,
    ])
    .await;
    let stale = write(
        dir.path(),
        "evict-stale.json",
        &eviction(r#""preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}"#),
    );
    let err = k.fails(&["create", "--raw", url, "-f", &stale]).await;
    assert!(
        err.contains("Conflict") || err.contains("conflict"),
        "{err}"
    );
    assert_eq!(k.ok(&["get", "pod", "stubborn", "-o", condition]).await, "");

    let matching = write(
        dir.path(),
        "evict-uid.json",
        &eviction(&format!(r#""preconditions": {{"uid": "{uid}"}}"#)),
    );
    k.ok(&["create", "--raw", url, "-f", &matching]).await;
    let pod: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "pod", "stubborn", "-o", "json"]).await).unwrap();
    assert!(
        pod["metadata"]["deletionTimestamp"].is_string(),
        "the pod is being deleted: {pod}"
    );
    let conditions = pod["status"]["conditions"].as_array().unwrap();
    let target = conditions
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .unwrap_or_else(|| panic!("a DisruptionTarget condition: {conditions:?}"));
    assert_eq!(target["status"], "True");
    assert_eq!(target["reason"], "EvictionByEvictionAPI");
    assert_eq!(target["message"], "Eviction API: evicting");
    assert!(target["lastTransitionTime"].is_string(), "{target}");
}

/// Idle sockets that never start TLS fill the connection limit: kubectl is still served,
/// once the handshake timeout closes them (its connection waits to be accepted, it is
/// not refused).
#[tokio::test]
async fn kubectl_is_served_while_idle_sockets_fill_the_connection_limit() {
    let options = ClusterOptions {
        connections: ConnectionOptions {
            tls_handshake_timeout: Duration::from_secs(1),
            max_connections: 2,
            ..ConnectionOptions::default()
        },
        ..ClusterOptions::default()
    };
    let Some((cluster, k, _dir)) = setup_with(options).await else {
        return;
    };
    let address = cluster.url().trim_start_matches("https://").to_string();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while cluster.open_connections() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle sockets accepted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = k.ok(&["get", "namespaces", "-o", "name"]).await;
    assert!(out.contains("namespace/default"), "{out}");
    // kubectl got in because the server closed the idle sockets ahead of it.
    for socket in &mut idle {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(60), socket.read(&mut buf))
            .await
            .expect("the server closes the idle socket");
        assert!(read.is_err() || read.is_ok_and(|n| n == 0));
    }
}
