//! The seed workflow of DESIGN.md §1 through the real `stepstack` binary against the
//! embedded emulated cluster, checking outputs and exit codes.

use std::process::Command;

use stepstack_e2e::{Output, Stepstack};

/// Starts the local cluster and stops it when dropped, even when an assertion fails.
struct LocalCluster<'a>(&'a Stepstack);

impl<'a> LocalCluster<'a> {
    fn start(cli: &'a Stepstack) -> Self {
        let out = cli.run(["local-cluster", "start", "--namespace", "ml"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout
                .contains("registered the service connector `local-cluster`"),
            "{}",
            out.stdout
        );
        LocalCluster(cli)
    }
}

impl Drop for LocalCluster<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(["local-cluster", "stop"]);
    }
}

fn ok(out: Output) -> Output {
    assert_eq!(out.code, 0, "expected success: {out:?}");
    out
}

#[test]
fn seed_workflow_runs_a_gpu_step_and_explains_failures() {
    let cli = Stepstack::new();
    let _cluster = LocalCluster::start(&cli);

    let out = ok(cli.run([
        "service-connector",
        "list-resources",
        "--resource-type",
        "kubernetes-cluster",
        "-e",
    ]));
    assert!(out.stdout.contains("CONNECTOR NAME"), "{}", out.stdout);
    assert!(out.stdout.contains("local-cluster"), "{}", out.stdout);

    let out = ok(cli.run([
        "step-operator",
        "register",
        "k8s",
        "--flavor",
        "kubernetes",
        "--kubernetes_namespace=ml",
    ]));
    assert!(
        out.stdout
            .contains("Successfully registered step operator `k8s`."),
        "{}",
        out.stdout
    );
    let out = ok(cli.run([
        "step-operator",
        "connect",
        "k8s",
        "--connector",
        "local-cluster",
    ]));
    assert!(
        out.stdout
            .contains("Successfully connected step operator `k8s` to the following resources:"),
        "{}",
        out.stdout
    );
    ok(cli.run(["stack", "update", "-s", "k8s"]));
    let out = ok(cli.run(["stack", "list"]));
    assert!(out.stdout.contains("k8s"), "{}", out.stdout);

    let settings = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/seed/settings.yaml"
    );
    let out = ok(cli.run([
        "step",
        "run",
        "trainer",
        "--settings",
        settings,
        "--pipeline",
        "my_pipeline",
        "--",
        "sh",
        "-c",
        "echo epoch-1; echo epoch-2",
    ]));
    assert!(
        out.stdout.contains("epoch-1\nepoch-2\n"),
        "every line once, in order: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Step `trainer` succeeded."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Time: ") && out.stdout.contains("waiting for a node"),
        "where the time went: {}",
        out.stdout
    );

    // The run is recorded; its logs and status can be read back.
    let runs = ok(cli.run(["step", "list", "-o", "json"]));
    let runs: serde_json::Value =
        serde_json::from_str(&runs.stdout).expect("step list -o json is JSON");
    let id = runs[0]["id"].as_str().expect("a step-run id").to_owned();
    assert_eq!(runs[0]["status_text"], "succeeded");
    let out = ok(cli.run(["step", "logs", &id]));
    assert_eq!(out.stdout, "epoch-1\nepoch-2\n");
    let status = ok(cli.run(["step", "status", &id, "-o", "json"]));
    let status: serde_json::Value =
        serde_json::from_str(&status.stdout).expect("step status -o json is JSON");
    assert!(
        status["timings"]["total_seconds"].is_number(),
        "status has timings: {status}"
    );

    // The labels make kubectl debugging work.
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok()
    {
        let kubeconfig = cli.home().join("local-cluster").join("kubeconfig");
        let pods = Command::new("kubectl")
            .args([
                "get",
                "pods",
                "-n",
                "ml",
                "-l",
                "pipeline=my_pipeline,step=trainer",
                "-o",
                "json",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("kubectl runs");
        let pods: serde_json::Value =
            serde_json::from_slice(&pods.stdout).expect("kubectl prints JSON");
        let labels = &pods["items"][0]["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "stepstack");
        assert_eq!(labels["stepstack.dev/step-run-id"], id.as_str());
        assert_eq!(labels["app"], "trainer", "user labels reach the pod");
    }

    // A failing step exits 1 with the typed reason and its last lines.
    let out = cli.run([
        "step",
        "run",
        "evaluate",
        "--",
        "sh",
        "-c",
        "echo checking; exit 3",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("NonZeroExit(3)"), "{}", out.stderr);
    assert!(
        out.stderr.contains("checking"),
        "the failure shows the last log lines: {}",
        out.stderr
    );

    // A step no node can take: while it waits, stderr says why; then the scheduling
    // deadline ends it as Unschedulable with the scheduler's message.
    let out = cli.run([
        "step",
        "run",
        "needs-a-tpu",
        "--set",
        "pod_settings.node_selectors.accelerator=tpu",
        "--set",
        "scheduling_timeout=4",
        "--",
        "true",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("Step `needs-a-tpu` is pending ("),
        "progress while pending: {}",
        out.stderr
    );
    assert!(out.stderr.contains("Unschedulable"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("didn't match Pod's node affinity/selector"),
        "the scheduler's reason: {}",
        out.stderr
    );

    // Unknown flavor: exit 2 and the available flavors; the store is unchanged.
    let before = ok(cli.run(["step-operator", "list", "-o", "json"])).stdout;
    let out = cli.run([
        "step-operator",
        "register",
        "other",
        "--flavor",
        "kubernetez",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("available flavors: kubernetes"),
        "{}",
        out.stderr
    );
    assert_eq!(
        ok(cli.run(["step-operator", "list", "-o", "json"])).stdout,
        before
    );

    // Invalid settings in a registration: exit 2 with the path; nothing stored.
    let out = cli.run([
        "step-operator",
        "register",
        "bad",
        "--flavor",
        "kubernetes",
        "--pod_settings={\"node_selector\": {}}",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("pod_settings.node_selector"),
        "{}",
        out.stderr
    );
    assert_eq!(
        ok(cli.run(["step-operator", "list", "-o", "json"])).stdout,
        before
    );

    // Missing connector.
    let out = cli.run(["step-operator", "connect", "k8s", "--connector", "nope"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("`nope`"), "{}", out.stderr);
}

#[test]
fn an_unreachable_cluster_is_a_connection_error() {
    let cli = Stepstack::new();
    // A port nothing listens on.
    let out = cli.run([
        "service-connector",
        "register",
        "gone",
        "--type",
        "kubernetes",
        "--auth-method",
        "token",
        "--server=https://127.0.0.1:9",
        "--cluster_name=gone",
        "--token=t0k3n-value",
    ]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        !out.stderr.contains("t0k3n-value"),
        "the token leaks: {}",
        out.stderr
    );
    let list = cli.run(["service-connector", "list", "-o", "json"]);
    assert_eq!(list.code, 0, "{list:?}");
    assert!(
        !list.stdout.contains("\"gone\""),
        "a failed register must store nothing: {}",
        list.stdout
    );
}

#[test]
fn secrets_are_hidden_unless_asked_for() {
    let cli = Stepstack::new();
    ok(cli.run([
        "service-connector",
        "register",
        "kube",
        "--type",
        "kubernetes",
        "--auth-method",
        "token",
        "--server=https://127.0.0.1:9",
        "--cluster_name=kube",
        "--token=s3cr3t-t0ken",
        "--no-verify",
    ]));
    for args in [
        vec!["service-connector", "list"],
        vec!["service-connector", "list", "-o", "json"],
        vec!["service-connector", "describe", "kube"],
        vec!["service-connector", "describe", "kube", "-o", "yaml"],
    ] {
        let out = ok(cli.run(&args));
        assert!(
            !out.stdout.contains("s3cr3t-t0ken") && !out.stderr.contains("s3cr3t-t0ken"),
            "{args:?} leaks: {out:?}"
        );
    }
    let out = ok(cli.run(["service-connector", "describe", "kube"]));
    assert!(out.stdout.contains("[HIDDEN]"), "{}", out.stdout);
    let out = ok(cli.run(["service-connector", "describe", "kube", "--show-secrets"]));
    assert!(out.stdout.contains("s3cr3t-t0ken"), "{}", out.stdout);
}

#[test]
fn concurrent_registrations_all_land_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let cli = Stepstack::new();
    // Create the store first so all processes race on registration, not on creation.
    ok(cli.run(["service-connector", "list"]));
    let children: Vec<_> = (0..32)
        .map(|i| {
            cli.command([
                "service-connector".to_owned(),
                "register".to_owned(),
                format!("conn-{i}"),
                "--type".to_owned(),
                "kubernetes".to_owned(),
                "--auth-method".to_owned(),
                "token".to_owned(),
                "--server=https://127.0.0.1:9".to_owned(),
                format!("--cluster_name=c{i}"),
                format!("--token=secret-{i}"),
                "--no-verify".to_owned(),
            ])
            .output()
            .expect("stepstack runs")
        })
        .collect();
    for (i, child) in children.iter().enumerate() {
        assert!(
            child.status.success(),
            "register {i} failed: {}",
            String::from_utf8_lossy(&child.stderr)
        );
    }
    let list = ok(cli.run(["service-connector", "list", "-o", "json"]));
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(32));
    for entry in std::fs::read_dir(cli.home()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", entry.path().display());
        }
    }
}

#[test]
fn the_readme_first_command_runs_the_demo() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(cargo)
        .args(["xtask", "demo"])
        .current_dir(root)
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo xtask demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Step `trainer` succeeded."), "{stdout}");
    assert!(stdout.contains("epoch 3: loss=0.1"), "{stdout}");
}
