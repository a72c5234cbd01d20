//! Reading a pipeline document (a JSON value from any of the three formats) into the
//! model, noting every structural problem (unknown keys, wrong types, missing fields)
//! with its path instead of stopping at the first.
//!
//! A run configuration is a pipeline file once its steps have commands: the keys ZenML
//! puts in one (`enable_cache`, `parameters`, `experiment_tracker`, …) are known here.
//! `enable_cache` means `cache`; `outputs` may be ZenML's map of output names; the
//! others have no effect in a stepstack pipeline and are warned about, not refused.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use stepstack_settings::{Issue, IssueKind, ValidationReport};

use crate::model::{OutputRef, Retry, Step};
use crate::path::{index, key};

/// The top-level keys of a pipeline file.
pub(crate) const PIPELINE_KEYS: [&str; 3] = ["name", "settings", "steps"];

/// The keys of a step.
pub(crate) const STEP_KEYS: [&str; 12] = [
    "after",
    "args",
    "cache",
    "command",
    "environment",
    "image",
    "inputs",
    "outputs",
    "resources",
    "retry",
    "settings",
    "step_operator",
];

/// The keys of `retry` (ZenML's `StepRetryConfig`).
pub(crate) const RETRY_KEYS: [&str; 3] = ["backoff", "delay", "max_retries"];

/// Top-level keys of a ZenML run configuration that have no effect here.
pub(crate) const ZENML_PIPELINE_KEYS: [&str; 19] = [
    "build",
    "cache_policy",
    "enable_artifact_metadata",
    "enable_artifact_visualization",
    "enable_cache",
    "enable_pipeline_logs",
    "enable_step_logs",
    "environment",
    "extra",
    "failure_hook_source",
    "model",
    "parameters",
    "retry",
    "run_name",
    "schedule",
    "secrets",
    "substitutions",
    "success_hook_source",
    "tags",
];

/// Step keys of a ZenML run configuration: `enable_cache` means `cache`, the others
/// have no effect here.
pub(crate) const ZENML_STEP_KEYS: [&str; 15] = [
    "cache_policy",
    "enable_artifact_metadata",
    "enable_artifact_visualization",
    "enable_cache",
    "enable_step_logs",
    "experiment_tracker",
    "extra",
    "failure_hook_source",
    "model",
    "name",
    "parameters",
    "secrets",
    "substitutions",
    "success_hook_source",
    "tags",
];

/// What reading found: the parts of the model, the problems and the warnings.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) name: Option<String>,
    pub(crate) settings: Option<Value>,
    pub(crate) steps: BTreeMap<String, Step>,
    pub(crate) report: ValidationReport,
    pub(crate) warnings: Vec<Issue>,
}

impl Parsed {
    fn problem(&mut self, path: String, kind: IssueKind, message: impl Into<String>) {
        self.report.issues.push(crate::issue(path, kind, message));
    }

    fn warn(&mut self, path: String, message: impl Into<String>) {
        self.warnings
            .push(crate::issue(path, IssueKind::InvalidValue, message));
    }

    /// Checks the keys of `map` at `path`: ours are fine, ZenML's are warned about
    /// (except those in `meaningful`), others are unknown (with a did-you-mean).
    fn keys(&mut self, map: &Map<String, Value>, path: &str, ours: &[&str], zenml: &[&str]) {
        for k in map.keys() {
            if ours.contains(&k.as_str())
                || k == "enable_cache" && zenml.contains(&"enable_cache") && ours.contains(&"cache")
            {
                continue;
            }
            if zenml.contains(&k.as_str()) {
                self.warn(
                    key(path, k),
                    "a ZenML run-configuration key with no effect in a stepstack pipeline; ignored",
                );
                continue;
            }
            let message = match stepstack_settings::did_you_mean(k, ours) {
                Some(s) => format!("unknown field, did you mean {s}?"),
                None => format!("unknown field, expected one of: {}", ours.join(", ")),
            };
            self.problem(key(path, k), IssueKind::UnknownField, message);
        }
    }
}

/// What kind of JSON value `value` is, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Reads a whole document.
pub(crate) fn parse(value: &Value) -> Parsed {
    let mut out = Parsed::default();
    let Value::Object(map) = value else {
        out.problem(
            String::new(),
            IssueKind::WrongType,
            format!(
                "the top level must be a map (name, settings, steps), found {}",
                kind(value)
            ),
        );
        return out;
    };
    out.keys(map, "", &PIPELINE_KEYS, &ZENML_PIPELINE_KEYS);
    match map.get("name") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.name = Some(s.clone()),
        Some(other) => out.problem(
            "name".into(),
            IssueKind::WrongType,
            format!("expected the pipeline's name, found {}", kind(other)),
        ),
    }
    out.settings = map_or_none(&mut out, map.get("settings"), "settings");
    match map.get("steps") {
        None | Some(Value::Null) => out.problem(
            "steps".into(),
            IssueKind::MissingField,
            "missing: a pipeline needs at least one step (steps: {NAME: {command: [...]}})",
        ),
        Some(Value::Object(steps)) => {
            if steps.is_empty() {
                out.problem(
                    "steps".into(),
                    IssueKind::InvalidValue,
                    "a pipeline needs at least one step",
                );
            }
            for (name, step) in steps {
                if let Some(step) = parse_step(&mut out, step, &key("steps", name)) {
                    out.steps.insert(name.clone(), step);
                }
            }
        }
        Some(other) => out.problem(
            "steps".into(),
            IssueKind::WrongType,
            format!(
                "expected a map of step names to steps, found {}",
                kind(other)
            ),
        ),
    }
    out
}

fn map_or_none(out: &mut Parsed, value: Option<&Value>, path: &str) -> Option<Value> {
    match value {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(other) => {
            out.problem(
                path.to_string(),
                IssueKind::WrongType,
                format!("expected a map, found {}", kind(other)),
            );
            None
        }
    }
}

/// A scalar as the text a command line or environment gets (`3` → "3").
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn text_list(out: &mut Parsed, value: &Value, path: &str, what: &str) -> Vec<String> {
    let Value::Array(items) = value else {
        out.problem(
            path.to_string(),
            IssueKind::WrongType,
            format!("expected a list of {what}, found {}", kind(value)),
        );
        return Vec::new();
    };
    let mut texts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match scalar_text(item) {
            Some(t) => texts.push(t),
            None => out.problem(
                index(path, i),
                IssueKind::WrongType,
                format!("expected a string, found {}", kind(item)),
            ),
        }
    }
    texts
}

fn name_list(out: &mut Parsed, value: &Value, path: &str, what: &str) -> Vec<String> {
    let Value::Array(items) = value else {
        out.problem(
            path.to_string(),
            IssueKind::WrongType,
            format!("expected a list of {what}, found {}", kind(value)),
        );
        return Vec::new();
    };
    let mut names = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) => names.push(s.clone()),
            other => out.problem(
                index(path, i),
                IssueKind::WrongType,
                format!("expected a name, found {}", kind(other)),
            ),
        }
    }
    names
}

fn parse_step(out: &mut Parsed, value: &Value, path: &str) -> Option<Step> {
    let map = match value {
        Value::Object(map) => map,
        Value::Null => {
            out.problem(
                key(path, "command"),
                IssueKind::MissingField,
                "missing: a step runs a command, e.g. command: [python, train.py]",
            );
            return None;
        }
        other => {
            out.problem(
                path.to_string(),
                IssueKind::WrongType,
                format!(
                    "expected a step (a map with command, inputs, …), found {}",
                    kind(other)
                ),
            );
            return None;
        }
    };
    out.keys(map, path, &STEP_KEYS, &ZENML_STEP_KEYS);
    let mut step = Step::new(Vec::<String>::new());
    match map.get("command") {
        None | Some(Value::Null) => out.problem(
            key(path, "command"),
            IssueKind::MissingField,
            "missing: a step runs a command, e.g. command: [python, train.py]",
        ),
        Some(v) => {
            let p = key(path, "command");
            step.command = text_list(out, v, &p, "the program and its arguments");
            if matches!(v, Value::Array(items) if items.is_empty()) {
                out.problem(
                    p,
                    IssueKind::InvalidValue,
                    "must name at least the program to run",
                );
            }
        }
    }
    if let Some(v) = map.get("args").filter(|v| !v.is_null()) {
        step.args = text_list(out, v, &key(path, "args"), "arguments");
    }
    for (field, slot) in [
        ("image", &mut step.image),
        ("step_operator", &mut step.step_operator),
    ] {
        match map.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => *slot = Some(s.clone()),
            Some(other) => out.problem(
                key(path, field),
                IssueKind::WrongType,
                format!(
                    "expected {}, found {}",
                    if field == "image" { "an image reference" } else { "the name of a step-operator component (its settings go under settings.step_operator)" },
                    kind(other)
                ),
            ),
        }
    }
    step.settings = map_or_none(out, map.get("settings"), &key(path, "settings"));
    step.resources = map_or_none(out, map.get("resources"), &key(path, "resources"));
    match map.get("environment") {
        None | Some(Value::Null) => {}
        Some(Value::Object(env)) => {
            let p = key(path, "environment");
            for (name, value) in env {
                match scalar_text(value) {
                    Some(text) => {
                        step.environment.insert(name.clone(), text);
                    }
                    None => out.problem(
                        key(&p, name),
                        IssueKind::WrongType,
                        format!("expected a string, found {}", kind(value)),
                    ),
                }
            }
        }
        Some(other) => out.problem(
            key(path, "environment"),
            IssueKind::WrongType,
            format!(
                "expected a map of variable names to values, found {}",
                kind(other)
            ),
        ),
    }
    match map.get("inputs") {
        None | Some(Value::Null) => {}
        Some(Value::Object(inputs)) => {
            let p = key(path, "inputs");
            for (name, value) in inputs {
                let at = key(&p, name);
                let Value::String(reference) = value else {
                    out.problem(
                        at,
                        IssueKind::WrongType,
                        format!("expected STEP.OUTPUT, found {}", kind(value)),
                    );
                    continue;
                };
                match parse_reference(reference) {
                    Ok(r) => {
                        step.inputs.insert(name.clone(), r);
                    }
                    Err(why) => out.problem(at, IssueKind::InvalidValue, why),
                }
            }
        }
        Some(other) => out.problem(
            key(path, "inputs"),
            IssueKind::WrongType,
            format!(
                "expected a map of input names to STEP.OUTPUT, found {}",
                kind(other)
            ),
        ),
    }
    match map.get("outputs") {
        None | Some(Value::Null) => {}
        // ZenML's form: output names to their (materializer) configuration.
        Some(Value::Object(outputs)) => {
            let p = key(path, "outputs");
            for (name, config) in outputs {
                if !matches!(config, Value::Null)
                    && config.as_object().is_none_or(|m| !m.is_empty())
                {
                    out.warn(key(&p, name), "output configuration has no effect in a stepstack pipeline; an output is a directory the step writes");
                }
                step.outputs.push(name.clone());
            }
        }
        Some(v) => step.outputs = name_list(out, v, &key(path, "outputs"), "output names"),
    }
    if let Some(v) = map.get("after").filter(|v| !v.is_null()) {
        step.after = name_list(out, v, &key(path, "after"), "step names");
    }
    match map.get("retry") {
        None | Some(Value::Null) => {}
        Some(Value::Object(retry)) => {
            step.retry = Some(parse_retry(out, retry, &key(path, "retry")))
        }
        Some(other) => out.problem(
            key(path, "retry"),
            IssueKind::WrongType,
            format!(
                "expected a map (max_retries, delay, backoff), found {}",
                kind(other)
            ),
        ),
    }
    let mut flag = |field: &str| match map.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            out.problem(
                key(path, field),
                IssueKind::WrongType,
                format!("expected true or false, found {}", kind(other)),
            );
            None
        }
    };
    let (cache, enable_cache) = (flag("cache"), flag("enable_cache"));
    if let (Some(a), Some(b)) = (cache, enable_cache)
        && a != b
    {
        out.problem(
            key(path, "enable_cache"),
            IssueKind::InvalidValue,
            format!("contradicts cache: {a}; keep one (enable_cache is ZenML's name for cache)"),
        );
    }
    step.cache = cache.or(enable_cache).unwrap_or(true);
    Some(step)
}

fn parse_retry(out: &mut Parsed, map: &Map<String, Value>, path: &str) -> Retry {
    out.keys(map, path, &RETRY_KEYS, &[]);
    let mut retry = Retry::default();
    for field in RETRY_KEYS {
        let Some(value) = map.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let Some(n) = value.as_u64() else {
            out.problem(
                key(path, field),
                IssueKind::WrongType,
                format!("expected a whole number ≥ 0, found {}", kind(value)),
            );
            continue;
        };
        let small = u32::try_from(n);
        match field {
            "delay" => retry.delay = n,
            "max_retries" | "backoff" => match small {
                Ok(v) if field == "max_retries" => retry.max_retries = v,
                Ok(v) => retry.backoff = v,
                Err(_) => out.problem(
                    key(path, field),
                    IssueKind::InvalidValue,
                    format!("{n} is too large"),
                ),
            },
            _ => {}
        }
    }
    retry
}

/// Reads `STEP.OUTPUT`.
pub(crate) fn parse_reference(text: &str) -> Result<OutputRef, String> {
    let parts: Vec<&str> = text.split('.').collect();
    match parts.as_slice() {
        [step, output] if !step.is_empty() && !output.is_empty() => {
            Ok(OutputRef::new(*step, *output))
        }
        [step, "outputs", output] if !step.is_empty() && !output.is_empty() => Err(format!(
            "`{text}`: write STEP.OUTPUT, did you mean `{step}.{output}`?"
        )),
        _ => Err(format!(
            "`{text}` is not STEP.OUTPUT (a step's name, a dot, one of its outputs)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(value: Value) -> Vec<String> {
        parse(&value)
            .report
            .issues
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn unknown_keys_everywhere_with_suggestions() {
        let found = problems(json!({
            "name": "p",
            "stpes": {},
            "steps": {"a": {"comand": ["x"], "command": ["x"], "retry": {"max_retry": 2}}}
        }));
        assert_eq!(
            found,
            [
                "stpes: unknown field, did you mean steps?",
                "steps.a.comand: unknown field, did you mean command?",
                "steps.a.retry.max_retry: unknown field, did you mean max_retries?",
            ]
        );
    }

    #[test]
    fn wrong_types_and_missing_fields_all_at_once() {
        let found = problems(json!({
            "name": 3,
            "settings": [],
            "steps": {
                "a": {"command": "python x.py", "environment": {"A": [1]}, "cache": "yes"},
                "b": null,
                "c": {"command": [], "inputs": {"x": "nodot", "y": "a.outputs.z"}, "after": [1]}
            }
        }));
        assert_eq!(
            found,
            [
                "name: expected the pipeline's name, found a number",
                "settings: expected a map, found a list",
                "steps.a.command: expected a list of the program and its arguments, found a string",
                "steps.a.environment.A: expected a string, found a list",
                "steps.a.cache: expected true or false, found a string",
                "steps.b.command: missing: a step runs a command, e.g. command: [python, train.py]",
                "steps.c.command: must name at least the program to run",
                "steps.c.inputs.x: `nodot` is not STEP.OUTPUT (a step's name, a dot, one of its outputs)",
                "steps.c.inputs.y: `a.outputs.z`: write STEP.OUTPUT, did you mean `a.z`?",
                "steps.c.after[0]: expected a name, found a number",
            ]
        );
        assert_eq!(
            problems(json!({"name": "p"})),
            [
                "steps: missing: a pipeline needs at least one step (steps: {NAME: {command: [...]}})"
            ]
        );
        assert_eq!(
            problems(json!([1])),
            ["the top level must be a map (name, settings, steps), found a list"]
        );
    }

    #[test]
    fn zenml_keys_warn_and_enable_cache_means_cache() {
        let parsed = parse(&json!({
            "name": "p",
            "run_name": "nightly",
            "steps": {"a": {"command": ["x"], "enable_cache": false, "experiment_tracker": "mlflow",
                            "outputs": {"model": {"materializer_source": "m"}}}}
        }));
        assert!(parsed.report.is_empty(), "{:?}", parsed.report);
        let warned: Vec<&str> = parsed.warnings.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            warned,
            [
                "run_name",
                "steps.a.experiment_tracker",
                "steps.a.outputs.model"
            ]
        );
        assert!(!parsed.steps["a"].cache);
        assert_eq!(parsed.steps["a"].outputs, ["model"]);
        assert_eq!(
            problems(
                json!({"name": "p", "steps": {"a": {"command": ["x"], "cache": true, "enable_cache": false}}})
            ),
            [
                "steps.a.enable_cache: contradicts cache: true; keep one (enable_cache is ZenML's name for cache)"
            ]
        );
    }

    #[test]
    fn scalars_in_commands_become_text() {
        let parsed = parse(
            &json!({"name": "p", "steps": {"a": {"command": ["x", 3, true], "environment": {"N": 2}}}}),
        );
        assert_eq!(parsed.steps["a"].command, ["x", "3", "true"]);
        assert_eq!(parsed.steps["a"].environment["N"], "2");
    }
}
