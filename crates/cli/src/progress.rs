//! What a submitted step is waiting for, on stderr, until it starts: a spinner on a
//! terminal, one line per new reason otherwise (CI logs keep a readable history).
//!
//! Steps that start within [`QUIET_FOR`] show nothing; the status is read from the step
//! operator (the Kubernetes operator answers from its shared watch, not with a request).

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stepstack_core::{StepHandle, StepOperator, StepStatus};

/// How often the step's status is read while it is pending.
const POLL: Duration = Duration::from_secs(1);

/// A step that starts sooner than this shows no progress at all.
const QUIET_FOR: Duration = Duration::from_secs(2);

/// The pending-step display, shared by the status poller and the log printer (which
/// clears it before the first line, so the two never interleave).
pub(crate) struct PendingProgress {
    state: Mutex<State>,
    on_terminal: bool,
}

#[derive(Default)]
struct State {
    finished: bool,
    spinner: Option<ProgressBar>,
    last_reason: Option<String>,
}

impl PendingProgress {
    /// A display on stderr: a spinner when stderr is a terminal, lines otherwise.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(PendingProgress {
            state: Mutex::new(State::default()),
            on_terminal: std::io::stderr().is_terminal(),
        })
    }

    /// Removes the spinner for good; later updates are ignored.
    pub(crate) fn finish(&self) {
        let mut state = self.state();
        state.finished = true;
        if let Some(spinner) = state.spinner.take() {
            spinner.finish_and_clear();
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shows that `step` has been pending for `waited` because of `reason`.
    fn show(&self, step: &str, waited: Duration, reason: &str) {
        let mut state = self.state();
        if state.finished {
            return;
        }
        if self.on_terminal {
            let spinner = state.spinner.get_or_insert_with(|| spinner(step, waited));
            spinner.set_message(reason.to_owned());
        } else if state.last_reason.as_deref() != Some(reason) {
            crate::output::message(&format!(
                "Step `{step}` is pending ({}s): {reason}",
                waited.as_secs()
            ));
        }
        state.last_reason = Some(reason.to_owned());
    }
}

fn spinner(step: &str, waited: Duration) -> ProgressBar {
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_elapsed(waited)
        .with_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} step `{step}` pending for {{elapsed}}: {{wide_msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

/// Shows why the step is pending until it runs, finishes or `progress` is finished.
pub(crate) async fn show_while_pending(
    progress: Arc<PendingProgress>,
    operator: Arc<dyn StepOperator>,
    handle: StepHandle,
) {
    let submitted = Instant::now();
    let mut ticks = tokio::time::interval(POLL);
    loop {
        ticks.tick().await;
        if progress.state().finished {
            return;
        }
        let status = match operator.status(&handle).await {
            Ok(status) => status,
            Err(error) => {
                // The waiter reports real failures; the display just skips a beat.
                tracing::debug!(%error, "reading the pending step's status failed");
                continue;
            }
        };
        let StepStatus::Pending { message } = status else {
            progress.finish();
            return;
        };
        let waited = submitted.elapsed();
        if waited < QUIET_FOR {
            continue;
        }
        let reason = message.unwrap_or_else(|| "waiting for the pod to start".to_owned());
        progress.show(&handle.step_name, waited, &reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_finish_nothing_more_is_shown() {
        let progress = PendingProgress::new();
        progress.show("train", Duration::from_secs(3), "0/1 nodes are available");
        progress.finish();
        progress.show("train", Duration::from_secs(4), "still waiting");
        let state = progress.state();
        assert!(state.finished);
        assert!(state.spinner.is_none());
        assert_eq!(
            state.last_reason.as_deref(),
            Some("0/1 nodes are available")
        );
    }
}
