//! The `local-process` flavor: its configuration and constructor.

use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stepstack_core::{
    Error, ErrorKind, Result, StepOperator, StepOperatorContext, StepOperatorFlavor,
};

use crate::LocalProcessOperator;

/// The `local-process` flavor's component configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalProcessConfig {
    /// Where step logs and exit statuses are kept; defaults to the component's state
    /// directory, or a directory under the system's temporary directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

/// The `local-process` step-operator flavor.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalProcessFlavor;

impl StepOperatorFlavor for LocalProcessFlavor {
    fn name(&self) -> &str {
        "local-process"
    }

    fn description(&self) -> &str {
        "runs each step's command as a process on this machine (an example third-party flavor)"
    }

    fn config_schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(LocalProcessConfig)).unwrap_or_default()
    }

    fn settings_schema(&self) -> serde_json::Value {
        serde_json::json!({"type": "object", "additionalProperties": false})
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
        let parsed: LocalProcessConfig = serde_json::from_value(config.clone()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidSettings,
                format!("invalid local-process configuration: {e}"),
            )
            .with_context("flavor", "local-process")
        })?;
        serde_json::to_value(parsed).map_err(|e| {
            Error::new(ErrorKind::Internal, "could not serialize the configuration").with_source(e)
        })
    }

    fn build(
        &self,
        config: &serde_json::Value,
        context: StepOperatorContext,
    ) -> Result<Arc<dyn StepOperator>> {
        let config: LocalProcessConfig = serde_json::from_value(self.validate_config(config)?)
            .map_err(|e| {
                Error::new(ErrorKind::Internal, "validated configuration did not parse")
                    .with_source(e)
            })?;
        let state_dir = config
            .state_dir
            .or(context.state_dir)
            .unwrap_or_else(|| std::env::temp_dir().join("stepstack-local-process"));
        Ok(Arc::new(LocalProcessOperator::new(state_dir)))
    }
}
