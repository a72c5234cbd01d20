//! The files stepstack leaves in its home, through the real binary against the local
//! emulated cluster: every file is 0600 and every directory 0700 after a realistic
//! session under umask 022, step-operator state is kept under the component's id, and
//! `local-cluster start --namespace` creates the namespace on a running cluster too.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{Cli, LocalCluster};

/// Every entry under `root` whose mode is not private: files other than 0600,
/// directories other than 0700, and anything that is neither (with its type).
fn loose_entries(root: &Path) -> Vec<String> {
    let mut loose = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let shown = path.strip_prefix(root).unwrap().display().to_string();
        if meta.is_dir() {
            if mode != 0o700 {
                loose.push(format!("dir {shown:?} is {mode:o}"));
            }
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else if meta.is_file() {
            if mode != 0o600 {
                loose.push(format!("file {shown:?} is {mode:o}"));
            }
        } else if !meta.file_type().is_symlink() {
            loose.push(format!(
                "{shown:?} is neither a file nor a directory (mode {:o})",
                meta.mode()
            ));
        }
    }
    loose.sort();
    loose
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_session_under_umask_022_leaves_only_private_files_in_the_home() {
    let cli = Cli::new();
    // A home made by hand (or an older version) with the umask's 0755.
    std::fs::create_dir(cli.home()).unwrap();
    std::fs::set_permissions(cli.home(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let cluster = LocalCluster::start(&cli);
    cli.ok([
        "step-operator",
        "register",
        "k8s",
        "--flavor",
        "kubernetes",
        "--kubernetes_namespace=ml",
    ]);
    cli.ok([
        "step-operator",
        "connect",
        "k8s",
        "--connector",
        "local-cluster",
    ]);
    cli.ok(["stack", "update", "-s", "k8s"]);
    // The step writes a file of its own, as steps do.
    let out = cli.ok([
        "step",
        "run",
        "trainer",
        "--",
        "sh",
        "-c",
        "echo epoch-1; mkdir -p out; echo model > out/model.txt; echo epoch-2",
    ]);
    assert!(out.stdout.contains("epoch-2"), "{}", out.stdout);
    let runs = cli.ok(["step", "list", "-o", "json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let run_id = runs[0]["id"].as_str().unwrap().to_owned();
    let logs = cli.ok(["step", "logs", &run_id]);
    assert_eq!(logs.stdout, "epoch-1\nepoch-2\n");
    let status = cli.ok(["step", "status", &run_id]);
    assert!(!status.stdout.is_empty());

    // The step's own file is there (so the walk below covers what pods write).
    let state = cli.home().join("local-cluster").join("state");
    assert!(
        files_under(&state)
            .iter()
            .any(|p| p.ends_with("out/model.txt")),
        "the step's file is under {}",
        state.display()
    );
    // Step-operator state is kept under the component's id, not its name.
    let operators = cli.ok(["step-operator", "list", "-o", "json"]);
    let operators: serde_json::Value = serde_json::from_str(&operators.stdout).unwrap();
    let id = operators[0]["id"].as_str().unwrap().replace('-', "");
    let dirs: Vec<String> = std::fs::read_dir(cli.home().join("step-operators"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs, std::slice::from_ref(&id));
    let kept = files_under(&cli.home().join("step-operators").join(&id));
    assert!(
        kept.iter()
            .any(|p| p.extension().is_some_and(|e| e == "jsonl")),
        "a kept log: {kept:?}"
    );
    assert!(
        kept.iter()
            .any(|p| p.parent().is_some_and(|d| d.ends_with("outcomes"))),
        "a kept outcome: {kept:?}"
    );

    let loose = loose_entries(cli.home());
    assert!(loose.is_empty(), "not private: {loose:#?}");
    drop(cluster);
    let loose = loose_entries(cli.home());
    assert!(loose.is_empty(), "not private after stop: {loose:#?}");
    // And nothing was written next to the home.
    let beside: Vec<_> = std::fs::read_dir(cli.base())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["home"]);
}

#[test]
fn start_on_a_running_cluster_creates_the_namespaces_asked_for() {
    let cli = Cli::new();
    let _cluster = LocalCluster::start(&cli);
    let out = cli.ok([
        "local-cluster",
        "start",
        "--namespace",
        "other",
        "--namespace",
        "ml",
    ]);
    assert!(out.stdout.contains("already running"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Created namespace `other`."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Namespace `ml` exists already."),
        "{}",
        out.stdout
    );
    // The namespace is there: a step runs in it.
    cli.ok([
        "step-operator",
        "register",
        "other",
        "--flavor",
        "kubernetes",
        "--kubernetes_namespace=other",
    ]);
    cli.ok([
        "step-operator",
        "connect",
        "other",
        "--connector",
        "local-cluster",
    ]);
    cli.ok(["stack", "update", "-s", "other"]);
    let out = cli.ok(["step", "run", "hello", "--", "echo", "in-other"]);
    assert!(out.stdout.contains("in-other"), "{}", out.stdout);
    // A name the API server refuses is a usage error, naming the namespace.
    let out = cli.run(["local-cluster", "start", "--namespace", "Not_A_Name"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("`Not_A_Name`"), "{}", out.stderr);
}
