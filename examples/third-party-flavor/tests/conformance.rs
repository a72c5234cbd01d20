//! The example flavor passes stepstack's conformance suite, through the registry, as a
//! third party's flavor would.

use stepstack_core::conformance::{self, CheckOutcome, StepOperatorTarget};
use stepstack_core::{Registry, StepOperatorContext};

#[tokio::test]
async fn local_process_flavor_meets_the_step_operator_contract() {
    let state = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    stepstack_example_flavor::register(&mut registry).unwrap();

    let flavor = registry.step_operator("local-process").unwrap();
    let config = flavor
        .validate_config(&serde_json::json!({"state_dir": state.path()}))
        .unwrap();
    let operator = flavor
        .build(&config, StepOperatorContext::new("local"))
        .unwrap();

    let report =
        conformance::check_step_operator(operator.as_ref(), &StepOperatorTarget::new("ignored"))
            .await;
    report.assert_passed();
    // What the flavor does not declare is reported as skipped, not silently passed.
    for undeclared in ["timings_account_for_the_step", "multi_pod_step_succeeds"] {
        assert!(
            matches!(report.outcome(undeclared), Some(CheckOutcome::Skipped(_))),
            "{report}"
        );
    }
    assert_eq!(
        report.outcome("cancel_stops_a_running_step"),
        Some(&CheckOutcome::Passed),
        "{report}"
    );
}

#[test]
fn unknown_configuration_keys_are_rejected() {
    let mut registry = Registry::new();
    stepstack_example_flavor::register(&mut registry).unwrap();
    let err = registry
        .step_operator("local-process")
        .unwrap()
        .validate_config(&serde_json::json!({"state_dri": "/tmp"}))
        .unwrap_err();
    assert_eq!(err.kind(), stepstack_core::ErrorKind::InvalidSettings);
    assert!(
        err.to_string().contains("unknown field `state_dri`"),
        "{err}"
    );
}

#[test]
fn registering_twice_is_an_error() {
    let mut registry = Registry::new();
    stepstack_example_flavor::register(&mut registry).unwrap();
    let err = stepstack_example_flavor::register(&mut registry).unwrap_err();
    assert_eq!(err.kind(), stepstack_core::ErrorKind::Conflict);
}
