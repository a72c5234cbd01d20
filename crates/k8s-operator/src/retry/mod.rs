//! Which failed attempts are retried, on which budget, and after how long.
//!
//! Step failures (the step's own code: a non-zero exit, an OOM kill, an unknown Job
//! failure) follow the retry policy (`retry`); infrastructure failures (eviction,
//! preemption, node loss) use their own budget (`infrastructure_retry`) and never use
//! up the step's retries. Configuration problems (image pulls, container config,
//! scheduling, create failures, deadlines) and cancellations are never retried: the
//! next attempt would fail the same way.
//!
//! [`job`] builds the Job of the next attempt.

pub(crate) mod job;

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use stepstack_core::FailureReason;
use stepstack_settings::{InfrastructureRetryBudget, StepRetryPolicy};

/// Longest delay between two attempts on the infrastructure budget.
const MAX_INFRA_DELAY: Duration = Duration::from_secs(300);

/// Which budget a failure is retried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryClass {
    /// The step's own code failed: `retry`.
    Step,
    /// The infrastructure failed: `infrastructure_retry`.
    Infrastructure,
    /// Retrying cannot help.
    Never,
}

/// The budget a failure with `reason` is retried on.
pub(crate) fn classify(reason: &FailureReason) -> RetryClass {
    if reason.is_infrastructure() {
        return RetryClass::Infrastructure;
    }
    match reason {
        FailureReason::NonZeroExit { .. } | FailureReason::OomKilled | FailureReason::Unknown => {
            RetryClass::Step
        }
        _ => RetryClass::Never,
    }
}

/// Retries used so far, carried on each attempt's Job (annotation) so another process
/// continues with the same budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RetryCounts {
    /// Retries used on the step budget.
    pub(crate) step: u32,
    /// Retries used on the infrastructure budget.
    pub(crate) infrastructure: u32,
}

/// The retry policy and the infrastructure budget of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub(crate) struct RetryPlan {
    /// For step failures.
    pub(crate) step: StepRetryPolicy,
    /// For infrastructure failures.
    pub(crate) infrastructure: InfrastructureRetryBudget,
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryDecision {
    /// Start a new attempt after `delay`, with the budgets used so far in `counts`.
    Retry {
        /// Budgets used including this retry.
        counts: RetryCounts,
        /// How long to wait before the next attempt.
        delay: Duration,
    },
    /// The step has failed for good.
    GiveUp,
}

impl RetryPlan {
    /// Whether (and when) to retry after a failure with `reason`, given what was used.
    pub(crate) fn decide(&self, reason: &FailureReason, used: RetryCounts) -> RetryDecision {
        match classify(reason) {
            RetryClass::Step if used.step < self.step.max_retries => {
                let counts = RetryCounts {
                    step: used.step + 1,
                    ..used
                };
                RetryDecision::Retry {
                    counts,
                    delay: jitter(self.step_delay(counts.step)),
                }
            }
            RetryClass::Infrastructure if used.infrastructure < self.infrastructure.max_retries => {
                let counts = RetryCounts {
                    infrastructure: used.infrastructure + 1,
                    ..used
                };
                RetryDecision::Retry {
                    counts,
                    delay: jitter(self.infrastructure_delay(counts.infrastructure)),
                }
            }
            _ => RetryDecision::GiveUp,
        }
    }

    /// The delay before the `n`-th step retry (1-based), before jitter:
    /// `delay_seconds × backoff^(n-1)`, capped at `max_delay_seconds`.
    pub(crate) fn step_delay(&self, n: u32) -> Duration {
        let policy = &self.step;
        let factor = policy
            .backoff
            .max(1.0)
            .powi(n.saturating_sub(1).min(64) as i32);
        let seconds = (policy.delay_seconds as f64 * factor).min(policy.max_delay_seconds as f64);
        Duration::try_from_secs_f64(seconds.max(0.0))
            .unwrap_or(Duration::from_secs(policy.max_delay_seconds))
    }

    /// The delay before the `n`-th infrastructure retry (1-based), before jitter:
    /// `delay_seconds × 2^(n-1)`, capped at 5 minutes.
    pub(crate) fn infrastructure_delay(&self, n: u32) -> Duration {
        Duration::from_secs(self.infrastructure.delay_seconds)
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(16)))
            .min(MAX_INFRA_DELAY.max(Duration::from_secs(self.infrastructure.delay_seconds)))
    }
}

/// A random duration between half of `base` and `base`, so retries of many steps do not
/// hit the cluster at the same moment.
pub(crate) fn jitter(base: Duration) -> Duration {
    if base.is_zero() {
        return base;
    }
    let factor: f64 = rand::rng().random_range(0.5..=1.0);
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(step_retries: u32, infra_retries: u32) -> RetryPlan {
        RetryPlan {
            step: StepRetryPolicy {
                max_retries: step_retries,
                delay_seconds: 10,
                backoff: 2.0,
                max_delay_seconds: 30,
            },
            infrastructure: InfrastructureRetryBudget {
                max_retries: infra_retries,
                delay_seconds: 5,
            },
        }
    }

    #[test]
    fn reasons_are_classified_by_budget() {
        assert_eq!(
            classify(&FailureReason::NonZeroExit { code: 1 }),
            RetryClass::Step
        );
        assert_eq!(classify(&FailureReason::OomKilled), RetryClass::Step);
        assert_eq!(
            classify(&FailureReason::Evicted),
            RetryClass::Infrastructure
        );
        assert_eq!(
            classify(&FailureReason::Preempted),
            RetryClass::Infrastructure
        );
        assert_eq!(
            classify(&FailureReason::NodeLost),
            RetryClass::Infrastructure
        );
        for never in [
            FailureReason::Cancelled,
            FailureReason::DeadlineExceeded,
            FailureReason::ImagePull {
                waiting_reason: "ErrImagePull".into(),
            },
            FailureReason::Unschedulable {
                message: "x".into(),
            },
            FailureReason::CreateFailed {
                api_reason: "Invalid".into(),
            },
        ] {
            assert_eq!(classify(&never), RetryClass::Never, "{never}");
        }
    }

    #[test]
    fn step_failures_use_the_step_budget_only() {
        let plan = plan(2, 1);
        let exit = FailureReason::NonZeroExit { code: 3 };
        let mut used = RetryCounts::default();
        for expected in 1..=2 {
            match plan.decide(&exit, used) {
                RetryDecision::Retry { counts, delay } => {
                    assert_eq!(counts.step, expected);
                    assert_eq!(counts.infrastructure, 0);
                    let base = plan.step_delay(expected);
                    assert!(delay <= base && delay >= base / 2);
                    used = counts;
                }
                RetryDecision::GiveUp => panic!("retry {expected} expected"),
            }
        }
        assert_eq!(plan.decide(&exit, used), RetryDecision::GiveUp);
        // The infrastructure budget is still there.
        assert!(matches!(
            plan.decide(&FailureReason::Evicted, used),
            RetryDecision::Retry { .. }
        ));
    }

    #[test]
    fn infrastructure_failures_do_not_use_step_retries() {
        let plan = plan(0, 2);
        let mut used = RetryCounts::default();
        for _ in 0..2 {
            match plan.decide(&FailureReason::NodeLost, used) {
                RetryDecision::Retry { counts, .. } => used = counts,
                RetryDecision::GiveUp => panic!("infrastructure retry expected"),
            }
        }
        assert_eq!(
            used,
            RetryCounts {
                step: 0,
                infrastructure: 2
            }
        );
        assert_eq!(
            plan.decide(&FailureReason::Evicted, used),
            RetryDecision::GiveUp
        );
        assert_eq!(
            plan.decide(&FailureReason::NonZeroExit { code: 1 }, used),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn delays_back_off_and_are_capped() {
        let plan = plan(5, 5);
        assert_eq!(plan.step_delay(1), Duration::from_secs(10));
        assert_eq!(plan.step_delay(2), Duration::from_secs(20));
        assert_eq!(plan.step_delay(3), Duration::from_secs(30));
        assert_eq!(plan.step_delay(9), Duration::from_secs(30));
        assert_eq!(plan.infrastructure_delay(1), Duration::from_secs(5));
        assert_eq!(plan.infrastructure_delay(3), Duration::from_secs(20));
        assert_eq!(plan.infrastructure_delay(30), Duration::from_secs(300));
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
