//! Issue 16, Errors: `launch` ends a step as `CreateFailed` when the API server refused
//! to create its objects, decided from the typed answer of that create, not by reading
//! the text of whatever error `submit` returned.

mod common;

use common::*;
use serde_json::json;
use stepstack_core::{ErrorKind, FailureReason, StepOperator};
use stepstack_testkit::FaultMatch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_owner_reference_after_the_job_exists_is_an_error_not_create_failed() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    // The Secret and the Job are created; making the Job the Secret's owner is refused.
    // Nothing was refused creation: the step must not read as CreateFailed (the old
    // rule took any error whose api_reason said Invalid for a refused create).
    cluster
        .faults()
        .fail_next(1, FaultMatch::verb_resource("patch", "secrets"), 422);
    let launch = launch("p", "owned", "true", json!({}))
        .with_secret_env("API_TOKEN", "s3cr3t".to_owned().into());
    let err = op.launch(launch).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
    assert!(err.to_string().contains("own Secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_creates_are_create_failed_with_the_status_reason() {
    let cluster = cluster().await;
    let op = operator(&cluster, None).await;
    for (code, resource, reason) in [
        (422, "jobs", "Invalid"),
        (400, "jobs", "BadRequest"),
        (422, "secrets", "Invalid"),
    ] {
        cluster
            .faults()
            .fail_next(1, FaultMatch::verb_resource("create", resource), code);
        let launch = launch(
            "p",
            &format!("refused-{code}-{resource}"),
            "true",
            json!({}),
        )
        .with_secret_env("API_TOKEN", "s3cr3t".to_owned().into());
        let outcome = op.launch(launch).await.unwrap();
        let failure = outcome.failure().expect("CreateFailed");
        assert_eq!(
            failure.reason,
            FailureReason::CreateFailed {
                api_reason: reason.into()
            },
            "{code} on {resource}: {failure}"
        );
    }
    // A 403 that is not a quota refusal is a permission the identity lacks: an error.
    cluster
        .faults()
        .fail_next(1, FaultMatch::verb_resource("create", "jobs"), 403);
    let err = op
        .launch(launch("p", "forbidden", "true", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}
