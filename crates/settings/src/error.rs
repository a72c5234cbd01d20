//! Validation reports: every problem found, each with its full path.

use std::fmt;

/// What kind of problem an [`Issue`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IssueKind {
    /// A key that the schema does not know (typo, snake_case instead of camelCase, …).
    UnknownField,
    /// A value of the wrong JSON type (a list where a map belongs, …).
    WrongType,
    /// A required field of a Kubernetes object is missing.
    MissingField,
    /// A value of the right type that breaks a rule (bad quantity, bad label, …).
    InvalidValue,
    /// A label key that stepstack sets itself.
    ReservedLabel,
}

/// One problem in a settings document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Full path of the offending value, e.g.
    /// `steps.trainer.settings.step_operator.pod_settings.tolerations[1].effect`.
    pub path: String,
    /// What is wrong and, where possible, what to do about it.
    pub message: String,
    /// The category of the problem.
    pub kind: IssueKind,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All problems found in a settings document (never just the first one).
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct ValidationReport {
    /// The problems: structural ones (unknown keys, types) first, then Kubernetes rules.
    pub issues: Vec<Issue>,
}

impl ValidationReport {
    /// The issue at exactly `path`, if any.
    pub fn at(&self, path: &str) -> Option<&Issue> {
        self.issues.iter().find(|i| i.path == path)
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.issues.is_empty()
    }

    pub(crate) fn push(&mut self, path: String, kind: IssueKind, message: impl Into<String>) {
        self.issues.push(Issue {
            path,
            message: message.into(),
            kind,
        });
    }

    pub(crate) fn into_result(self) -> Result<(), ValidationReport> {
        if self.issues.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "invalid step-operator settings ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            write!(f, "\n  - {issue}")?;
        }
        Ok(())
    }
}

/// A path inside a settings document, rendered as `a.b[2].c` (map keys that are not
/// plain identifiers are rendered as `["app.kubernetes.io/name"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Path {
    rendered: String,
}

impl Path {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            rendered: prefix.to_string(),
        }
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let rendered = if plain {
            if self.rendered.is_empty() {
                key.to_string()
            } else {
                format!("{}.{key}", self.rendered)
            }
        } else {
            format!("{}[{key:?}]", self.rendered)
        };
        Self { rendered }
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        Self {
            rendered: format!("{}[{i}]", self.rendered),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.rendered
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

/// Whether `path` is `ancestor` or lies below it.
pub(crate) fn is_under(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || (path.starts_with(ancestor)
            && matches!(path.as_bytes().get(ancestor.len()), Some(b'.' | b'[')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_the_docs() {
        let p = Path::new("steps.trainer.settings.step_operator");
        assert_eq!(
            p.key("pod_settings")
                .key("tolerations")
                .index(1)
                .key("effect")
                .as_str(),
            "steps.trainer.settings.step_operator.pod_settings.tolerations[1].effect"
        );
        assert_eq!(
            Path::new("").key("labels").key("a.b/c").as_str(),
            "labels[\"a.b/c\"]"
        );
        assert!(is_under("a.b[1].c", "a.b"));
        assert!(is_under("a.b", "a.b"));
        assert!(!is_under("a.bc", "a.b"));
    }
}
