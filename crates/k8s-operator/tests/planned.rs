//! The planned handle: known before anything is created, the same as `submit` returns,
//! and usable (status, cancel, wait) on a step run whose Job was never created.

mod common;

use common::*;
use serde_json::json;
use stepstack_core::{ErrorKind, FailureReason, StepOperator, StepOutcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planned_handle_is_the_one_submit_returns_and_creates_nothing() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let op = operator(&cluster, Some(dir.path())).await;
    let step = launch("p", "planned", "echo hi", json!({}));
    let planned = op
        .planned_handle(&step)
        .await
        .unwrap()
        .expect("the kubernetes flavor knows its handle in advance");
    assert!(
        jobs_of(&cluster, &step.step_run_id).is_empty(),
        "planning creates nothing"
    );
    let submitted = op.submit(step.clone()).await.unwrap();
    assert_eq!(planned.data, submitted.data);
    assert_eq!(planned.step_run_id, submitted.step_run_id);
    assert_eq!(planned.step_name, submitted.step_name);
    assert_eq!(jobs_of(&cluster, &step.step_run_id).len(), 1);
    assert!(op.wait(&submitted).await.unwrap().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_step_whose_job_was_never_created_can_be_cancelled() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let step = launch("p", "never-created", "echo hi", json!({}));
    // The submitting process died after recording the plan: another process adopts it.
    let planned = operator(&cluster, Some(dir.path()))
        .await
        .planned_handle(&step)
        .await
        .unwrap()
        .unwrap();
    let other = operator(&cluster, Some(dir.path())).await;
    let err = other.status(&planned).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    other.cancel(&planned).await.unwrap();
    match other.wait(&planned).await.unwrap() {
        StepOutcome::Failed(failure) => assert_eq!(failure.reason, FailureReason::Cancelled),
        other => panic!("expected the cancellation, got {other:?}"),
    }
    assert!(jobs_of(&cluster, &step.step_run_id).is_empty());
}
