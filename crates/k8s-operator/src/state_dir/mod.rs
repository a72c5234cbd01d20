//! The operator's state directory (the stepstack home's per-component directory), in
//! one place: `logs/<step run>.jsonl` holds a step's kept log ([`kept_log`]) and
//! `outcomes/<step run>.json` its outcome once known, so `step logs`, `wait` and
//! `status` still answer after the pods and the Job are gone. Files are owner-only
//! (an outcome carries the step's last log lines).

pub(crate) mod kept_log;

use std::path::{Path, PathBuf};

use stepstack_core::StepOutcome;

/// A step-run id as a file name: anything but ASCII letters, digits, `-` and `_`
/// becomes `_`.
fn file_stem(step_run_id: &str) -> String {
    step_run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The log file of a step run, if logs are kept.
pub(crate) fn log_file(state_dir: Option<&Path>, step_run_id: &str, keep: bool) -> Option<PathBuf> {
    let dir = state_dir.filter(|_| keep)?;
    Some(
        dir.join("logs")
            .join(format!("{}.jsonl", file_stem(step_run_id))),
    )
}

/// The outcome file of a step run, if there is a state directory.
pub(crate) fn outcome_file(state_dir: Option<&Path>, step_run_id: &str) -> Option<PathBuf> {
    let dir = state_dir?;
    Some(
        dir.join("outcomes")
            .join(format!("{}.json", file_stem(step_run_id))),
    )
}

/// Keeps `outcome` in `path` (best effort: a failure is logged, the step's outcome
/// itself does not depend on it).
pub(crate) fn write_outcome(path: &Path, outcome: &StepOutcome) {
    let result = (|| -> std::io::Result<()> {
        // Owner-only: an outcome carries the step's last log lines.
        if let Some(dir) = path.parent() {
            stepstack_core::private_fs::create_dir_all(dir)?;
        }
        stepstack_core::private_fs::write(path, serde_json::to_vec(outcome)?)
    })();
    if let Err(err) = result {
        tracing::debug!(file = %path.display(), error = %err, "could not keep the step outcome");
    }
}

/// The outcome kept in `path`, if it is there and readable.
pub(crate) fn read_outcome(path: &Path) -> Option<StepOutcome> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}
