//! Checks that a flavor meets the stepstack contracts, for flavor authors to call from
//! their own tests (enable the `conformance` feature in `[dev-dependencies]`).
//!
//! Step operators are checked by capability, in the way OpenDAL's behaviour tests are
//! gated: the base contract (a step succeeds, a failing step reports its exit code)
//! always runs, and each capability the operator declares in
//! [`StepOperator::capabilities`] adds its own named check. Every check runs even when
//! an earlier one failed (a panic inside the operator counts as that check's failure),
//! and the [`ConformanceReport`] lists each check as passed, failed or skipped.
//! Step-operator checks run real steps: they need a target that can run `sh -c SCRIPT`
//! (the testkit's emulated cluster runs container commands as local processes, so any
//! image name works there).
//!
//! ```no_run
//! # async fn example(operator: std::sync::Arc<dyn stepstack_core::StepOperator>) {
//! use stepstack_core::conformance::{self, StepOperatorTarget};
//! let report =
//!     conformance::check_step_operator(operator.as_ref(), &StepOperatorTarget::new("busybox:1.36")).await;
//! report.assert_passed();
//! # }
//! ```
//!
//! Connector checks ([`check_connector_type`], [`check_connector_reaches_its_clusters`])
//! panic with a message saying which contract was broken, like `assert!`.

use std::fmt;
use std::time::Duration;

use futures::{FutureExt, StreamExt};

use checks::{Check, ensure, run_check};
pub use checks::{CheckOutcome, CheckResult};

use crate::connector::KUBERNETES_CLUSTER;
use crate::{
    Capabilities, ConnectorFlavor, FailureReason, ServiceConnector, StepHandle, StepLaunch,
    StepOperator, StepOutcome, StepStatus,
};

mod artifact_store;
mod checks;
pub use artifact_store::{ArtifactStoreReport, check_artifact_store};

/// How to run conformance steps on a step operator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StepOperatorTarget {
    /// The image every conformance step uses; it must provide `sh`.
    pub image: String,
    /// Flavor settings applied to every conformance step.
    pub settings: serde_json::Value,
    /// Flavor settings that make one step run on two pods (for the `multi_pod` check),
    /// merged over `settings`; `None` when the target cannot run multi-pod steps.
    pub multi_pod_settings: Option<serde_json::Value>,
    /// How long one conformance step may take before the check fails.
    pub step_timeout: Duration,
}

impl StepOperatorTarget {
    /// A target that runs steps in `image` with default settings.
    pub fn new(image: impl Into<String>) -> Self {
        StepOperatorTarget {
            image: image.into(),
            settings: serde_json::json!({}),
            multi_pod_settings: None,
            step_timeout: Duration::from_secs(60),
        }
    }

    /// Applies `settings` to every conformance step.
    pub fn with_settings(mut self, settings: serde_json::Value) -> Self {
        self.settings = settings;
        self
    }

    /// The settings that make a step run on two pods, for the `multi_pod` check.
    pub fn with_multi_pod_settings(mut self, settings: serde_json::Value) -> Self {
        self.multi_pod_settings = Some(settings);
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

/// Every check of a conformance run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a report is only useful when looked at: call `assert_passed`"]
pub struct ConformanceReport {
    /// The flavor checked.
    pub flavor: String,
    /// What the operator declared.
    pub capabilities: Capabilities,
    /// One entry per check, run or skipped.
    pub checks: Vec<CheckResult>,
}

impl ConformanceReport {
    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        checks::failures(&self.checks)
    }

    /// The outcome of the check called `name`, if the suite has one.
    pub fn outcome(&self, name: &str) -> Option<&CheckOutcome> {
        checks::outcome(&self.checks, name)
    }

    /// Panics with the whole report when any check failed.
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(
            self.failures().next().is_none(),
            "step operator `{}` broke the contract:\n{self}",
            self.flavor
        );
    }
}

/// One line per check: `PASS name`, `FAIL name: why`, `SKIP name: why`.
impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        checks::write_checks(f, &self.checks)
    }
}

/// Runs the base checks and one check per declared capability; never stops early.
pub async fn check_step_operator(
    operator: &dyn StepOperator,
    target: &StepOperatorTarget,
) -> ConformanceReport {
    let capabilities = operator.capabilities();
    let mut report = ConformanceReport {
        flavor: operator.flavor().to_owned(),
        capabilities,
        checks: Vec::new(),
    };
    run_check(
        &mut report.checks,
        "succeeding_step_succeeds",
        None,
        succeeding_step_succeeds(operator, target),
    )
    .await;
    run_check(
        &mut report.checks,
        "failing_step_reports_its_exit_code",
        None,
        failing_step_reports_its_exit_code(operator, target),
    )
    .await;
    let gated: [(&'static str, &'static str, bool); 5] = [
        ("logs_hold_every_line_once", "logs", capabilities.logs),
        (
            "handle_survives_serialization",
            "reattach",
            capabilities.reattach,
        ),
        ("cancel_stops_a_running_step", "cancel", capabilities.cancel),
        (
            "timings_account_for_the_step",
            "timings",
            capabilities.timings,
        ),
        (
            "multi_pod_step_succeeds",
            "multi_pod",
            capabilities.multi_pod,
        ),
    ];
    for (name, capability, declared) in gated {
        if !declared {
            report.checks.push(CheckResult {
                name,
                capability: Some(capability),
                outcome: CheckOutcome::Skipped(format!("capability `{capability}` not declared")),
            });
            continue;
        }
        let check = match name {
            "logs_hold_every_line_once" => logs_hold_every_line_once(operator, target).boxed(),
            "handle_survives_serialization" => {
                handle_survives_serialization(operator, target).boxed()
            }
            "cancel_stops_a_running_step" => cancel_stops_a_running_step(operator, target).boxed(),
            "timings_account_for_the_step" => {
                timings_account_for_the_step(operator, target).boxed()
            }
            _ => multi_pod_step_succeeds(operator, target).boxed(),
        };
        run_check(&mut report.checks, name, Some(capability), check).await;
    }
    report
}

/// A step that exits 0 succeeds, and its status says so afterwards.
async fn succeeding_step_succeeds(
    operator: &dyn StepOperator,
    target: &StepOperatorTarget,
) -> Check {
    let handle = submit(operator, target.launch("succeeds", "echo ok")).await?;
    let outcome = wait(operator, &handle, target).await?;
    ensure!(
        outcome.is_success(),
        "a step that exits 0 must succeed, got {outcome:?}"
    );
    let status = operator
        .status(&handle)
        .await
        .map_err(|e| format!("status of a finished step failed: {e}"))?;
    ensure!(
        status == StepStatus::Succeeded,
        "status after success must be Succeeded, got {status:?}"
    );
    Ok(())
}

/// A step that exits 3 fails with `NonZeroExit(3)` and a message.
async fn failing_step_reports_its_exit_code(
    operator: &dyn StepOperator,
    target: &StepOperatorTarget,
) -> Check {
    let launch = target.launch("exits-3", "echo about to fail; exit 3");
    let handle = submit(operator, launch).await?;
    let outcome = wait(operator, &handle, target).await?;
    let failure = outcome
        .failure()
        .ok_or_else(|| format!("a step that exits 3 must fail, got {outcome:?}"))?;
    ensure!(
        failure.reason == FailureReason::NonZeroExit { code: 3 },
        "failure reason must be NonZeroExit(3), got {:?}",
        failure.reason
    );
    ensure!(!failure.message.is_empty(), "a failure needs a message");
    Ok(())
}

/// After a step ends, its logs hold every line once, in order.
async fn logs_hold_every_line_once(
    operator: &dyn StepOperator,
    target: &StepOperatorTarget,
) -> Check {
    let launch = target.launch("prints", "echo conformance-line-1; echo conformance-line-2");
    let handle = submit(operator, launch).await?;
    let outcome = wait(operator, &handle, target).await?;
    ensure!(
        outcome.is_success(),
        "the printing step must succeed, got {outcome:?}"
    );
    let stream = operator
        .logs(&handle, false)
        .await
        .map_err(|e| format!("logs of a finished step failed: {e}"))?;
    let lines: Vec<String> = stream
        .map(|line| line.map(|l| l.text))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading logs failed: {e}"))?;
    ensure!(
        lines == ["conformance-line-1", "conformance-line-2"],
        "logs must hold every line once, in order, got {lines:?}"
    );
    Ok(())
}

/// A handle written to JSON and read back (as another process would) can be waited on.
async fn handle_survives_serialization(
    operator: &dyn StepOperator,
    target: &StepOperatorTarget,
) -> Check {
    let launch = target.launch("adopted", "sleep 1; echo adopted");
    let handle = submit(operator, launch).await?;
    let json = serde_json::to_string(&handle).map_err(|e| format!("handle to JSON: {e}"))?;
    let adopted: StepHandle =
        serde_json::from_str(&json).map_err(|e| format!("handle from JSON: {e}"))?;
    let outcome = wait(operator, &adopted, target).await?;
    ensure!(
        outcome.is_success(),
        "waiting on a deserialized handle must give the step's outcome, got {outcome:?}"
    );
    Ok(())
}

/// Cancelling a running step ends it as `Cancelled`; cancelling again is not an error.
async fn cancel_stops_a_running_step(
    operator: &dyn StepOperator,
    target: &StepOperatorTarget,
) -> Check {
    let handle = submit(operator, target.launch("cancelled", "sleep 600")).await?;
    let deadline = tokio::time::Instant::now() + target.step_timeout;
    loop {
        let status = operator
            .status(&handle)
            .await
            .map_err(|e| format!("status of a running step failed: {e}"))?;
        match status {
            StepStatus::Running => break,
            StepStatus::Pending { .. } if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => {
                return Err(format!(
                    "a `sleep 600` step must reach Running, got {other:?}"
                ));
            }
        }
    }
    operator
        .cancel(&handle)
        .await
        .map_err(|e| format!("cancel failed: {e}"))?;
    let outcome = wait(operator, &handle, target).await?;
    let reason = outcome.failure().map(|f| &f.reason);
    ensure!(
        reason == Some(&FailureReason::Cancelled),
        "a cancelled step must end as Cancelled, got {outcome:?}"
    );
    operator
        .cancel(&handle)
        .await
        .map_err(|e| format!("cancelling a finished step must succeed: {e}"))?;
    Ok(())
}

/// After a step ends, its timings have a total, and no phase is longer than the total.
async fn timings_account_for_the_step(
    operator: &dyn StepOperator,
    target: &StepOperatorTarget,
) -> Check {
    let handle = submit(operator, target.launch("timed", "echo timed")).await?;
    let outcome = wait(operator, &handle, target).await?;
    ensure!(
        outcome.is_success(),
        "the timed step must succeed, got {outcome:?}"
    );
    let timings = operator
        .timings(&handle)
        .await
        .map_err(|e| format!("timings of a finished step failed: {e}"))?
        .ok_or("a flavor that declares `timings` must report them for a finished step")?;
    let total = timings
        .total_seconds
        .ok_or("the timings of a finished step need a total")?;
    for (phase, seconds) in [
        ("waiting for a node", timings.waiting_for_node_seconds),
        ("starting", timings.starting_seconds),
        ("running", timings.running_seconds),
    ] {
        if let Some(seconds) = seconds {
            ensure!(
                (0.0..=total).contains(&seconds),
                "{phase} took {seconds} s, outside 0..={total} s (the total)"
            );
        }
    }
    Ok(())
}

/// A step whose settings ask for two pods runs on both and succeeds.
async fn multi_pod_step_succeeds(
    operator: &dyn StepOperator,
    target: &StepOperatorTarget,
) -> Check {
    let extra = target.multi_pod_settings.clone().ok_or(
        "the operator declares `multi_pod`: give the target the settings for two pods \
         (`StepOperatorTarget::with_multi_pod_settings`)",
    )?;
    let mut settings = target.settings.clone();
    if let (Some(base), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    let launch = target
        .launch("multi-pod", "echo one of several")
        .with_settings(settings);
    let handle = submit(operator, launch).await?;
    let outcome = wait(operator, &handle, target).await?;
    ensure!(
        outcome.is_success(),
        "a multi-pod step must succeed, got {outcome:?}"
    );
    Ok(())
}

async fn submit(operator: &dyn StepOperator, launch: StepLaunch) -> Result<StepHandle, String> {
    let step = launch.step_name.clone();
    let handle = operator
        .submit(launch)
        .await
        .map_err(|e| format!("submitting step `{step}` failed: {e}"))?;
    ensure!(
        handle.flavor == operator.flavor(),
        "the handle must name the operator's flavor `{}`, not `{}`",
        operator.flavor(),
        handle.flavor
    );
    Ok(handle)
}

async fn wait(
    operator: &dyn StepOperator,
    handle: &StepHandle,
    target: &StepOperatorTarget,
) -> Result<StepOutcome, String> {
    match tokio::time::timeout(target.step_timeout, operator.wait(handle)).await {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(e)) => Err(format!(
            "waiting for step `{}` failed: {e}",
            handle.step_name
        )),
        Err(_) => Err(format!(
            "step `{}` did not finish within {:?}",
            handle.step_name, target.step_timeout
        )),
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

#[cfg(test)]
mod tests {
    //! The runner itself, against a deliberately broken operator: every check runs, a
    //! panic fails only its own check, and undeclared capabilities are skipped.

    use async_trait::async_trait;

    use super::*;
    use crate::Result;

    /// Claims logs and cancel; every step "succeeds" at once, and cancel panics.
    #[derive(Debug)]
    struct Broken;

    #[async_trait]
    impl StepOperator for Broken {
        fn flavor(&self) -> &str {
            "broken"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::none().with_logs().with_cancel()
        }
        async fn submit(&self, launch: StepLaunch) -> Result<StepHandle> {
            Ok(StepHandle::new("broken", &launch, serde_json::Value::Null))
        }
        async fn wait(&self, _: &StepHandle) -> Result<StepOutcome> {
            Ok(StepOutcome::Succeeded { attempts: 1 })
        }
        async fn status(&self, handle: &StepHandle) -> Result<StepStatus> {
            // The step to be cancelled runs; every other one has (supposedly) succeeded.
            Ok(if handle.step_name == "cancelled" {
                StepStatus::Running
            } else {
                StepStatus::Succeeded
            })
        }
        async fn cancel(&self, _: &StepHandle) -> Result<()> {
            panic!("cancel is not implemented");
        }
    }

    #[tokio::test]
    async fn every_check_runs_and_reports_on_its_own() {
        let report = check_step_operator(&Broken, &StepOperatorTarget::new("any")).await;
        let outcome = |name| report.outcome(name).cloned();
        assert_eq!(
            outcome("succeeding_step_succeeds"),
            Some(CheckOutcome::Passed)
        );
        assert!(
            matches!(outcome("failing_step_reports_its_exit_code"), Some(CheckOutcome::Failed(why)) if why.contains("must fail")),
            "{report}"
        );
        // Declared, but the default `logs` says Unsupported.
        assert!(
            matches!(
                outcome("logs_hold_every_line_once"),
                Some(CheckOutcome::Failed(_))
            ),
            "{report}"
        );
        assert!(
            matches!(outcome("cancel_stops_a_running_step"), Some(CheckOutcome::Failed(why)) if why.contains("panicked: cancel is not implemented")),
            "{report}"
        );
        for skipped in [
            "handle_survives_serialization",
            "timings_account_for_the_step",
            "multi_pod_step_succeeds",
        ] {
            assert!(
                matches!(outcome(skipped), Some(CheckOutcome::Skipped(_))),
                "{skipped}: {report}"
            );
        }
        assert_eq!(report.checks.len(), 7);
        assert_eq!(report.failures().count(), 3);
        let text = report.to_string();
        assert!(
            text.contains("FAIL cancel_stops_a_running_step: panicked"),
            "{text}"
        );
        assert!(
            text.contains("SKIP multi_pod_step_succeeds: capability `multi_pod` not declared"),
            "{text}"
        );
    }
}
