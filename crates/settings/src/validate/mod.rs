//! Strict validation of settings documents: every problem, each with its full path.
//!
//! Three passes: key normalisation (`additional_pod_spec_args` snake_case → camelCase),
//! the structural walk against the strict JSON Schema ([`structure`]), and the
//! Kubernetes rules on the typed value ([`rules`]). Problems below a value that already
//! failed structurally are not reported twice.

pub(crate) mod affinity;
pub(crate) mod k8s_names;
pub(crate) mod rules;
pub(crate) mod structure;
pub(crate) mod suggest;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{IssueKind, Path, ValidationReport, is_under};
use crate::resources::ResourceSettings;
use crate::schema::{POD_SPEC_DEF, config_schema_ref, settings_schema_ref, snake_to_camel};
use crate::step_operator::{KubernetesStepOperatorConfig, KubernetesStepOperatorSettings};

pub use rules::{
    MAX_INDEXED_POD_COUNT, RESERVED_LABEL_KEYS, RESERVED_LABEL_PREFIX, is_reserved_label_key,
};

/// The warnings of a raw settings or configuration document (a float
/// `api_request_timeout`, deprecated fields), each at its path below `prefix`. They are
/// not errors; [`crate::SettingsLayers::resolve`] logs them once per layer, and callers
/// that check a document on its own (`settings validate`) show them.
pub fn settings_warnings(value: &Value, prefix: &str) -> Vec<crate::Issue> {
    warnings(value, prefix)
}

pub(crate) fn warnings(value: &Value, prefix: &str) -> Vec<crate::Issue> {
    let path = Path::new(prefix);
    let mut found = Vec::new();
    let Some(map) = value.as_object() else {
        return found;
    };
    if let Some(timeout) = map.get("api_request_timeout").and_then(Value::as_f64)
        && timeout.fract() != 0.0
    {
        found.push(crate::Issue {
            path: path.key("api_request_timeout").to_string(),
            message: format!(
                "{timeout} is truncated to {} seconds; give whole seconds",
                timeout.trunc()
            ),
            kind: IssueKind::InvalidValue,
        });
    }
    for field in crate::step_operator::DEPRECATED_FIELDS {
        if map.get(field).is_some_and(|v| !v.is_null()) {
            found.push(crate::Issue {
                path: path.key(field).to_string(),
                message: format!(
                    "`{field}` is deprecated and has no effect; use scheduling_timeout, startup_timeout, retry or infrastructure_retry"
                ),
                kind: IssueKind::InvalidValue,
            });
        }
    }
    found
}

/// The result of the structural pass over one document.
pub(crate) struct Structural {
    pub(crate) report: ValidationReport,
    pub(crate) poisoned: Vec<String>,
}

/// Normalises and structurally checks `value` in place against `schema`.
pub(crate) fn check_structure(value: &mut Value, schema: &Value, prefix: &str) -> Structural {
    let path = Path::new(prefix);
    let mut report = ValidationReport::default();
    if let Some(pod_settings) = value.get_mut("pod_settings") {
        normalize_pod_spec_args(pod_settings, &path.key("pod_settings"), schema, &mut report);
    }
    let mut walker = structure::Walker::new(schema);
    walker.walk(schema, value, &path, 0, false);
    report.issues.extend(walker.report.issues);
    Structural {
        report,
        poisoned: walker.poisoned,
    }
}

/// Renames snake_case `additional_pod_spec_args` keys to their camelCase `PodSpec`
/// names and drops `null` values (ZenML skips them).
pub(crate) fn normalize_pod_spec_args(
    pod_settings: &mut Value,
    path: &Path,
    schema: &Value,
    report: &mut ValidationReport,
) {
    let Some(args) = pod_settings
        .get_mut("additional_pod_spec_args")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let known = schema
        .pointer(&format!(
            "/$defs/{}/properties",
            POD_SPEC_DEF.replace('~', "~0").replace('/', "~1")
        ))
        .and_then(Value::as_object);
    let old = std::mem::take(args);
    let mut renamed = Map::new();
    for (key, v) in old {
        if v.is_null() {
            continue;
        }
        let camel = snake_to_camel(&key);
        let target = if key.contains('_') && known.is_some_and(|k| k.contains_key(&camel)) {
            camel
        } else {
            key.clone()
        };
        if renamed.contains_key(&target) {
            report.push(
                path.key("additional_pod_spec_args").key(&key).to_string(),
                IssueKind::InvalidValue,
                format!("`{target}` is given twice (camelCase and snake_case); keep one"),
            );
            continue;
        }
        renamed.insert(target, v);
    }
    *args = renamed;
}

fn deserialize<T: DeserializeOwned>(
    value: Value,
    prefix: &str,
    report: &mut ValidationReport,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let path = match (prefix.is_empty(), inner.as_str()) {
                (_, ".") => prefix.to_string(),
                (true, p) => p.to_string(),
                (false, p) => format!("{prefix}.{p}"),
            };
            report.push(path, IssueKind::WrongType, e.into_inner().to_string());
            None
        }
    }
}

fn finish(
    mut report: ValidationReport,
    poisoned: &[String],
    semantic: ValidationReport,
) -> Result<(), ValidationReport> {
    report.issues.extend(
        semantic
            .issues
            .into_iter()
            .filter(|i| !poisoned.iter().any(|p| is_under(&i.path, p))),
    );
    report.into_result()
}

/// Parses and strictly validates a step-operator settings document (the value of
/// `settings.step_operator`). `prefix` is prepended to every path in the report, e.g.
/// `steps.trainer.settings.step_operator`.
///
/// ```
/// use serde_json::json;
/// let err = stepstack_settings::parse_settings(
///     &json!({"pod_settings": {"tolerations": [{"key": "gpu", "toleration_seconds": 5}]}}),
///     "steps.trainer.settings.step_operator",
/// )
/// .unwrap_err();
/// assert_eq!(
///     err.issues[0].to_string(),
///     "steps.trainer.settings.step_operator.pod_settings.tolerations[0].toleration_seconds: \
///      unknown field, did you mean tolerationSeconds?"
/// );
/// ```
pub fn parse_settings(
    value: &Value,
    prefix: &str,
) -> Result<KubernetesStepOperatorSettings, ValidationReport> {
    let mut value = value.clone();
    let Structural {
        mut report,
        poisoned,
    } = check_structure(&mut value, settings_schema_ref(), prefix);
    let typed: Option<KubernetesStepOperatorSettings> = deserialize(value, prefix, &mut report);
    let mut semantic = ValidationReport::default();
    if let Some(s) = &typed {
        rules::check_settings(s, &Path::new(prefix), &mut semantic);
    }
    finish(report, &poisoned, semantic)?;
    typed.ok_or_default()
}

/// Parses and strictly validates a component configuration document (settings fields
/// plus `kubernetes_namespace`, `incluster`, `kubernetes_context`).
pub fn parse_config(
    value: &Value,
    prefix: &str,
) -> Result<KubernetesStepOperatorConfig, ValidationReport> {
    let mut value = value.clone();
    let Structural {
        mut report,
        poisoned,
    } = check_structure(&mut value, config_schema_ref(), prefix);
    let typed: Option<KubernetesStepOperatorConfig> = deserialize(value, prefix, &mut report);
    let mut semantic = ValidationReport::default();
    if let Some(c) = &typed {
        let path = Path::new(prefix);
        if let Err(e) = k8s_names::check_dns1123_label(&c.kubernetes_namespace) {
            semantic.push(
                path.key("kubernetes_namespace").to_string(),
                IssueKind::InvalidValue,
                e,
            );
        }
        rules::check_settings(&c.settings, &path, &mut semantic);
    }
    finish(report, &poisoned, semantic)?;
    typed.ok_or_default()
}

/// Parses and validates ZenML-style resource settings (`cpu_count`, `gpu_count`,
/// `memory`, `gpu_vendor`).
pub fn parse_resource_settings(
    value: &Value,
    prefix: &str,
) -> Result<ResourceSettings, ValidationReport> {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let schema = SCHEMA.get_or_init(crate::schema::strict_schema_for::<ResourceSettings>);
    let mut value = value.clone();
    let mut walker = structure::Walker::new(schema);
    walker.walk(schema, &mut value, &Path::new(prefix), 0, false);
    let mut report = walker.report;
    let typed: Option<ResourceSettings> = deserialize(value, prefix, &mut report);
    if let Some(memory) = typed.as_ref().and_then(|t| t.memory.as_deref())
        && let Err(e) = crate::quantity::memory_to_quantity(memory)
    {
        report.push(
            Path::new(prefix).key("memory").to_string(),
            IssueKind::InvalidValue,
            format!("invalid memory `{memory}`: {e}"),
        );
    }
    report.into_result()?;
    typed.ok_or_default()
}

trait OkOrDefault<T> {
    fn ok_or_default(self) -> Result<T, ValidationReport>;
}

impl<T> OkOrDefault<T> for Option<T> {
    fn ok_or_default(self) -> Result<T, ValidationReport> {
        // `finish` already returned every problem; `None` here means deserialization
        // failed, which `deserialize` reported.
        self.ok_or_else(ValidationReport::default)
    }
}

impl KubernetesStepOperatorSettings {
    /// Validates settings built in Rust with the same rules as a loaded document.
    pub fn validate(&self) -> Result<(), ValidationReport> {
        self.validate_at("")
    }

    /// Like [`Self::validate`], with `prefix` prepended to every path.
    pub fn validate_at(&self, prefix: &str) -> Result<(), ValidationReport> {
        let value = serde_json::to_value(self).map_err(|e| ValidationReport {
            issues: vec![crate::error::Issue {
                path: prefix.to_string(),
                message: format!("settings cannot be serialized: {e}"),
                kind: IssueKind::WrongType,
            }],
        })?;
        parse_settings(&value, prefix).map(|_| ())
    }
}

impl KubernetesStepOperatorConfig {
    /// Validates a configuration built in Rust with the same rules as a loaded document.
    pub fn validate(&self) -> Result<(), ValidationReport> {
        let value = serde_json::to_value(self).map_err(|e| ValidationReport {
            issues: vec![crate::error::Issue {
                path: String::new(),
                message: format!("config cannot be serialized: {e}"),
                kind: IssueKind::WrongType,
            }],
        })?;
        parse_config(&value, "").map(|_| ())
    }
}
