//! Layered settings: flavor defaults → component configuration → pipeline settings →
//! step settings → `STEPSTACK_…` environment overrides → command-line overrides.
//!
//! Maps merge key by key (at any depth); scalars and lists replace. Every effective
//! value remembers which layer set it, and every error is reported at the path of the
//! layer that introduced it (ZenML merges shallowly, so a step's `pod_settings` replaces
//! the component's wholesale: fault 9).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::error::{Issue, Path, ValidationReport, is_under};
use crate::schema::{config_schema_ref, settings_schema_ref};
use crate::step_operator::{CONFIG_ONLY_FIELDS, KubernetesStepOperatorSettings};
use crate::validate::{check_structure, parse_settings};

/// A settings layer, lowest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// The flavor's built-in defaults.
    FlavorDefaults,
    /// The registered component's configuration.
    Component,
    /// Pipeline-level settings.
    Pipeline,
    /// Step-level settings.
    Step,
    /// A `STEPSTACK_…` environment variable (one layer per variable, so an error names it).
    Environment,
    /// `--set key=value` on the command line.
    CommandLine,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::FlavorDefaults => "flavor defaults",
            Layer::Component => "component",
            Layer::Pipeline => "pipeline",
            Layer::Step => "step",
            Layer::Environment => "environment",
            Layer::CommandLine => "command line",
        })
    }
}

/// Which layer set a value, and where that layer came from (the path prefix used in
/// error messages, e.g. `steps.trainer.settings.step_operator`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSource {
    /// The layer.
    pub layer: Layer,
    /// Where the layer's document lives; prepended to error paths.
    pub origin: String,
}

impl LayerSource {
    /// `origin` joined with a path inside the layer's document.
    pub fn qualify(&self, path: &str) -> String {
        match (self.origin.as_str(), path) {
            ("", p) => p.to_string(),
            (o, "") => o.trim_end().to_string(),
            (o, p) if o.ends_with(' ') || o.ends_with(':') || p.starts_with('[') => {
                format!("{o}{p}")
            }
            (o, p) => format!("{o}.{p}"),
        }
    }
}

/// A malformed `--set` override.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid override `{input}`: {reason}; expected KEY.PATH=VALUE, e.g. pod_settings.node_selectors.pool=gpu"
)]
pub struct OverrideError {
    /// The override as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses one `--set` override (`pod_settings.node_selectors.pool=gpu`) into a nested
/// settings fragment. The value is parsed as YAML, so `8` is a number, `true` a boolean
/// and `[a, b]` a list. Keys containing dots are quoted:
/// `pod_settings.labels."example.com/team"=ml`. The path and the value together are held
/// to the input limits of every other loader ([`stepstack_input::Limits::DEFAULT`]).
pub fn parse_override(input: &str) -> Result<Value, OverrideError> {
    let err = |reason: &str| OverrideError {
        input: shorten(input),
        reason: reason.to_string(),
    };
    let limits = stepstack_input::Limits::DEFAULT;
    if input.len() > limits.max_bytes {
        return Err(err(&format!(
            "the override {}",
            stepstack_input::Limit::Size {
                max: limits.max_bytes
            }
        )));
    }
    let (keys, raw) = split_override(input).ok_or_else(|| err("missing `=`"))?;
    if keys.is_empty() || keys.iter().any(String::is_empty) {
        return Err(err("empty key"));
    }
    if keys.len() > limits.max_depth {
        return Err(err(&format!(
            "the path has {} segments and {}",
            keys.len(),
            stepstack_input::Limit::Depth {
                max: limits.max_depth
            }
        )));
    }
    let value: Value = if raw.trim().is_empty() {
        Value::String(raw.to_string())
    } else {
        // The value may nest only as deep as the path leaves room for.
        let room = limits.max_depth - keys.len();
        let mut value_limits = limits;
        value_limits.max_depth = room;
        match stepstack_input::parse(raw, stepstack_input::Format::Yaml, &value_limits) {
            Ok(value) => value,
            Err(e) if e.limit().is_some() => {
                return Err(err(&format!("the path and value together: {e}")));
            }
            // Not YAML: the text itself (`--set job_name_prefix=a: b`).
            Err(_) => Value::String(raw.to_string()),
        }
    };
    Ok(keys.into_iter().rev().fold(value, |inner, key| {
        Value::Object(Map::from_iter([(key, inner)]))
    }))
}

/// An override as shown in an error: a very long one is cut (it is the user's own text).
fn shorten(input: &str) -> String {
    const SHOWN: usize = 200;
    match input.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}…", &input[..i]),
        None => input.to_string(),
    }
}

fn split_override(input: &str) -> Option<(Vec<String>, &str)> {
    let mut keys = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for (i, c) in input.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => keys.push(std::mem::take(&mut current)),
            '=' if !quoted => {
                keys.push(current);
                return Some((keys, &input[i + 1..]));
            }
            c => current.push(c),
        }
    }
    None
}

/// Deep merge: objects merge key by key; everything else replaces.
pub(crate) fn merge_values(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_values(existing, v)
                    }
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[derive(Debug, Clone)]
struct LayerDoc {
    source: LayerSource,
    value: Value,
    component: bool,
}

/// Builder of the effective settings of one step from its layers.
///
/// ```
/// use serde_json::json;
/// use stepstack_settings::{Layer, SettingsLayers};
///
/// let effective = SettingsLayers::new()
///     .with_layer(Layer::Component, "component k8s:", json!({"pod_settings": {"node_selectors": {"zone": "a"}}}))
///     .with_layer(Layer::Step, "steps.trainer.settings.step_operator", json!({"pod_count": 1}))
///     .with_override("pod_settings.node_selectors.pool=gpu")
///     .unwrap()
///     .resolve()
///     .unwrap();
/// let selectors = &effective.settings.pod_settings.as_ref().unwrap().node_selectors;
/// assert_eq!(selectors["zone"], "a");
/// assert_eq!(selectors["pool"], "gpu");
/// assert_eq!(effective.source_of("pod_settings.node_selectors.pool").unwrap().layer, Layer::CommandLine);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SettingsLayers {
    layers: Vec<LayerDoc>,
}

impl SettingsLayers {
    /// No layers yet (the flavor defaults are always the lowest layer).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a settings document as `layer`; `origin` prefixes its error paths.
    pub fn with_layer(mut self, layer: Layer, origin: impl Into<String>, value: Value) -> Self {
        self.layers.push(LayerDoc {
            source: LayerSource {
                layer,
                origin: origin.into(),
            },
            value,
            component: false,
        });
        self
    }

    /// Adds a component configuration document; the connection fields
    /// (`kubernetes_namespace`, `incluster`, `kubernetes_context`) are checked and
    /// then left out of the settings.
    pub fn with_component_config(mut self, origin: impl Into<String>, value: Value) -> Self {
        self.layers.push(LayerDoc {
            source: LayerSource {
                layer: Layer::Component,
                origin: origin.into(),
            },
            value,
            component: true,
        });
        self
    }

    /// Adds settings built in Rust as `layer`. Fields equal to their default count as
    /// unset, so they do not override lower layers.
    pub fn with_settings(
        self,
        layer: Layer,
        origin: impl Into<String>,
        settings: &KubernetesStepOperatorSettings,
    ) -> Self {
        let mut value = serde_json::to_value(settings).unwrap_or_default();
        let defaults =
            serde_json::to_value(KubernetesStepOperatorSettings::default()).unwrap_or_default();
        if let (Some(map), Some(defaults)) = (value.as_object_mut(), defaults.as_object()) {
            map.retain(|k, v| defaults.get(k) != Some(v));
        }
        self.with_layer(layer, origin, value)
    }

    /// Adds one `--set` override as a command-line layer.
    pub fn with_override(self, input: &str) -> Result<Self, OverrideError> {
        let value = parse_override(input)?;
        Ok(self.with_layer(Layer::CommandLine, "--set ", value))
    }

    /// Adds one [`Layer::Environment`] layer per `STEPSTACK_…` variable of `env` that
    /// names a settings field (see [`crate::load`]); errors in a variable's value are
    /// reported at `environment STEPSTACK_…: path`, not blamed on a settings file.
    pub fn with_environment(self, env: impl IntoIterator<Item = (String, String)>) -> Self {
        crate::load::env_layers(env)
            .into_iter()
            .fold(self, |layers, (name, value)| {
                layers.with_layer(Layer::Environment, format!("environment {name}: "), value)
            })
    }

    /// Merges the layers, validates the result strictly and reports every problem at
    /// the path of the layer that introduced it. Warnings (deprecated fields, a float
    /// `api_request_timeout`) are logged here, once each, at the path the user wrote.
    pub fn resolve(&self) -> Result<EffectiveSettings, ValidationReport> {
        let defaults_source = LayerSource {
            layer: Layer::FlavorDefaults,
            origin: String::new(),
        };
        let mut merged =
            serde_json::to_value(KubernetesStepOperatorSettings::default()).unwrap_or_default();
        let mut provenance = BTreeMap::new();
        record_leaves(&merged, &Path::new(""), &defaults_source, &mut provenance);

        let mut report = ValidationReport::default();
        for doc in &self.layers {
            for warning in crate::validate::warnings(&doc.value, "") {
                tracing::warn!(
                    path = %doc.source.qualify(&warning.path),
                    "{}",
                    warning.message
                );
            }
            let mut value = doc.value.clone();
            let schema = if doc.component {
                config_schema_ref()
            } else {
                settings_schema_ref()
            };
            let structural = check_structure(&mut value, schema, "");
            report
                .issues
                .extend(structural.report.issues.into_iter().map(|i| Issue {
                    path: doc.source.qualify(&i.path),
                    ..i
                }));
            if doc.component
                && let Some(map) = value.as_object_mut()
            {
                for key in CONFIG_ONLY_FIELDS {
                    map.remove(key);
                }
            }
            merge_with_provenance(
                &mut merged,
                value,
                &Path::new(""),
                &doc.source,
                &mut provenance,
            );
        }
        if !report.is_empty() {
            return Err(report);
        }
        match parse_settings(&merged, "") {
            Ok(settings) => Ok(EffectiveSettings {
                settings,
                value: merged,
                provenance,
            }),
            Err(e) => Err(ValidationReport {
                issues: e
                    .issues
                    .into_iter()
                    .map(|i| {
                        let path = match source_for(&provenance, &i.path) {
                            Some(source) => source.qualify(&i.path),
                            None => i.path.clone(),
                        };
                        Issue { path, ..i }
                    })
                    .collect(),
            }),
        }
    }
}

fn record_leaves(
    value: &Value,
    path: &Path,
    source: &LayerSource,
    provenance: &mut BTreeMap<String, LayerSource>,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                record_leaves(v, &path.key(k), source, provenance);
            }
        }
        _ => {
            provenance.insert(path.as_str().to_string(), source.clone());
        }
    }
}

fn merge_with_provenance(
    base: &mut Value,
    over: Value,
    path: &Path,
    source: &LayerSource,
    provenance: &mut BTreeMap<String, LayerSource>,
) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                let child = path.key(&k);
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_with_provenance(existing, v, &child, source, provenance);
                    }
                    _ => {
                        provenance.retain(|p, _| !is_under(p, child.as_str()));
                        record_leaves(&v, &child, source, provenance);
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => {
            provenance.retain(|p, _| !is_under(p, path.as_str()));
            record_leaves(&o, path, source, provenance);
            *b = o;
        }
    }
}

fn source_for<'a>(
    provenance: &'a BTreeMap<String, LayerSource>,
    path: &str,
) -> Option<&'a LayerSource> {
    // The leaf that contains `path`, else the highest layer below it.
    provenance
        .iter()
        .filter(|(p, _)| !p.is_empty() && is_under(path, p))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, s)| s)
        .or_else(|| {
            provenance
                .iter()
                .filter(|(p, _)| is_under(p, path))
                .map(|(_, s)| s)
                .max_by_key(|s| s.layer)
        })
}

/// The merged, validated settings of one step, with per-field provenance.
#[derive(Debug, Clone)]
pub struct EffectiveSettings {
    /// The effective settings.
    pub settings: KubernetesStepOperatorSettings,
    /// The merged document (normalised: quantities as strings, camelCase pod-spec keys).
    pub value: Value,
    provenance: BTreeMap<String, LayerSource>,
}

impl EffectiveSettings {
    /// Which layer set the value at `path` (e.g. `pod_settings.node_selectors.pool`),
    /// or the layer that set the list or value containing it.
    pub fn source_of(&self, path: &str) -> Option<&LayerSource> {
        source_for(&self.provenance, path)
    }

    /// Every effective leaf value's path and the layer that set it, sorted by path
    /// (for `describe --effective`).
    pub fn provenance(&self) -> impl Iterator<Item = (&str, &LayerSource)> {
        self.provenance.iter().map(|(p, s)| (p.as_str(), s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_parse_as_yaml_scalars() {
        assert_eq!(
            parse_override("pod_settings.node_selectors.pool=gpu").unwrap(),
            json!({"pod_settings": {"node_selectors": {"pool": "gpu"}}})
        );
        assert_eq!(
            parse_override("pod_count=4").unwrap(),
            json!({"pod_count": 4})
        );
        assert_eq!(
            parse_override("privileged=true").unwrap(),
            json!({"privileged": true})
        );
        assert_eq!(
            parse_override("pod_settings.labels.\"example.com/team\"=ml").unwrap(),
            json!({"pod_settings": {"labels": {"example.com/team": "ml"}}})
        );
        assert_eq!(
            parse_override("pod_settings.image_pull_secrets=[a, b]").unwrap(),
            json!({"pod_settings": {"image_pull_secrets": ["a", "b"]}})
        );
        assert!(parse_override("pod_count").is_err());
        assert!(parse_override("a..b=1").is_err());
    }

    #[test]
    fn maps_merge_lists_and_scalars_replace_with_provenance() {
        let effective = SettingsLayers::new()
            .with_component_config(
                "component k8s:",
                json!({
                    "kubernetes_namespace": "ml",
                    "pod_count": 1,
                    "pod_settings": {
                        "node_selectors": {"zone": "a", "pool": "cpu"},
                        "image_pull_secrets": ["one", "two"],
                        "resources": {"limits": {"memory": "1Gi"}}
                    }
                }),
            )
            .with_layer(
                Layer::Pipeline,
                "settings.step_operator",
                json!({"pod_settings": {"image_pull_secrets": ["three"], "resources": {"requests": {"cpu": 1}}}}),
            )
            .with_layer(
                Layer::Step,
                "steps.trainer.settings.step_operator",
                json!({"service_account_name": "trainer"}),
            )
            .with_override("pod_settings.node_selectors.pool=gpu")
            .unwrap()
            .resolve()
            .unwrap();
        let ps = effective.settings.pod_settings.clone().unwrap();
        assert_eq!(ps.node_selectors["zone"], "a");
        assert_eq!(ps.node_selectors["pool"], "gpu");
        assert_eq!(ps.image_pull_secrets, ["three"]);
        let res = ps.resources.unwrap();
        assert_eq!(res.limits.unwrap()["memory"].0, "1Gi");
        assert_eq!(res.requests.unwrap()["cpu"].0, "1");
        let layer = |p: &str| effective.source_of(p).map(|s| s.layer);
        assert_eq!(
            layer("pod_settings.node_selectors.zone"),
            Some(Layer::Component)
        );
        assert_eq!(
            layer("pod_settings.node_selectors.pool"),
            Some(Layer::CommandLine)
        );
        assert_eq!(
            layer("pod_settings.image_pull_secrets"),
            Some(Layer::Pipeline)
        );
        assert_eq!(
            layer("pod_settings.image_pull_secrets[0]"),
            Some(Layer::Pipeline)
        );
        assert_eq!(layer("service_account_name"), Some(Layer::Step));
        assert_eq!(layer("max_api_retries"), Some(Layer::FlavorDefaults));
        assert_eq!(layer("pod_count"), Some(Layer::Component));
        assert!(effective.provenance().any(|(p, _)| p == "retry.backoff"));
    }

    #[test]
    fn errors_carry_the_path_of_their_layer() {
        let err = SettingsLayers::new()
            .with_layer(
                Layer::Pipeline,
                "settings.step_operator",
                json!({"pod_settings": {"resources": {"limits": {"cpu": "1"}}}}),
            )
            .with_layer(
                Layer::Step,
                "steps.trainer.settings.step_operator",
                json!({"pod_settings": {"resources": {"requests": {"cpu": "2"}}, "tolerations": [{"key": "a", "efect": "NoSchedule"}]}}),
            )
            .with_override("pod_settings.node_selector.pool=gpu")
            .unwrap()
            .resolve()
            .unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "steps.trainer.settings.step_operator.pod_settings.tolerations[0].efect",
                "--set pod_settings.node_selector",
            ]
        );
        // Cross-layer rule (request above a limit from another layer): reported at the
        // layer that set the request.
        let err = SettingsLayers::new()
            .with_layer(
                Layer::Pipeline,
                "settings.step_operator",
                json!({"pod_settings": {"resources": {"limits": {"cpu": "1"}}}}),
            )
            .with_layer(
                Layer::Step,
                "steps.trainer.settings.step_operator",
                json!({"pod_settings": {"resources": {"requests": {"cpu": "2"}}}}),
            )
            .resolve()
            .unwrap_err();
        assert_eq!(
            err.issues[0].path,
            "steps.trainer.settings.step_operator.pod_settings.resources.requests.cpu"
        );
    }
}
