//! A reader that closes stdout early (`stepstack … | head -1`) ends the output: the
//! binary exits 0 and says nothing on stderr (it used to panic with exit 101).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use common::{Cli, LocalCluster};

/// Lines the step prints: far more than a pipe buffers (64 KiB on Linux), so the
/// binary is still writing when the reader goes away.
const LINES: usize = 20_000;

/// Runs `stepstack ARGS…`, reads `keep` lines of its stdout (none: the pipe is closed
/// before the binary writes anything), closes the pipe and returns the exit code, stderr
/// and the lines read.
fn run_closing_after(cli: &Cli, args: &[&str], keep: usize) -> (i32, String, Vec<String>) {
    let mut child = cli
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stepstack starts");
    let stdout = child.stdout.take().unwrap();
    let mut read = Vec::new();
    if keep > 0 {
        let mut lines = BufReader::new(stdout).lines();
        for _ in 0..keep {
            read.push(lines.next().expect("a line").expect("utf-8"));
        }
        // Dropping the reader closes the pipe.
    } else {
        drop(stdout);
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), stderr, read)
}

#[test]
fn a_closed_stdout_ends_the_output_with_exit_0_and_no_message() {
    let cli = Cli::new();
    let _cluster = LocalCluster::start(&cli);
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
    let script = format!(
        "i=0; while [ $i -lt {LINES} ]; do echo \"line $i of a log long enough to fill the pipe\"; i=$((i+1)); done"
    );
    cli.ok(["step", "run", "printer", "--", "sh", "-c", &script]);
    let runs = cli.ok(["step", "list", "-o", "json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let id = runs[0]["id"].as_str().unwrap().to_owned();
    // The whole kept log is there to print.
    let all = cli.ok(["step", "logs", &id]);
    assert_eq!(all.stdout.lines().count(), LINES);

    let (code, stderr, read) = run_closing_after(&cli, &["step", "logs", &id], 1);
    assert_eq!(read, ["line 0 of a log long enough to fill the pipe"]);
    assert_eq!((code, stderr.as_str()), (0, ""), "step logs | head -1");

    for args in [
        &["step", "logs", id.as_str()][..],
        &["step", "list", "-o", "json"],
        &["step", "list"],
        &["stack", "list"],
        &["stack", "list", "-o", "yaml"],
        &["settings", "schema"],
        &["completion", "bash"],
    ] {
        let (code, stderr, _) = run_closing_after(&cli, args, 0);
        assert_eq!(
            (code, stderr.as_str()),
            (0, ""),
            "{args:?} with stdout closed"
        );
    }
}
