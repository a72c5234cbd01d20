//! `stepstack step …` through the real binary against an emulated cluster in this
//! process (so the tests can inject faults and read the cluster's objects): interrupts
//! by every signal, a kill during submit, records that outlive their cluster, step names
//! for `logs`, previews, and live logs that cannot keep up.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;
use stepstack_e2e::{Output, Stepstack};
use stepstack_testkit::store::ListFilter;
use stepstack_testkit::{Cluster, ClusterOptions, FaultMatch, ResourceKind};

/// How long a test waits for something that should happen before it gives up: a guard
/// against hangs, not a timing claim.
const GUARD: Duration = Duration::from_secs(120);
const NS: &str = "default";

/// A home whose active stack runs steps on an emulated cluster of this process.
struct Env {
    cli: Stepstack,
    kubeconfig: PathBuf,
    cluster: Cluster,
    runtime: tokio::runtime::Runtime,
}

impl Env {
    fn new() -> Env {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let cluster = start_cluster(&runtime);
        let cli = Stepstack::new();
        let kubeconfig = cli.home().join("kubeconfig");
        cluster.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        let env = Env {
            cli,
            kubeconfig,
            cluster,
            runtime,
        };
        env.ok([
            "step-operator",
            "register",
            "k8s",
            "--flavor",
            "kubernetes",
            "--kubernetes_namespace=default",
            "--kubernetes_context=stepstack-testkit",
        ]);
        env.ok(["stack", "update", "-s", "k8s"]);
        env
    }

    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.cli.command(args);
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = self.command(args).output().expect("stepstack runs");
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.run(args);
        assert_eq!(out.code, 0, "expected success: {out:?}");
        out
    }

    /// Starts `stepstack ARGS…` with its output read line by line.
    fn spawn<I, S>(&self, args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stepstack starts");
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        Running {
            child,
            stdout,
            stderr,
            out: Vec::new(),
            err: Vec::new(),
        }
    }

    /// The step-run records, newest first.
    fn runs(&self) -> Vec<Value> {
        let out = self.ok(["step", "list", "-o", "json"]);
        serde_json::from_str(&out.stdout).expect("step list -o json is JSON")
    }

    /// The Jobs of step `step` in the cluster.
    fn jobs(&self, step: &str) -> Vec<Value> {
        let filter = ListFilter::labels(&format!("step={step}")).expect("a selector");
        self.cluster
            .store()
            .list(ResourceKind::Job, Some(NS), &filter)
            .0
    }

    /// Waits until step `step` has no Job left (foreground deletion takes its pods
    /// first).
    fn until_no_jobs(&self, step: &str) {
        let start = Instant::now();
        while !self.jobs(step).is_empty() {
            assert!(
                start.elapsed() < GUARD,
                "the Job of `{step}` is never deleted"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn start_cluster(runtime: &tokio::runtime::Runtime) -> Cluster {
    runtime.block_on(async {
        Cluster::start(ClusterOptions::default())
            .await
            .expect("the emulated cluster starts")
    })
}

fn lines_of(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A running `stepstack` and what it printed so far.
struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    out: Vec<String>,
    err: Vec<String>,
}

impl Running {
    /// Waits until stdout (or stderr) has a line containing `needle`.
    fn wait_for(&mut self, stderr: bool, needle: &str) {
        let start = Instant::now();
        let (rx, seen) = if stderr {
            (&self.stderr, &mut self.err)
        } else {
            (&self.stdout, &mut self.out)
        };
        if seen.iter().any(|l| l.contains(needle)) {
            return;
        }
        loop {
            let left = GUARD.saturating_sub(start.elapsed());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("never printed `{needle}`; printed so far: {seen:?}")
                }
            }
        }
    }

    /// Sends `signal` (`TERM`, `HUP`, `INT`, …) with `kill`.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit on its own (the guard kills it and fails).
    fn finish(mut self) -> Output {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if start.elapsed() > GUARD {
                let _ = self.child.kill();
                self.out.extend(self.stdout.try_iter());
                self.err.extend(self.stderr.try_iter());
                panic!(
                    "stepstack did not exit; stdout {:?}, stderr {:?}",
                    self.out, self.err
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipes close with the process: collect the rest.
        self.out.extend(self.stdout.iter());
        self.err.extend(self.stderr.iter());
        Output {
            code: status.code().unwrap_or(-1),
            stdout: self.out.join("\n"),
            stderr: self.err.join("\n"),
        }
    }
}

/// The record of step `step` (the newest one).
fn record_of(env: &Env, step: &str) -> Value {
    env.runs()
        .into_iter()
        .find(|r| r["step_name"] == step)
        .unwrap_or_else(|| panic!("no record of step `{step}`"))
}

#[test]
fn sigterm_sighup_and_sigint_cancel_the_step_record_it_cancelled_and_exit_130() {
    let env = Env::new();
    for signal in ["TERM", "HUP", "INT"] {
        let step = format!("sleeper-{}", signal.to_lowercase());
        let mut run = env.spawn([
            "step",
            "run",
            &step,
            "--",
            "sh",
            "-c",
            "echo started; sleep 300",
        ]);
        run.wait_for(false, "started");
        assert_eq!(env.jobs(&step).len(), 1, "the step runs");
        run.signal(signal);
        let out = run.finish();
        assert_eq!(out.code, 130, "SIG{signal}: {out:?}");
        assert!(
            out.stderr.contains("Interrupted: cancelling step run"),
            "SIG{signal}: {}",
            out.stderr
        );
        env.until_no_jobs(&step);
        let record = record_of(&env, &step);
        assert_eq!(record["status_text"], "cancelled", "SIG{signal}: {record}");
        assert_eq!(
            record["status"]["reason"]["reason"], "cancelled",
            "{record}"
        );
    }
}

#[test]
fn an_interrupted_step_with_on_interrupt_keep_keeps_running_and_exits_130() {
    let env = Env::new();
    let mut run = env.spawn([
        "step",
        "run",
        "kept",
        "--set",
        "on_interrupt=keep",
        "--",
        "sh",
        "-c",
        "echo started; sleep 300",
    ]);
    run.wait_for(false, "started");
    run.signal("TERM");
    let out = run.finish();
    assert_eq!(out.code, 130, "{out:?}");
    assert!(out.stderr.contains("on_interrupt: keep"), "{}", out.stderr);
    assert_eq!(env.jobs("kept").len(), 1, "the Job is kept");
    let record = record_of(&env, "kept");
    assert_ne!(record["status_text"], "cancelled", "{record}");
    let id = record["id"].as_str().expect("an id").to_owned();
    env.ok(["step", "cancel", &id]);
    env.until_no_jobs("kept");
    assert_eq!(record_of(&env, "kept")["status_text"], "cancelled");
}

#[test]
fn a_second_interrupt_exits_at_once_while_the_cancel_hangs() {
    let env = Env::new();
    let mut run = env.spawn([
        "step",
        "run",
        "stuck",
        "--",
        "sh",
        "-c",
        "echo started; sleep 300",
    ]);
    run.wait_for(false, "started");
    // The cancel's delete does not come back for an hour.
    for verb in ["delete", "deletecollection"] {
        env.cluster.faults().add_latency(
            FaultMatch::verb_resource(verb, "jobs"),
            Duration::from_secs(3600),
            None,
        );
    }
    run.signal("INT");
    run.wait_for(true, "Interrupted: cancelling step run");
    run.signal("INT");
    let out = run.finish();
    assert_eq!(out.code, 130, "{out:?}");
    assert!(
        out.stderr.contains("again: exiting without waiting"),
        "{}",
        out.stderr
    );
    env.cluster.faults().clear();
}

#[test]
fn a_kill_during_submit_leaves_a_record_that_list_status_and_cancel_know() {
    let env = Env::new();
    // The Job's create does not come back for an hour: the submitter is killed first.
    env.cluster.faults().add_latency(
        FaultMatch::verb_resource("create", "jobs"),
        Duration::from_secs(3600),
        None,
    );
    let mut run = env.spawn(["step", "run", "orphan", "--", "echo", "hi"]);
    let start = Instant::now();
    let record = loop {
        if let Some(record) = env.runs().into_iter().next() {
            break record;
        }
        assert!(
            start.elapsed() < GUARD,
            "the step run is never recorded while its Job is being created"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    run.child.kill().expect("SIGKILL");
    let _ = run.child.wait();
    assert_eq!(record["step_name"], "orphan");
    assert_eq!(record["status_text"], "pending", "{record}");
    assert!(
        record["handle"]["data"]["job_name"].is_string(),
        "the record has the planned handle: {record}"
    );
    let id = record["id"].as_str().expect("an id").to_owned();
    // Asking twice gives the same answer: asking changes nothing.
    for _ in 0..2 {
        let status = env.ok(["step", "status", &id, "-o", "json"]);
        let status: Value = serde_json::from_str(&status.stdout).expect("JSON");
        assert_eq!(status["status"]["state"], "pending", "{status}");
        assert!(
            status["status"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("does not exist")),
            "{status}"
        );
    }
    let out = env.run(["step", "attach", &id]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("has no Job"), "{}", out.stderr);
    env.ok(["step", "cancel", &id]);
    assert_eq!(record_of(&env, "orphan")["status_text"], "cancelled");
    env.cluster.faults().clear();
    assert!(env.jobs("orphan").is_empty());
}

#[test]
fn a_step_cancelled_while_its_job_is_being_created_is_deleted_by_its_submitter() {
    let env = Env::new();
    // The create is slow enough for `step cancel` to get to the record first.
    env.cluster.faults().add_latency(
        FaultMatch::verb_resource("create", "jobs"),
        Duration::from_secs(20),
        Some(1),
    );
    let run = env.spawn([
        "step",
        "run",
        "raced",
        "--",
        "sh",
        "-c",
        "echo started; sleep 300",
    ]);
    let start = Instant::now();
    let id = loop {
        if let Some(record) = env.runs().into_iter().next() {
            break record["id"].as_str().expect("an id").to_owned();
        }
        assert!(start.elapsed() < GUARD, "the step run is never recorded");
        std::thread::sleep(Duration::from_millis(50));
    };
    env.ok(["step", "cancel", &id]);
    let out = run.finish();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("was cancelled while it was being submitted"),
        "{}",
        out.stderr
    );
    env.until_no_jobs("raced");
    assert_eq!(record_of(&env, "raced")["status_text"], "cancelled");
}

#[test]
fn logs_and_status_of_finished_runs_come_from_the_record_after_the_cluster_is_replaced() {
    let mut env = Env::new();
    env.ok(["step", "run", "greet", "--", "echo", "first"]);
    let out = env.ok([
        "step",
        "run",
        "greet",
        "--",
        "sh",
        "-c",
        "echo second; echo third",
    ]);
    assert!(out.stdout.contains("Step `greet` succeeded."), "{out:?}");
    let id = record_of(&env, "greet")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    // A step's name means its latest run.
    assert_eq!(env.ok(["step", "logs", "greet"]).stdout, "second\nthird\n");

    // As after `local-cluster stop` and `start`: another cluster at another address.
    let replacement = start_cluster(&env.runtime);
    replacement
        .write_kubeconfig(&env.kubeconfig)
        .expect("kubeconfig");
    let old = std::mem::replace(&mut env.cluster, replacement);
    env.runtime.block_on(old.shutdown());

    let out = env.ok(["step", "logs", &id]);
    assert_eq!(out.stdout, "second\nthird\n");
    let out = env.ok(["step", "logs", "greet"]);
    assert_eq!(out.stdout, "second\nthird\n");
    let out = env.ok(["step", "status", &id, "-o", "json"]);
    let status: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(status["status"]["state"], "succeeded", "{status}");
    let out = env.ok(["step", "status", "greet"]);
    assert!(out.stdout.contains("succeeded"), "{}", out.stdout);
}

#[test]
fn step_list_speaks_json_with_no_runs_yet() {
    let env = Env::new();
    assert_eq!(env.runs(), Vec::<Value>::new());
}

#[test]
fn a_step_name_nobody_ran_is_not_found_with_a_hint() {
    let env = Env::new();
    let out = env.run(["step", "logs", "never-ran"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("no step named `never-ran`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("step list"), "{}", out.stderr);
}

#[test]
fn preview_ends_with_a_newline_and_server_dry_run_prints_json_and_yaml() {
    let env = Env::new();
    for format in ["table", "json", "yaml"] {
        let out = env.ok(["step", "preview", "p", "-o", format, "--", "echo", "hi"]);
        assert!(out.stdout.ends_with('\n'), "-o {format}: {:?}", out.stdout);
    }
    let out = env.ok([
        "step",
        "preview",
        "p",
        "--server-dry-run",
        "-o",
        "json",
        "--",
        "echo",
        "hi",
    ]);
    let dry: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(dry["accepted"], true, "{dry}");
    assert_eq!(dry["problems"], serde_json::json!([]), "{dry}");
    assert_eq!(dry["job"]["kind"], "Job", "{dry}");
    let out = env.ok([
        "step",
        "preview",
        "p",
        "--server-dry-run",
        "-o",
        "yaml",
        "--",
        "echo",
        "hi",
    ]);
    let dry: Value = serde_norway::from_str(&out.stdout).expect("YAML");
    assert_eq!(dry["accepted"], true, "{dry}");
    assert!(env.jobs("p").is_empty(), "a dry run creates nothing");
}

#[test]
fn live_logs_that_cannot_keep_up_say_where_the_full_log_is() {
    let env = Env::new();
    // Every log stream of `step run` (the live view and the capture) answers only after
    // the step has long ended.
    env.cluster.faults().add_latency(
        FaultMatch::verb_resource("get", "pods/log"),
        Duration::from_secs(60),
        Some(2),
    );
    let out = env.ok(["step", "run", "chatty", "--", "sh", "-c", "echo a; echo b"]);
    let id = record_of(&env, "chatty")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let printed_all = out.stdout.contains("a\nb\n");
    let said_so = out.stderr.contains("live log view above may be incomplete")
        && out
            .stderr
            .contains(&format!("`stepstack step logs {id}` shows the full log"));
    assert!(
        printed_all || said_so,
        "lines are never dropped silently: {out:?}"
    );
    env.cluster.faults().clear();
    assert_eq!(env.ok(["step", "logs", &id]).stdout, "a\nb\n");
}
