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

#[test]
fn a_cancelled_step_run_is_listed_and_filtered_as_cancelled_not_failed() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    let cancelled = handle("p", "cancelled");
    let failed = handle("p", "failed");
    for (h, reason) in [
        (&cancelled, FailureReason::Cancelled),
        (&failed, FailureReason::NonZeroExit { code: 1 }),
    ] {
        store
            .create_step_run(NewStepRun::from_handle(h.clone(), "k8s"))
            .unwrap();
        let failure = StepFailure::new(reason, "ended");
        let run = store
            .update_step_run(
                &h.step_run_id,
                StepRunUpdate::status(StepStatus::Failed(failure)),
            )
            .unwrap();
        assert!(run.finished_at.is_some());
    }
    assert_eq!(
        store
            .get_step_run(&cancelled.step_run_id)
            .unwrap()
            .status_text,
        "cancelled"
    );
    assert_eq!(
        store.get_step_run(&failed.step_run_id).unwrap().status_text,
        "failed"
    );
    let mut filter = StepRunFilter::new();
    filter.status = Some("cancelled".into());
    let listed: Vec<String> = store
        .list_step_runs(&filter)
        .unwrap()
        .into_iter()
        .map(|r| r.step_name)
        .collect();
    assert_eq!(listed, ["cancelled"]);
}

#[test]
fn a_finished_status_is_final_against_any_unfinished_update() {
    let unfinished = [
        StepStatus::Pending { message: None },
        StepStatus::Pending {
            message: Some("the step's Job is being created".into()),
        },
        StepStatus::Running,
    ];
    let finished = [
        StepStatus::Succeeded,
        StepStatus::Failed(StepFailure::new(FailureReason::Cancelled, "cancelled")),
        StepStatus::Failed(StepFailure::new(
            FailureReason::NonZeroExit { code: 2 },
            "exit 2",
        )),
    ];
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    for (i, end) in finished.iter().enumerate() {
        for (j, late) in unfinished.iter().enumerate() {
            let h = handle("p", &format!("s-{i}-{j}"));
            store
                .create_step_run(NewStepRun::from_handle(h.clone(), "k8s"))
                .unwrap();
            let ended = store
                .update_step_run(&h.step_run_id, StepRunUpdate::status(end.clone()))
                .unwrap();
            let after = store
                .update_step_run(&h.step_run_id, StepRunUpdate::status(late.clone()))
                .unwrap();
            assert_eq!(&after.status, end, "{late:?} after {end:?}");
            assert_eq!(after.finished_at, ended.finished_at);
            // Another end still replaces it (the latest word on how it ended wins).
            for other in &finished {
                let again = store
                    .update_step_run(&h.step_run_id, StepRunUpdate::status(other.clone()))
                    .unwrap();
                assert_eq!(&again.status, other);
            }
        }
        // Unfinished statuses replace each other freely before the end.
        let h = handle("p", &format!("open-{i}"));
        store
            .create_step_run(NewStepRun::from_handle(h.clone(), "k8s"))
            .unwrap();
        for late in &unfinished {
            let run = store
                .update_step_run(&h.step_run_id, StepRunUpdate::status(late.clone()))
                .unwrap();
            assert_eq!(&run.status, late);
        }
    }
}
