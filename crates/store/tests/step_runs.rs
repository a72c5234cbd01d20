//! Step-run records for `step logs`, `step status` and reattaching.

use stepstack_core::{FailureReason, StepFailure, StepHandle, StepLaunch, StepStatus};
use stepstack_store::{NewStepRun, StepRunFilter, StepRunUpdate, Store, StoreError};

fn handle(pipeline: &str, step: &str) -> StepHandle {
    let launch = StepLaunch::new(pipeline, step, "python:3.12", ["python", "train.py"]);
    StepHandle::new(
        "kubernetes",
        &launch,
        serde_json::json!({"namespace": "ml", "job": "trainer-abc"}),
    )
}

#[test]
fn step_run_lifecycle() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    let h = handle("my_pipeline", "trainer");
    let run = store
        .create_step_run(
            NewStepRun::from_handle(h.clone(), "k8s").with_log_path("/tmp/trainer.log"),
        )
        .unwrap();
    assert_eq!(run.id, h.step_run_id);
    assert_eq!(run.pipeline, "my_pipeline");
    assert_eq!(run.step_name, "trainer");
    assert_eq!(run.component, "k8s");
    assert_eq!(run.status_text, "pending");
    assert_eq!(run.handle.as_ref(), Some(&h));
    assert_eq!(run.finished_at, None);
    assert!(matches!(
        store.create_step_run(NewStepRun::from_handle(h.clone(), "k8s")),
        Err(StoreError::AlreadyExists { .. })
    ));

    let running = store
        .update_step_run(&run.id, StepRunUpdate::status(StepStatus::Running))
        .unwrap();
    assert_eq!(running.status_text, "running");
    assert_eq!(running.finished_at, None);
    assert_eq!(running.log_path, run.log_path);

    let failure = StepFailure::new(FailureReason::OomKilled, "the container ran out of memory");
    let failed = store
        .update_step_run(
            &run.id[..8],
            StepRunUpdate::status(StepStatus::Failed(failure.clone())),
        )
        .unwrap();
    assert_eq!(failed.status_text, "failed");
    assert_eq!(failed.status, StepStatus::Failed(failure));
    let finished_at = failed.finished_at.expect("finished");

    // Another process reattaches from the stored handle.
    let other = Store::open(home.path()).unwrap();
    let again = other.get_step_run(&run.id).unwrap();
    assert_eq!(again.handle.unwrap().data["job"], "trainer-abc");
    assert_eq!(again.finished_at, Some(finished_at));
}

#[test]
fn list_filters_newest_first() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    let mut ids = Vec::new();
    for (pipeline, step) in [("p1", "a"), ("p1", "b"), ("p2", "a")] {
        let h = handle(pipeline, step);
        ids.push(
            store
                .create_step_run(NewStepRun::from_handle(h, "k8s"))
                .unwrap()
                .id,
        );
    }
    store
        .update_step_run(&ids[0], StepRunUpdate::status(StepStatus::Succeeded))
        .unwrap();

    let all = store.list_step_runs(&StepRunFilter::new()).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].created_at >= w[1].created_at));

    let mut f = StepRunFilter::new();
    f.pipeline = Some("p1".into());
    assert_eq!(store.list_step_runs(&f).unwrap().len(), 2);
    let mut f = StepRunFilter::new();
    f.unfinished = true;
    assert_eq!(store.list_step_runs(&f).unwrap().len(), 2);
    let mut f = StepRunFilter::new();
    f.status = Some("succeeded".into());
    let done = store.list_step_runs(&f).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, ids[0]);
    let mut f = StepRunFilter::new();
    f.limit = Some(1);
    assert_eq!(store.list_step_runs(&f).unwrap().len(), 1);

    store.delete_step_run(&ids[1]).unwrap();
    assert!(matches!(
        store.get_step_run(&ids[1]),
        Err(StoreError::NotFound { .. })
    ));
}
