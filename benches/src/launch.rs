//! Launch latency and detection latency through the public operator API.

use std::time::Instant;

use stepstack_core::{StepLaunch, StepOperator};

use crate::env::{Bench, IMAGE};

/// One trivial step: milliseconds from `submit` to the outcome, and from the emulator
/// marking the pod finished to `wait` returning (when the pod was seen finishing).
pub(crate) async fn launch(
    bench: &Bench,
    operator: &dyn StepOperator,
    i: usize,
) -> anyhow::Result<(f64, Option<f64>)> {
    let launch = StepLaunch::new("bench", format!("launch-{i}"), IMAGE, ["true"]);
    let id = launch.step_run_id.clone();
    let start = Instant::now();
    let outcome = operator.launch(launch).await?;
    let returned = Instant::now();
    anyhow::ensure!(outcome.is_success(), "a trivial step failed: {outcome:?}");
    let latency = returned.duration_since(start).as_secs_f64() * 1000.0;
    let detection = bench
        .finished_at(&id)
        .map(|finished| returned.saturating_duration_since(finished).as_secs_f64() * 1000.0);
    Ok((latency, detection))
}
