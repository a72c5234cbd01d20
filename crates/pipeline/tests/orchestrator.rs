//! The orchestrator with local steps: real processes passing real files through the
//! local artifact store, failures, caching, cancel and resume after a crash.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use stepstack_artifact_store::LocalArtifactStore;
use stepstack_core::artifact_store::{ArtifactStore, ReadOptions};
use stepstack_pipeline::{
    Format, InMemoryRunStore, LogSink, Orchestrator, RunOptions, RunStatus, RunStore,
    StepFailureReason, StepRunStatus, load_str,
};
use tokio_util::sync::CancellationToken;

struct Fixture {
    dir: tempfile::TempDir,
    runs: Arc<InMemoryRunStore>,
    artifacts: Arc<LocalArtifactStore>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = Arc::new(LocalArtifactStore::new(dir.path().join("artifacts")).unwrap());
        Fixture {
            dir,
            runs: Arc::new(InMemoryRunStore::new()),
            artifacts,
            lines: Arc::default(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn orchestrator(&self, yaml: &str) -> Orchestrator {
        self.orchestrator_with(yaml, None)
    }

    fn orchestrator_with(&self, yaml: &str, on_line: Option<LogSink>) -> Orchestrator {
        let pipeline = load_str(yaml, Format::Yaml, "pipeline.yaml")
            .unwrap()
            .pipeline;
        let lines = Arc::clone(&self.lines);
        let sink: LogSink = Arc::new(move |step: &str, line: &str| {
            lines.lock().unwrap().push(format!("{step} | {line}"));
            if let Some(f) = &on_line {
                f(step, line);
            }
        });
        Orchestrator::new(
            pipeline,
            self.runs.clone(),
            self.artifacts.clone(),
            self.path("work"),
        )
        .with_log_sink(sink)
    }

    async fn read(
        &self,
        address: &stepstack_core::artifact_store::ArtifactAddress,
        file: &str,
    ) -> String {
        let dest = self.path(&format!("read-{}", uuid_like(address.to_string())));
        let store: &dyn ArtifactStore = self.artifacts.as_ref();
        store
            .read_tree(address, &dest, &ReadOptions::default())
            .await
            .unwrap();
        std::fs::read_to_string(dest.join(file)).unwrap()
    }
}

fn uuid_like(text: String) -> String {
    text.replace('/', "_")
}

/// How many lines `path` has (a step appends one per execution).
fn count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn fan_out_and_fan_in_pass_real_files_through_the_store() {
    let f = Fixture::new();
    let yaml = r#"
name: fan
steps:
  source:
    command: [sh, -c, 'printf "1\n2\n3\n" > {{outputs.numbers}}/n.txt; echo wrote numbers']
    outputs: [numbers]
  double:
    command: [sh, -c, 'while read n; do echo $((n*2)); done < {{inputs.numbers}}/n.txt > {{outputs.doubled}}/n.txt']
    inputs: {numbers: source.numbers}
    outputs: [doubled]
  square:
    command: [sh, -c, 'while read n; do echo $((n*n)); done < {{inputs.numbers}}/n.txt > {{outputs.squared}}/n.txt']
    inputs: {numbers: source.numbers}
    outputs: [squared]
  join:
    command: [sh, -c, 'cat {{inputs.a}}/n.txt {{inputs.b}}/n.txt | tr "\n" " " > {{outputs.all}}/all.txt; echo "run {{run.id}}"']
    inputs: {a: double.doubled, b: square.squared}
    outputs: [all]
"#;
    let summary = f
        .orchestrator(yaml)
        .run(CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded, "{summary}");
    for step in ["source", "double", "square", "join"] {
        assert_eq!(summary.status_of(step), Some(StepRunStatus::Succeeded));
    }
    let all = &summary.step("join").unwrap().outputs["all"];
    assert_eq!(
        all.address.to_string(),
        format!("fan/{}/join/all", summary.run_id)
    );
    assert_eq!(f.read(&all.address, "all.txt").await, "2 4 6 1 4 9 ");
    let lines = f.lines.lock().unwrap().clone();
    assert!(
        lines.contains(&"source | wrote numbers".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("join | run {}", summary.run_id)),
        "{lines:?}"
    );
    // Everything was recorded.
    let snapshot = f.runs.load_run(&summary.run_id).await.unwrap();
    assert_eq!(snapshot.run.status, RunStatus::Succeeded);
    assert!(snapshot.steps.values().all(|s| s.cache_key.is_some()));
}

#[tokio::test]
async fn a_failure_skips_its_downstream_while_an_independent_running_step_finishes() {
    let f = Fixture::new();
    let released = f.path("released");
    // `independent` starts with `broken` and can only finish after `broken` is about to
    // fail, so it is running when the failure comes in.
    let yaml = format!(
        r#"
name: failing
steps:
  broken:
    command: [sh, -c, 'echo oops; touch {released}; exit 3']
    outputs: [o]
  after_broken:
    command: [sh, -c, 'echo should not run']
    inputs: {{i: broken.o}}
  further:
    command: [sh, -c, 'echo should not run']
    after: [after_broken]
  independent:
    command: [sh, -c, 'while [ ! -f {released} ]; do sleep 0.01; done; echo done > {{{{outputs.o}}}}/f']
    outputs: [o]
  silent:
    command: [sh, -c, 'true']
    outputs: [forgotten]
"#,
        released = released.display()
    );
    let summary = f
        .orchestrator(&yaml)
        .run(CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.status, RunStatus::Failed, "{summary}");
    let broken = summary.step("broken").unwrap();
    assert_eq!(broken.status, StepRunStatus::Failed);
    assert_eq!(
        broken.failure.as_ref().unwrap().reason.name(),
        "NonZeroExit(3)"
    );
    for step in ["after_broken", "further"] {
        let s = summary.step(step).unwrap();
        assert_eq!(s.status, StepRunStatus::Skipped, "{step}");
        assert_eq!(
            s.failure.as_ref().unwrap().reason,
            StepFailureReason::UpstreamFailed {
                step: "broken".into()
            }
        );
    }
    assert_eq!(
        summary.status_of("independent"),
        Some(StepRunStatus::Succeeded)
    );
    let silent = summary.step("silent").unwrap();
    assert_eq!(silent.status, StepRunStatus::Failed);
    assert_eq!(
        silent.failure.as_ref().unwrap().reason,
        StepFailureReason::MissingOutput {
            output: "forgotten".into()
        }
    );
    let lines = f.lines.lock().unwrap().clone();
    assert!(
        !lines.iter().any(|l| l.contains("should not run")),
        "{lines:?}"
    );
    let text = summary.to_string();
    assert!(
        text.contains("skipped") && text.contains("UpstreamFailed"),
        "{text}"
    );
}

fn cache_pipeline(f: &Fixture, cache_a: bool) -> String {
    format!(
        r#"
name: cached
steps:
  load_a:
    command: [sh, -c, 'echo x >> {log}; cp {src_a} {{{{outputs.d}}}}/d']
    outputs: [d]
    cache: {cache_a}
  load_b:
    command: [sh, -c, 'echo x >> {log}; cp {src_b} {{{{outputs.d}}}}/d']
    outputs: [d]
  train_a:
    command: [sh, -c, 'echo x >> {log}; tr a-z A-Z < {{{{inputs.d}}}}/d > {{{{outputs.m}}}}/m']
    inputs: {{d: load_a.d}}
    outputs: [m]
  train_b:
    command: [sh, -c, 'echo x >> {log}; tr a-z A-Z < {{{{inputs.d}}}}/d > {{{{outputs.m}}}}/m']
    inputs: {{d: load_b.d}}
    outputs: [m]
  report:
    command: [sh, -c, 'echo x >> {log}; cat {{{{inputs.a}}}}/m {{{{inputs.b}}}}/m > {{{{outputs.r}}}}/r']
    inputs: {{a: train_a.m, b: train_b.m}}
    outputs: [r]
"#,
        log = f.path("executions").display(),
        src_a = f.path("src_a").display(),
        src_b = f.path("src_b").display(),
    )
}

#[tokio::test]
async fn a_second_identical_run_is_all_cached_and_a_changed_input_reruns_only_its_downstream() {
    let f = Fixture::new();
    std::fs::write(f.path("src_a"), "alpha\n").unwrap();
    std::fs::write(f.path("src_b"), "beta\n").unwrap();
    let executions = f.path("executions");

    let first = f
        .orchestrator(&cache_pipeline(&f, true))
        .run(CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(first.status, RunStatus::Succeeded, "{first}");
    assert_eq!(count(&executions), 5);

    let second = f
        .orchestrator(&cache_pipeline(&f, true))
        .run(CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(second.status, RunStatus::Succeeded, "{second}");
    assert_ne!(second.run_id, first.run_id);
    for s in &second.steps {
        assert_eq!(s.status, StepRunStatus::Cached, "{second}");
        // The recorded outputs are reused, not copied.
        assert_eq!(s.outputs, first.step(&s.step).unwrap().outputs);
    }
    assert_eq!(count(&executions), 5, "a cached step runs nothing");

    // load_a reads its source again (cache off) and finds new content: it and what
    // depends on it rerun; the b branch stays cached.
    std::fs::write(f.path("src_a"), "gamma\n").unwrap();
    let third = f
        .orchestrator(&cache_pipeline(&f, false))
        .run(CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(third.status, RunStatus::Succeeded, "{third}");
    for step in ["load_a", "train_a", "report"] {
        assert_eq!(
            third.status_of(step),
            Some(StepRunStatus::Succeeded),
            "{step}: {third}"
        );
    }
    for step in ["load_b", "train_b"] {
        assert_eq!(
            third.status_of(step),
            Some(StepRunStatus::Cached),
            "{step}: {third}"
        );
    }
    assert_eq!(count(&executions), 8);
    let report = &third.step("report").unwrap().outputs["r"];
    assert_eq!(f.read(&report.address, "r").await, "GAMMA\nBETA\n");

    // A run with caching turned off runs everything.
    let uncached = f
        .orchestrator(&cache_pipeline(&f, true))
        .with_options(RunOptions::default().no_cache(true))
        .run(CancellationToken::new())
        .await
        .unwrap();
    assert!(
        uncached
            .steps
            .iter()
            .all(|s| s.status == StepRunStatus::Succeeded),
        "{uncached}"
    );
    assert_eq!(count(&executions), 13);
}

#[tokio::test]
async fn cancel_stops_the_running_steps_and_marks_the_run_cancelled() {
    let f = Fixture::new();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let yaml = r#"
name: cancelled
steps:
  slow:
    command: [sh, -c, 'echo started; exec sleep 600']
    outputs: [o]
  later:
    command: [sh, -c, 'echo should not run']
    inputs: {i: slow.o}
"#;
    // Cancel once the step is running (its first line), as a Ctrl-C would.
    let on_line: LogSink = Arc::new(move |step: &str, line: &str| {
        if step == "slow" && line == "started" {
            trigger.cancel();
        }
    });
    let summary = f
        .orchestrator_with(yaml, Some(on_line))
        .run(cancel)
        .await
        .unwrap();
    assert_eq!(summary.status, RunStatus::Cancelled, "{summary}");
    assert_eq!(summary.status_of("slow"), Some(StepRunStatus::Cancelled));
    let later = summary.step("later").unwrap();
    assert_eq!(later.status, StepRunStatus::Skipped);
    assert_eq!(
        later.failure.as_ref().unwrap().reason,
        StepFailureReason::Cancelled
    );
}

#[tokio::test]
async fn resume_after_a_crash_keeps_finished_steps_and_starts_the_rest() {
    let f = Fixture::new();
    let executions = f.path("executions");
    let go = f.path("go");
    let yaml = format!(
        r#"
name: crashing
steps:
  first:
    command: [sh, -c, 'echo first >> {log}; echo one > {{{{outputs.o}}}}/f']
    outputs: [o]
  second:
    command: [sh, -c, 'echo second >> {log}; if [ -f {go} ]; then cat {{{{inputs.i}}}}/f > {{{{outputs.o}}}}/f; else echo started; exec sleep 600; fi']
    inputs: {{i: first.o}}
    outputs: [o]
"#,
        log = executions.display(),
        go = go.display()
    );
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Mutex::new(Some(started_tx));
    let on_line: LogSink = Arc::new(move |step: &str, line: &str| {
        if step == "second"
            && line == "started"
            && let Some(tx) = started_tx.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
    });
    let orchestrator = f.orchestrator_with(&yaml, Some(on_line));
    let run_id = orchestrator.create_run().await.unwrap();
    // The "crash": the orchestrator's future is dropped while `second` runs.
    tokio::select! {
        _ = orchestrator.resume(&run_id, CancellationToken::new()) => panic!("the run ended before the crash"),
        _ = started_rx => {}
    }
    let snapshot = f.runs.load_run(&run_id).await.unwrap();
    assert_eq!(snapshot.run.status, RunStatus::Running);
    assert_eq!(snapshot.steps["first"].status, StepRunStatus::Succeeded);
    assert_eq!(snapshot.steps["second"].status, StepRunStatus::Running);

    std::fs::write(&go, "").unwrap();
    let summary = f
        .orchestrator(&yaml)
        .resume(&run_id, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded, "{summary}");
    assert_eq!(summary.run_id, run_id);
    let log = std::fs::read_to_string(&executions).unwrap();
    assert_eq!(log, "first\nsecond\nsecond\n", "first is not rerun");
    let out = &summary.step("second").unwrap().outputs["o"];
    assert_eq!(f.read(&out.address, "f").await, "one\n");
}
