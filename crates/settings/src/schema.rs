//! JSON Schemas of the settings and config types.
//!
//! The schemas come from schemars (our types) and k8s-openapi's `schemars` feature (the
//! Kubernetes objects, generated from the Kubernetes OpenAPI spec). They are then made
//! strict: every object with known properties rejects other keys, quantities accept
//! strings and numbers, toleration operators and effects are enums, and
//! `additional_pod_spec_args` lists the `PodSpec` fields (camelCase and snake_case).
//! The same strict schema drives runtime validation, so the two cannot drift apart.

use std::sync::OnceLock;

use k8s_openapi::api::core::v1::PodSpec;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::step_operator::{KubernetesStepOperatorConfig, KubernetesStepOperatorSettings};

/// File name of the settings schema under `schemas/`.
pub const SETTINGS_SCHEMA_FILE: &str = "kubernetes-step-operator-settings.json";
/// File name of the config schema under `schemas/`.
pub const CONFIG_SCHEMA_FILE: &str = "kubernetes-step-operator-config.json";

pub(crate) const QUANTITY_DEF: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING_DEF: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const TOLERATION_DEF: &str = "io.k8s.api.core.v1.Toleration";
pub(crate) const POD_SPEC_DEF: &str = "io.k8s.api.core.v1.PodSpec";

/// A regular expression for Kubernetes quantities (for third-party validators).
pub const QUANTITY_PATTERN: &str =
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$";

/// The JSON Schema of [`KubernetesStepOperatorSettings`].
pub fn settings_schema() -> Value {
    settings_schema_ref().clone()
}

/// The JSON Schema of [`KubernetesStepOperatorConfig`].
pub fn config_schema() -> Value {
    config_schema_ref().clone()
}

/// The schemas and the file names `cargo xtask codegen` writes them to under `schemas/`.
pub fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (SETTINGS_SCHEMA_FILE, settings_schema()),
        (CONFIG_SCHEMA_FILE, config_schema()),
    ]
}

/// Renders a schema the way it is committed: pretty JSON, object keys sorted (so the
/// output does not depend on serde_json's `preserve_order` feature being unified in by
/// another crate), with a trailing newline.
pub fn render_schema(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(&sorted(schema)).unwrap_or_default();
    s.push('\n');
    s
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

pub(crate) fn settings_schema_ref() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(strict_schema_for::<KubernetesStepOperatorSettings>)
}

pub(crate) fn config_schema_ref() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(strict_schema_for::<KubernetesStepOperatorConfig>)
}

/// A strict schema of any JSON-schema type, e.g. a k8s-openapi `Job` (used by tests to
/// check built manifests against the Kubernetes OpenAPI definitions).
pub fn strict_schema_for<T: JsonSchema>() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    // Make sure the PodSpec definition exists for `additional_pod_spec_args`.
    generator.subschema_for::<PodSpec>();
    let root = generator.into_root_schema_for::<T>();
    let mut value = root.to_value();
    strictify(&mut value);
    if let Some(defs) = value.get_mut("$defs").and_then(Value::as_object_mut) {
        patch_defs(defs);
    }
    value
}

/// Adds `additionalProperties: false` to every object schema with properties.
fn strictify(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let is_object_with_props = map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && map.get("x-kubernetes-preserve-unknown-fields").is_none();
            if is_object_with_props {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (key, child) in map.iter_mut() {
                // `default` and `examples` are data, not schemas.
                if key != "default" && key != "examples" && key != "enum" && key != "const" {
                    strictify(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strictify),
        _ => {}
    }
}

fn patch_defs(defs: &mut Map<String, Value>) {
    if let Some(q) = defs.get_mut(QUANTITY_DEF) {
        let description = q.get("description").cloned().unwrap_or(Value::Null);
        *q = json!({
            "description": description,
            "anyOf": [
                {"type": "string", "pattern": QUANTITY_PATTERN},
                {"type": "number"}
            ]
        });
    }
    if let Some(ios) = defs.get_mut(INT_OR_STRING_DEF) {
        let description = ios.get("description").cloned().unwrap_or(Value::Null);
        *ios = json!({
            "description": description,
            "anyOf": [{"type": "string"}, {"type": "integer"}]
        });
    }
    if let Some(props) = defs
        .get_mut(TOLERATION_DEF)
        .and_then(|t| t.get_mut("properties"))
        .and_then(Value::as_object_mut)
    {
        if let Some(op) = props.get_mut("operator").and_then(Value::as_object_mut) {
            op.insert("enum".into(), json!(["Exists", "Equal"]));
        }
        if let Some(effect) = props.get_mut("effect").and_then(Value::as_object_mut) {
            effect.insert(
                "enum".into(),
                json!(["NoSchedule", "PreferNoSchedule", "NoExecute", ""]),
            );
        }
    }
    // additional_pod_spec_args: the PodSpec fields, camelCase and snake_case.
    let pod_spec_props = defs
        .get(POD_SPEC_DEF)
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object)
        .cloned();
    if let (Some(props), Some(pod_settings)) =
        (pod_spec_props, defs.get_mut("KubernetesPodSettings"))
        && let Some(slot) = pod_settings.pointer_mut("/properties/additional_pod_spec_args")
    {
        let description = slot.get("description").cloned().unwrap_or(Value::Null);
        let mut both = Map::new();
        for (camel, schema) in props {
            let snake = camel_to_snake(&camel);
            if snake != camel {
                both.insert(snake, schema.clone());
            }
            both.insert(camel, schema);
        }
        *slot = json!({
            "description": description,
            "type": "object",
            "properties": both,
            "additionalProperties": false
        });
    }
}

/// `priorityClassName` → `priority_class_name`, `hostIPC` → `host_ipc`.
pub(crate) fn camel_to_snake(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `toleration_seconds` → `tolerationSeconds`.
pub(crate) fn snake_to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_conversions() {
        assert_eq!(camel_to_snake("priorityClassName"), "priority_class_name");
        assert_eq!(camel_to_snake("hostIPC"), "host_ipc");
        assert_eq!(camel_to_snake("dnsPolicy"), "dns_policy");
        assert_eq!(camel_to_snake("hostIPCEnabled"), "host_ipc_enabled");
        assert_eq!(snake_to_camel("toleration_seconds"), "tolerationSeconds");
        assert_eq!(snake_to_camel("tolerationSeconds"), "tolerationSeconds");
    }

    #[test]
    fn schema_is_strict_and_states_enums() {
        let s = settings_schema();
        assert_eq!(s["additionalProperties"], json!(false));
        let defs = &s["$defs"];
        assert_eq!(defs[TOLERATION_DEF]["additionalProperties"], json!(false));
        assert_eq!(
            defs[TOLERATION_DEF]["properties"]["operator"]["enum"],
            json!(["Exists", "Equal"])
        );
        let on_interrupt = serde_json::to_string(&defs["OnInterrupt"]).unwrap();
        assert!(on_interrupt.contains("\"delete\"") && on_interrupt.contains("\"keep\""));
        let apsa = &defs["KubernetesPodSettings"]["properties"]["additional_pod_spec_args"];
        assert!(apsa["properties"].get("priorityClassName").is_some());
        assert!(apsa["properties"].get("priority_class_name").is_some());
        assert_eq!(apsa["additionalProperties"], json!(false));
        let c = config_schema();
        assert!(c["properties"].get("kubernetes_namespace").is_some());
        assert!(c["properties"].get("pod_settings").is_some());
        assert_eq!(c["additionalProperties"], json!(false));
    }
}
