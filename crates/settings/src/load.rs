//! Loading settings files (YAML, TOML or JSON) with the `config` crate, plus
//! `STEPSTACK_…` environment overrides.
//!
//! A file's top level is either a settings object (the fields of
//! [`crate::KubernetesStepOperatorSettings`], optionally with the component fields of
//! [`crate::KubernetesStepOperatorConfig`]) or a ZenML-style run configuration
//! (`settings: step_operator: …` and `steps: NAME: settings: step_operator: …`),
//! recognised by its keys. Loading only reads and recognises; validation is done by
//! [`crate::parse_settings`] or [`crate::SettingsLayers::resolve`] so that every problem
//! is reported with its full path.
//!
//! Environment overrides use the prefix `STEPSTACK_` and `__` between keys:
//! `STEPSTACK_POD_COUNT=2`, `STEPSTACK_POD_SETTINGS__NODE_SELECTORS__POOL=gpu`,
//! `STEPSTACK_POD_SETTINGS__CONTAINER_SECURITY_CONTEXT__RUN_AS_USER=1000` (Kubernetes'
//! camelCase fields are found ignoring case and underscores; map keys such as label
//! names arrive lowercased, as environment variable names cannot say otherwise). Only
//! variables whose first key is a settings field are used (so `STEPSTACK_HOME` is not
//! mistaken for a setting). The environment is passed in explicitly, e.g.
//! `std::env::vars()`, so tests never touch the process environment.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use config::{Config, Environment, File, FileFormat};
use serde_json::{Map, Value};

use crate::env_case::restore_case;
use crate::error::ValidationReport;
use crate::layers::{Layer, SettingsLayers, merge_values};
use crate::resources::ResourceSettings;
use crate::schema::config_schema_ref;
use crate::validate::parse_resource_settings;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "STEPSTACK";

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read or parsed.
    #[error("cannot load settings file {path}")]
    Read {
        /// The file.
        path: String,
        /// The parser's error.
        #[source]
        source: config::ConfigError,
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
    /// A run configuration names the step operator's settings under several keys.
    #[error("{path}: step-operator settings are given under several keys ({keys}); keep one")]
    DuplicateStepOperatorKeys {
        /// Where.
        path: String,
        /// The keys found.
        keys: String,
    },
}

/// Settings of one step in a run configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepDocument {
    /// `steps.NAME.settings.step_operator` (raw, to be validated).
    pub step_operator: Option<Value>,
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
        /// `settings.step_operator` (pipeline level).
        pipeline: Option<Value>,
        /// `settings.resources` (pipeline level).
        pipeline_resources: Option<Value>,
        /// Per-step settings, by step name.
        steps: BTreeMap<String, StepDocument>,
    },
}

impl LoadedDocument {
    /// The path prefix of the pipeline-level step-operator settings.
    pub const PIPELINE_PREFIX: &'static str = "settings.step_operator";

    /// The path prefix of a step's step-operator settings.
    pub fn step_prefix(step: &str) -> String {
        format!("steps.{step}.settings.step_operator")
    }

    /// Adds this document's layers for `step` to `layers`: a settings document becomes
    /// the step layer (errors prefixed with `file: `); a run configuration adds its
    /// pipeline settings and the step's settings with their run-config paths.
    pub fn add_layers(&self, step: &str, file: &str, layers: SettingsLayers) -> SettingsLayers {
        match self {
            LoadedDocument::Settings(value) => {
                layers.with_layer(Layer::Step, format!("{file}: "), value.clone())
            }
            LoadedDocument::RunConfig {
                pipeline, steps, ..
            } => {
                let mut layers = layers;
                if let Some(p) = pipeline {
                    layers = layers.with_layer(Layer::Pipeline, Self::PIPELINE_PREFIX, p.clone());
                }
                if let Some(s) = steps.get(step).and_then(|s| s.step_operator.as_ref()) {
                    layers = layers.with_layer(Layer::Step, Self::step_prefix(step), s.clone());
                }
                layers
            }
        }
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

/// Loads a settings file; the format comes from the extension.
pub fn load_file(
    path: impl AsRef<FsPath>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<LoadedDocument, LoadError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => FileFormat::Yaml,
        Some("toml") => FileFormat::Toml,
        Some("json") => FileFormat::Json,
        _ => return Err(LoadError::UnknownFormat { path: shown }),
    };
    let source = File::from(path).format(format).required(true);
    let value = read(Config::builder().add_source(source), &shown)?;
    recognise(value, env, &shown)
}

/// Loads a settings document from a string (`origin` names it in errors).
pub fn load_str(
    text: &str,
    format: FileFormat,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<LoadedDocument, LoadError> {
    let value = read(
        Config::builder().add_source(File::from_str(text, format)),
        origin,
    )?;
    recognise(value, env, origin)
}

fn read(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    origin: &str,
) -> Result<Value, LoadError> {
    builder
        .build()
        .and_then(|c| c.try_deserialize::<Value>())
        .map_err(|source| LoadError::Read {
            path: origin.to_string(),
            source,
        })
}

/// The `STEPSTACK_…` overrides of settings fields, as a settings fragment.
pub fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Value, config::ConfigError> {
    let known: Vec<String> = config_schema_ref()
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().map(|k| k.to_uppercase()).collect())
        .unwrap_or_default();
    let prefix = format!("{ENV_PREFIX}_");
    let map: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| {
            k.strip_prefix(&prefix).is_some_and(|rest| {
                let first = rest.split("__").next().unwrap_or_default();
                known.iter().any(|f| f == first)
            })
        })
        .collect();
    if map.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    Config::builder()
        .add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(map)),
        )
        .build()?
        .try_deserialize::<Value>()
        .map(|mut value| {
            restore_case(&mut value, config_schema_ref());
            value
        })
}

fn recognise(
    mut value: Value,
    env: impl IntoIterator<Item = (String, String)>,
    origin: &str,
) -> Result<LoadedDocument, LoadError> {
    let overrides = env_overrides(env).map_err(|source| LoadError::Read {
        path: "environment".into(),
        source,
    })?;
    let Some(map) = value.as_object_mut() else {
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
        let has_overrides = overrides.as_object().is_some_and(|o| !o.is_empty());
        if has_overrides {
            merge_values(&mut value, overrides);
        }
        return Ok(LoadedDocument::Settings(value));
    }
    let (mut pipeline, pipeline_resources) = settings_block(map.get("settings"), "settings")?;
    if overrides.as_object().is_some_and(|o| !o.is_empty()) {
        let target = pipeline.get_or_insert_with(|| Value::Object(Map::new()));
        merge_values(target, overrides);
    }
    let mut steps = BTreeMap::new();
    if let Some(Value::Object(step_map)) = map.get("steps") {
        for (name, step) in step_map {
            let (step_operator, resources) =
                settings_block(step.get("settings"), &format!("steps.{name}.settings"))?;
            steps.insert(
                name.clone(),
                StepDocument {
                    step_operator,
                    resources,
                },
            );
        }
    }
    Ok(LoadedDocument::RunConfig {
        pipeline,
        pipeline_resources,
        steps,
    })
}

/// Picks `step_operator` (or `step_operator:<name>` / `step_operator.<flavor>`) and
/// `resources` out of a `settings` block.
fn settings_block(
    settings: Option<&Value>,
    path: &str,
) -> Result<(Option<Value>, Option<Value>), LoadError> {
    let Some(Value::Object(settings)) = settings else {
        return Ok((None, None));
    };
    let keys: Vec<&String> = settings
        .keys()
        .filter(|k| {
            *k == "step_operator"
                || k.starts_with("step_operator:")
                || k.starts_with("step_operator.")
        })
        .collect();
    if keys.len() > 1 {
        return Err(LoadError::DuplicateStepOperatorKeys {
            path: path.to_string(),
            keys: keys
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let step_operator = keys.first().and_then(|k| settings.get(*k)).cloned();
    Ok((step_operator, settings.get("resources").cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn settings_document_keeps_camel_case_and_types() {
        let yaml = "pod_count: 2\npod_settings:\n  tolerations:\n    - key: gpu\n      tolerationSeconds: 30\n  resources:\n    requests:\n      cpu: 2\n";
        let doc = load_str(yaml, FileFormat::Yaml, "inline", no_env()).unwrap();
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
        let doc = load_str("privileged: true\n", FileFormat::Yaml, "inline", env).unwrap();
        assert_eq!(
            doc,
            LoadedDocument::Settings(json!({
                "privileged": true,
                "pod_count": 3,
                "pod_settings": {"node_selectors": {"pool": "gpu"}}
            }))
        );
    }

    #[test]
    fn env_overrides_reach_camel_case_kubernetes_fields() {
        let env = vec![(
            "STEPSTACK_POD_SETTINGS__CONTAINER_SECURITY_CONTEXT__RUN_AS_USER".to_string(),
            "1000".to_string(),
        )];
        let doc = load_str("{}", FileFormat::Yaml, "inline", env).unwrap();
        let LoadedDocument::Settings(value) = doc else {
            panic!("a settings document: {doc:?}");
        };
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
    settings:
      step_operator:
        pod_count: 1
  evaluator: {}
"#;
        let doc = load_str(yaml, FileFormat::Yaml, "run.yaml", no_env()).unwrap();
        let LoadedDocument::RunConfig {
            pipeline,
            pipeline_resources,
            steps,
        } = doc
        else {
            panic!("not a run config");
        };
        assert_eq!(
            pipeline,
            Some(json!({"pod_settings": {"node_selectors": {"pool": "cpu"}}}))
        );
        assert_eq!(pipeline_resources, Some(json!({"cpu_count": 2})));
        assert_eq!(
            steps["trainer"].step_operator,
            Some(json!({"pod_count": 1}))
        );
        assert_eq!(steps["evaluator"], StepDocument::default());
    }

    #[test]
    fn toml_and_json_load_too() {
        let toml = "pod_count = 2\n[pod_settings.node_selectors]\npool = \"gpu\"\n";
        let json_text = r#"{"pod_count": 2, "pod_settings": {"node_selectors": {"pool": "gpu"}}}"#;
        let a = load_str(toml, FileFormat::Toml, "a.toml", no_env()).unwrap();
        let b = load_str(json_text, FileFormat::Json, "b.json", no_env()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn files_load_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yml");
        std::fs::write(&path, "pod_count: 2\n").unwrap();
        assert_eq!(
            load_file(&path, no_env()).unwrap(),
            LoadedDocument::Settings(json!({"pod_count": 2}))
        );
        let bad = dir.path().join("s.ini");
        assert!(matches!(
            load_file(&bad, no_env()),
            Err(LoadError::UnknownFormat { .. })
        ));
        assert!(matches!(
            load_file(dir.path().join("missing.yaml"), no_env()),
            Err(LoadError::Read { .. })
        ));
    }
}
