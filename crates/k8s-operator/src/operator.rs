//! [`KubernetesStepOperator`]: the [`StepOperator`] of the `kubernetes` flavor.

use std::sync::Arc;

use async_trait::async_trait;
use stepstack_core::{
    Capabilities, FailureReason, LogLine, LogStream, Result, StepFailure, StepHandle, StepLaunch,
    StepOperator, StepOperatorContext, StepOutcome, StepStatus, StepTimings,
};
use stepstack_settings::{KubernetesStepOperatorConfig, KubernetesStepOperatorSettings};

use crate::client::{ClientSource, Clients};
use crate::handle::KubernetesHandle;
use crate::jobs::CreateError;
use crate::state::Inner;

/// Runs each step as a Kubernetes Job and follows it through one shared watch per
/// namespace. Build it with [`KubernetesStepOperator::new`] or through the flavor
/// ([`crate::KubernetesStepOperatorFlavor`]); share one instance (it is cheap to clone)
/// between all the steps of a process so they share the watch.
#[derive(Clone)]
pub struct KubernetesStepOperator {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for KubernetesStepOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesStepOperator")
            .field("component", &self.inner.component)
            .field("namespace", &self.inner.config.kubernetes_namespace)
            .finish_non_exhaustive()
    }
}

impl KubernetesStepOperator {
    /// An operator for `config`. The cluster is chosen in ZenML's order: the in-cluster
    /// service account when `incluster` is set, else the connection of the linked
    /// service connector in `context`, else the kubeconfig context
    /// `kubernetes_context` (the current context when unset). Nothing is contacted
    /// until the first call.
    pub fn new(config: KubernetesStepOperatorConfig, context: StepOperatorContext) -> Self {
        let source = ClientSource::choose(
            config.incluster,
            context.connection.clone(),
            config.kubernetes_context.clone(),
        );
        Self::with_source(config, context, source)
    }

    /// An operator that uses `client` (whose cluster is at `cluster_url`) instead of
    /// choosing one.
    pub fn with_client(
        config: KubernetesStepOperatorConfig,
        context: StepOperatorContext,
        client: kube::Client,
        cluster_url: impl Into<String>,
    ) -> Self {
        Self::with_source(
            config,
            context,
            ClientSource::Client(client, cluster_url.into()),
        )
    }

    fn with_source(
        config: KubernetesStepOperatorConfig,
        context: StepOperatorContext,
        source: ClientSource,
    ) -> Self {
        KubernetesStepOperator {
            inner: Arc::new(Inner::new(
                context.component_name.clone(),
                config,
                Clients::new(source),
                context.state_dir.clone(),
            )),
        }
    }

    /// The component configuration.
    pub fn config(&self) -> &KubernetesStepOperatorConfig {
        &self.inner.config
    }

    /// The effective settings of `launch`: the component's settings with the launch's
    /// settings on top (maps merge key by key, other values are replaced), validated
    /// strictly; every problem is reported with its path.
    pub fn effective_settings(
        &self,
        launch: &StepLaunch,
    ) -> Result<KubernetesStepOperatorSettings> {
        self.inner.effective_settings(launch)
    }

    /// The step's log lines written after `after` (a line an earlier reader, possibly
    /// in another process, saw last): how a reattached process continues a log stream
    /// where the previous one stopped, without repeating lines.
    pub async fn logs_after(
        &self,
        handle: &StepHandle,
        follow: bool,
        after: &LogLine,
    ) -> Result<LogStream> {
        crate::logs::logs(&self.inner, handle, follow, after.timestamp).await
    }

    /// What a launcher does when it is interrupted (Ctrl-C) while following the step:
    /// cancels it (deleting its Job) unless the step's `on_interrupt` setting is `keep`.
    /// Returns whether the step was cancelled; a kept step can be reattached later with
    /// its handle.
    pub async fn interrupt(&self, handle: &StepHandle) -> Result<bool> {
        let data = KubernetesHandle::from_handle(handle)?;
        if data.policy.on_interrupt == stepstack_settings::OnInterrupt::Keep {
            tracing::info!(namespace = %data.namespace, job = %data.job_name, "interrupted; keeping the Job (on_interrupt: keep)");
            return Ok(false);
        }
        self.cancel(handle).await?;
        Ok(true)
    }

    /// The flavor data of `handle`.
    pub fn handle_data(&self, handle: &StepHandle) -> Result<KubernetesHandle> {
        KubernetesHandle::from_handle(handle)
    }
}

#[async_trait]
impl StepOperator for KubernetesStepOperator {
    fn flavor(&self) -> &str {
        crate::FLAVOR
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_logs()
            .with_cancel()
            .with_timings()
            .with_reattach()
            .with_multi_pod()
    }

    async fn planned_handle(&self, launch: &StepLaunch) -> Result<Option<StepHandle>> {
        crate::submit::plan(&self.inner, launch).await.map(Some)
    }

    async fn submit(&self, launch: StepLaunch) -> Result<StepHandle> {
        crate::submit::submit(&self.inner, launch).await
    }

    async fn wait(&self, handle: &StepHandle) -> Result<StepOutcome> {
        crate::wait::wait(&self.inner, handle).await
    }

    async fn status(&self, handle: &StepHandle) -> Result<StepStatus> {
        crate::wait::status(&self.inner, handle).await
    }

    async fn timings(&self, handle: &StepHandle) -> Result<Option<StepTimings>> {
        crate::wait::timings(&self.inner, handle).await
    }

    async fn cancel(&self, handle: &StepHandle) -> Result<()> {
        crate::cancel::cancel(&self.inner, handle).await
    }

    async fn logs(&self, handle: &StepHandle, follow: bool) -> Result<LogStream> {
        crate::logs::logs(&self.inner, handle, follow, None).await
    }

    /// Submits and waits; a step the API server refuses to create (invalid spec,
    /// exceeded quota, admission denial) ends as `CreateFailed` instead of an error.
    async fn launch(&self, launch: StepLaunch) -> Result<StepOutcome> {
        match crate::submit::submit_or_refusal(&self.inner, launch).await {
            Ok(handle) => self.wait(&handle).await,
            Err(CreateError {
                error,
                rejected: Some(api_reason),
            }) => Ok(StepOutcome::Failed(StepFailure::new(
                FailureReason::CreateFailed { api_reason },
                error.to_string(),
            ))),
            Err(err) => Err(err.error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stepstack_core::ErrorKind;

    #[test]
    fn launch_settings_override_component_settings_and_are_validated() {
        let config = KubernetesStepOperatorConfig {
            kubernetes_namespace: "ml".into(),
            ..Default::default()
        };
        let op = KubernetesStepOperator::new(config, StepOperatorContext::new("k8s"));
        let launch =
            StepLaunch::new("p", "s", "img", ["true"]).with_settings(json!({"pod_count": 2}));
        assert_eq!(op.effective_settings(&launch).unwrap().pod_count, 2);
        let bad = StepLaunch::new("p", "s", "img", ["true"]).with_settings(json!({"pod_cont": 2}));
        let err = op.effective_settings(&bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        assert!(err.to_string().contains("step_operator.pod_cont"), "{err}");
    }
}
