//! The JSON Schema of pipeline files, generated (schemars) and committed as
//! `schemas/pipeline.json` by `cargo xtask codegen`.
//!
//! The types here describe the file, not the model: they exist for their schema. The
//! reader in `parse.rs` knows the same keys (a test keeps the two equal). A step
//! operator's settings refer to the committed settings schema next to this one
//! (`kubernetes-step-operator-settings.json`), so editors resolve them from the files.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};
use stepstack_settings::ResourceSettings;
use stepstack_settings::schema::SETTINGS_SCHEMA_FILE;

use crate::parse::{ZENML_PIPELINE_KEYS, ZENML_STEP_KEYS};

/// File name of the pipeline schema under `schemas/`.
pub const PIPELINE_SCHEMA_FILE: &str = "pipeline.json";

/// A stepstack pipeline: steps that run commands, exchange directories and wait for each
/// other. A ZenML run configuration whose steps have commands is one too.
#[derive(JsonSchema)]
#[schemars(title = "stepstack pipeline")]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "only its schema is used")]
struct Pipeline {
    /// The pipeline's name: the `pipeline` label of its Jobs (a Kubernetes label value).
    /// A file without one is named after the file.
    name: Option<String>,
    /// Pipeline-level settings, the layer between the component's configuration and
    /// each step's: `step_operator` (any step operator), `step_operator.<flavor>`,
    /// `step_operator:<component>`, `resources`.
    #[schemars(schema_with = "settings_block")]
    #[serde(default)]
    settings: Option<Value>,
    /// The steps by name (each a Kubernetes label value without `.`).
    steps: BTreeMap<String, Step>,
}

/// One step.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "only its schema is used")]
struct Step {
    /// The program and its first arguments. Placeholders: `{{inputs.NAME}}`,
    /// `{{outputs.NAME}}`, `{{run.name}}`, `{{run.id}}`, `{{step.name}}`.
    #[schemars(schema_with = "command")]
    command: Vec<String>,
    /// More arguments, appended to the command (placeholders allowed).
    #[schemars(schema_with = "texts")]
    #[serde(default)]
    args: Option<Vec<String>>,
    /// The container image, for a step on a step operator.
    image: Option<String>,
    /// The step-operator component that runs the step; without one the step runs on
    /// this machine.
    step_operator: Option<String>,
    /// The step's settings (the step layer), in the same form as the pipeline's.
    #[schemars(schema_with = "settings_block")]
    #[serde(default)]
    settings: Option<Value>,
    /// Hardware the step needs (give them here or under settings.resources, not both).
    resources: Option<ResourceSettings>,
    /// Environment variables; values may hold placeholders.
    #[schemars(schema_with = "environment")]
    #[serde(default)]
    environment: Option<BTreeMap<String, String>>,
    /// Inputs by name, each `STEP.OUTPUT`: a directory another step wrote.
    #[schemars(schema_with = "inputs")]
    #[serde(default)]
    inputs: Option<BTreeMap<String, String>>,
    /// The directories the step writes, by name (or ZenML's map of output names).
    #[schemars(schema_with = "outputs")]
    #[serde(default)]
    outputs: Option<Vec<String>>,
    /// Steps that must finish first although no input says so.
    after: Option<Vec<String>>,
    /// Retries of a failed step (ZenML's `StepRetryConfig`).
    retry: Option<Retry>,
    /// Whether an earlier identical successful run may stand in for this one
    /// (default true).
    cache: Option<bool>,
}

/// Retries of a failed step: up to `max_retries` more attempts, the n-th after
/// `delay * backoff^(n-1)` seconds.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "only its schema is used")]
struct Retry {
    /// Attempts after the first (default 1).
    max_retries: Option<u32>,
    /// Seconds before the first retry (default 0).
    delay: Option<u64>,
    /// Factor by which the delay grows (default 0: a fixed delay).
    backoff: Option<u32>,
}

fn scalar() -> Value {
    json!({"type": ["string", "number", "boolean"]})
}

fn command(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": scalar(), "minItems": 1})
}

fn texts(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": scalar()})
}

fn environment(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "additionalProperties": scalar()})
}

fn inputs(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {"type": "string", "pattern": "^[^.]+\\.[^.]+$"}
    })
}

fn outputs(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "description": "ZenML's form: output names to their configuration (which has no effect here)"}
        ]
    })
}

fn settings_block(generator: &mut SchemaGenerator) -> Schema {
    let settings = json!({"$ref": SETTINGS_SCHEMA_FILE});
    let resources = generator.subschema_for::<ResourceSettings>();
    json_schema!({
        "type": "object",
        "description": "Settings by component: `step_operator` (any step operator), `step_operator.<flavor>`, `step_operator:<component>`, `resources`; other components' settings (docker, …) are kept for them.",
        "properties": {
            "step_operator": settings,
            "step_operator.kubernetes": settings,
            "resources": resources,
        },
        "patternProperties": {"^step_operator[.:].+$": {"type": "object"}}
    })
}

/// Adds ZenML's run-configuration keys (accepted, with a warning) to `object`'s
/// properties.
fn add_zenml_keys(object: &mut Value, keys: &[&str]) {
    let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for key in keys {
        let schema = if *key == "enable_cache" && properties.contains_key("cache") {
            json!({"type": "boolean", "description": "ZenML's name for `cache`."})
        } else {
            json!({"description": "A ZenML run-configuration key; it has no effect in a stepstack pipeline (a warning)."})
        };
        properties.entry(key.to_string()).or_insert(schema);
    }
}

/// The JSON Schema of pipeline files.
pub fn pipeline_schema() -> Value {
    let mut value = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Pipeline>()
        .to_value();
    add_zenml_keys(&mut value, &ZENML_PIPELINE_KEYS);
    if let Some(step) = value.pointer_mut("/$defs/Step") {
        add_zenml_keys(step, &ZENML_STEP_KEYS);
    }
    value
}

/// The schemas and the file names `cargo xtask codegen` writes them to under `schemas/`.
pub fn schemas() -> Vec<(&'static str, Value)> {
    vec![(PIPELINE_SCHEMA_FILE, pipeline_schema())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{PIPELINE_KEYS, RETRY_KEYS, STEP_KEYS};
    use std::collections::BTreeSet;

    fn keys(schema: &Value, pointer: &str) -> BTreeSet<String> {
        schema
            .pointer(pointer)
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn set(lists: &[&[&str]]) -> BTreeSet<String> {
        lists
            .iter()
            .flat_map(|l| l.iter().map(|s| s.to_string()))
            .collect()
    }

    #[test]
    fn the_schema_knows_exactly_the_keys_the_reader_knows() {
        let schema = pipeline_schema();
        assert_eq!(
            keys(&schema, "/properties"),
            set(&[&PIPELINE_KEYS, &ZENML_PIPELINE_KEYS])
        );
        assert_eq!(
            keys(&schema, "/$defs/Step/properties"),
            set(&[&STEP_KEYS, &ZENML_STEP_KEYS])
        );
        assert_eq!(
            keys(&schema, "/$defs/Retry/properties"),
            set(&[&RETRY_KEYS])
        );
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(
            schema["$defs"]["Step"]["additionalProperties"],
            json!(false)
        );
    }

    #[test]
    fn the_committed_schema_is_current() {
        let committed = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/pipeline.json");
        let current = stepstack_settings::schema::render_schema(&pipeline_schema());
        assert_eq!(
            std::fs::read_to_string(committed).unwrap_or_default(),
            current,
            "schemas/pipeline.json is stale: run `cargo xtask codegen`"
        );
    }
}
