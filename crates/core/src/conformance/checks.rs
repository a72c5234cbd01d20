//! What every conformance suite shares: a check's outcome, running one check (a panic
//! inside the flavor fails only that check), and the report's lines.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

/// How one named check went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckOutcome {
    /// The contract held.
    Passed,
    /// The contract was broken; the message says how.
    Failed(String),
    /// Not run, and why (a capability the operator does not declare).
    Skipped(String),
}

/// One named check of a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckResult {
    /// The check's name, e.g. `cancel_stops_a_running_step`.
    pub name: &'static str,
    /// The capability that gates it; `None` for the base contract.
    pub capability: Option<&'static str>,
    /// How it went.
    pub outcome: CheckOutcome,
}

/// What a check returns: `Err` says which contract was broken.
pub(crate) type Check = Result<(), String>;

/// Returns `Err(message)` from a check when `cond` is false.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+));
        }
    };
}
pub(crate) use ensure;

/// Runs one check and records it, turning a panic into that check's failure.
pub(crate) async fn run_check(
    checks: &mut Vec<CheckResult>,
    name: &'static str,
    capability: Option<&'static str>,
    check: impl Future<Output = Check>,
) {
    let outcome = match AssertUnwindSafe(check).catch_unwind().await {
        Ok(Ok(())) => CheckOutcome::Passed,
        Ok(Err(why)) => CheckOutcome::Failed(why),
        Err(panic) => CheckOutcome::Failed(format!("panicked: {}", panic_text(&*panic))),
    };
    checks.push(CheckResult {
        name,
        capability,
        outcome,
    });
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// The checks that failed.
pub(crate) fn failures(checks: &[CheckResult]) -> impl Iterator<Item = &CheckResult> {
    checks
        .iter()
        .filter(|c| matches!(c.outcome, CheckOutcome::Failed(_)))
}

/// The outcome of the check called `name`.
pub(crate) fn outcome<'a>(checks: &'a [CheckResult], name: &str) -> Option<&'a CheckOutcome> {
    checks.iter().find(|c| c.name == name).map(|c| &c.outcome)
}

/// One line per check: `PASS name`, `FAIL name: why`, `SKIP name: why`.
pub(crate) fn write_checks(f: &mut fmt::Formatter<'_>, checks: &[CheckResult]) -> fmt::Result {
    for check in checks {
        match &check.outcome {
            CheckOutcome::Passed => writeln!(f, "PASS {}", check.name)?,
            CheckOutcome::Failed(why) => writeln!(f, "FAIL {}: {why}", check.name)?,
            CheckOutcome::Skipped(why) => writeln!(f, "SKIP {}: {why}", check.name)?,
        }
    }
    Ok(())
}
