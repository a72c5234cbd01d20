//! The checks a pipeline passes, whether it came from a file or the builder: names that
//! can become label values and object names, references to existing steps and outputs,
//! outputs declared once, placeholders naming declared inputs and outputs, no cycle,
//! and settings and resources as the settings crate validates them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use stepstack_settings::{Issue, IssueKind, LoadError, ValidationReport};

use crate::dag::Dag;
use crate::model::{Pipeline, Step};
use crate::path::{index, key};

/// Why `name` cannot be a step's name, an input's or an output's: it becomes a label
/// value (`step=NAME`), part of Job names and of artifact paths, and `.` separates a
/// step from its output in `STEP.OUTPUT`.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if let Err(why) = stepstack_settings::check_label_value(name) {
        return Some(format!("cannot become a Kubernetes label value: it {why}"));
    }
    if name.contains('.') {
        return Some(
            "must not contain `.`, which separates a step from its output in STEP.OUTPUT".into(),
        );
    }
    // A valid label value starts with an alphanumeric character, so the object name
    // derived from it (sanitised, lowercase) is never empty; checked all the same.
    if stepstack_settings::sanitize_label(name).is_empty() {
        return Some("cannot become part of a Kubernetes object name".into());
    }
    None
}

fn push(report: &mut ValidationReport, path: String, kind: IssueKind, message: impl Into<String>) {
    report.issues.push(crate::issue(path, kind, message));
}

/// Runs every semantic check on the parts read so far, adds the problems to `report`
/// and returns the pipeline when there are none. `flavor`, when given, also validates
/// the settings blocks a step operator of that flavor would use.
pub(crate) fn finish(
    name: String,
    settings: Option<Value>,
    steps: BTreeMap<String, Step>,
    flavor: Option<&str>,
    mut report: ValidationReport,
) -> Result<(Pipeline, Vec<Issue>), ValidationReport> {
    let mut warnings = Vec::new();
    // The pipeline's name becomes the `pipeline` label value and a directory of the
    // artifact store.
    if name.is_empty() {
        push(
            &mut report,
            "name".into(),
            IssueKind::MissingField,
            "the pipeline needs a name",
        );
    } else if let Err(why) = stepstack_settings::check_label_value(&name) {
        push(
            &mut report,
            "name".into(),
            IssueKind::InvalidValue,
            format!("`{name}` cannot become a Kubernetes label value: it {why}"),
        );
    }
    let step_names: Vec<&str> = steps.keys().map(String::as_str).collect();
    for (step_name, step) in &steps {
        check_step(&mut report, step_name, step, &steps, &step_names);
    }
    // Resource blocks are the same for every flavor, so they are checked here.
    check_resources(&mut report, settings.as_ref(), "settings");
    for (step_name, step) in &steps {
        let path = key("steps", step_name);
        check_resources(&mut report, step.settings.as_ref(), &key(&path, "settings"));
        if let Some(r) = &step.resources {
            if let Err(r) = stepstack_settings::parse_resource_settings(r, &key(&path, "resources"))
            {
                report.issues.extend(r.issues);
            }
            if step
                .settings
                .as_ref()
                .and_then(|s| s.get("resources"))
                .is_some_and(|v| !v.is_null())
            {
                push(
                    &mut report,
                    key(&path, "resources"),
                    IssueKind::InvalidValue,
                    "resources are also given under settings.resources; give them once",
                );
            }
        }
    }
    let dag = Dag::new(
        step_names.iter().copied(),
        steps.iter().flat_map(|(name, step)| {
            step.upstream()
                .into_iter()
                .map(move |up| (up, name.as_str()))
        }),
    );
    for cycle in dag.cycles() {
        push(
            &mut report,
            key("steps", cycle[0]),
            IssueKind::InvalidValue,
            format!(
                "the steps wait for each other in a cycle: {}",
                cycle.join(" -> ")
            ),
        );
    }
    let document = match settings_document(settings.as_ref(), &steps) {
        Ok(document) => Some(document),
        Err(LoadError::RunConfig { report: r, .. }) => {
            report.issues.extend(r.issues);
            None
        }
        Err(other) => {
            push(
                &mut report,
                "settings".into(),
                IssueKind::InvalidValue,
                other.to_string(),
            );
            None
        }
    };
    if let (Some(document), Some(flavor)) = (&document, flavor) {
        match document.validate(flavor) {
            Ok(checked) => warnings.extend(checked.warnings),
            Err(r) => report.issues.extend(r.issues),
        }
    }
    match document {
        Some(document) if report.is_empty() => Ok((
            Pipeline {
                name,
                settings,
                steps,
                document,
                dag,
            },
            warnings,
        )),
        _ => Err(report),
    }
}

fn check_resources(report: &mut ValidationReport, settings: Option<&Value>, path: &str) {
    if let Some(r) = settings
        .and_then(|s| s.get("resources"))
        .filter(|v| !v.is_null())
        && let Err(r) = stepstack_settings::parse_resource_settings(r, &key(path, "resources"))
    {
        report.issues.extend(r.issues);
    }
}

fn check_step(
    report: &mut ValidationReport,
    name: &str,
    step: &Step,
    steps: &BTreeMap<String, Step>,
    step_names: &[&str],
) {
    let path = key("steps", name);
    if let Some(why) = name_problem(name) {
        push(
            report,
            path.clone(),
            IssueKind::InvalidValue,
            format!("step name `{name}` {why}"),
        );
    }
    if step.command.is_empty() && report.at(&key(&path, "command")).is_none() {
        push(
            report,
            key(&path, "command"),
            IssueKind::MissingField,
            "must name at least the program to run",
        );
    }
    // Outputs: valid names, each once.
    let outputs_path = key(&path, "outputs");
    let mut first_at: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, output) in step.outputs.iter().enumerate() {
        let at = index(&outputs_path, i);
        if let Some(why) = name_problem(output) {
            push(
                report,
                at.clone(),
                IssueKind::InvalidValue,
                format!("output name `{output}` {why}"),
            );
        }
        if let Some(first) = first_at.get(output.as_str()) {
            push(
                report,
                at,
                IssueKind::InvalidValue,
                format!(
                    "output `{output}` is declared twice (first at {})",
                    index(&outputs_path, *first)
                ),
            );
        } else {
            first_at.insert(output, i);
        }
    }
    // Inputs: valid names, existing steps and outputs, not the step itself.
    let inputs_path = key(&path, "inputs");
    for (input, from) in &step.inputs {
        let at = key(&inputs_path, input);
        if let Some(why) = name_problem(input) {
            push(
                report,
                at.clone(),
                IssueKind::InvalidValue,
                format!("input name `{input}` {why}"),
            );
        }
        if from.step == name {
            push(
                report,
                at,
                IssueKind::InvalidValue,
                format!("a step cannot read its own output (cycle: {name} -> {name})"),
            );
            continue;
        }
        match steps.get(&from.step) {
            None => push(
                report,
                at,
                IssueKind::InvalidValue,
                missing_step(&from.step, step_names),
            ),
            Some(producer) if !producer.outputs.contains(&from.output) => {
                let declared: Vec<&str> = producer.outputs.iter().map(String::as_str).collect();
                let mut message = format!("step `{}` has no output `{}`", from.step, from.output);
                if let Some(s) = stepstack_settings::did_you_mean(&from.output, &declared) {
                    message.push_str(&format!(", did you mean `{}.{s}`?", from.step));
                } else if declared.is_empty() {
                    message.push_str(&format!("; `{}` declares no outputs", from.step));
                } else {
                    message.push_str(&format!("; its outputs: {}", declared.join(", ")));
                }
                push(report, at, IssueKind::InvalidValue, message);
            }
            Some(_) => {}
        }
    }
    let after_path = key(&path, "after");
    for (i, other) in step.after.iter().enumerate() {
        let at = index(&after_path, i);
        if other == name {
            push(
                report,
                at,
                IssueKind::InvalidValue,
                format!("a step cannot wait for itself (cycle: {name} -> {name})"),
            );
        } else if !steps.contains_key(other) {
            push(
                report,
                at,
                IssueKind::InvalidValue,
                missing_step(other, step_names),
            );
        }
    }
    // Placeholders.
    let texts = [("command", &step.command), ("args", &step.args)];
    for (field, list) in texts {
        for (i, text) in list.iter().enumerate() {
            for message in crate::placeholder::problems(text, step) {
                push(
                    report,
                    index(&key(&path, field), i),
                    IssueKind::InvalidValue,
                    message,
                );
            }
        }
    }
    let env_path = key(&path, "environment");
    for (variable, value) in &step.environment {
        let at = key(&env_path, variable);
        if variable.is_empty() || variable.contains('=') {
            push(
                report,
                at.clone(),
                IssueKind::InvalidValue,
                "an environment variable name must be non-empty and hold no `=`",
            );
        }
        for message in crate::placeholder::problems(value, step) {
            push(report, at.clone(), IssueKind::InvalidValue, message);
        }
    }
    if let Some(operator) = &step.step_operator
        && operator.is_empty()
    {
        push(
            report,
            key(&path, "step_operator"),
            IssueKind::InvalidValue,
            "name a step-operator component, or leave step_operator out to run the step on this machine",
        );
    }
}

fn missing_step(missing: &str, step_names: &[&str]) -> String {
    match stepstack_settings::did_you_mean(missing, step_names) {
        Some(s) => format!("no step `{missing}`, did you mean `{s}`?"),
        None => format!("no step `{missing}`; the steps: {}", step_names.join(", ")),
    }
}

/// The pipeline's settings as a run configuration, read by the settings crate (the
/// same recognition of `step_operator`, `step_operator.<flavor>`, `step_operator:<name>`
/// blocks that `step run --settings` uses, with the same paths in errors).
fn settings_document(
    settings: Option<&Value>,
    steps: &BTreeMap<String, Step>,
) -> Result<stepstack_settings::LoadedDocument, LoadError> {
    let mut step_map = Map::new();
    for (name, step) in steps {
        let mut entry = Map::new();
        if let Some(op) = &step.step_operator {
            entry.insert("step_operator".into(), Value::String(op.clone()));
        }
        if let Some(s) = &step.settings {
            entry.insert("settings".into(), s.clone());
        }
        step_map.insert(name.clone(), Value::Object(entry));
    }
    let mut root = Map::new();
    root.insert(
        "settings".into(),
        settings
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
    );
    root.insert("steps".into(), Value::Object(step_map));
    // Through the settings crate's loader, so its bounds and recognition apply as to
    // any run configuration. The text is JSON made from an already bounded value.
    let text = Value::Object(root).to_string();
    stepstack_settings::load_str(&text, stepstack_settings::Format::Json, "pipeline")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pipeline;
    use serde_json::json;

    fn problems(builder: crate::PipelineBuilder) -> Vec<String> {
        match builder.build() {
            Ok(_) => Vec::new(),
            Err(report) => report.issues.iter().map(ToString::to_string).collect(),
        }
    }

    fn step() -> Step {
        Step::new(["run"])
    }

    #[test]
    fn references_to_missing_steps_and_outputs() {
        let found = problems(
            Pipeline::builder("p")
                .step("load", step().output("data"))
                .step(
                    "train",
                    step()
                        .input("d", "lod", "data")
                        .input("e", "load", "dta")
                        .input("f", "load", "x")
                        .after("evaluate"),
                )
                .step("eval", step().input("m", "train", "model")),
        );
        assert_eq!(
            found,
            [
                "steps.eval.inputs.m: step `train` has no output `model`; `train` declares no outputs",
                "steps.train.inputs.d: no step `lod`, did you mean `load`?",
                "steps.train.inputs.e: step `load` has no output `dta`, did you mean `load.data`?",
                "steps.train.inputs.f: step `load` has no output `x`; its outputs: data",
                "steps.train.after[0]: no step `evaluate`; the steps: eval, load, train",
            ]
        );
    }

    #[test]
    fn outputs_declared_twice() {
        assert_eq!(
            problems(Pipeline::builder("p").step("a", step().output("m").output("n").output("m"))),
            ["steps.a.outputs[2]: output `m` is declared twice (first at steps.a.outputs[0])"]
        );
    }

    #[test]
    fn placeholders_naming_undeclared_inputs_or_outputs() {
        let found = problems(
            Pipeline::builder("p").step(
                "a",
                Step::new(["x", "{{inputs.data}}"])
                    .args(["{{outputs.modl}}"])
                    .output("model")
                    .env("OUT", "{{outputs.model}}/{{run.nme}}"),
            ),
        );
        assert_eq!(
            found,
            [
                "steps.a.command[1]: placeholder names the undeclared input `data`; the step declares no inputs",
                "steps.a.args[0]: placeholder names the undeclared output `modl`, did you mean `model`?",
                "steps.a.environment.OUT: unknown placeholder `{{run.nme}}`; the run's are `{{run.name}}` and `{{run.id}}`",
            ]
        );
    }

    #[test]
    fn names_that_cannot_become_label_values_or_object_names() {
        let found = problems(
            Pipeline::builder("my pipeline")
                .step("Train Model", step())
                .step("-x", step())
                .step("a.b", step())
                .step("s".repeat(64), step())
                .step("ok", step().output("bad/name")),
        );
        let long = "s".repeat(64);
        assert_eq!(
            found,
            [
                "name: `my pipeline` cannot become a Kubernetes label value: it must consist of alphanumeric characters, '-', '_' or '.', and start and end with an alphanumeric character".to_string(),
                "steps.-x: step name `-x` cannot become a Kubernetes label value: it must consist of alphanumeric characters, '-', '_' or '.', and start and end with an alphanumeric character".to_string(),
                "steps[\"Train Model\"]: step name `Train Model` cannot become a Kubernetes label value: it must consist of alphanumeric characters, '-', '_' or '.', and start and end with an alphanumeric character".to_string(),
                "steps[\"a.b\"]: step name `a.b` must not contain `.`, which separates a step from its output in STEP.OUTPUT".to_string(),
                "steps.ok.outputs[0]: output name `bad/name` cannot become a Kubernetes label value: it must consist of alphanumeric characters, '-', '_' or '.', and start and end with an alphanumeric character".to_string(),
                format!("steps.{long}: step name `{long}` cannot become a Kubernetes label value: it must be at most 63 characters, found 64"),
            ]
        );
        assert_eq!(
            problems(Pipeline::builder("").step("a", step())),
            ["name: the pipeline needs a name"]
        );
    }

    #[test]
    fn cycles_are_named_and_self_references_too() {
        let found = problems(
            Pipeline::builder("p")
                .step("a", step().output("o").input("i", "c", "o"))
                .step("b", step().output("o").input("i", "a", "o"))
                .step("c", step().output("o").after("b"))
                .step("d", step().output("o").input("i", "d", "o"))
                .step("e", step().after("e")),
        );
        assert_eq!(
            found,
            [
                "steps.d.inputs.i: a step cannot read its own output (cycle: d -> d)",
                "steps.e.after[0]: a step cannot wait for itself (cycle: e -> e)",
                "steps.a: the steps wait for each other in a cycle: a -> b -> c -> a",
            ]
        );
    }

    #[test]
    fn settings_and_resources_go_through_the_settings_crate() {
        let found = problems(
            Pipeline::builder("p")
                .settings(json!({"step_operator": 3, "resources": {"cpu_cont": 1}}))
                .step(
                    "a",
                    step()
                        .settings(json!({"step_operator": {"pod_count": "x"}, "resources": {"memory": "lots"}}))
                        .resources(&stepstack_settings::ResourceSettings::default()),
                ),
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("settings.resources.cpu_cont: unknown field")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("settings.step_operator: expected a map")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("steps.a.settings.resources.memory: invalid memory")),
            "{found:#?}"
        );
        assert!(found.contains(&"steps.a.resources: resources are also given under settings.resources; give them once".to_string()), "{found:#?}");
        // The Kubernetes settings themselves are checked for a flavor.
        let pipeline = Pipeline::builder("p")
            .step(
                "a",
                step().settings(json!({"step_operator": {"pod_count": "x"}})),
            )
            .build()
            .unwrap();
        let report = pipeline.check_settings("kubernetes").unwrap_err();
        assert!(
            report.issues.iter().all(|i| i
                .path
                .starts_with("steps.a.settings.step_operator.pod_count")),
            "{report}"
        );
    }

    #[test]
    fn unknown_step_operators_list_the_registered_ones() {
        let pipeline = Pipeline::builder("p")
            .step("a", step().step_operator("k9s"))
            .step("b", step().step_operator("k8s"))
            .step("c", step())
            .build()
            .unwrap();
        let report = pipeline
            .check_step_operators(&["sagemaker", "k8s"])
            .unwrap_err();
        let found: Vec<String> = report.issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "steps.a.step_operator: no step operator `k9s` is registered; did you mean `k8s`? registered: k8s, sagemaker"
            ]
        );
        assert!(pipeline.check_step_operators(&["k8s", "k9s"]).is_ok());
        let none = pipeline.check_step_operators(&[]).unwrap_err();
        assert_eq!(none.issues.len(), 2);
        assert!(none.issues[0].message.contains("none is registered"));
    }
}
