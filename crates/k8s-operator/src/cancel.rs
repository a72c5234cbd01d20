//! Cancelling a step: delete every attempt's Job with foreground propagation, so its
//! pods (and Service and Secret, which the Job owns) go with it. Idempotent.

use stepstack_core::{Result, StepHandle};

use crate::api::{ApiError, Call, encode};
use crate::handle::KubernetesHandle;
use crate::jobs::{foreground, jobs_path};
use crate::labels::STEP_RUN_LABEL;
use crate::state::Inner;

/// Deletes every Job of the step run of `handle`.
pub(crate) async fn cancel(inner: &Inner, handle: &StepHandle) -> Result<()> {
    let data = KubernetesHandle::from_handle(handle)?;
    let api = inner.api_for(&data).await?;
    let calls = data.policy.calls();
    let selector = format!("{STEP_RUN_LABEL}={}", data.step_run_label);
    let call = Call::delete(
        format!(
            "delete the Jobs of step run {} in {}",
            data.step_run_label, data.namespace
        ),
        format!(
            "{}?labelSelector={}",
            jobs_path(&data.namespace),
            encode(&selector)
        ),
        &foreground(),
    );
    match api.bytes(&call, calls).await {
        Ok(_) => {}
        Err(err) if err.code() == Some(404) => {}
        Err(err) => {
            return Err(ApiError::into_core(err)
                .with_context("namespace", data.namespace.clone())
                .with_context("job", data.job_name.clone()));
        }
    }
    inner.record_cancelled(handle, &data.step_run_label);
    tracing::info!(namespace = %data.namespace, job = %data.job_name, step = %handle.step_name, "cancelled step");
    Ok(())
}
