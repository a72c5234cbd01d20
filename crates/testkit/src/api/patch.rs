//! PATCH bodies: JSON patch, JSON merge patch, strategic merge patch (the subset of
//! directives kubectl uses) and server-side apply (approximated as a strategic merge).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The patch flavours, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub(crate) fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            _ => Err(ApiError::unsupported_media_type(ct)),
        }
    }
}

/// Parses a patch body (JSON, or YAML for apply patches).
pub(crate) fn parse_body(pt: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    if pt == PatchType::Apply {
        return serde_norway::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Applies a patch to `target` in place.
pub(crate) fn apply(pt: PatchType, target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    match pt {
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("the server rejected our request due to an error in our request: invalid JSON patch: {e}")))?;
            json_patch::patch(target, &p).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(target, patch);
            Ok(())
        }
        PatchType::Strategic | PatchType::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            strategic_merge(target, patch);
            Ok(())
        }
    }
}

/// The merge key of a list field, when Kubernetes merges it by key.
fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "secrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ownerReferences" => "uid",
        "conditions" => "type",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

fn is_primitive_merge_list(field: &str) -> bool {
    matches!(field, "finalizers")
}

fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
        other => other.clone(),
    }
}

/// A strategic merge patch: maps merge recursively, `null` deletes, lists with a merge
/// key merge element-wise (`$patch: delete` removes an element), other lists replace;
/// `$patch: replace`, `$retainKeys` and `$deleteFromPrimitiveList/<field>` are honoured,
/// `$setElementOrder/<field>` is ignored.
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pm) = patch.as_object() else {
        *target = clean(patch);
        return;
    };
    if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = clean(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(tm) = target.as_object_mut() else {
        return;
    };
    for (k, v) in pm {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(del)) = (
                tm.get_mut(field).and_then(Value::as_array_mut),
                v.as_array(),
            ) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                tm.remove(k);
            }
            Value::Object(_) => match tm.get_mut(k) {
                Some(t) if t.is_object() => strategic_merge(t, v),
                _ => {
                    tm.insert(k.clone(), clean(v));
                }
            },
            Value::Array(items) => {
                let key = merge_key(
                    k,
                    items
                        .first()
                        .or_else(|| tm.get(k).and_then(|t| t.as_array()?.first())),
                );
                match (key, tm.get_mut(k).and_then(Value::as_array_mut)) {
                    (Some(key), Some(list)) if items.iter().all(Value::is_object) => {
                        if items
                            .iter()
                            .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
                        {
                            *list = items
                                .iter()
                                .filter(|i| i.get("$patch").is_none())
                                .map(clean)
                                .collect();
                            continue;
                        }
                        for item in items {
                            let id = item.get(key);
                            let pos = list.iter().position(|t| t.get(key) == id && id.is_some());
                            let delete =
                                item.get("$patch").and_then(Value::as_str) == Some("delete");
                            match (pos, delete) {
                                (Some(p), true) => {
                                    list.remove(p);
                                }
                                (None, true) => {}
                                (Some(p), false) => strategic_merge(&mut list[p], item),
                                (None, false) => list.push(clean(item)),
                            }
                        }
                    }
                    (_, Some(list)) if is_primitive_merge_list(k) => {
                        for item in items {
                            if !list.contains(item) {
                                list.push(item.clone());
                            }
                        }
                    }
                    _ => {
                        tm.insert(k.clone(), clean(v));
                    }
                }
            }
            other => {
                tm.insert(k.clone(), other.clone());
            }
        }
    }
    if let Some(keep) = pm.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        tm.retain(|k, _| keep.contains(&k.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_containers_by_name() {
        let mut t = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}, "metadata": {"labels": {"x": "1", "y": "2"}}});
        let p = json!({"metadata": {"labels": {"y": null, "z": "3"}}, "spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "b", "image": "2"}, {"name": "a", "$patch": "delete"}]}});
        strategic_merge(&mut t, &p);
        assert_eq!(
            t,
            json!({"spec": {"containers": [{"name": "b", "image": "2"}]}, "metadata": {"labels": {"x": "1", "z": "3"}}})
        );
    }

    #[test]
    fn json_and_merge() {
        let mut t = json!({"a": {"b": 1}});
        apply(
            PatchType::Json,
            &mut t,
            &json!([{"op": "add", "path": "/a/c", "value": 2}]),
        )
        .unwrap();
        apply(PatchType::Merge, &mut t, &json!({"a": {"b": null}})).unwrap();
        assert_eq!(t, json!({"a": {"c": 2}}));
        assert!(
            apply(
                PatchType::Json,
                &mut t,
                &json!([{"op": "remove", "path": "/zz"}])
            )
            .is_err()
        );
    }
}
