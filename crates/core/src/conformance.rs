//! Checks that a flavor meets the stepstack contracts, for flavor authors to call from
//! their own tests (enable the `conformance` feature in `[dev-dependencies]`).
//!
//! Each check is an `async fn` that panics with a message saying which contract was
//! broken, like `assert!`. Step-operator checks run real steps: they need a target that
//! can run `sh -c SCRIPT` (the testkit's emulated cluster runs container commands as
//! local processes, so any image name works there).
//!
//! ```no_run
//! # async fn example(operator: std::sync::Arc<dyn stepstack_core::StepOperator>) {
//! use stepstack_core::conformance::{self, StepOperatorTarget};
//! conformance::check_step_operator(operator.as_ref(), &StepOperatorTarget::new("busybox:1.36")).await;
//! # }
//! ```

use std::time::Duration;

use futures::StreamExt;

use crate::connector::KUBERNETES_CLUSTER;
use crate::{
    ConnectorFlavor, FailureReason, ServiceConnector, StepHandle, StepLaunch, StepOperator,
    StepOutcome, StepStatus,
};

/// How to run conformance steps on a step operator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StepOperatorTarget {
    /// The image every conformance step uses; it must provide `sh`.
    pub image: String,
    /// Flavor settings applied to every conformance step.
    pub settings: serde_json::Value,
    /// How long one conformance step may take before the check fails.
    pub step_timeout: Duration,
}

impl StepOperatorTarget {
    /// A target that runs steps in `image` with default settings.
    pub fn new(image: impl Into<String>) -> Self {
        StepOperatorTarget {
            image: image.into(),
            settings: serde_json::json!({}),
            step_timeout: Duration::from_secs(60),
        }
    }

    /// Applies `settings` to every conformance step.
    pub fn with_settings(mut self, settings: serde_json::Value) -> Self {
        self.settings = settings;
        self
    }

    /// A launch of `script` under `sh -c` as step `step` of the conformance pipeline.
    pub fn launch(&self, step: &str, script: &str) -> StepLaunch {
        StepLaunch::new(
            "conformance",
            step,
            self.image.clone(),
            ["sh", "-c", script],
        )
        .with_settings(self.settings.clone())
    }
}

/// Runs every step-operator check.
pub async fn check_step_operator(operator: &dyn StepOperator, target: &StepOperatorTarget) {
    succeeding_step_succeeds_with_its_logs(operator, target).await;
    failing_step_reports_its_exit_code(operator, target).await;
    handle_survives_serialization(operator, target).await;
    cancel_stops_a_running_step(operator, target).await;
}

/// A step that prints and exits 0 succeeds; its status says so afterwards; its logs
/// hold every line once, in order.
pub async fn succeeding_step_succeeds_with_its_logs(
    operator: &dyn StepOperator,
    target: &StepOperatorTarget,
) {
    let launch = target.launch("prints", "echo conformance-line-1; echo conformance-line-2");
    let handle = submit(operator, launch).await;
    let outcome = wait(operator, &handle, target).await;
    assert!(
        outcome.is_success(),
        "[{}] a step that exits 0 must succeed, got {outcome:?}",
        operator.flavor()
    );
    let status = operator.status(&handle).await.unwrap_or_else(|e| {
        panic!(
            "[{}] status of a finished step failed: {e}",
            operator.flavor()
        )
    });
    assert_eq!(
        status,
        StepStatus::Succeeded,
        "[{}] status after success",
        operator.flavor()
    );
    match operator.logs(&handle, false).await {
        Ok(stream) => {
            let lines: Vec<String> = stream
                .map(|line| line.map(|l| l.text))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("[{}] reading logs failed: {e}", operator.flavor()));
            assert_eq!(
                lines,
                ["conformance-line-1", "conformance-line-2"],
                "[{}] logs must hold every line once, in order",
                operator.flavor()
            );
        }
        Err(e) if e.kind() == crate::ErrorKind::Unsupported => {}
        Err(e) => panic!(
            "[{}] logs of a finished step failed: {e}",
            operator.flavor()
        ),
    }
}

/// A step that exits 3 fails with `NonZeroExit(3)` and a message.
pub async fn failing_step_reports_its_exit_code(
    operator: &dyn StepOperator,
    target: &StepOperatorTarget,
) {
    let launch = target.launch("exits-3", "echo about to fail; exit 3");
    let handle = submit(operator, launch).await;
    let outcome = wait(operator, &handle, target).await;
    let failure = outcome.failure().unwrap_or_else(|| {
        panic!(
            "[{}] a step that exits 3 must fail, got {outcome:?}",
            operator.flavor()
        )
    });
    assert_eq!(
        failure.reason,
        FailureReason::NonZeroExit { code: 3 },
        "[{}] failure reason",
        operator.flavor()
    );
    assert!(
        !failure.message.is_empty(),
        "[{}] a failure needs a message",
        operator.flavor()
    );
}

/// A handle written to JSON and read back (as another process would) can be waited on.
pub async fn handle_survives_serialization(
    operator: &dyn StepOperator,
    target: &StepOperatorTarget,
) {
    let launch = target.launch("adopted", "sleep 1; echo adopted");
    let handle = submit(operator, launch).await;
    let json = serde_json::to_string(&handle).expect("a StepHandle serializes");
    let adopted: StepHandle = serde_json::from_str(&json).expect("a StepHandle deserializes");
    let outcome = wait(operator, &adopted, target).await;
    assert!(
        outcome.is_success(),
        "[{}] waiting on a deserialized handle must give the step's outcome, got {outcome:?}",
        operator.flavor()
    );
}

/// Cancelling a running step ends it as `Cancelled`; cancelling again is not an error.
pub async fn cancel_stops_a_running_step(operator: &dyn StepOperator, target: &StepOperatorTarget) {
    let launch = target.launch("cancelled", "sleep 600");
    let handle = submit(operator, launch).await;
    let deadline = tokio::time::Instant::now() + target.step_timeout;
    loop {
        let status = operator.status(&handle).await.unwrap_or_else(|e| {
            panic!(
                "[{}] status of a running step failed: {e}",
                operator.flavor()
            )
        });
        match status {
            StepStatus::Running => break,
            StepStatus::Pending { .. } if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!(
                "[{}] a `sleep 600` step must reach Running, got {other:?}",
                operator.flavor()
            ),
        }
    }
    operator
        .cancel(&handle)
        .await
        .unwrap_or_else(|e| panic!("[{}] cancel failed: {e}", operator.flavor()));
    let outcome = wait(operator, &handle, target).await;
    let reason = outcome.failure().map(|f| &f.reason);
    assert_eq!(
        reason,
        Some(&FailureReason::Cancelled),
        "[{}] a cancelled step must end as Cancelled, got {outcome:?}",
        operator.flavor()
    );
    operator.cancel(&handle).await.unwrap_or_else(|e| {
        panic!(
            "[{}] cancelling a finished step must succeed: {e}",
            operator.flavor()
        )
    });
}

async fn submit(operator: &dyn StepOperator, launch: StepLaunch) -> StepHandle {
    let step = launch.step_name.clone();
    let handle = operator.submit(launch).await.unwrap_or_else(|e| {
        panic!(
            "[{}] submitting step `{step}` failed: {e}",
            operator.flavor()
        )
    });
    assert_eq!(
        handle.flavor,
        operator.flavor(),
        "the handle must name the operator's flavor"
    );
    handle
}

async fn wait(
    operator: &dyn StepOperator,
    handle: &StepHandle,
    target: &StepOperatorTarget,
) -> StepOutcome {
    match tokio::time::timeout(target.step_timeout, operator.wait(handle)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => panic!(
            "[{}] waiting for step `{}` failed: {e}",
            operator.flavor(),
            handle.step_name
        ),
        Err(_) => panic!(
            "[{}] step `{}` did not finish within {:?}",
            operator.flavor(),
            handle.step_name,
            target.step_timeout
        ),
    }
}

/// The connector type's description is consistent: auth methods and resource types
/// exist, ids are unique, schemas are object schemas that declare every secret field,
/// expiration bounds are ordered, and resource types name only known auth methods.
pub fn check_connector_type(flavor: &dyn ConnectorFlavor) {
    let spec = flavor.connector_type();
    let id = &spec.connector_type;
    assert!(
        !spec.auth_methods.is_empty(),
        "[{id}] needs at least one auth method"
    );
    assert!(
        !spec.resource_types.is_empty(),
        "[{id}] needs at least one resource type"
    );
    assert!(
        is_kebab(id),
        "[{id}] connector type ids are lowercase-kebab-case"
    );
    let mut seen = std::collections::BTreeSet::new();
    for method in &spec.auth_methods {
        let m = &method.auth_method;
        assert!(
            seen.insert(m.clone()),
            "[{id}] auth method `{m}` is declared twice"
        );
        assert!(
            is_kebab(m),
            "[{id}] auth method id `{m}` is not lowercase-kebab-case"
        );
        assert_eq!(
            method.config_schema.get("type").and_then(|t| t.as_str()),
            Some("object"),
            "[{id}] the config schema of `{m}` must be an object schema"
        );
        let properties = method
            .config_schema
            .get("properties")
            .and_then(|p| p.as_object());
        for secret in &method.secret_fields {
            assert!(
                properties.is_some_and(|p| p.contains_key(secret)),
                "[{id}] secret field `{secret}` of `{m}` is not in its config schema"
            );
        }
        if let Some(bounds) = method.expiration {
            if let (Some(min), Some(max)) = (bounds.min_seconds, bounds.max_seconds) {
                assert!(min <= max, "[{id}] `{m}`: expiration min {min} > max {max}");
            }
            if let Some(default) = bounds.default_seconds {
                assert!(
                    bounds.min_seconds.is_none_or(|min| min <= default)
                        && bounds.max_seconds.is_none_or(|max| default <= max),
                    "[{id}] `{m}`: default expiration {default} is outside its bounds"
                );
            }
        }
    }
    for resource in &spec.resource_types {
        let r = &resource.resource_type;
        assert!(
            is_kebab(r),
            "[{id}] resource type id `{r}` is not lowercase-kebab-case"
        );
        for method in &resource.auth_methods {
            assert!(
                spec.auth_method(method).is_some(),
                "[{id}] resource type `{r}` names unknown auth method `{method}`"
            );
        }
    }
}

/// `verify` reports every resource type the connector is configured for, and every
/// Kubernetes cluster it lists can be connected to and answers `GET /version` with the
/// connection's client.
pub async fn check_connector_reaches_its_clusters(connector: &dyn ServiceConnector) {
    let name = connector.config().name.clone();
    let report = connector
        .verify(None, None)
        .await
        .unwrap_or_else(|e| panic!("[{name}] verify failed: {e}"));
    assert!(
        report.error.is_none(),
        "[{name}] verify reported {:?}",
        report.error
    );
    let expected: Vec<&str> = if connector.config().resource_types.is_empty() {
        connector
            .connector_type()
            .resource_types
            .iter()
            .map(|r| r.resource_type.as_str())
            .collect()
    } else {
        connector
            .config()
            .resource_types
            .iter()
            .map(String::as_str)
            .collect()
    };
    for resource_type in expected {
        assert!(
            report.entry(resource_type).is_some(),
            "[{name}] verify has no entry for resource type `{resource_type}`"
        );
    }
    let Some(clusters) = report.entry(KUBERNETES_CLUSTER) else {
        return;
    };
    let ids = clusters
        .resource_ids
        .clone()
        .unwrap_or_else(|| panic!("[{name}] listing clusters failed: {:?}", clusters.error));
    for id in ids {
        let connection = connector
            .connect(KUBERNETES_CLUSTER, Some(&id))
            .await
            .unwrap_or_else(|e| panic!("[{name}] connecting to cluster `{id}` failed: {e}"));
        let client = connection
            .into_client()
            .unwrap_or_else(|e| panic!("[{name}] building a client for `{id}` failed: {e}"));
        client
            .apiserver_version()
            .await
            .unwrap_or_else(|e| panic!("[{name}] cluster `{id}` did not answer GET /version: {e}"));
    }
}

fn is_kebab(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('-')
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
