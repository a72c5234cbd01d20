//! [`KubernetesStepOperator`]: the [`StepOperator`] of the `kubernetes` flavor.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use stepstack_core::{
    Capabilities, Error, ErrorKind, FailureReason, LogLine, LogStream, Result, StepFailure,
    StepHandle, StepLaunch, StepOperator, StepOperatorContext, StepOutcome, StepStatus,
    StepTimings,
};
use stepstack_settings::{
    KubernetesStepOperatorConfig, KubernetesStepOperatorSettings, parse_settings,
};

use crate::api::{Api, CallPolicy};
use crate::client::{ClientSource, Clients};
use crate::handle::KubernetesHandle;
use crate::watch::{NamespaceWatch, WatchHub};

/// Runs each step as a Kubernetes Job and follows it through one shared watch per
/// namespace. Build it with [`KubernetesStepOperator::new`] or through the flavor
/// ([`crate::KubernetesStepOperatorFlavor`]); share one instance (it is cheap to clone)
/// between all the steps of a process so they share the watch.
#[derive(Clone)]
pub struct KubernetesStepOperator {
    pub(crate) inner: Arc<Inner>,
}

/// The operator's state, shared by its clones.
pub(crate) struct Inner {
    pub(crate) component: String,
    pub(crate) config: KubernetesStepOperatorConfig,
    pub(crate) clients: Clients,
    pub(crate) hub: WatchHub,
    pub(crate) state_dir: Option<PathBuf>,
    /// Service accounts known to exist, as (namespace, name).
    pub(crate) service_accounts: Mutex<HashSet<(String, String)>>,
    pub(crate) log_files: crate::logs::LogFiles,
    /// Step runs (label values) this operator cancelled.
    pub(crate) cancelled: Mutex<HashSet<String>>,
    /// Jobs this operator created (so a waiter knows the watch will deliver them).
    pub(crate) submitted: Mutex<HashSet<String>>,
    /// Namespaces whose orphaned Secrets this operator has looked for.
    pub(crate) swept_namespaces: Mutex<HashSet<String>>,
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
            inner: Arc::new(Inner {
                component: context.component_name.clone(),
                config,
                clients: Clients::new(source),
                hub: WatchHub::default(),
                state_dir: context.state_dir.clone(),
                service_accounts: Mutex::new(HashSet::new()),
                swept_namespaces: Mutex::new(HashSet::new()),
                log_files: crate::logs::LogFiles::default(),
                cancelled: Mutex::new(HashSet::new()),
                submitted: Mutex::new(HashSet::new()),
            }),
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

impl Inner {
    pub(crate) fn effective_settings(
        &self,
        launch: &StepLaunch,
    ) -> Result<KubernetesStepOperatorSettings> {
        let mut merged = serde_json::to_value(&self.config.settings).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                "the component settings cannot be serialized",
            )
            .with_source(e)
        })?;
        merge(&mut merged, launch.settings.clone());
        parse_settings(&merged, "step_operator").map_err(|report| {
            Error::new(ErrorKind::InvalidSettings, report.to_string())
                .with_context("flavor", crate::FLAVOR)
                .with_context("step", launch.step_name.clone())
        })
    }

    /// The API client and the cluster URL.
    pub(crate) async fn api(&self) -> Result<(&Api, &str)> {
        let (api, url) = self.clients.get().await?;
        Ok((api, url.as_str()))
    }

    /// The API client for `handle`, checking that it belongs to this operator's cluster.
    pub(crate) async fn api_for(&self, handle: &KubernetesHandle) -> Result<&Api> {
        let (api, url) = self.api().await?;
        if handle.cluster != url {
            return Err(Error::new(
                ErrorKind::InvalidSettings,
                format!(
                    "the step runs on cluster {} but this operator is connected to {url}; use an operator linked to that cluster",
                    handle.cluster
                ),
            )
            .with_context("namespace", handle.namespace.clone()));
        }
        Ok(api)
    }

    /// The shared watch of `namespace`, with its initial list done.
    pub(crate) async fn watch(
        &self,
        api: &Api,
        namespace: &str,
        calls: CallPolicy,
    ) -> Result<Arc<NamespaceWatch>> {
        let watch = self.hub.namespace(api, namespace);
        let budget = calls
            .timeout
            .saturating_mul(calls.max_retries.saturating_add(1));
        watch.ready(budget).await?;
        Ok(watch)
    }
}

/// Merges `over` into `base`: maps key by key, everything else replaced.
fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
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
        match self.submit(launch).await {
            Ok(handle) => self.wait(&handle).await,
            Err(err) if crate::submit::is_create_rejection(&err) => {
                let api_reason = err
                    .context_value("api_reason")
                    .unwrap_or("Unknown")
                    .to_owned();
                Ok(StepOutcome::Failed(StepFailure::new(
                    FailureReason::CreateFailed { api_reason },
                    err.to_string(),
                )))
            }
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_maps_key_by_key_and_replaces_the_rest() {
        let mut base = json!({"a": {"x": 1, "y": [1, 2]}, "b": 1});
        merge(&mut base, json!({"a": {"y": [3], "z": true}, "c": "new"}));
        assert_eq!(
            base,
            json!({"a": {"x": 1, "y": [3], "z": true}, "b": 1, "c": "new"})
        );
    }

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
