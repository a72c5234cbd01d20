//! The `kubernetes` step-operator flavor: schemas, strict configuration checks and
//! construction from validated configuration.

use std::sync::Arc;

use stepstack_core::{
    Error, ErrorKind, Registry, Result, StepOperator, StepOperatorContext, StepOperatorFlavor,
};
use stepstack_settings::{config_schema, parse_config, settings_schema};

use crate::KubernetesStepOperator;

/// The `kubernetes` flavor. Register it with [`crate::register`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KubernetesStepOperatorFlavor;

impl StepOperatorFlavor for KubernetesStepOperatorFlavor {
    fn name(&self) -> &str {
        crate::FLAVOR
    }

    fn description(&self) -> &str {
        "Runs each step as a Kubernetes Job, with typed failures, retries, logs and reattach"
    }

    fn config_schema(&self) -> serde_json::Value {
        config_schema()
    }

    fn settings_schema(&self) -> serde_json::Value {
        settings_schema()
    }

    fn connector_resource_type(&self) -> Option<&str> {
        Some("kubernetes-cluster")
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
        let parsed = parse_config(config, "").map_err(|report| {
            Error::new(ErrorKind::InvalidSettings, report.to_string())
                .with_context("flavor", crate::FLAVOR)
        })?;
        serde_json::to_value(parsed).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                "the validated configuration cannot be serialized",
            )
            .with_source(e)
        })
    }

    fn build(
        &self,
        config: &serde_json::Value,
        context: StepOperatorContext,
    ) -> Result<Arc<dyn StepOperator>> {
        let parsed = parse_config(config, "").map_err(|report| {
            Error::new(ErrorKind::InvalidSettings, report.to_string())
                .with_context("flavor", crate::FLAVOR)
                .with_context("component", context.component_name.clone())
        })?;
        Ok(Arc::new(KubernetesStepOperator::new(parsed, context)))
    }
}

/// Adds the `kubernetes` step-operator flavor to `registry`.
pub fn register(registry: &mut Registry) -> Result<()> {
    registry.register_step_operator(KubernetesStepOperatorFlavor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registers_and_validates_strictly() {
        let mut registry = Registry::new();
        register(&mut registry).unwrap();
        let flavor = registry.step_operator("kubernetes").unwrap();
        assert_eq!(flavor.connector_resource_type(), Some("kubernetes-cluster"));
        let ok = flavor
            .validate_config(&json!({"kubernetes_namespace": "ml"}))
            .unwrap();
        assert_eq!(ok["kubernetes_namespace"], "ml");
        let err = flavor
            .validate_config(&json!({"kubernetes_namespace": "Not Valid", "pod_cont": 1}))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        let text = err.to_string();
        assert!(
            text.contains("kubernetes_namespace") && text.contains("pod_cont"),
            "{text}"
        );
        assert!(flavor.config_schema().is_object() && flavor.settings_schema().is_object());
        let op = flavor.build(&ok, StepOperatorContext::new("k8s")).unwrap();
        assert_eq!(op.flavor(), "kubernetes");
        assert!(register(&mut registry).is_err());
    }
}
