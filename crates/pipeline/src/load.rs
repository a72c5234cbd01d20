//! Loading pipeline files (YAML, TOML or JSON) within the one bounded-input rule every
//! stepstack loader applies ([`stepstack_input::Limits::DEFAULT`]: size, nesting depth,
//! values after YAML alias expansion; duplicate keys, non-finite numbers, NUL and
//! non-regular files refused).

use std::path::Path;

use serde_json::Value;
use stepstack_input::{Format, InputError, Limits};
use stepstack_settings::{Issue, ValidationReport};

use crate::model::Pipeline;

/// Why a pipeline file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read or parsed (the source says why, with line and column).
    #[error("cannot load pipeline file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: InputError,
    },
    /// The file's extension is not yaml, yml, toml or json.
    #[error("cannot load pipeline file {path}: unknown format; use .yaml, .yml, .toml or .json")]
    UnknownFormat {
        /// The file.
        path: String,
    },
    /// The pipeline is invalid.
    #[error("{origin}: {}", crate::problems(.report))]
    Invalid {
        /// The file or source name.
        origin: String,
        /// Every problem, with its path.
        report: ValidationReport,
    },
}

impl LoadError {
    /// The problems, when the pipeline was read but is invalid.
    pub fn report(&self) -> Option<&ValidationReport> {
        match self {
            LoadError::Invalid { report, .. } => Some(report),
            _ => None,
        }
    }
}

/// A loaded pipeline and the warnings about it (ZenML keys with no effect, deprecated
/// settings), each with its path.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The warnings.
    pub warnings: Vec<Issue>,
}

/// How to load: which step-operator flavor's settings to validate as well.
#[derive(Debug, Clone, Default)]
pub struct Loader {
    flavor: Option<String>,
}

impl Loader {
    /// A loader that checks the pipeline itself and its resource settings; step-operator
    /// settings are left for [`Pipeline::check_settings`].
    pub fn new() -> Loader {
        Loader::default()
    }

    /// Also validates the step-operator settings blocks a step operator of `flavor`
    /// uses (e.g. `kubernetes`), reporting their problems with the others.
    pub fn settings_flavor(mut self, flavor: impl Into<String>) -> Loader {
        self.flavor = Some(flavor.into());
        self
    }

    /// Loads a file; the format comes from the extension. A file without `name` is
    /// named after the file (`train.yaml` → `train`).
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Loaded, LoadError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let Some(format) = Format::from_path(path) else {
            return Err(LoadError::UnknownFormat { path: shown });
        };
        let text = stepstack_input::read_file(path, &Limits::DEFAULT).map_err(|source| {
            LoadError::Read {
                path: shown.clone(),
                source,
            }
        })?;
        let stem = path.file_stem().and_then(|s| s.to_str());
        self.load(&text, format, &shown, stem)
    }

    /// Loads a document from a string (`origin` names it in errors); it needs a `name`.
    pub fn load_str(&self, text: &str, format: Format, origin: &str) -> Result<Loaded, LoadError> {
        self.load(text, format, origin, None)
    }

    /// Validates a document already parsed (e.g. built with `serde_json::json!`).
    pub fn load_value(&self, value: &Value, origin: &str) -> Result<Loaded, LoadError> {
        self.check_value(value, origin, None)
    }

    fn load(
        &self,
        text: &str,
        format: Format,
        origin: &str,
        default_name: Option<&str>,
    ) -> Result<Loaded, LoadError> {
        let value = stepstack_input::parse(text, format, &Limits::DEFAULT).map_err(|source| {
            LoadError::Read {
                path: origin.to_string(),
                source,
            }
        })?;
        self.check_value(&value, origin, default_name)
    }

    fn check_value(
        &self,
        value: &Value,
        origin: &str,
        default_name: Option<&str>,
    ) -> Result<Loaded, LoadError> {
        let mut parsed = crate::parse::parse(value);
        let name = match (parsed.name.take(), default_name) {
            (Some(name), _) => name,
            (None, Some(stem)) => stem.to_string(),
            (None, None) => {
                if value.is_object() {
                    parsed.report.issues.push(crate::issue(
                        "name".into(),
                        stepstack_settings::IssueKind::MissingField,
                        "missing: the pipeline's name",
                    ));
                }
                String::from("pipeline")
            }
        };
        let invalid = |report| LoadError::Invalid {
            origin: origin.to_string(),
            report,
        };
        let (pipeline, warnings) = crate::validate::finish(
            name,
            parsed.settings,
            parsed.steps,
            self.flavor.as_deref(),
            parsed.report,
        )
        .map_err(invalid)?;
        let mut all = parsed.warnings;
        all.extend(warnings);
        Ok(Loaded {
            pipeline,
            warnings: all,
        })
    }
}

/// Loads a pipeline file with [`Loader::new`].
pub fn load_file(path: impl AsRef<Path>) -> Result<Loaded, LoadError> {
    Loader::new().load_file(path)
}

/// Loads a pipeline document from a string with [`Loader::new`].
pub fn load_str(text: &str, format: Format, origin: &str) -> Result<Loaded, LoadError> {
    Loader::new().load_str(text, format, origin)
}
