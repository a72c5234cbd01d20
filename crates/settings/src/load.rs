//! Loading settings files (YAML, TOML or JSON) within the input limits every loader
//! shares ([`stepstack_input`]), plus `STEPSTACK_…` environment overrides.
//!
//! A file's top level is either a settings object (the fields of
//! [`crate::KubernetesStepOperatorSettings`], optionally with the component fields of
//! [`crate::KubernetesStepOperatorConfig`]) or a ZenML-style run configuration
//! (`settings: step_operator: …` and `steps: NAME: settings: step_operator: …`),
//! recognised by its keys. A run configuration's structure is checked while loading
//! (unknown keys under `steps.NAME`, a `steps` that is not a map, …), so every command
//! that loads a file judges it the same way; the settings themselves are validated by
//! [`crate::parse_settings`] or [`crate::SettingsLayers::resolve`] so that every problem
//! is reported with its full path.
//!
//! Step-operator settings in a `settings` block are keyed `step_operator` (for whichever
//! step operator runs the step), `step_operator.<flavor>` (only for that flavor, e.g.
//! `step_operator.kubernetes`) or `step_operator:<name>` (only for that component); see
//! [`SettingsTarget`]. `steps.NAME.step_operator` names the component that runs the step.
//!
//! Environment overrides use the prefix `STEPSTACK_` and `__` between keys:
//! `STEPSTACK_POD_COUNT=2`, `STEPSTACK_POD_SETTINGS__NODE_SELECTORS__POOL=gpu`,
//! `STEPSTACK_POD_SETTINGS__CONTAINER_SECURITY_CONTEXT__RUN_AS_USER=1000` (Kubernetes'
//! camelCase fields are found ignoring case and underscores; map keys such as label
//! names arrive lowercased, as environment variable names cannot say otherwise). Only
//! variables whose first key is a settings field are used (so `STEPSTACK_HOME` is not
//! mistaken for a setting). They are a layer of their own, one per variable
//! ([`crate::SettingsLayers::with_environment`]), whether or not a file is given. The
//! environment is passed in explicitly, e.g. `std::env::vars()`, so tests never touch
//! the process environment.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use serde_json::{Map, Value};
use stepstack_input::{Format, InputError, Limits};

use crate::env_case::restore_case;
use crate::error::{Issue, IssueKind, Path, ValidationReport};
use crate::layers::{Layer, SettingsLayers, merge_values};
use crate::resources::ResourceSettings;
use crate::schema::config_schema_ref;
use crate::validate::parse_resource_settings;
use crate::validate::suggest::did_you_mean;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "STEPSTACK";

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read or parsed (the source says why, with line and column).
    #[error("cannot load settings file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: InputError,
    },
    /// The file's extension is not yaml, yml, toml or json.
    #[error("cannot load settings file {path}: unknown format; use .yaml, .yml, .toml or .json")]
    UnknownFormat {
        /// The file.
        path: String,
    },
    /// The document's top level is not a map.
    #[error("{origin}: the top level must be a map of settings")]
    NotAMap {
        /// The file or source name.
        origin: String,
    },
    /// A run configuration is malformed (unknown keys under `steps.NAME`, a block that
    /// is not a map, …).
    #[error("{origin}: the run configuration {}", problems(.report))]
    RunConfig {
        /// The file or source name.
        origin: String,
        /// Every problem, with its path.
        report: ValidationReport,
    },
}

fn problems(report: &ValidationReport) -> String {
    let n = report.issues.len();
    let mut text = format!("has {n} problem{}:", if n == 1 { "" } else { "s" });
    for issue in &report.issues {
        text.push_str(&format!("\n  {issue}"));
    }
    text
}

/// Which step operators a block of step-operator settings applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsTarget {
    /// `step_operator`: whichever step operator runs the step.
    Any,
    /// `step_operator.<flavor>`: only step operators of that flavor.
    Flavor(String),
    /// `step_operator:<name>`: only the component of that name.
    Component(String),
}

impl SettingsTarget {
    /// Whether the block applies to the component `component` of flavor `flavor`.
    pub fn applies_to(&self, flavor: &str, component: &str) -> bool {
        match self {
            SettingsTarget::Any => true,
            SettingsTarget::Flavor(f) => f == flavor,
            SettingsTarget::Component(c) => c == component,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            SettingsTarget::Any => 0,
            SettingsTarget::Flavor(_) => 1,
            SettingsTarget::Component(_) => 2,
        }
    }
}

/// One block of step-operator settings in a run configuration's `settings`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOperatorSettings {
    /// The key as written (`step_operator`, `step_operator.kubernetes`, `step_operator:k8s`).
    pub key: String,
    /// Whom it applies to.
    pub target: SettingsTarget,
    /// The settings (raw, to be validated).
    pub value: Value,
}

/// Settings of one step in a run configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepDocument {
    /// `steps.NAME.step_operator`: the step operator that runs the step.
    pub step_operator: Option<String>,
    /// The step-operator settings blocks of `steps.NAME.settings`, least specific first.
    pub settings: Vec<StepOperatorSettings>,
    /// `steps.NAME.settings.resources` (raw).
    pub resources: Option<Value>,
}

/// A loaded and recognised document (not yet validated).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LoadedDocument {
    /// A step-operator settings object (may carry component fields too).
    Settings(Value),
    /// A ZenML-style run configuration.
    RunConfig {
        /// The step-operator settings blocks of the pipeline-level `settings`, least
        /// specific first.
        pipeline: Vec<StepOperatorSettings>,
        /// `settings.resources` (pipeline level).
        pipeline_resources: Option<Value>,
        /// Per-step settings, by step name.
        steps: BTreeMap<String, StepDocument>,
    },
}

/// What [`LoadedDocument::validate`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Settings objects and resource blocks checked.
    pub objects: usize,
    /// Paths of blocks for other flavors, which this check does not know.
    pub skipped: Vec<String>,
    /// Warnings (deprecated fields, a float `api_request_timeout`), with their paths.
    pub warnings: Vec<Issue>,
}

/// The keys ZenML's step configuration knows under `steps.NAME` (stepstack uses
/// `settings` and `step_operator`; the others belong to the orchestrator).
const STEP_KEYS: [&str; 20] = [
    "cache_policy",
    "enable_artifact_metadata",
    "enable_artifact_visualization",
    "enable_cache",
    "enable_step_logs",
    "environment",
    "experiment_tracker",
    "extra",
    "failure_hook_source",
    "model",
    "name",
    "outputs",
    "parameters",
    "retry",
    "secrets",
    "settings",
    "step_operator",
    "substitutions",
    "success_hook_source",
    "tags",
];

impl LoadedDocument {
    /// The path prefix of the pipeline-level step-operator settings.
    pub const PIPELINE_PREFIX: &'static str = "settings.step_operator";

    /// The path prefix of a step's step-operator settings.
    pub fn step_prefix(step: &str) -> String {
        format!("steps.{step}.settings.step_operator")
    }

    /// The step operator `steps.STEP.step_operator` names, if any.
    pub fn step_operator_of(&self, step: &str) -> Option<&str> {
        match self {
            LoadedDocument::RunConfig { steps, .. } => {
                steps.get(step).and_then(|s| s.step_operator.as_deref())
            }
            LoadedDocument::Settings(_) => None,
        }
    }

    /// Adds this document's layers for `step` run by the component `component` of
    /// flavor `flavor` to `layers`: a settings document becomes the step layer (errors
    /// prefixed with `file: `); a run configuration adds the pipeline's and the step's
    /// blocks that apply to that component, each at its run-config path.
    pub fn add_layers(
        &self,
        step: &str,
        flavor: &str,
        component: &str,
        file: &str,
        layers: SettingsLayers,
    ) -> SettingsLayers {
        match self {
            LoadedDocument::Settings(value) => {
                layers.with_layer(Layer::Step, format!("{file}: "), value.clone())
            }
            LoadedDocument::RunConfig {
                pipeline, steps, ..
            } => {
                let mut layers = layers;
                for block in pipeline
                    .iter()
                    .filter(|b| b.target.applies_to(flavor, component))
                {
                    layers = layers.with_layer(
                        Layer::Pipeline,
                        format!("settings.{}", block_path(&block.key)),
                        block.value.clone(),
                    );
                }
                let blocks = steps
                    .get(step)
                    .map(|s| s.settings.as_slice())
                    .unwrap_or(&[]);
                for block in blocks
                    .iter()
                    .filter(|b| b.target.applies_to(flavor, component))
                {
                    layers = layers.with_layer(
                        Layer::Step,
                        format!("steps.{step}.settings.{}", block_path(&block.key)),
                        block.value.clone(),
                    );
                }
                layers
            }
        }
    }

    /// Validates every settings block this build can check for step operators of
    /// `flavor` (unqualified blocks, `step_operator.<flavor>` and `step_operator:<name>`
    /// blocks) and every resources block, as `step run` would; blocks for other flavors
    /// are listed in [`Checked::skipped`].
    pub fn validate(&self, flavor: &str) -> Result<Checked, ValidationReport> {
        let mut checked = Checked::default();
        let mut report = ValidationReport::default();
        let mut check = |value: &Value, prefix: &str, checked: &mut Checked| {
            checked.objects += 1;
            checked
                .warnings
                .extend(crate::validate::warnings(value, prefix));
            if let Err(r) = crate::parse_settings(value, prefix) {
                report.issues.extend(r.issues);
            }
        };
        match self {
            LoadedDocument::Settings(value) => check(value, "", &mut checked),
            LoadedDocument::RunConfig {
                pipeline,
                pipeline_resources,
                steps,
            } => {
                let blocks = pipeline
                    .iter()
                    .map(|b| (format!("settings.{}", block_path(&b.key)), b))
                    .chain(steps.iter().flat_map(|(step, doc)| {
                        doc.settings.iter().map(move |b| {
                            (format!("steps.{step}.settings.{}", block_path(&b.key)), b)
                        })
                    }));
                for (prefix, block) in blocks {
                    if matches!(&block.target, SettingsTarget::Flavor(f) if f != flavor) {
                        checked.skipped.push(prefix);
                    } else {
                        check(&block.value, &prefix, &mut checked);
                    }
                }
                let resources = pipeline_resources
                    .iter()
                    .map(|r| ("settings.resources".to_string(), r))
                    .chain(steps.iter().filter_map(|(step, doc)| {
                        doc.resources
                            .as_ref()
                            .map(|r| (format!("steps.{step}.settings.resources"), r))
                    }));
                for (prefix, value) in resources {
                    checked.objects += 1;
                    if let Err(r) = parse_resource_settings(value, &prefix) {
                        report.issues.extend(r.issues);
                    }
                }
            }
        }
        report.into_result().map(|()| checked)
    }

    /// The resource settings of `step` (pipeline-level `settings.resources` merged with
    /// the step's), validated. A settings document has none.
    pub fn resource_settings(&self, step: &str) -> Result<ResourceSettings, ValidationReport> {
        let LoadedDocument::RunConfig {
            pipeline_resources,
            steps,
            ..
        } = self
        else {
            return Ok(ResourceSettings::default());
        };
        let mut report = ValidationReport::default();
        let mut merged = Value::Object(Map::new());
        if let Some(p) = pipeline_resources {
            if let Err(e) = parse_resource_settings(p, "settings.resources") {
                report.issues.extend(e.issues);
            }
            merge_values(&mut merged, p.clone());
        }
        if let Some(s) = steps.get(step).and_then(|s| s.resources.as_ref()) {
            let prefix = format!("steps.{step}.settings.resources");
            if let Err(e) = parse_resource_settings(s, &prefix) {
                report.issues.extend(e.issues);
            }
            merge_values(&mut merged, s.clone());
        }
        if !report.is_empty() {
            return Err(report);
        }
        parse_resource_settings(&merged, "resources")
    }
}

/// A settings key as it appears in a path: `step_operator.kubernetes` stays dotted (it is
/// how the user wrote it), other keys are rendered as [`Path`] does.
fn block_path(key: &str) -> String {
    if key == "step_operator"
        || key.starts_with("step_operator.")
        || key.starts_with("step_operator:")
    {
        key.to_string()
    } else {
        Path::new("").key(key).to_string()
    }
}

/// Loads a settings file within [`Limits::DEFAULT`]; the format comes from the extension.
pub fn load_file(path: impl AsRef<FsPath>) -> Result<LoadedDocument, LoadError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let Some(format) = Format::from_path(path) else {
        return Err(LoadError::UnknownFormat { path: shown });
    };
    let text =
        stepstack_input::read_file(path, &Limits::DEFAULT).map_err(|source| LoadError::Read {
            path: shown.clone(),
            source,
        })?;
    load_str(&text, format, &shown)
}

/// Loads a settings document from a string (`origin` names it in errors).
pub fn load_str(text: &str, format: Format, origin: &str) -> Result<LoadedDocument, LoadError> {
    let value = stepstack_input::parse(text, format, &Limits::DEFAULT).map_err(|source| {
        LoadError::Read {
            path: origin.to_string(),
            source,
        }
    })?;
    recognise(value, origin)
}

/// The `STEPSTACK_…` overrides of settings fields, one settings fragment per variable,
/// sorted by variable name.
pub fn env_layers(env: impl IntoIterator<Item = (String, String)>) -> Vec<(String, Value)> {
    let prefix = format!("{ENV_PREFIX}_");
    let properties = config_schema_ref()
        .get("properties")
        .and_then(Value::as_object);
    let mut found: Vec<(String, Value)> = env
        .into_iter()
        .filter_map(|(name, raw)| {
            let rest = name.strip_prefix(&prefix)?;
            let keys: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            if keys.iter().any(String::is_empty) || !properties?.contains_key(&keys[0]) {
                return None;
            }
            let mut value = keys.into_iter().rev().fold(env_scalar(&raw), |inner, key| {
                Value::Object(Map::from_iter([(key, inner)]))
            });
            restore_case(&mut value, config_schema_ref());
            Some((name, value))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// An environment value as a boolean, integer or finite number when it reads as one,
/// else as text.
fn env_scalar(raw: &str) -> Value {
    if raw.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if raw.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if let Ok(i) = raw.parse::<i64>() {
        return Value::from(i);
    }
    if let Some(n) = raw
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .filter(|_| raw.chars().any(|c| c.is_ascii_digit()))
    {
        return Value::Number(n);
    }
    Value::String(raw.to_string())
}

/// The `STEPSTACK_…` overrides of settings fields merged into one settings fragment.
pub fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Value {
    let mut merged = Value::Object(Map::new());
    for (_, value) in env_layers(env) {
        merge_values(&mut merged, value);
    }
    merged
}

fn recognise(value: Value, origin: &str) -> Result<LoadedDocument, LoadError> {
    let Value::Object(map) = value else {
        return Err(LoadError::NotAMap {
            origin: origin.to_string(),
        });
    };
    let is_run_config = (map.contains_key("settings") || map.contains_key("steps"))
        && !map.keys().any(|k| {
            config_schema_ref()
                .get("properties")
                .and_then(|p| p.get(k))
                .is_some()
        });
    if !is_run_config {
        return Ok(LoadedDocument::Settings(Value::Object(map)));
    }
    let mut report = ValidationReport::default();
    let root = Path::new("");
    let (pipeline, pipeline_resources) =
        settings_block(map.get("settings"), &root.key("settings"), &mut report);
    let mut steps = BTreeMap::new();
    match map.get("steps") {
        None | Some(Value::Null) => {}
        Some(Value::Object(step_map)) => {
            for (name, step) in step_map {
                let path = root.key("steps").key(name);
                if let Some(doc) = step_document(step, &path, &mut report) {
                    steps.insert(name.clone(), doc);
                }
            }
        }
        Some(other) => report.push(
            "steps".into(),
            IssueKind::WrongType,
            format!(
                "expected a map of step names to step configurations, found {}",
                kind(other)
            ),
        ),
    }
    if !report.is_empty() {
        return Err(LoadError::RunConfig {
            origin: origin.to_string(),
            report,
        });
    }
    Ok(LoadedDocument::RunConfig {
        pipeline,
        pipeline_resources,
        steps,
    })
}

fn step_document(step: &Value, path: &Path, report: &mut ValidationReport) -> Option<StepDocument> {
    let map = match step {
        Value::Null => return Some(StepDocument::default()),
        Value::Object(map) => map,
        other => {
            report.push(
                path.to_string(),
                IssueKind::WrongType,
                format!(
                    "expected a map (settings, step_operator, …), found {}",
                    kind(other)
                ),
            );
            return None;
        }
    };
    for key in map.keys().filter(|k| !STEP_KEYS.contains(&k.as_str())) {
        let message = match did_you_mean(key, &STEP_KEYS) {
            Some(s) => format!("unknown field, did you mean {s}?"),
            None => format!("unknown field, expected one of: {}", STEP_KEYS.join(", ")),
        };
        report.push(path.key(key).to_string(), IssueKind::UnknownField, message);
    }
    let step_operator = match map.get("step_operator") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(other) => {
            report.push(
                path.key("step_operator").to_string(),
                IssueKind::WrongType,
                format!(
                    "expected the name of a step operator, found {}; its settings go under settings.step_operator",
                    kind(other)
                ),
            );
            None
        }
    };
    let (settings, resources) = settings_block(map.get("settings"), &path.key("settings"), report);
    Some(StepDocument {
        step_operator,
        settings,
        resources,
    })
}

/// Picks the `step_operator`, `step_operator.<flavor>` and `step_operator:<name>` blocks
/// (least specific first) and `resources` out of a `settings` block. Other keys are other
/// components' settings (`docker`, `orchestrator…`) and are left alone.
fn settings_block(
    settings: Option<&Value>,
    path: &Path,
    report: &mut ValidationReport,
) -> (Vec<StepOperatorSettings>, Option<Value>) {
    let settings = match settings {
        None | Some(Value::Null) => return (Vec::new(), None),
        Some(Value::Object(settings)) => settings,
        Some(other) => {
            report.push(
                path.to_string(),
                IssueKind::WrongType,
                format!("expected a map, found {}", kind(other)),
            );
            return (Vec::new(), None);
        }
    };
    let mut blocks = Vec::new();
    for (key, value) in settings {
        let target = if key == "step_operator" {
            SettingsTarget::Any
        } else if let Some(flavor) = key.strip_prefix("step_operator.") {
            SettingsTarget::Flavor(flavor.to_string())
        } else if let Some(name) = key.strip_prefix("step_operator:") {
            SettingsTarget::Component(name.to_string())
        } else {
            continue;
        };
        let block_path = format!("{path}.{key}");
        match value {
            Value::Null => continue,
            Value::Object(_) => {}
            other => {
                report.push(
                    block_path,
                    IssueKind::WrongType,
                    format!(
                        "expected a map of step-operator settings, found {}",
                        kind(other)
                    ),
                );
                continue;
            }
        }
        if matches!(&target, SettingsTarget::Flavor(f) | SettingsTarget::Component(f) if f.is_empty())
        {
            report.push(
                block_path,
                IssueKind::InvalidValue,
                "name a flavor (`step_operator.kubernetes`) or a component (`step_operator:NAME`)",
            );
            continue;
        }
        blocks.push(StepOperatorSettings {
            key: key.clone(),
            target,
            value: value.clone(),
        });
    }
    blocks.sort_by_key(|b| b.target.rank());
    let resources = match settings.get("resources") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.clone()),
    };
    (blocks, resources)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_document_keeps_camel_case_and_types() {
        let yaml = "pod_count: 2\npod_settings:\n  tolerations:\n    - key: gpu\n      tolerationSeconds: 30\n  resources:\n    requests:\n      cpu: 2\n";
        let doc = load_str(yaml, Format::Yaml, "inline").unwrap();
        assert_eq!(
            doc,
            LoadedDocument::Settings(json!({
                "pod_count": 2,
                "pod_settings": {
                    "tolerations": [{"key": "gpu", "tolerationSeconds": 30}],
                    "resources": {"requests": {"cpu": 2}}
                }
            }))
        );
    }

    #[test]
    fn env_overrides_apply_and_ignore_unrelated_variables() {
        let env = vec![
            ("STEPSTACK_POD_COUNT".to_string(), "3".to_string()),
            (
                "STEPSTACK_POD_SETTINGS__NODE_SELECTORS__POOL".to_string(),
                "gpu".to_string(),
            ),
            ("STEPSTACK_HOME".to_string(), "/tmp/x".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        assert_eq!(
            env_overrides(env.clone()),
            json!({"pod_count": 3, "pod_settings": {"node_selectors": {"pool": "gpu"}}})
        );
        let names: Vec<String> = env_layers(env).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "STEPSTACK_POD_COUNT",
                "STEPSTACK_POD_SETTINGS__NODE_SELECTORS__POOL"
            ]
        );
    }

    #[test]
    fn env_overrides_reach_camel_case_kubernetes_fields() {
        let env = vec![(
            "STEPSTACK_POD_SETTINGS__CONTAINER_SECURITY_CONTEXT__RUN_AS_USER".to_string(),
            "1000".to_string(),
        )];
        let value = env_overrides(env);
        assert_eq!(
            value,
            json!({"pod_settings": {"container_security_context": {"runAsUser": 1000}}})
        );
        let settings = crate::parse_settings(&value, "").unwrap();
        assert_eq!(
            settings
                .pod_settings
                .and_then(|p| p.container_security_context)
                .and_then(|c| c.run_as_user),
            Some(1000)
        );
    }

    #[test]
    fn run_config_is_recognised() {
        let yaml = r#"
settings:
  step_operator:
    pod_settings:
      node_selectors: {pool: cpu}
  resources: {cpu_count: 2}
steps:
  trainer:
    step_operator: k8s
    settings:
      step_operator:
        pod_count: 1
      step_operator.sagemaker:
        instance_type: ml.p3
      step_operator:k8s:
        privileged: true
  evaluator: {}
"#;
        let doc = load_str(yaml, Format::Yaml, "run.yaml").unwrap();
        assert_eq!(doc.step_operator_of("trainer"), Some("k8s"));
        assert_eq!(doc.step_operator_of("evaluator"), None);
        let LoadedDocument::RunConfig {
            pipeline,
            pipeline_resources,
            steps,
        } = doc
        else {
            panic!("not a run config");
        };
        assert_eq!(pipeline.len(), 1);
        assert_eq!(pipeline[0].target, SettingsTarget::Any);
        assert_eq!(
            pipeline[0].value,
            json!({"pod_settings": {"node_selectors": {"pool": "cpu"}}})
        );
        assert_eq!(pipeline_resources, Some(json!({"cpu_count": 2})));
        let targets: Vec<&SettingsTarget> = steps["trainer"]
            .settings
            .iter()
            .map(|b| &b.target)
            .collect();
        assert_eq!(
            targets,
            [
                &SettingsTarget::Any,
                &SettingsTarget::Flavor("sagemaker".into()),
                &SettingsTarget::Component("k8s".into())
            ]
        );
        assert_eq!(steps["evaluator"], StepDocument::default());
    }

    #[test]
    fn toml_and_json_load_too() {
        let toml = "pod_count = 2\n[pod_settings.node_selectors]\npool = \"gpu\"\n";
        let json_text = r#"{"pod_count": 2, "pod_settings": {"node_selectors": {"pool": "gpu"}}}"#;
        let a = load_str(toml, Format::Toml, "a.toml").unwrap();
        let b = load_str(json_text, Format::Json, "b.json").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn files_load_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yml");
        std::fs::write(&path, "pod_count: 2\n").unwrap();
        assert_eq!(
            load_file(&path).unwrap(),
            LoadedDocument::Settings(json!({"pod_count": 2}))
        );
        let bad = dir.path().join("s.ini");
        assert!(matches!(
            load_file(&bad),
            Err(LoadError::UnknownFormat { .. })
        ));
        assert!(matches!(
            load_file(dir.path().join("missing.yaml")),
            Err(LoadError::Read { .. })
        ));
    }
}
