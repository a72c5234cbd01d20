//! Structural validation: walks a raw JSON value against the strict schema.
//!
//! k8s-openapi's deserializers drop unknown keys and default missing required fields,
//! and serde stops at the first error. This walker instead reports every unknown key
//! (with a did-you-mean), wrong type, invalid enum value, out-of-range number and
//! missing required field, with its full path. It also normalises the value: YAML
//! numbers given as quantities become strings, unknown keys are removed and wrongly
//! typed values are replaced by a neutral value of the right type, so the document can
//! still be deserialized and checked further; paths replaced that way are "poisoned" and
//! later checks below them are suppressed.

use serde_json::{Map, Value};

use crate::error::{IssueKind, Path, ValidationReport};
use crate::quantity::number_to_quantity;
use crate::schema::QUANTITY_DEF;
use crate::validate::suggest::did_you_mean;

pub(crate) struct Walker<'s> {
    root: &'s Value,
    pub(crate) report: ValidationReport,
    pub(crate) poisoned: Vec<String>,
}

const MAX_DEPTH: usize = 64;

impl<'s> Walker<'s> {
    pub(crate) fn new(root: &'s Value) -> Self {
        Self {
            root,
            report: ValidationReport::default(),
            poisoned: Vec::new(),
        }
    }

    fn resolve(&self, reference: &str) -> Option<&'s Value> {
        let name = reference.strip_prefix("#/$defs/")?;
        self.root.get("$defs")?.get(name)
    }

    /// Follows `$ref`s (and single-element `allOf`) to the schema that has content.
    fn deref(&self, mut schema: &'s Value) -> &'s Value {
        for _ in 0..MAX_DEPTH {
            if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
                match self.resolve(r) {
                    Some(s) => schema = s,
                    None => return schema,
                }
            } else if let Some([only]) = schema
                .get("allOf")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                schema = only;
            } else {
                return schema;
            }
        }
        schema
    }

    pub(crate) fn walk(
        &mut self,
        schema: &'s Value,
        value: &mut Value,
        path: &Path,
        depth: usize,
        k8s: bool,
    ) {
        if depth > MAX_DEPTH {
            self.report.push(
                path.to_string(),
                IssueKind::InvalidValue,
                "nested too deeply",
            );
            self.poison(path, value, &Value::Null);
            return;
        }
        // Quantities may be given as YAML numbers: normalise them to strings.
        if let Some(r) = schema.get("$ref").and_then(Value::as_str)
            && r.ends_with(QUANTITY_DEF)
            && let Value::Number(n) = value
        {
            *value = Value::String(number_to_quantity(n));
        }
        let k8s = k8s
            || schema
                .get("$ref")
                .and_then(Value::as_str)
                .is_some_and(|r| r.starts_with("#/$defs/io.k8s."));
        let schema = self.deref(schema);
        match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                self.report.push(
                    path.to_string(),
                    IssueKind::UnknownField,
                    "not allowed here",
                );
                return;
            }
            _ => {}
        }
        if let Some(branches) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            self.walk_alternatives(branches, value, path, depth, k8s);
            return;
        }
        if let Some(types) = schema.get("type")
            && !type_matches(types, value)
        {
            self.report.push(
                path.to_string(),
                IssueKind::WrongType,
                format!(
                    "expected {}, found {}",
                    describe_types(types),
                    kind_of(value)
                ),
            );
            self.poison(path, value, types);
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            self.invalid_choice(path, value, allowed, !k8s);
            return;
        }
        if let Some(c) = schema.get("const")
            && c != value
        {
            self.invalid_choice(path, value, std::slice::from_ref(c), !k8s);
            return;
        }
        if value.is_number() {
            self.check_range(schema, value, path);
        }
        match value {
            Value::Object(map) => self.walk_object(schema, map, path, depth, k8s),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter_mut().enumerate() {
                        self.walk(item_schema, item, &path.index(i), depth + 1, k8s);
                    }
                }
            }
            _ => {}
        }
    }

    fn walk_alternatives(
        &mut self,
        branches: &'s [Value],
        value: &mut Value,
        path: &Path,
        depth: usize,
        k8s: bool,
    ) {
        let mut type_compatible = None;
        for branch in branches {
            let resolved = self.deref(branch);
            if let Some(c) = resolved.get("const") {
                if c == value {
                    return;
                }
                continue;
            }
            if let Some(e) = resolved.get("enum").and_then(Value::as_array) {
                if e.contains(value) {
                    return;
                }
                continue;
            }
            let compatible = match resolved.get("type") {
                Some(types) => type_matches(types, value),
                None => true,
            };
            if compatible && type_compatible.is_none() {
                type_compatible = Some(branch);
            }
        }
        if let Some(branch) = type_compatible {
            self.walk(branch, value, path, depth + 1, k8s);
            return;
        }
        let consts: Vec<Value> = branches
            .iter()
            .filter_map(|b| {
                let r = self.deref(b);
                r.get("const")
                    .cloned()
                    .map(|c| vec![c])
                    .or_else(|| r.get("enum").and_then(Value::as_array).cloned())
            })
            .flatten()
            .collect();
        if !consts.is_empty() && consts.iter().any(|c| same_kind(c, value)) {
            self.invalid_choice(path, value, &consts, true);
            return;
        }
        let mut expected: Vec<String> = Vec::new();
        for b in branches {
            let r = self.deref(b);
            let d = match r.get("type") {
                Some(t) => describe_types(t),
                None => "a value".to_string(),
            };
            if !expected.contains(&d) {
                expected.push(d);
            }
        }
        let types = self
            .deref(&branches[0])
            .get("type")
            .cloned()
            .unwrap_or(Value::Null);
        self.report.push(
            path.to_string(),
            IssueKind::WrongType,
            format!(
                "expected {}, found {}",
                expected.join(" or "),
                kind_of(value)
            ),
        );
        self.poison(path, value, &types);
    }

    fn walk_object(
        &mut self,
        schema: &'s Value,
        map: &mut Map<String, Value>,
        path: &Path,
        depth: usize,
        k8s: bool,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let child_path = path.key(&key);
            if let Some(prop) = properties.and_then(|p| p.get(&key)) {
                // Kubernetes treats an explicit null like an absent field.
                if k8s && map.get(&key).is_some_and(Value::is_null) {
                    map.remove(&key);
                    continue;
                }
                if let Some(v) = map.get_mut(&key) {
                    self.walk(prop, v, &child_path, depth + 1, k8s);
                }
                continue;
            }
            match additional {
                Some(Value::Bool(false)) => {
                    let candidates: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let message = match did_you_mean(&key, &candidates) {
                        Some(s) => format!("unknown field, did you mean {s}?"),
                        None if candidates.is_empty() => "unknown field".to_string(),
                        None => {
                            format!("unknown field, expected one of: {}", candidates.join(", "))
                        }
                    };
                    self.report
                        .push(child_path.to_string(), IssueKind::UnknownField, message);
                    self.poisoned.push(child_path.to_string());
                    map.remove(&key);
                }
                Some(extra @ Value::Object(_)) => {
                    if let Some(v) = map.get_mut(&key) {
                        self.walk(extra, v, &child_path, depth + 1, k8s);
                    }
                }
                _ => {}
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    self.report.push(
                        path.key(name).to_string(),
                        IssueKind::MissingField,
                        "missing required field",
                    );
                    self.poisoned.push(path.key(name).to_string());
                }
            }
        }
    }

    fn check_range(&mut self, schema: &Value, value: &mut Value, path: &Path) {
        let Some(x) = value.as_f64() else { return };
        let (format_min, format_max) = match schema.get("format").and_then(Value::as_str) {
            Some("uint8") => (0.0, f64::from(u8::MAX)),
            Some("uint16") => (0.0, f64::from(u16::MAX)),
            Some("uint32") => (0.0, f64::from(u32::MAX)),
            Some("int32") => (f64::from(i32::MIN), f64::from(i32::MAX)),
            Some("uint64" | "uint") => (0.0, u64::MAX as f64),
            _ => (f64::NEG_INFINITY, f64::INFINITY),
        };
        let min = schema
            .get("minimum")
            .and_then(Value::as_f64)
            .unwrap_or(format_min)
            .max(format_min);
        let max = schema
            .get("maximum")
            .and_then(Value::as_f64)
            .unwrap_or(format_max)
            .min(format_max);
        let message = if x < min {
            format!("must be at least {min}, found {value}")
        } else if x > max {
            format!("must be at most {max}, found {value}")
        } else {
            return;
        };
        self.report
            .push(path.to_string(), IssueKind::InvalidValue, message);
        self.poisoned.push(path.to_string());
        let clamped = if x < min { min } else { max };
        *value = if value.is_f64() {
            serde_json::Number::from_f64(clamped).map_or(Value::Null, Value::Number)
        } else {
            Value::from(clamped as i64)
        };
    }

    fn invalid_choice(&mut self, path: &Path, value: &mut Value, allowed: &[Value], replace: bool) {
        let names: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        let plain: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
        let hint = value
            .as_str()
            .and_then(|s| did_you_mean(s, &plain))
            .map(|s| format!(", did you mean {s}?"))
            .unwrap_or_default();
        self.report.push(
            path.to_string(),
            IssueKind::InvalidValue,
            format!(
                "invalid value {value}, expected one of {}{hint}",
                names.join(", ")
            ),
        );
        self.poisoned.push(path.to_string());
        // Our own enums must stay deserializable; Kubernetes enums are plain strings and
        // keep their value so that sibling rules do not see a made-up one.
        if replace {
            *value = allowed.first().cloned().unwrap_or(Value::Null);
        }
    }

    fn poison(&mut self, path: &Path, value: &mut Value, expected: &Value) {
        self.poisoned.push(path.to_string());
        *value = neutral(expected);
    }
}

fn type_names(types: &Value) -> Vec<&str> {
    match types {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn type_matches(types: &Value, value: &Value) -> bool {
    let names = type_names(types);
    names.is_empty()
        || names.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            "number" => value.is_number(),
            "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
            _ => true,
        })
}

fn describe_types(types: &Value) -> String {
    let names: Vec<&str> = type_names(types)
        .into_iter()
        .filter(|t| *t != "null")
        .map(|t| match t {
            "object" => "a map",
            "array" => "a list",
            "string" => "a string",
            "boolean" => "a boolean",
            "number" => "a number",
            "integer" => "an integer",
            other => other,
        })
        .collect();
    if names.is_empty() {
        "null".into()
    } else {
        names.join(" or ")
    }
}

fn kind_of(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    }
}

fn same_kind(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn neutral(expected: &Value) -> Value {
    let names = type_names(expected);
    if names.contains(&"null") {
        return Value::Null;
    }
    match names.first().copied() {
        Some("object") => Value::Object(Map::new()),
        Some("array") => Value::Array(Vec::new()),
        Some("string") => Value::String(String::new()),
        Some("boolean") => Value::Bool(false),
        Some("integer" | "number") => Value::from(0),
        _ => Value::Null,
    }
}
