//! Every waiter returns: a finished step is never waited on forever (issue 15, item 1),
//! however the watch, direct reads and a slow machine interleave.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::gate::{Gate, gated_operator, get_job, jobs_watch};
use common::*;
use futures::future::join_all;
use serde_json::json;
use stepstack_core::{StepOperator, StepOutcome, StepStatus};
use stepstack_testkit::faults::FaultMatch;

fn job_complete(cluster: &stepstack_testkit::Cluster, step_run_id: &str) -> bool {
    jobs_of(cluster, step_run_id).iter().any(|j| {
        j["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Complete" && c["status"] == "True")
        })
    })
}

/// The interleaving behind "the Job was Complete for 10 minutes and the CLI kept
/// waiting": `status` (the CLI's progress display) reads a Job the watch has not
/// delivered yet; the cluster answers "running"; before that answer is applied, the
/// watch delivers the Job's completion. Applied blindly, the older answer put the Job
/// back to running, and a waiter that looked afterwards slept forever (no event
/// follows a finished Job). The gate orders the steps; nothing sleeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_direct_read_cannot_hide_a_finished_job_from_later_waiters() {
    let cluster = cluster().await;
    let gate = Gate::default();
    let op = gated_operator(&cluster, &gate, None).await;
    // The Jobs' watch lists, then its watch request is held: Jobs created from now on
    // reach the operator only when the test says so.
    let watch_hold = gate.hold_requests(jobs_watch());
    let warm_up = op
        .submit(launch("p", "warm-up", "true", json!({})))
        .await
        .unwrap();
    watch_hold.wait_held(1).await;

    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.01; done; echo ok",
        go.display()
    );
    let launch = launch("p", "after-restart", &script, json!({}));
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let job_name = op.handle_data(&handle).unwrap().job_name;

    // `status` finds no Job in the watch and reads it; its answer (running, or not even
    // started) is held on its way back.
    let answer_hold = gate.hold_first_answer(get_job(NS, &job_name));
    let status = {
        let (op, handle) = (op.clone(), handle.clone());
        tokio::spawn(async move { op.status(&handle).await })
    };
    answer_hold.wait_held(1).await;

    // The step finishes in the cluster, and the watch delivers it: a waiter sees it.
    std::fs::write(&go, b"").unwrap();
    eventually("the Job completes", Duration::from_secs(60), || {
        job_complete(&cluster, &step_run_id)
    })
    .await;
    let first = spawn_wait(&op, &handle);
    watch_hold.release();
    assert_eq!(
        first.await.unwrap().unwrap(),
        StepOutcome::Succeeded { attempts: 1 }
    );

    // Now the older answer arrives.
    answer_hold.release();
    status.await.unwrap().unwrap();

    // Whoever looks afterwards still sees the finished step.
    assert_eq!(op.status(&handle).await.unwrap(), StepStatus::Succeeded);
    let later = tokio::time::timeout(Duration::from_secs(120), op.wait(&handle))
        .await
        .expect("a waiter of a finished step returns (hang guard)")
        .unwrap();
    assert_eq!(later, StepOutcome::Succeeded { attempts: 1 });
    assert_eq!(
        op.wait(&warm_up).await.unwrap(),
        StepOutcome::Succeeded { attempts: 1 }
    );
}

/// Many short steps on a slow machine (every request delayed, reads of single Jobs
/// slower still) with watches dropping every few events, each followed like the CLI
/// follows it: a status poller, a log follower and a waiter, the waiter sometimes
/// starting only after the step has finished. Every waiter returns, with the right
/// outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_waiter_of_many_short_steps_returns_despite_drops_and_delays() {
    let cluster = Arc::new(cluster().await);
    let op = operator(&cluster, None).await;
    let faults = cluster.faults();
    faults.drop_watches_after(Some(4));
    faults.add_latency(FaultMatch::any(), Duration::from_millis(20), None);
    faults.add_latency(
        FaultMatch::verb_resource("get", "jobs"),
        Duration::from_millis(150),
        None,
    );
    faults.add_latency(
        FaultMatch::verb_resource("watch", "jobs"),
        Duration::from_millis(100),
        None,
    );
    const STEPS: usize = 40;
    let results = join_all((0..STEPS).map(|i| {
        let op = op.clone();
        let cluster = cluster.clone();
        async move {
            let code = if i % 7 == 3 { 2 } else { 0 };
            let launch = launch(
                "stress",
                &format!("s{i}"),
                &format!("echo s{i}; exit {code}"),
                json!({"scheduling_timeout": 300, "startup_timeout": 300, "max_api_retries": 8}),
            );
            let step_run_id = launch.step_run_id.clone();
            let handle = op.submit(launch).await.expect("submit");
            // The CLI's progress display reads the status at once, then every while.
            let poller = {
                let (op, handle) = (op.clone(), handle.clone());
                tokio::spawn(async move {
                    for _ in 0..3 {
                        let _ = op.status(&handle).await;
                        tokio::task::yield_now().await;
                    }
                })
            };
            let follower = spawn_follow(&op, &handle);
            // Every third waiter registers only once the step has ended in the cluster.
            if i % 3 == 0 {
                eventually("the step ends", Duration::from_secs(120), || {
                    pods_of(&cluster, &step_run_id).iter().any(|p| {
                        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
                    })
                })
                .await;
            }
            let outcome = tokio::time::timeout(Duration::from_secs(300), op.wait(&handle))
                .await
                .map_err(|_| format!("step {i}: the waiter did not return (hang guard)"));
            poller.await.unwrap();
            let lines = follower.await.unwrap();
            (i, code, outcome, lines)
        }
    }))
    .await;
    faults.clear();
    faults.drop_watches_after(None);
    for (i, code, outcome, lines) in results {
        let outcome = outcome.unwrap().expect("wait");
        if code == 0 {
            assert_eq!(outcome, StepOutcome::Succeeded { attempts: 1 }, "step {i}");
        } else {
            assert_eq!(
                outcome.failure().map(|f| f.reason.clone()),
                Some(stepstack_core::FailureReason::NonZeroExit { code: 2 }),
                "step {i}"
            );
        }
        let texts: Vec<String> = lines.into_iter().map(|l| l.text).collect();
        assert_eq!(texts, [format!("s{i}")], "step {i}: its line, once");
    }
}
