//! Restoring the case of keys that came from environment variables.
//!
//! The `config` crate lowercases environment keys, so
//! `STEPSTACK_POD_SETTINGS__AFFINITY__NODE_AFFINITY__…` arrives as `node_affinity`, while
//! the schema (Kubernetes' wire format) says `nodeAffinity`. Walking the value along the
//! schema, a key that is not a property is renamed to the property it names when case and
//! underscores are ignored. Keys of maps (labels, node selectors) are left as they are.

use serde_json::{Map, Value};

/// How deep the walk follows the value (settings are far shallower).
const MAX_DEPTH: usize = 32;

/// Renames the keys of `value` to the schema's spelling; `root` holds the `$defs`.
pub(crate) fn restore_case(value: &mut Value, root: &Value) {
    walk(value, root, root, 0);
}

fn walk(value: &mut Value, schema: &Value, root: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Value::Object(map) = value else { return };
    let Some(properties) = object_properties(schema, root) else {
        return;
    };
    rename_keys(map, properties);
    for (key, child) in map.iter_mut() {
        if let Some(child_schema) = properties.get(key) {
            walk(child, child_schema, root, depth + 1);
        }
    }
}

fn rename_keys(map: &mut Map<String, Value>, properties: &Map<String, Value>) {
    let renames: Vec<(String, String)> = map
        .keys()
        .filter(|key| !properties.contains_key(*key))
        .filter_map(|key| {
            let wanted = fold(key);
            properties
                .keys()
                .find(|property| fold(property) == wanted)
                .map(|property| (key.clone(), property.clone()))
        })
        .collect();
    for (from, to) in renames {
        if let Some(v) = map.remove(&from) {
            map.insert(to, v);
        }
    }
}

/// A key with case and underscores ignored: `node_affinity`, `nodeAffinity` and
/// `nodeaffinity` are the same.
fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The `properties` of the object schema `schema` stands for, following `$ref`s and the
/// branches of optional values (`anyOf: [{$ref}, {type: null}]`).
fn object_properties<'s>(schema: &'s Value, root: &'s Value) -> Option<&'s Map<String, Value>> {
    let mut pending = vec![schema];
    let mut steps = 0;
    while let Some(schema) = pending.pop() {
        steps += 1;
        if steps > MAX_DEPTH {
            return None;
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            return Some(properties);
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.strip_prefix("#/$defs/")?;
            pending.push(root.get("$defs")?.get(name)?);
            continue;
        }
        for combinator in ["allOf", "anyOf", "oneOf"] {
            if let Some(branches) = schema.get(combinator).and_then(Value::as_array) {
                pending.extend(branches.iter().rev());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::config_schema_ref;

    #[test]
    fn lowercased_env_keys_get_the_schema_spelling_and_map_keys_stay() {
        let mut value = json!({
            "pod_settings": {
                "node_selectors": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
                "affinity": {"node_affinity": {"requiredduringschedulingignoredduringexecution": {}}},
                "container_security_context": {"run_as_user": 1000}
            },
            "privileged": true
        });
        restore_case(&mut value, config_schema_ref());
        assert_eq!(
            value,
            json!({
                "pod_settings": {
                    "node_selectors": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
                    "container_security_context": {"runAsUser": 1000}
                },
                "privileged": true
            })
        );
    }

    #[test]
    fn unknown_keys_are_left_for_validation_to_report() {
        let mut value = json!({"pod_settings": {"affinityy": {}}});
        restore_case(&mut value, config_schema_ref());
        assert_eq!(value, json!({"pod_settings": {"affinityy": {}}}));
    }
}
