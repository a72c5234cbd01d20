//! When every watch request fails (issue 15, item 17), the operator lists instead: steps
//! still end with their real outcome, deadlines still fire, and cancel returns.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use stepstack_core::{FailureReason, StepHandle, StepOperator, StepOutcome};
use stepstack_k8s_operator::KubernetesStepOperator;
use stepstack_testkit::faults::{FaultAction, FaultMatch, FaultRule};

/// How long a test lets a call run before it calls it hung. Not a timing claim: the
/// fallback lists every 2 s; without it these calls never return.
const HANG_GUARD: Duration = Duration::from_secs(90);

async fn dead_watch_cluster() -> stepstack_testkit::Cluster {
    let cluster = cluster().await;
    cluster.faults().add(FaultRule {
        matcher: FaultMatch::any().verb("watch"),
        action: FaultAction::Status {
            code: 500,
            message: Some("injected: every watch fails".into()),
        },
        times: None,
    });
    cluster
}

/// Submits like the CLI: the progress display reads the status at once (which reads
/// the Job directly while the watch has not delivered it).
async fn submit(
    op: &KubernetesStepOperator,
    step: &str,
    script: &str,
    settings: serde_json::Value,
) -> StepHandle {
    let handle = op
        .submit(launch("dead-watch", step, script, settings))
        .await
        .unwrap();
    op.status(&handle).await.unwrap();
    handle
}

async fn wait(op: &KubernetesStepOperator, handle: &StepHandle) -> StepOutcome {
    tokio::time::timeout(HANG_GUARD, op.wait(handle))
        .await
        .expect("wait returns although every watch fails (hang guard)")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_end_with_their_outcome_when_every_watch_request_fails() {
    let cluster = dead_watch_cluster().await;
    let op = operator(&cluster, None).await;
    let failing = submit(&op, "fails", "echo bad; exit 1", json!({})).await;
    let succeeding = submit(&op, "succeeds", "echo good", json!({})).await;
    let outcome = wait(&op, &failing).await;
    assert_eq!(
        outcome.failure().map(|f| f.reason.clone()),
        Some(FailureReason::NonZeroExit { code: 1 }),
        "{outcome:?}"
    );
    assert_eq!(
        wait(&op, &succeeding).await,
        StepOutcome::Succeeded { attempts: 1 }
    );
    assert!(
        cluster.requests().total() > 0,
        "the emulator answered the lists"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_fire_when_every_watch_request_fails() {
    let cluster = dead_watch_cluster().await;
    let op = operator(&cluster, None).await;
    let handle = submit(
        &op,
        "nowhere",
        "true",
        json!({"scheduling_timeout": 2, "pod_settings": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}),
    )
    .await;
    let outcome = wait(&op, &handle).await;
    assert!(
        matches!(
            outcome.failure().map(|f| &f.reason),
            Some(FailureReason::Unschedulable { .. })
        ),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_returns_and_the_waiter_sees_it_when_every_watch_request_fails() {
    let cluster = dead_watch_cluster().await;
    let op = operator(&cluster, None).await;
    let handle = submit(&op, "long", "sleep 300", json!({})).await;
    let step_run_id = handle.step_run_id.clone();
    running_pod(&cluster, &step_run_id).await;
    let waiter = spawn_wait(&op, &handle);
    tokio::time::timeout(HANG_GUARD, op.cancel(&handle))
        .await
        .expect("cancel returns although every watch fails (hang guard)")
        .unwrap();
    let outcome = tokio::time::timeout(HANG_GUARD, waiter)
        .await
        .expect("the waiter returns after cancel (hang guard)")
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome.failure().map(|f| f.reason.clone()),
        Some(FailureReason::Cancelled),
        "{outcome:?}"
    );
    // Waiting again after the cancel (what the CLI does after Ctrl-C) returns too.
    let again = wait(&op, &handle).await;
    assert_eq!(
        again.failure().map(|f| f.reason.clone()),
        Some(FailureReason::Cancelled)
    );
}
