//! Where a step's time went: waiting for a node, starting, running.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a step's time went, from the cluster's own timestamps (whole seconds on most
/// clusters). Phases not reached yet are `None`; a phase still under way counts up to now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepTimings {
    /// From the last attempt's submission until its pod was bound to a node: the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for_node_seconds: Option<f64>,
    /// From binding until the container started: image pull and volume setup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_seconds: Option<f64>,
    /// From the container's start until it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_seconds: Option<f64>,
    /// From the first attempt's submission until the last one finished, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_seconds: Option<f64>,
}

impl StepTimings {
    /// Timings with each phase given (in seconds), `None` for phases not reached.
    pub fn new(
        waiting_for_node: Option<f64>,
        starting: Option<f64>,
        running: Option<f64>,
        total: Option<f64>,
    ) -> Self {
        StepTimings {
            waiting_for_node_seconds: waiting_for_node,
            starting_seconds: starting,
            running_seconds: running,
            total_seconds: total,
        }
    }
}

/// `5.3 s in total: 1.2 s waiting for a node, 0.4 s starting, 3.7 s running`; whole
/// seconds print without a fraction (`6 s in total: <1 s starting, …`), since the
/// cluster's timestamps rarely say more.
impl fmt::Display for StepTimings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phases: Vec<String> = [
            (self.waiting_for_node_seconds, "waiting for a node"),
            (self.starting_seconds, "starting"),
            (self.running_seconds, "running"),
        ]
        .into_iter()
        .filter_map(|(seconds, what)| seconds.map(|s| format!("{} {what}", seconds_text(s))))
        .collect();
        match (self.total_seconds, phases.is_empty()) {
            (Some(total), true) => write!(f, "{} in total", seconds_text(total)),
            (Some(total), false) => {
                write!(f, "{} in total: {}", seconds_text(total), phases.join(", "))
            }
            (None, _) => write!(f, "{}", phases.join(", ")),
        }
    }
}

/// Shows no more precision than the value has: most clusters stamp whole seconds, so
/// `3.0` is "3 s" (not "3.0 s") and `0.0` is "<1 s" (the two stamps fell in the same
/// second); only a value with a fraction (a phase measured up to now) shows tenths.
fn seconds_text(seconds: f64) -> String {
    if seconds >= 60.0 {
        let whole = seconds.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else if seconds.fract() == 0.0 {
        if seconds < 1.0 {
            "<1 s".to_owned()
        } else {
            format!("{seconds:.0} s")
        }
    } else {
        format!("{seconds:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_phases_reached() {
        let all = StepTimings::new(Some(1.2), Some(0.4), Some(95.0), Some(96.6));
        assert_eq!(
            all.to_string(),
            "1m37s in total: 1.2 s waiting for a node, 0.4 s starting, 1m35s running"
        );
        let queued = StepTimings::new(Some(30.5), None, None, Some(30.5));
        assert_eq!(
            queued.to_string(),
            "30.5 s in total: 30.5 s waiting for a node"
        );
    }

    #[test]
    fn whole_seconds_show_no_invented_tenths() {
        // Kubernetes timestamps have whole seconds: the differences are whole too.
        let t = StepTimings::new(Some(1.0), Some(0.0), Some(3.0), Some(4.0));
        assert_eq!(
            t.to_string(),
            "4 s in total: 1 s waiting for a node, <1 s starting, 3 s running"
        );
        for whole in 1..60u32 {
            let text = StepTimings::new(None, None, None, Some(f64::from(whole))).to_string();
            assert_eq!(text, format!("{whole} s in total"));
        }
    }

    #[test]
    fn json_leaves_out_phases_not_reached() {
        let queued = StepTimings::new(Some(3.0), None, None, Some(3.0));
        assert_eq!(
            serde_json::to_value(&queued).unwrap(),
            serde_json::json!({"waiting_for_node_seconds": 3.0, "total_seconds": 3.0})
        );
    }
}
