//! The Kubernetes step operator against the testkit's emulated cluster, over real HTTPS,
//! through the public operator API.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::json;
use stepstack_core::{ErrorKind, FailureReason, StepHandle, StepOperator, StepOutcome, StepStatus};
use stepstack_testkit::{ClusterOptions, NodeConfig, ResourceKind, RuntimeOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_succeeds_with_every_line_once_and_labels() {
    let cluster = cluster().await;
    let state = tempfile::tempdir().unwrap();
    let op = operator(&cluster, Some(state.path())).await;
    let launch = launch(
        "My Pipeline",
        "train model",
        "for i in 1 2 3 4 5; do echo line-$i; done",
        json!({}),
    );
    let step_run_id = launch.step_run_id.clone();
    let run_name = launch.run_name.clone();
    let handle = op.submit(launch).await.unwrap();
    let follower = spawn_follow(&op, &handle);
    let outcome = op.wait(&handle).await.unwrap();
    assert_eq!(outcome, StepOutcome::Succeeded { attempts: 1 });
    let followed: Vec<String> = follower
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(followed, ["line-1", "line-2", "line-3", "line-4", "line-5"]);
    let lines = read_logs(&op, &handle, false).await;
    assert_eq!(lines.len(), 5);
    assert!(
        lines.iter().all(|l| l.timestamp.is_some()),
        "lines carry timestamps"
    );
    assert_eq!(op.status(&handle).await.unwrap(), StepStatus::Succeeded);

    let jobs = jobs_of(&cluster, &step_run_id);
    assert_eq!(jobs.len(), 1);
    let pods = pods_of(&cluster, &step_run_id);
    assert_eq!(pods.len(), 1);
    for obj in [&jobs[0], &pods[0]] {
        let labels = &obj["metadata"]["labels"];
        assert_eq!(labels["pipeline"], "My-Pipeline");
        assert_eq!(labels["step"], "train-model");
        assert_eq!(labels["run"], run_name.as_str());
        assert_eq!(labels["stepstack.dev/step-run-id"], step_run_id.as_str());
        assert_eq!(labels["app.kubernetes.io/managed-by"], "stepstack");
    }
    // The log file outlives the pod.
    let file = std::fs::read_to_string(
        state
            .path()
            .join("logs")
            .join(format!("{step_run_id}.jsonl")),
    )
    .unwrap();
    assert_eq!(file.lines().count(), 5, "{file}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timings_split_the_step_into_queue_start_and_run() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let handle = op
        .submit(launch("p", "timed", "echo done", json!({})))
        .await
        .unwrap();
    assert!(op.wait(&handle).await.unwrap().is_success());
    let timings = op.timings(&handle).await.unwrap().expect("timings");
    let phases = [
        timings.waiting_for_node_seconds,
        timings.starting_seconds,
        timings.running_seconds,
    ];
    assert!(phases.iter().all(Option::is_some), "{timings:?}");
    // One attempt: the phases add up to the total (the same timestamps bound them).
    let sum: f64 = phases.iter().flatten().sum();
    let total = timings.total_seconds.expect("a total");
    assert!((sum - total).abs() < 1e-6, "{timings:?}");
    assert!(timings.to_string().contains("running"), "{timings}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_3_is_non_zero_exit_with_the_last_lines() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let outcome = op
        .launch(launch(
            "p",
            "fails",
            "echo first; echo about to fail; exit 3",
            json!({}),
        ))
        .await
        .unwrap();
    let failure = outcome.failure().expect("the step fails").clone();
    assert_eq!(failure.reason, FailureReason::NonZeroExit { code: 3 });
    assert_eq!(failure.last_log_lines, ["first", "about to fail"]);
    assert_eq!(failure.attempts, 1);
    let text = failure.to_string();
    assert!(
        text.contains("NonZeroExit(3)") && text.contains("about to fail"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_failures_follow_the_retry_policy() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let launch = launch(
        "p",
        "flaky",
        "echo try; exit 2",
        json!({"retry": {"max_retries": 1, "delay_seconds": 0}}),
    );
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let follower = spawn_follow(&op, &handle);
    let outcome = op.wait(&handle).await.unwrap();
    let followed: Vec<String> = follower
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(followed, ["try", "try"], "the log stream follows the retry");
    let failure = outcome.failure().expect("fails twice");
    assert_eq!(failure.reason, FailureReason::NonZeroExit { code: 2 });
    assert_eq!(failure.attempts, 2);
    let jobs = jobs_of(&cluster, &step_run_id);
    let mut attempts: Vec<&str> = jobs
        .iter()
        .map(|j| {
            j["metadata"]["labels"]["stepstack.dev/attempt"]
                .as_str()
                .unwrap()
        })
        .collect();
    attempts.sort();
    assert_eq!(attempts, ["0", "1"], "one Job per attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_gpu_request_fails_after_the_scheduling_deadline() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let launch = launch(
        "p",
        "gpu",
        "echo never",
        json!({"scheduling_timeout": 1, "pod_settings": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}),
    );
    let step_run_id = launch.step_run_id.clone();
    let outcome = op.launch(launch).await.unwrap();
    let failure = outcome.failure().expect("fails");
    match &failure.reason {
        FailureReason::Unschedulable { message } => {
            assert!(message.contains("nvidia.com/gpu"), "{message}");
        }
        other => panic!("expected Unschedulable, got {other} ({failure})"),
    }
    assert!(
        failure
            .warning_events
            .iter()
            .any(|e| e.starts_with("FailedScheduling")),
        "{failure}"
    );
    // stepstack deleted the Job it gave up on.
    eventually("the Job is deleted", Duration::from_secs(20), || {
        jobs_of(&cluster, &step_run_id).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpullable_image_fails_fast() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let mut launch = launch("p", "pull", "echo never", json!({"startup_timeout": 600}));
    launch.image = "registry.invalid/x".into();
    let outcome = op.launch(launch).await.unwrap();
    let failure = outcome.failure().expect("fails");
    assert!(
        matches!(&failure.reason, FailureReason::ImagePull { waiting_reason } if waiting_reason == "ErrImagePull" || waiting_reason == "ImagePullBackOff"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_killed_container_is_oom_killed() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let outcome = op
        .launch(launch(
            "p",
            "oom",
            "echo allocating; sleep 30",
            json!({"pod_settings": {
                "annotations": {"testkit.stepstack.dev/simulate-oom": "200ms"},
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}}
            }}),
        ))
        .await
        .unwrap();
    assert_eq!(
        outcome.failure().expect("fails").reason,
        FailureReason::OomKilled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_is_retried_on_the_infrastructure_budget() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    // Step retries are off: only the infrastructure budget can retry.
    let launch = launch(
        "p",
        "evicted",
        "sleep 2; echo done",
        json!({"retry": {"max_retries": 0}}),
    );
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let waiter = spawn_wait(&op, &handle);
    let pod = running_pod(&cluster, &step_run_id).await;
    cluster.runtime().evict_pod(NS, &pod).await.unwrap();
    let outcome = waiter.await.unwrap().unwrap();
    assert_eq!(outcome, StepOutcome::Succeeded { attempts: 2 });
    assert_eq!(jobs_of(&cluster, &step_run_id).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_is_retried_then_reported_when_the_budget_is_spent() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let launch = launch(
        "p",
        "preempted",
        "sleep 30",
        json!({"retry": {"max_retries": 0}, "infrastructure_retry": {"max_retries": 1, "delay_seconds": 0}}),
    );
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let waiter = spawn_wait(&op, &handle);
    let first = running_pod(&cluster, &step_run_id).await;
    cluster.runtime().preempt_pod(NS, &first).await.unwrap();
    // The retry runs a new attempt (a new Job, so a new pod); preempt that one too.
    let mut second = running_pod(&cluster, &step_run_id).await;
    while second == first {
        tokio::time::sleep(Duration::from_millis(20)).await;
        second = running_pod(&cluster, &step_run_id).await;
    }
    cluster.runtime().preempt_pod(NS, &second).await.unwrap();
    let outcome = waiter.await.unwrap().unwrap();
    let failure = outcome.failure().expect("fails");
    assert_eq!(failure.reason, FailureReason::Preempted);
    assert!(
        failure.message.contains("PreemptionByScheduler"),
        "{}",
        failure.message
    );
    assert_eq!(jobs_of(&cluster, &step_run_id).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_the_job_controller_cannot_create_is_create_failed_with_the_reason() {
    let cluster = cluster().await;
    cluster.store().set_pod_quota(NS, Some(0));
    let op = operator(&cluster, None).await;
    let launch = launch("p", "over-quota", "echo never", json!({}));
    let step_run_id = launch.step_run_id.clone();
    let outcome = op.launch(launch).await.unwrap();
    let failure = outcome.failure().expect("fails");
    assert_eq!(
        failure.reason,
        FailureReason::CreateFailed {
            api_reason: "FailedCreate".into()
        }
    );
    assert!(
        failure.message.contains("exceeded quota: pod-quota"),
        "the quota's message: {}",
        failure.message
    );
    assert!(pods_of(&cluster, &step_run_id).is_empty());
    eventually("the Job is deleted", Duration::from_secs(30), || {
        jobs_of(&cluster, &step_run_id).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_is_node_lost_when_the_budget_is_spent() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let launch = launch(
        "p",
        "lost",
        "sleep 30",
        json!({"infrastructure_retry": {"max_retries": 0}}),
    );
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let waiter = spawn_wait(&op, &handle);
    running_pod(&cluster, &step_run_id).await;
    cluster.runtime().lose_node("node-1").unwrap();
    let outcome = waiter.await.unwrap().unwrap();
    assert_eq!(
        outcome.failure().expect("fails").reason,
        FailureReason::NodeLost
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_seconds_gives_deadline_exceeded() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let outcome = op
        .launch(launch(
            "p",
            "slow",
            "sleep 60",
            json!({"active_deadline_seconds": 1}),
        ))
        .await
        .unwrap();
    assert_eq!(
        outcome.failure().expect("fails").reason,
        FailureReason::DeadlineExceeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_removed_by_ttl_after_success_still_succeeded() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let launch = launch(
        "p",
        "ttl",
        "echo ok",
        json!({"ttl_seconds_after_finished": 0}),
    );
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    assert_eq!(
        op.wait(&handle).await.unwrap(),
        StepOutcome::Succeeded { attempts: 1 }
    );
    eventually("the TTL removes the Job", Duration::from_secs(20), || {
        jobs_of(&cluster, &step_run_id).is_empty()
    })
    .await;
    assert_eq!(op.status(&handle).await.unwrap(), StepStatus::Succeeded);
    assert_eq!(
        op.wait(&handle).await.unwrap(),
        StepOutcome::Succeeded { attempts: 1 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_removes_the_job_and_its_pods() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let launch = launch("p", "long", "sleep 600", json!({}));
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    running_pod(&cluster, &step_run_id).await;
    op.cancel(&handle).await.unwrap();
    let outcome = op.wait(&handle).await.unwrap();
    assert_eq!(
        outcome.failure().map(|f| &f.reason),
        Some(&FailureReason::Cancelled)
    );
    eventually("Job and pods are gone", Duration::from_secs(40), || {
        jobs_of(&cluster, &step_run_id).is_empty() && pods_of(&cluster, &step_run_id).is_empty()
    })
    .await;
    op.cancel(&handle).await.expect("cancel is idempotent");

    // `interrupt` keeps the Job when the settings say so, and cancels otherwise.
    let kept = common::launch("p", "kept", "sleep 600", json!({"on_interrupt": "keep"}));
    let kept_id = kept.step_run_id.clone();
    let handle = op.submit(kept).await.unwrap();
    assert!(!op.interrupt(&handle).await.unwrap());
    assert_eq!(jobs_of(&cluster, &kept_id).len(), 1);
    op.cancel(&handle).await.unwrap();
    let deleted = common::launch("p", "interrupted", "sleep 600", json!({}));
    let handle = op.submit(deleted).await.unwrap();
    assert!(op.interrupt(&handle).await.unwrap());
    assert_eq!(
        op.wait(&handle)
            .await
            .unwrap()
            .failure()
            .map(|f| f.reason.clone()),
        Some(FailureReason::Cancelled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_adopts_a_running_step_from_its_saved_handle() {
    let cluster = cluster().await;
    let first = operator(&cluster, None).await;
    let script = "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.3; done";
    let handle = first
        .submit(launch("p", "adopted", script, json!({})))
        .await
        .unwrap();
    // The first process reads two lines, saves where it stopped and goes away.
    let mut stream = first.logs(&handle, true).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(stream.next().await.unwrap().unwrap());
    }
    drop(stream);
    let saved_handle = serde_json::to_string(&handle).unwrap();
    let saved_line = serde_json::to_string(seen.last().unwrap()).unwrap();
    drop(first);

    // Another process (another operator, another client, another watch).
    let second = operator(&cluster, None).await;
    let handle: StepHandle = serde_json::from_str(&saved_handle).unwrap();
    let last = serde_json::from_str(&saved_line).unwrap();
    let rest = second.logs_after(&handle, true, &last).await.unwrap();
    let rest: Vec<String> = rest.map(|l| l.unwrap().text).collect().await;
    assert_eq!(rest, ["line-3", "line-4", "line-5", "line-6"]);
    assert_eq!(
        second.wait(&handle).await.unwrap(),
        StepOutcome::Succeeded { attempts: 1 }
    );
    let all: Vec<String> = read_logs(&second, &handle, false)
        .await
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(all.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_mid_wait_is_refreshed() {
    use stepstack_core::{BearerToken, TokenSource};
    use stepstack_testkit::{NewUser, Rule};

    #[derive(Debug)]
    struct Issuer {
        cluster: Arc<stepstack_testkit::Cluster>,
        issued: parking_lot::Mutex<Vec<String>>,
    }
    #[async_trait::async_trait]
    impl TokenSource for Issuer {
        async fn token(&self) -> stepstack_core::Result<BearerToken> {
            let mut issued = self.issued.lock();
            let user = NewUser::token(
                format!("robot-{}", issued.len()),
                vec![Rule::new(&["*"], &["*"], &["*"])],
            );
            let creds = self.cluster.add_user(user).unwrap();
            let token = creds.token.unwrap();
            issued.push(token.clone());
            Ok(BearerToken::new(token, None))
        }
    }

    let cluster = Arc::new(cluster().await);
    let issuer = Arc::new(Issuer {
        cluster: cluster.clone(),
        issued: parking_lot::Mutex::new(Vec::new()),
    });
    let anonymous = stepstack_testkit::UserCredentials {
        name: "robot".into(),
        token: None,
        client_cert_pem: None,
        client_key_pem: None,
        password: None,
    };
    let config = kube::Config::from_custom_kubeconfig(
        cluster.kubeconfig_for(&anonymous).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let connection =
        stepstack_core::ClusterConnection::new(config).with_token_source(issuer.clone());
    let op = stepstack_k8s_operator::KubernetesStepOperator::new(
        stepstack_settings::KubernetesStepOperatorConfig {
            kubernetes_namespace: NS.into(),
            ..Default::default()
        },
        stepstack_core::StepOperatorContext::new("k8s").with_connection(connection),
    );
    let launch = launch("p", "long-wait", "sleep 2; echo done", json!({}));
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let waiter = spawn_wait(&op, &handle);
    running_pod(&cluster, &step_run_id).await;
    let first = issuer.issued.lock()[0].clone();
    cluster.faults().expire_token(&first);
    cluster.faults().drop_watches_now();
    let outcome = waiter.await.unwrap().unwrap();
    assert_eq!(outcome, StepOutcome::Succeeded { attempts: 1 });
    assert!(issuer.issued.lock().len() >= 2, "a fresh token was fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_count_3_runs_three_indexed_pods_with_a_headless_service() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let launch = launch(
        "p",
        "distributed",
        "echo \"$STEPSTACK_POD_COUNT $STEPSTACK_MAIN_PORT $STEPSTACK_MAIN_ADDRESS\"",
        json!({"pod_count": 3}),
    );
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let job_name = op.handle_data(&handle).unwrap().job_name;
    let service = cluster
        .store()
        .get(ResourceKind::Service, Some(NS), &job_name)
        .expect("the headless Service");
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(service["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert_eq!(
        op.wait(&handle).await.unwrap(),
        StepOutcome::Succeeded { attempts: 1 }
    );
    assert_eq!(pods_of(&cluster, &step_run_id).len(), 3);
    let lines = read_logs(&op, &handle, false).await;
    let mut indexes: Vec<u32> = lines
        .iter()
        .map(|l| l.pod_index.expect("indexed"))
        .collect();
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2]);
    let expected = format!("3 29500 {job_name}-0.{job_name}.{NS}.svc");
    assert!(lines.iter().all(|l| l.text == expected), "{lines:?}");
    assert!(
        lines[0].to_string().starts_with('['),
        "lines are prefixed by index"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_environment_goes_through_a_secret_owned_by_the_job() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let launch = launch("p", "secret", "echo token=$API_TOKEN", json!({}))
        .with_secret_env("API_TOKEN", "s3cr3t".to_owned().into());
    let handle = op.submit(launch).await.unwrap();
    let job_name = op.handle_data(&handle).unwrap().job_name;
    let job = cluster
        .store()
        .get(ResourceKind::Job, Some(NS), &job_name)
        .unwrap();
    assert!(
        !job.to_string().contains("s3cr3t"),
        "the value is never inline"
    );
    let secret = cluster
        .store()
        .get(ResourceKind::Secret, Some(NS), &format!("{job_name}-env"))
        .unwrap();
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["name"],
        job_name.as_str()
    );
    assert_eq!(
        op.wait(&handle).await.unwrap(),
        StepOutcome::Succeeded { attempts: 1 }
    );
    let lines = read_logs(&op, &handle, false).await;
    assert_eq!(lines[0].text, "token=s3cr3t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_left_without_a_job_by_a_crashed_submit_are_deleted() {
    let cluster = cluster().await;
    let store = cluster.store();
    let managed = json!({"app.kubernetes.io/managed-by": "stepstack"});
    for (name, owners) in [
        ("crashed-env", json!(null)),
        ("fresh-env", json!(null)),
        (
            "owned-env",
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u"}]),
        ),
    ] {
        let mut secret = json!({
            "metadata": {"name": name, "labels": managed},
            "stringData": {"TOKEN": "x"}
        });
        if !owners.is_null() {
            secret["metadata"]["ownerReferences"] = owners;
        }
        store
            .create(ResourceKind::Secret, Some(NS), secret)
            .unwrap();
    }
    // The crashed submit and the owned Secret are an hour old; `fresh-env` may still be
    // a submit in flight in another process.
    for name in ["crashed-env", "owned-env"] {
        store
            .set_creation_timestamp(
                ResourceKind::Secret,
                Some(NS),
                name,
                jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
            )
            .unwrap();
    }
    let op = operator(&cluster, None).await;
    let launch = launch("p", "secret", "echo ok", json!({}))
        .with_secret_env("API_TOKEN", "s3cr3t".to_owned().into());
    assert!(op.launch(launch).await.unwrap().is_success());
    eventually("the orphan is deleted", Duration::from_secs(30), || {
        store
            .get(ResourceKind::Secret, Some(NS), "crashed-env")
            .is_err()
    })
    .await;
    for kept in ["fresh-env", "owned-env"] {
        assert!(
            store.get(ResourceKind::Secret, Some(NS), kept).is_ok(),
            "{kept} is kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_namespace_and_service_account_are_clear_errors() {
    let cluster = cluster().await;
    let op = operator_in(&cluster, "nowhere", None).await;
    let err = op
        .submit(launch("p", "s", "true", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string().contains("kubectl create namespace nowhere"),
        "{err}"
    );

    let op = operator(&cluster, None).await;
    let err = op
        .submit(launch(
            "p",
            "s",
            "true",
            json!({"service_account_name": "trainer"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string().contains("service account `trainer`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_renders_offline_and_asks_the_server() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let launch = launch("p", "preview", "true", json!({"pod_count": 2}));
    let preview = op.preview(&launch).unwrap();
    let yaml = preview.to_yaml().unwrap();
    assert!(
        yaml.contains("kind: Job") && yaml.contains("kind: Service"),
        "{yaml}"
    );
    let json: serde_json::Value = serde_json::from_str(&preview.to_json().unwrap()).unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 2);

    let verdict = op.preview_on_server(&launch).await.unwrap();
    assert!(verdict.accepted(), "{:?}", verdict.problems);
    assert!(
        jobs_of(&cluster, &launch.step_run_id).is_empty(),
        "a dry run stores nothing"
    );

    let elsewhere = operator_in(&cluster, "nowhere", None).await;
    let verdict = elsewhere.preview_on_server(&launch).await.unwrap();
    assert!(!verdict.accepted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_conformance_suite_passes() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let target = stepstack_core::conformance::StepOperatorTarget::new("busybox:1.36")
        .with_settings(fast_settings())
        .with_multi_pod_settings(serde_json::json!({"pod_count": 2}));
    let report = stepstack_core::conformance::check_step_operator(&op, &target).await;
    report.assert_passed();
    // The Kubernetes operator declares every capability, so nothing is skipped.
    assert!(
        report
            .checks
            .iter()
            .all(|c| c.outcome == stepstack_core::conformance::CheckOutcome::Passed),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flavor_builds_a_working_operator_from_the_registry() {
    let cluster = cluster().await;
    let mut registry = stepstack_core::Registry::new();
    stepstack_k8s_operator::register(&mut registry).unwrap();
    let flavor = registry.step_operator("kubernetes").unwrap();
    let config = flavor
        .validate_config(&json!({"kubernetes_namespace": NS}))
        .unwrap();
    let context =
        stepstack_core::StepOperatorContext::new("k8s").with_connection(connection(&cluster).await);
    let op = flavor.build(&config, context).unwrap();
    let outcome = op
        .launch(launch("p", "registry", "echo hi", json!({})))
        .await
        .unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
}

/// Keeps an unused import set compiling when tests are filtered.
#[allow(dead_code)]
fn _unused(_: ClusterOptions, _: NodeConfig, _: RuntimeOptions) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_calls_retry_transient_errors_only() {
    use stepstack_testkit::FaultMatch;
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let creates = || cluster.requests().count("create", "jobs");

    // 429 with Retry-After and 503 are retried; the step runs once.
    cluster
        .faults()
        .throttle_next(1, FaultMatch::verb_resource("create", "jobs"), 1);
    cluster
        .faults()
        .fail_next(1, FaultMatch::verb_resource("create", "jobs"), 503);
    let before = creates();
    let first = launch("p", "retried-create", "echo ok", json!({}));
    let step_run_id = first.step_run_id.clone();
    let outcome = op.launch(first).await.unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(
        creates() - before,
        3,
        "two transient failures, then the create"
    );
    assert_eq!(jobs_of(&cluster, &step_run_id).len(), 1);

    // 403 is not retried.
    cluster
        .faults()
        .fail_next(1, FaultMatch::verb_resource("create", "jobs"), 403);
    let before = creates();
    let err = op.submit(launch_plain("forbidden")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(creates() - before, 1, "a 403 is not retried");

    // A create the API server rejects as invalid ends `launch` as CreateFailed.
    cluster
        .faults()
        .fail_next(1, FaultMatch::verb_resource("create", "jobs"), 422);
    let outcome = op.launch(launch_plain("invalid")).await.unwrap();
    let failure = outcome.failure().expect("CreateFailed");
    assert!(
        matches!(&failure.reason, FailureReason::CreateFailed { .. }),
        "{failure}"
    );

    // Retries stop at max_api_retries.
    cluster
        .faults()
        .fail_next(10, FaultMatch::verb_resource("create", "jobs"), 500);
    let before = creates();
    let err = op
        .submit(launch(
            "p",
            "exhausted",
            "true",
            json!({"max_api_retries": 2}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(creates() - before, 3, "1 + max_api_retries attempts");
    cluster.faults().clear();
}

fn launch_plain(step: &str) -> stepstack_core::StepLaunch {
    launch("p", step, "true", json!({}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_relists_after_410_gone_and_keeps_waiters_going() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    let launch = launch("p", "relisted", "sleep 1; echo done", json!({}));
    let step_run_id = launch.step_run_id.clone();
    let handle = op.submit(launch).await.unwrap();
    let waiter = spawn_wait(&op, &handle);
    running_pod(&cluster, &step_run_id).await;
    let lists_before = cluster.requests().count("list", "jobs");
    // Change something the watches do not see, forget the history and cut the watches:
    // resuming from the last resourceVersion they saw gives 410 Gone.
    cluster
        .store()
        .create(
            ResourceKind::ConfigMap,
            Some("default"),
            json!({"metadata": {"name": "bump"}}),
        )
        .unwrap();
    cluster.store().compact();
    cluster.faults().drop_watches_now();
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        StepOutcome::Succeeded { attempts: 1 }
    );
    // The pods' watch may deliver the outcome before the Jobs' watch has relisted; the
    // relist must still happen.
    let relisted = async {
        while cluster.requests().count("list", "jobs") <= lists_before {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(30), relisted)
            .await
            .is_ok(),
        "the watcher relists when its resourceVersion is gone"
    );
}
