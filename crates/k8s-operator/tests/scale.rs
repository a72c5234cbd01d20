//! Many concurrent steps: one shared watch per namespace, constant API requests per
//! step, and correct outcomes and logs under dropped watches and injected API errors.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use futures::future::join_all;
use serde_json::json;
use stepstack_core::{FailureReason, StepOperator, StepOutcome};
use stepstack_k8s_operator::KubernetesStepOperator;
use stepstack_testkit::{Cluster, FaultMatch, RequestCounts};

/// The two tests each load the two cores fully; run them one after the other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Requests other than the shared list and watch of Jobs and pods.
fn per_step_requests(delta: &RequestCounts) -> u64 {
    delta
        .by_key
        .iter()
        .filter(|(k, _)| {
            !(matches!(k.verb.as_str(), "list" | "watch")
                && matches!(k.resource.as_str(), "jobs" | "pods"))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn run_batch(op: &KubernetesStepOperator, cluster: &Cluster, n: usize) -> RequestCounts {
    let before = cluster.requests();
    let outcomes = join_all((0..n).map(|i| {
        let op = op.clone();
        async move {
            op.launch(launch(
                "scale",
                &format!("step-{i}"),
                "echo hi",
                json!({"scheduling_timeout": 120, "startup_timeout": 120}),
            ))
            .await
        }
    }))
    .await;
    for outcome in outcomes {
        assert_eq!(outcome.unwrap(), StepOutcome::Succeeded { attempts: 1 });
    }
    cluster.requests().since(&before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn a_hundred_steps_share_one_watch_per_namespace_and_requests_per_step_stay_constant() {
    let _serial = SERIAL.lock().await;
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let small = run_batch(&op, &cluster, 10).await;
    let large = run_batch(&op, &cluster, 100).await;
    let total = cluster.requests();
    assert_eq!(
        total.count("watch", "jobs"),
        1,
        "one watch of Jobs in the namespace: {total:?}"
    );
    assert_eq!(
        total.count("watch", "pods"),
        1,
        "one watch of pods in the namespace: {total:?}"
    );
    assert_eq!(total.count("list", "jobs"), 1);
    assert_eq!(total.count("list", "pods"), 1);
    let per_small = per_step_requests(&small) as f64 / 10.0;
    let per_large = per_step_requests(&large) as f64 / 100.0;
    eprintln!(
        "API requests per step: {per_small} (10 steps), {per_large} (100 steps); totals {total:?}"
    );
    assert!(
        per_large <= 3.0,
        "a step costs at most 3 requests, got {per_large}"
    );
    assert!(
        (per_large - per_small).abs() <= 0.25,
        "requests per step stay constant: {per_small} vs {per_large}; 10 steps: {small:?}; 100 steps: {large:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_steps_survive_dropped_watches_and_api_errors() {
    let _serial = SERIAL.lock().await;
    let cluster = Arc::new(cluster().await);
    let op = operator(&cluster, None).await;
    cluster.faults().drop_watches_after(Some(3));
    // Answer about 30% of all requests with 500 or 429 (Retry-After: 0).
    let stop = Arc::new(AtomicBool::new(false));
    let injector = {
        let cluster = cluster.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut injected = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let total = cluster.requests().total();
                while injected * 10 < total * 3 {
                    if injected.is_multiple_of(2) {
                        cluster.faults().fail_next(1, FaultMatch::any(), 500);
                    } else {
                        cluster.faults().throttle_next(1, FaultMatch::any(), 0);
                    }
                    injected += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            injected
        })
    };
    let steps = join_all((0..50).map(|i| {
        let op = op.clone();
        async move {
            let code = if i % 5 == 0 { 3 } else { 0 };
            let script = format!("for j in 1 2 3 4 5; do echo step-{i}-line-$j; done; exit {code}");
            let launch = launch(
                "chaos",
                &format!("step-{i}"),
                &script,
                json!({"max_api_retries": 12, "scheduling_timeout": 120, "startup_timeout": 120}),
            );
            let step_run_id = launch.step_run_id.clone();
            let handle = op.submit(launch).await.expect("submit");
            let follower = {
                let op = op.clone();
                let handle = handle.clone();
                tokio::spawn(async move { read_logs(&op, &handle, true).await })
            };
            let outcome = op.wait(&handle).await.expect("wait");
            let lines: Vec<String> = follower
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.text)
                .collect();
            (i, code, step_run_id, outcome, lines)
        }
    }))
    .await;
    stop.store(true, Ordering::Relaxed);
    let injected = injector.await.unwrap();
    cluster.faults().clear();
    assert!(injected > 50, "faults were injected ({injected})");
    for (i, code, step_run_id, outcome, lines) in steps {
        if code == 0 {
            assert_eq!(outcome, StepOutcome::Succeeded { attempts: 1 }, "step {i}");
        } else {
            assert_eq!(
                outcome.failure().map(|f| &f.reason),
                Some(&FailureReason::NonZeroExit { code: 3 }),
                "step {i}"
            );
        }
        let expected: Vec<String> = (1..=5).map(|j| format!("step-{i}-line-{j}")).collect();
        assert_eq!(lines, expected, "step {i}: every line once, in order");
        assert_eq!(
            jobs_of(&cluster, &step_run_id).len(),
            1,
            "step {i}: no duplicate Jobs"
        );
    }
}
