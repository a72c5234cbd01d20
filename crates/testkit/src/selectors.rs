//! Label and field selectors (the `labelSelector` / `fieldSelector` query parameters).

use serde_json::Value;

use crate::error::ApiError;
use crate::store::ResourceKind;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    /// `key` — the label exists.
    Exists(String),
    /// `!key` — the label does not exist.
    NotExists(String),
    /// `key=value` / `key==value`.
    Equals(String, String),
    /// `key!=value` (also matches objects without the label).
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)` (also matches objects without the label).
    NotIn(String, Vec<String>),
}

impl LabelRequirement {
    fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        match self {
            LabelRequirement::Exists(k) => get(k).is_some(),
            LabelRequirement::NotExists(k) => get(k).is_none(),
            LabelRequirement::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelRequirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelRequirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        }
    }
}

/// A parsed label selector: all requirements must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// The requirements (ANDed).
    pub requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses the string form (`app=x,tier in (a,b),!legacy`).
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_label_requirement(part)?);
        }
        Ok(Self { requirements })
    }

    /// Builds a selector from `matchLabels`/`matchExpressions` JSON (a `LabelSelector` object).
    pub fn from_json(sel: &Value) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                requirements.push(LabelRequirement::Equals(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                let req = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => LabelRequirement::In(key, values),
                    Some("NotIn") => LabelRequirement::NotIn(key, values),
                    Some("Exists") => LabelRequirement::Exists(key),
                    Some("DoesNotExist") => LabelRequirement::NotExists(key),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "{other:?} is not a valid label selector operator"
                        )));
                    }
                };
                requirements.push(req);
            }
        }
        Ok(Self { requirements })
    }

    /// Whether an object's `metadata.labels` match.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector has no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_set(key: &str, rest: &str, s: &str) -> Result<(String, Vec<String>), ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: {s:?}: expected a set of values in parentheses"
            ))
        })?;
    let values = inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    check_label_key(key, s)?;
    Ok((key.to_string(), values))
}

fn check_label_key(key: &str, s: &str) -> Result<(), ApiError> {
    if key.is_empty() || crate::validation::label_key_errors(key).is_some() {
        return Err(ApiError::bad_request(format!(
            "unable to parse requirement: {s:?}: invalid label key {key:?}"
        )));
    }
    Ok(())
}

fn parse_label_requirement(s: &str) -> Result<LabelRequirement, ApiError> {
    if let Some(k) = s.strip_prefix('!') {
        let k = k.trim();
        check_label_key(k, s)?;
        return Ok(LabelRequirement::NotExists(k.to_string()));
    }
    if let Some((k, v)) = s.split_once("!=") {
        check_label_key(k.trim(), s)?;
        return Ok(LabelRequirement::NotEquals(
            k.trim().into(),
            v.trim().into(),
        ));
    }
    if let Some((k, v)) = s.split_once("==").or_else(|| s.split_once('=')) {
        check_label_key(k.trim(), s)?;
        return Ok(LabelRequirement::Equals(k.trim().into(), v.trim().into()));
    }
    let words: Vec<&str> = s.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = words[0];
        let rest = words[1].trim_start();
        if let Some(r) = rest.strip_prefix("notin") {
            let (k, vs) = parse_set(key, r, s)?;
            return Ok(LabelRequirement::NotIn(k, vs));
        }
        if let Some(r) = rest.strip_prefix("in") {
            let (k, vs) = parse_set(key, r, s)?;
            return Ok(LabelRequirement::In(k, vs));
        }
        return Err(ApiError::bad_request(format!(
            "unable to parse requirement: {s:?}"
        )));
    }
    if s.contains('(') || s.contains(')') || s.contains(' ') {
        return Err(ApiError::bad_request(format!(
            "unable to parse requirement: {s:?}"
        )));
    }
    check_label_key(s, s)?;
    Ok(LabelRequirement::Exists(s.to_string()))
}

/// One field requirement (`field=value` or `field!=value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The dotted field path (`spec.nodeName`).
    pub field: String,
    /// The value to compare with.
    pub value: String,
    /// `true` for `!=`.
    pub negated: bool,
}

/// A parsed field selector: all requirements must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// The requirements (ANDed).
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the string form (`metadata.name=x,status.phase!=Running`).
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, value, negated) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, v, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            requirements.push(FieldRequirement {
                field: field.trim().to_string(),
                value: value.trim().to_string(),
                negated,
            });
        }
        Ok(Self { requirements })
    }

    /// Checks that every field is selectable on `kind` (400 otherwise, as the real server).
    pub fn check_supported(&self, kind: ResourceKind) -> Result<(), ApiError> {
        for r in &self.requirements {
            let ok = r.field == "metadata.name"
                || r.field == "metadata.namespace"
                || kind.extra_selectable_fields().contains(&r.field.as_str());
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    r.field
                )));
            }
        }
        Ok(())
    }

    /// Whether an object matches.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_value(obj, &r.field);
            (actual == r.value) != r.negated
        })
    }
}

/// The string value of a dotted field path (`""` when absent, as the real server compares).
pub fn field_value(obj: &Value, path: &str) -> String {
    if path == "source" {
        // Events: `source` selects on source.component.
        return field_value(obj, "source.component");
    }
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// What a list or watch selects: label and field selectors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// The label selector, if any.
    pub labels: Option<LabelSelector>,
    /// The field selector, if any.
    pub fields: Option<FieldSelector>,
}

impl ListFilter {
    /// A filter that matches everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses optional label and field selector strings.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, ApiError> {
        Ok(Self {
            labels: labels.map(LabelSelector::parse).transpose()?,
            fields: fields.map(FieldSelector::parse).transpose()?,
        })
    }

    /// A filter on a label selector string (`app=x`); panics never, errors on bad syntax.
    pub fn labels(s: &str) -> Result<Self, ApiError> {
        Self::parse(Some(s), None)
    }

    /// A filter on a field selector string (`spec.nodeName=node-1`).
    pub fn fields(s: &str) -> Result<Self, ApiError> {
        Self::parse(None, Some(s))
    }

    /// Whether an object matches both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.as_ref().is_none_or(|l| l.matches(obj))
            && self.fields.as_ref().is_none_or(|f| f.matches(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let o = json!({"metadata": {"labels": {"app": "a", "tier": "web"}}});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&o);
        assert!(m("app=a"));
        assert!(m("app==a,tier"));
        assert!(m("tier in (web, db)"));
        assert!(!m("tier notin (web)"));
        assert!(m("!legacy"));
        assert!(!m("!app"));
        assert!(m("app!=b"));
        assert!(m("x notin (y)"));
        assert!(LabelSelector::parse("a in b").is_err());
    }

    #[test]
    fn field_selectors() {
        let o = json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}});
        let f = FieldSelector::parse("metadata.name=p,status.phase!=Failed").unwrap();
        assert!(f.matches(&o));
        assert!(f.check_supported(ResourceKind::Pod).is_ok());
        assert!(
            FieldSelector::parse("spec.foo=1")
                .unwrap()
                .check_supported(ResourceKind::Pod)
                .is_err()
        );
    }
}
