//! Type checking against the k8s-openapi types and unknown-field detection
//! (`fieldValidation=Strict|Warn|Ignore`).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::store::ResourceKind;

fn roundtrip<T: DeserializeOwned + Serialize>(
    kind: ResourceKind,
    obj: &Value,
) -> Result<Value, ApiError> {
    let typed: T = serde_json::from_value(obj.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"v1\" cannot be handled as a {}: {e}",
            kind.kind(),
            kind.kind()
        ))
    })?;
    serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))
}

/// Deserializes `obj` as the kind's k8s-openapi type (400 BadRequest on type errors) and
/// returns the paths of fields the type does not know (`spec.containers[0].foo`).
pub(crate) fn unknown_fields(kind: ResourceKind, obj: &Value) -> Result<Vec<String>, ApiError> {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1 as core;
    let typed = match kind {
        ResourceKind::Namespace => roundtrip::<core::Namespace>(kind, obj)?,
        ResourceKind::Node => roundtrip::<core::Node>(kind, obj)?,
        ResourceKind::Pod => roundtrip::<core::Pod>(kind, obj)?,
        ResourceKind::Job => roundtrip::<Job>(kind, obj)?,
        ResourceKind::Service => roundtrip::<core::Service>(kind, obj)?,
        ResourceKind::Secret => roundtrip::<core::Secret>(kind, obj)?,
        ResourceKind::ConfigMap => roundtrip::<core::ConfigMap>(kind, obj)?,
        ResourceKind::ServiceAccount => roundtrip::<core::ServiceAccount>(kind, obj)?,
        ResourceKind::Event => roundtrip::<core::Event>(kind, obj)?,
    };
    let mut out = Vec::new();
    diff(obj, &typed, "", &mut out);
    Ok(out)
}

fn diff(orig: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(tv) => diff(v, tv, &p, out),
                    None => {
                        // Nulls and empty values may be dropped by the round trip.
                        let empty = v.is_null()
                            || v.as_object().is_some_and(|m| m.is_empty())
                            || v.as_array().is_some_and(|a| a.is_empty());
                        if !empty {
                            out.push(p);
                        }
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                diff(x, y, &format!("{path}[{i}]"), out);
            }
        }
        // An object where the type has a scalar (or the reverse) is a type error that
        // the round trip reported already, or an opaque map (labels, data): nothing to do.
        _ => {}
    }
}

/// Applies the `fieldValidation` directive: `Strict` rejects unknown fields (400, as
/// the real server's "strict decoding error"), `Warn` (default) returns warnings,
/// `Ignore` drops them silently.
pub(crate) fn field_validation(
    kind: ResourceKind,
    obj: &Value,
    directive: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let unknown = unknown_fields(kind, obj)?;
    match directive.unwrap_or("Warn") {
        "Strict" if !unknown.is_empty() => Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            kind.kind(),
            kind.api_version().rsplit('/').next().unwrap_or("v1"),
            kind.kind(),
            unknown
                .iter()
                .map(|p| format!("unknown field \"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        "Ignore" | "Strict" => Ok(Vec::new()),
        "Warn" => Ok(unknown
            .into_iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect()),
        other => Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Warn\", \"Strict\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}], "nope": true}});
        let u = unknown_fields(ResourceKind::Pod, &pod).unwrap();
        assert_eq!(
            u,
            vec![
                "spec.containers[0].bogus".to_string(),
                "spec.nope".to_string()
            ]
        );
        assert!(field_validation(ResourceKind::Pod, &pod, Some("Strict")).is_err());
        let bad = json!({"spec": {"containers": "x"}});
        assert_eq!(
            unknown_fields(ResourceKind::Pod, &bad).unwrap_err().code,
            400
        );
    }
}
