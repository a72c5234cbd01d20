//! Placeholders in commands, arguments and environment values, and their rendering.
//!
//! `{{inputs.NAME}}` and `{{outputs.NAME}}` become the directories of the step's input
//! and output `NAME`; `{{run.name}}`, `{{run.id}}` and `{{step.name}}` the run's name,
//! its id and the step's name. Spaces inside the braces are allowed (`{{ run.id }}`).
//!
//! Other text between `{{` and `}}` is left as it is (Go templates, jq filters and
//! Jinja keep working) unless it starts with a near miss of the four namespaces
//! (`{{input.data}}`, `{{steps.name}}`): that is an error with a did-you-mean, because it
//! is almost certainly a placeholder the user misspelt.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::model::Step;

/// The namespaces of placeholders.
const NAMESPACES: [&str; 4] = ["inputs", "outputs", "run", "step"];

/// A placeholder, as written between `{{` and `}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    /// `{{inputs.NAME}}`.
    Input(String),
    /// `{{outputs.NAME}}`.
    Output(String),
    /// `{{run.name}}`.
    RunName,
    /// `{{run.id}}`.
    RunId,
    /// `{{step.name}}`.
    StepName,
}

/// A piece of a scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Text kept as it is.
    Literal(&'a str),
    /// A placeholder.
    Placeholder(Placeholder),
    /// Something that looks like a misspelt placeholder: the text between the braces
    /// and why it is wrong.
    Bad(&'a str, String),
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Splits `text` into literals and placeholders.
pub(crate) fn scan(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut literal_start = 0;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        let after_open = &rest[open + 2..];
        let Some(close) = after_open.find("}}") else {
            break;
        };
        let inner = after_open[..close].trim_matches(' ');
        let start = offset + open;
        let end = start + 2 + close + 2;
        if let Some(piece) = classify(inner) {
            if literal_start < start {
                pieces.push(Piece::Literal(&text[literal_start..start]));
            }
            pieces.push(piece);
            literal_start = end;
            offset = end;
            rest = &text[end..];
        } else {
            // Not ours: keep scanning after this `{{`.
            offset = start + 2;
            rest = &text[offset..];
        }
    }
    if literal_start < text.len() {
        pieces.push(Piece::Literal(&text[literal_start..]));
    }
    pieces
}

/// What `inner` (the text between the braces) is, or `None` when it is not ours.
fn classify(inner: &str) -> Option<Piece<'_>> {
    let parts: Vec<&str> = inner.split('.').collect();
    if !parts.iter().all(|p| is_ident(p)) {
        return None;
    }
    let namespace = parts[0];
    let known = NAMESPACES.contains(&namespace);
    if !known {
        let suggestion = stepstack_settings::did_you_mean(namespace, &NAMESPACES)?;
        let fixed = std::iter::once(suggestion)
            .chain(parts[1..].iter().copied())
            .collect::<Vec<_>>()
            .join(".");
        return Some(Piece::Bad(
            inner,
            format!("unknown placeholder `{{{{{inner}}}}}`, did you mean `{{{{{fixed}}}}}`?"),
        ));
    }
    let bad = |why: String| Some(Piece::Bad(inner, why));
    match (namespace, &parts[1..]) {
        ("inputs", [name]) => Some(Piece::Placeholder(Placeholder::Input(name.to_string()))),
        ("outputs", [name]) => Some(Piece::Placeholder(Placeholder::Output(name.to_string()))),
        ("inputs" | "outputs", _) => bad(format!(
            "placeholder `{{{{{inner}}}}}` must name one {}: `{{{{{namespace}.NAME}}}}`",
            &namespace[..namespace.len() - 1]
        )),
        ("run", ["name"]) => Some(Piece::Placeholder(Placeholder::RunName)),
        ("run", ["id"]) => Some(Piece::Placeholder(Placeholder::RunId)),
        ("step", ["name"]) => Some(Piece::Placeholder(Placeholder::StepName)),
        ("run", _) => bad(format!(
            "unknown placeholder `{{{{{inner}}}}}`; the run's are `{{{{run.name}}}}` and `{{{{run.id}}}}`"
        )),
        _ => bad(format!(
            "unknown placeholder `{{{{{inner}}}}}`; the step's is `{{{{step.name}}}}`"
        )),
    }
}

/// The problems of the placeholders in `text` for `step`: misspelt placeholders and
/// inputs or outputs the step does not declare (with a did-you-mean).
pub(crate) fn problems(text: &str, step: &Step) -> Vec<String> {
    let mut found = Vec::new();
    for piece in scan(text) {
        match piece {
            Piece::Literal(_) => {}
            Piece::Bad(_, why) => found.push(why),
            Piece::Placeholder(Placeholder::Input(name)) if !step.inputs.contains_key(&name) => {
                let declared: Vec<&str> = step.inputs.keys().map(String::as_str).collect();
                found.push(undeclared("input", &name, &declared));
            }
            Piece::Placeholder(Placeholder::Output(name)) if !step.outputs.contains(&name) => {
                let declared: Vec<&str> = step.outputs.iter().map(String::as_str).collect();
                found.push(undeclared("output", &name, &declared));
            }
            Piece::Placeholder(_) => {}
        }
    }
    found
}

fn undeclared(kind: &str, name: &str, declared: &[&str]) -> String {
    let mut message = format!("placeholder names the undeclared {kind} `{name}`");
    if let Some(s) = stepstack_settings::did_you_mean(name, declared) {
        message.push_str(&format!(", did you mean `{s}`?"));
    } else if declared.is_empty() {
        message.push_str(&format!("; the step declares no {kind}s"));
    } else {
        message.push_str(&format!("; declared: {}", declared.join(", ")));
    }
    message
}

/// What placeholders stand for in one step run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunContext {
    /// The run's name (`{{run.name}}`).
    pub run_name: String,
    /// The run's id (`{{run.id}}`).
    pub run_id: String,
    /// The step's name (`{{step.name}}`).
    pub step_name: String,
    /// Where each input's directory is (`{{inputs.NAME}}`).
    pub inputs: BTreeMap<String, PathBuf>,
    /// Where each output's directory is (`{{outputs.NAME}}`).
    pub outputs: BTreeMap<String, PathBuf>,
}

/// Why a text could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The context has no path for an input or output the text names.
    #[error("no path for {kind} `{name}`")]
    Missing {
        /// `input` or `output`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The path of an input or output is not UTF-8, so it cannot go into an argument.
    #[error("the path of {kind} `{name}` is not UTF-8")]
    NotUtf8 {
        /// `input` or `output`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A misspelt placeholder (validation reports these before a run).
    #[error("{message}")]
    Invalid {
        /// Why.
        message: String,
    },
}

/// Replaces the placeholders in `text` with their values in `context`.
///
/// ```
/// use stepstack_pipeline::{RunContext, render};
/// let mut context = RunContext { run_id: "r-1".into(), ..RunContext::default() };
/// context.inputs.insert("data".into(), "/tmp/data".into());
/// assert_eq!(render("--in={{inputs.data}} {{ run.id }} ${{x}}", &context).unwrap(),
///            "--in=/tmp/data r-1 ${{x}}");
/// ```
pub fn render(text: &str, context: &RunContext) -> Result<String, RenderError> {
    let mut out = String::with_capacity(text.len());
    let path = |kind: &'static str, name: &str, paths: &BTreeMap<String, PathBuf>| {
        let p = paths.get(name).ok_or_else(|| RenderError::Missing {
            kind,
            name: name.to_string(),
        })?;
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| RenderError::NotUtf8 {
                kind,
                name: name.to_string(),
            })
    };
    for piece in scan(text) {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::Bad(_, message) => return Err(RenderError::Invalid { message }),
            Piece::Placeholder(p) => match p {
                Placeholder::Input(name) => out.push_str(&path("input", &name, &context.inputs)?),
                Placeholder::Output(name) => {
                    out.push_str(&path("output", &name, &context.outputs)?)
                }
                Placeholder::RunName => out.push_str(&context.run_name),
                Placeholder::RunId => out.push_str(&context.run_id),
                Placeholder::StepName => out.push_str(&context.step_name),
            },
        }
    }
    Ok(out)
}

/// A step's command, arguments and environment with the placeholders replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedStep {
    /// `command` followed by `args`.
    pub command: Vec<String>,
    /// The environment.
    pub environment: BTreeMap<String, String>,
}

impl Step {
    /// The step's command line (`command` then `args`) and environment for one run.
    pub fn render(&self, context: &RunContext) -> Result<RenderedStep, RenderError> {
        let command = self
            .command
            .iter()
            .chain(&self.args)
            .map(|s| render(s, context))
            .collect::<Result<_, _>>()?;
        let environment = self
            .environment
            .iter()
            .map(|(k, v)| Ok((k.clone(), render(v, context)?)))
            .collect::<Result<_, RenderError>>()?;
        Ok(RenderedStep {
            command,
            environment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn step() -> Step {
        Step::new(["x"])
            .input("data", "load", "data")
            .output("model")
    }

    #[test]
    fn scans_placeholders_and_keeps_foreign_braces() {
        assert_eq!(
            scan("a{{inputs.x}}b{{ run.id }}{{.Values}}{{ range }}"),
            vec![
                Piece::Literal("a"),
                Piece::Placeholder(Placeholder::Input("x".into())),
                Piece::Literal("b"),
                Piece::Placeholder(Placeholder::RunId),
                Piece::Literal("{{.Values}}{{ range }}"),
            ]
        );
        assert_eq!(scan("{{ unclosed"), vec![Piece::Literal("{{ unclosed")]);
        assert_eq!(
            scan("{{{{step.name}}"),
            vec![
                Piece::Literal("{{"),
                Piece::Placeholder(Placeholder::StepName)
            ]
        );
    }

    #[test]
    fn undeclared_inputs_and_outputs_are_named_with_a_suggestion() {
        let s = step();
        assert_eq!(
            problems("{{inputs.dta}}", &s),
            ["placeholder names the undeclared input `dta`, did you mean `data`?"]
        );
        assert_eq!(
            problems("{{outputs.metrics}}", &s),
            ["placeholder names the undeclared output `metrics`; declared: model"]
        );
        assert!(
            problems(
                "{{inputs.data}} {{outputs.model}} {{run.name}} {{step.name}}",
                &s
            )
            .is_empty()
        );
        let bare = Step::new(["x"]);
        assert_eq!(
            problems("{{inputs.a}}", &bare),
            ["placeholder names the undeclared input `a`; the step declares no inputs"]
        );
    }

    #[test]
    fn misspelt_placeholders_are_errors() {
        let s = step();
        assert_eq!(
            problems("{{input.data}}", &s),
            ["unknown placeholder `{{input.data}}`, did you mean `{{inputs.data}}`?"]
        );
        assert_eq!(
            problems("{{run.uid}}", &s),
            ["unknown placeholder `{{run.uid}}`; the run's are `{{run.name}}` and `{{run.id}}`"]
        );
        assert_eq!(
            problems("{{inputs}}", &s),
            ["placeholder `{{inputs}}` must name one input: `{{inputs.NAME}}`"]
        );
        assert_eq!(
            problems("{{step.id}}", &s),
            ["unknown placeholder `{{step.id}}`; the step's is `{{step.name}}`"]
        );
    }

    #[test]
    fn render_fills_every_placeholder() {
        let mut context = RunContext {
            run_name: "nightly".into(),
            run_id: "r1".into(),
            step_name: "train".into(),
            ..RunContext::default()
        };
        context.inputs.insert("data".into(), "/in/data".into());
        context.outputs.insert("model".into(), "/out/model".into());
        let s = step()
            .args(["--model={{outputs.model}}", "{{step.name}}@{{run.name}}"])
            .env("DATA", "{{inputs.data}}");
        let rendered = s.render(&context).unwrap();
        assert_eq!(
            rendered.command,
            ["x", "--model=/out/model", "train@nightly"]
        );
        assert_eq!(rendered.environment["DATA"], "/in/data");
        context.inputs.clear();
        assert_eq!(
            s.render(&context),
            Err(RenderError::Missing {
                kind: "input",
                name: "data".into()
            })
        );
    }

    proptest! {
        /// Text without `{{` renders to itself, and a placeholder anywhere in it is
        /// replaced by exactly its value.
        #[test]
        fn rendering_replaces_exactly_the_placeholder(
            before in "[^{}]{0,20}", after in "[^{}]{0,20}", id in "[a-z0-9-]{1,12}"
        ) {
            let context = RunContext { run_id: id.clone(), ..RunContext::default() };
            prop_assert_eq!(render(&format!("{before}{after}"), &context).unwrap(), format!("{before}{after}"));
            prop_assert_eq!(
                render(&format!("{before}{{{{run.id}}}}{after}"), &context).unwrap(),
                format!("{before}{id}{after}")
            );
        }
    }
}
