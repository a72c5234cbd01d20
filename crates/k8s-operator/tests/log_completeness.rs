//! The live log never ends as if complete when lines are missing, and the kept log gets
//! every line (issue 15, items 2 and 20).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::gate::{Gate, Pred, gated_operator};
use common::*;
use futures::StreamExt;
use serde_json::json;
use stepstack_core::{StepOperator, StepOutcome};
use stepstack_testkit::ResourceKind;
use stepstack_testkit::faults::FaultMatch;

fn pod_logs() -> Pred {
    Arc::new(|method, uri| method == http::Method::GET && uri.path().ends_with("/log"))
}

/// The pod is deleted before its log is read (the gate holds the log requests until
/// then): the live stream, and the kept log read afterwards, end with an "incomplete"
/// error instead of ending as if the step had printed nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_be_read_to_its_end_says_so() {
    let cluster = cluster().await;
    let gate = Gate::default();
    let state = tempfile::tempdir().unwrap();
    let op = gated_operator(&cluster, &gate, Some(state.path())).await;
    let logs_hold = gate.hold_requests(pod_logs());
    let launch = launch("p", "quick", "echo one; echo two", json!({}));
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let live = op.logs(&handle, true).await.unwrap();
    let live = tokio::spawn(live.collect::<Vec<_>>());
    let waiter = spawn_wait(&op, &handle);
    // Both followers (the live stream and wait's capture) have asked for the log.
    logs_hold.wait_held(2).await;
    eventually("the pod succeeds", Duration::from_secs(60), || {
        pods_of(&cluster, &step_run_id)
            .iter()
            .any(|p| p["status"]["phase"] == "Succeeded")
    })
    .await;
    let pod = pods_of(&cluster, &step_run_id)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    cluster
        .store()
        .delete(
            ResourceKind::Pod,
            Some(NS),
            &pod,
            stepstack_testkit::store::DeleteOptions {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    eventually("the pod is gone", Duration::from_secs(20), || {
        pods_of(&cluster, &step_run_id).is_empty()
    })
    .await;
    logs_hold.release();

    assert_eq!(
        waiter.await.unwrap().unwrap(),
        StepOutcome::Succeeded { attempts: 1 }
    );
    let items = live.await.unwrap();
    let last = items.last().expect("the stream says something");
    let err = last
        .as_ref()
        .expect_err("the last item says the log is incomplete");
    assert!(stepstack_k8s_operator::is_incomplete_log(err), "{err}");
    assert!(err.to_string().contains(&pod), "{err}");
    // The kept log knows it lacks lines too.
    let kept: Vec<_> = op.logs(&handle, false).await.unwrap().collect().await;
    let err = kept
        .last()
        .expect("the kept log says something")
        .as_ref()
        .expect_err("the kept log says it is incomplete");
    assert!(stepstack_k8s_operator::is_incomplete_log(err), "{err}");
    let file = op.handle_data(&handle).unwrap().log_file.unwrap();
    let kept = stepstack_k8s_operator::read_kept_log(&file);
    assert!(kept.incomplete.is_some(), "{kept:?}");
}

/// On a slow machine the log arrives well after the step ended (every log request takes
/// 7 s here; `wait` used to stop its capture 5 s after the outcome). `wait` returns
/// only once the kept log has every line, and the live stream ends complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_once_the_kept_log_has_every_line() {
    let cluster = cluster().await;
    let state = tempfile::tempdir().unwrap();
    let op = operator(&cluster, Some(state.path())).await;
    cluster.faults().add_latency(
        FaultMatch::verb_resource("get", "pods/log"),
        Duration::from_secs(7),
        None,
    );
    let launch = launch(
        "p",
        "slow-logs",
        "for i in 1 2 3 4; do echo l$i; done",
        json!({}),
    );
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let live = spawn_follow(&op, &handle);
    assert_eq!(
        op.wait(&handle).await.unwrap(),
        StepOutcome::Succeeded { attempts: 1 }
    );
    let file = state
        .path()
        .join("logs")
        .join(format!("{step_run_id}.jsonl"));
    let kept = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(kept.lines().count(), 4, "{kept}");
    let texts: Vec<String> = live.await.unwrap().into_iter().map(|l| l.text).collect();
    assert_eq!(texts, ["l1", "l2", "l3", "l4"]);
    cluster.faults().clear();
}

/// `step run` and `step attach` follow the same step in two processes: the kept log
/// holds each line once, and replays it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_following_one_step_keep_each_line_once() {
    let cluster = cluster().await;
    let state = tempfile::tempdir().unwrap();
    let run = operator(&cluster, Some(state.path())).await;
    let attach = operator(&cluster, Some(state.path())).await;
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let script = format!(
        "echo d1; echo d2; echo d3; while [ ! -e {} ]; do sleep 0.01; done; echo d4; echo d5",
        go.display()
    );
    let launch = launch("p", "twice", &script, json!({}));
    let step_run_id = launch.step_run_id.clone();
    let handle = run.submit(launch).await.unwrap();
    let first = spawn_wait(&run, &handle);
    let first_live = spawn_follow(&run, &handle);
    let file = state
        .path()
        .join("logs")
        .join(format!("{step_run_id}.jsonl"));
    eventually("d1..d3 are kept", Duration::from_secs(60), || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.lines().count() >= 3)
    })
    .await;
    // The second process attaches while the step runs, then the step goes on.
    let second = spawn_wait(&attach, &handle);
    let second_live = spawn_follow(&attach, &handle);
    std::fs::write(&go, b"").unwrap();
    for waiter in [first, second] {
        assert_eq!(
            waiter.await.unwrap().unwrap(),
            StepOutcome::Succeeded { attempts: 1 }
        );
    }
    let expected = ["d1", "d2", "d3", "d4", "d5"];
    for live in [first_live, second_live] {
        let texts: Vec<String> = live.await.unwrap().into_iter().map(|l| l.text).collect();
        assert_eq!(texts, expected);
    }
    let kept = std::fs::read_to_string(&file).unwrap();
    assert_eq!(kept.lines().count(), 5, "{kept}");
    // Once the pod is gone, `logs` replays the file: each line once.
    let pod = pods_of(&cluster, &step_run_id)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    cluster
        .store()
        .delete(
            ResourceKind::Pod,
            Some(NS),
            &pod,
            stepstack_testkit::store::DeleteOptions {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    let fresh = operator(&cluster, Some(state.path())).await;
    let replayed: Vec<String> = read_logs(&fresh, &handle, false)
        .await
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(replayed, expected);
    let kept = stepstack_k8s_operator::read_kept_log(&file);
    assert_eq!(kept.incomplete, None);
    assert_eq!(
        kept.lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>(),
        expected
    );
}
