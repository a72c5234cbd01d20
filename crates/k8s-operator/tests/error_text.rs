//! Issue 16, Errors: an error the CLI prints (the chain, once, through
//! `stepstack_core::error_chain`) never says a clause twice. A message either includes
//! its cause's text and has no source, or says only what failed and has the cause as
//! its source.

mod common;

use common::*;
use serde_json::json;
use stepstack_core::{StepOperator, StepOperatorContext, error_chain};
use stepstack_k8s_operator::KubernetesStepOperator;
use stepstack_settings::KubernetesStepOperatorConfig;
use stepstack_testkit::FaultMatch;

/// Fails when a clause (text between `: `, `; ` and the context parenthesis) of the
/// printed chain appears twice, or when the error's own text already holds its
/// source's text (the source would be printed, or deduplicated, for nothing).
fn assert_said_once(err: &stepstack_core::Error) {
    let printed = error_chain(err);
    let mut seen = std::collections::HashSet::new();
    for clause in printed
        .split([':', ';', '(', ')'])
        .map(str::trim)
        .filter(|c| c.len() > 3)
    {
        assert!(seen.insert(clause), "`{clause}` twice in: {printed}");
    }
    if let Some(source) = std::error::Error::source(err) {
        let (own, cause) = (err.to_string(), source.to_string());
        assert!(
            !own.contains(&cause),
            "the message repeats its source `{cause}`: {own}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_said_once() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let op = KubernetesStepOperator::with_client(
        KubernetesStepOperatorConfig {
            kubernetes_namespace: NS.into(),
            ..Default::default()
        },
        StepOperatorContext::new("k8s"),
        client,
        url,
    );
    let err = op
        .submit(launch(
            "p",
            "refused",
            "true",
            json!({"max_api_retries": 0}),
        ))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("could not reach the API server"),
        "{err}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the client's error is kept"
    );
    assert_said_once(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_create_is_said_once() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    cluster
        .faults()
        .fail_next(1, FaultMatch::verb_resource("create", "jobs"), 422);
    let err = op
        .submit(launch("p", "invalid", "true", json!({})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("422"), "{err}");
    assert_said_once(&err);
}
