//! The operator's shared state ([`Inner`]): its configuration, the cluster client, the
//! namespaces' watches, the state directory and what this process remembers about the
//! steps it submitted and cancelled. Every operation module takes an `&Inner`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use stepstack_core::{
    Error, ErrorKind, FailureReason, Result, StepFailure, StepHandle, StepLaunch, StepOutcome,
};
use stepstack_settings::{
    KubernetesStepOperatorConfig, KubernetesStepOperatorSettings, parse_settings,
};

use crate::api::{Api, CallPolicy};
use crate::client::Clients;
use crate::handle::KubernetesHandle;
use crate::state_dir::{self, kept_log::LogFiles};
use crate::watch::{NamespaceWatch, WatchHub};

/// The operator's state, shared by its clones.
pub(crate) struct Inner {
    pub(crate) component: String,
    pub(crate) config: KubernetesStepOperatorConfig,
    pub(crate) clients: Clients,
    pub(crate) hub: WatchHub,
    pub(crate) state_dir: Option<PathBuf>,
    /// Service accounts known to exist, as (namespace, name).
    pub(crate) service_accounts: Mutex<HashSet<(String, String)>>,
    pub(crate) log_files: LogFiles,
    /// Step runs (label values) this operator cancelled.
    pub(crate) cancelled: Mutex<HashSet<String>>,
    /// Jobs this operator created (so a waiter knows the watch will deliver them).
    pub(crate) submitted: Mutex<HashSet<String>>,
    /// Namespaces whose orphaned Secrets this operator has looked for.
    pub(crate) swept_namespaces: Mutex<HashSet<String>>,
}

impl Inner {
    /// The state of a new operator: nothing known yet.
    pub(crate) fn new(
        component: String,
        config: KubernetesStepOperatorConfig,
        clients: Clients,
        state_dir: Option<PathBuf>,
    ) -> Self {
        Inner {
            component,
            config,
            clients,
            hub: WatchHub::default(),
            state_dir,
            service_accounts: Mutex::new(HashSet::new()),
            swept_namespaces: Mutex::new(HashSet::new()),
            log_files: LogFiles::default(),
            cancelled: Mutex::new(HashSet::new()),
            submitted: Mutex::new(HashSet::new()),
        }
    }

    /// The effective settings of `launch` (see
    /// [`crate::KubernetesStepOperator::effective_settings`]).
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

    fn outcome_file(&self, handle: &StepHandle) -> Option<PathBuf> {
        state_dir::outcome_file(self.state_dir.as_deref(), &handle.step_run_id)
    }

    /// Keeps the outcome so a later `wait` or `status` still knows it after the Job is
    /// gone.
    pub(crate) fn record_outcome(&self, handle: &StepHandle, outcome: &StepOutcome) {
        if let Some(path) = self.outcome_file(handle) {
            state_dir::write_outcome(&path, outcome);
        }
    }

    /// The outcome kept for the step of `handle`, or its cancellation if this operator
    /// cancelled it.
    pub(crate) fn recorded_outcome(&self, handle: &StepHandle) -> Option<StepOutcome> {
        let from_file = self
            .outcome_file(handle)
            .and_then(|path| state_dir::read_outcome(&path));
        from_file.or_else(|| {
            let label = stepstack_settings::sanitize_label_value(&handle.step_run_id);
            self.cancelled
                .lock()
                .contains(&label)
                .then(cancelled_outcome)
        })
    }

    /// Remembers that the step of `handle` was cancelled (in memory and, with a state
    /// directory, on disk), unless its outcome is already known.
    pub(crate) fn record_cancelled(&self, handle: &StepHandle, step_run_label: &str) {
        self.cancelled.lock().insert(step_run_label.to_owned());
        let known = self.outcome_file(handle).is_some_and(|p| p.exists());
        if !known {
            self.record_outcome(handle, &cancelled_outcome());
        }
    }
}

fn cancelled_outcome() -> StepOutcome {
    StepOutcome::Failed(StepFailure::new(
        FailureReason::Cancelled,
        "the step was cancelled and its Job deleted",
    ))
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
}
