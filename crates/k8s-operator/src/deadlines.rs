//! The three budgets of a step — scheduling, startup and run — and the timers that wake
//! a waiter when one runs out (there is no polling: a waiter sleeps until the next
//! watch event or the next deadline, whichever comes first).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// Extra time given to the job controller to enforce `activeDeadlineSeconds` before
/// stepstack enforces it itself.
pub(crate) const RUN_GRACE: Duration = Duration::from_secs(10);

/// The limits an attempt is judged against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Deadlines {
    /// How long a pod may stay unscheduled (from its creation).
    pub(crate) scheduling: Option<Duration>,
    /// How long a scheduled pod may take to start `main` (from its scheduling).
    pub(crate) startup: Option<Duration>,
    /// Container waiting reasons that fail the step at once.
    pub(crate) fail_on_waiting: Vec<String>,
    /// Grace after `activeDeadlineSeconds` before stepstack fails the Job itself.
    pub(crate) run_grace: Duration,
}

impl Deadlines {
    /// The deadlines of the given settings.
    pub(crate) fn from_settings(
        settings: &stepstack_settings::KubernetesStepOperatorSettings,
    ) -> Self {
        Deadlines {
            scheduling: settings.scheduling_timeout.map(Duration::from_secs),
            startup: settings.startup_timeout.map(Duration::from_secs),
            fail_on_waiting: settings
                .fail_on_container_waiting_reasons
                .clone()
                .unwrap_or_default(),
            run_grace: RUN_GRACE,
        }
    }
}

/// `t + d`, saturating at the end of time.
pub(crate) fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// How long from now until `at` (zero if it has passed), plus a few milliseconds so the
/// waiter wakes after the deadline rather than just before it.
pub(crate) fn until(at: Timestamp) -> Duration {
    let remaining = at.duration_since(Timestamp::now());
    Duration::try_from(remaining).unwrap_or(Duration::ZERO) + Duration::from_millis(5)
}

/// Sleeps until `at`; never returns when there is no deadline.
pub(crate) async fn sleep_until(at: Option<Timestamp>) {
    match at {
        Some(at) => tokio::time::sleep(until(at)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_until() {
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            add(t, Duration::from_secs(90)).to_string(),
            "2026-01-01T00:01:30Z"
        );
        assert_eq!(add(Timestamp::MAX, Duration::from_secs(1)), Timestamp::MAX);
        assert_eq!(until(t), Duration::from_millis(5));
        assert!(until(add(Timestamp::now(), Duration::from_secs(10))) > Duration::from_secs(9));
    }
}
