//! The one error type of the stepstack contracts.
//!
//! First-party crates keep their own `thiserror` enums and map them into [`Error`] at the
//! trait boundary; third parties construct [`Error`] directly. The message says what went
//! wrong; context fields say where (flavor, connector, step, namespace, …); the source
//! keeps the cause without repeating it in the message.

use std::fmt;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, so callers can decide what to do without parsing
/// messages (retry, ask the user to fix settings, re-authenticate, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Settings or configuration are invalid; the user must change them.
    InvalidSettings,
    /// Credentials are missing, wrong or expired.
    Unauthenticated,
    /// The identity is known but not allowed to do this.
    PermissionDenied,
    /// A named object (flavor, connector, cluster, Job, …) does not exist.
    NotFound,
    /// The object already exists or was changed concurrently.
    Conflict,
    /// A service could not be reached or answered with a server error.
    Unavailable,
    /// An operation did not finish in time.
    Timeout,
    /// The operation was cancelled.
    Cancelled,
    /// The flavor or connector does not support this operation.
    Unsupported,
    /// A bug or an unexpected answer: report it.
    Internal,
}

impl ErrorKind {
    /// A short lowercase name, as used in messages and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidSettings => "invalid settings",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether errors of this kind are usually worth retrying.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Timeout)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every stepstack contract.
///
/// `Display` prints the message followed by the context fields, e.g.
/// `namespace "ml" does not exist; create it with kubectl create namespace ml (flavor: kubernetes, step: trainer)`.
/// The cause is only available through [`std::error::Error::source`], so chain printers
/// (`anyhow`'s `{:#}`) print it once.
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Vec<(&'static str, String)>,
    transient: Option<bool>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a message that says what went wrong and what to do.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            context: Vec::new(),
            transient: None,
            source: None,
        }
    }

    /// Adds a context field such as `("namespace", "ml")`. Later fields with the same key
    /// are kept too; the outermost caller's fields come last.
    pub fn with_context(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.context.push((key, value.into()));
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Overrides whether this error is transient (by default decided by its kind).
    pub fn set_transient(mut self, transient: bool) -> Self {
        self.transient = Some(transient);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without context fields.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The context fields, in the order they were added.
    pub fn context(&self) -> &[(&'static str, String)] {
        &self.context
    }

    /// The value of the first context field named `key`.
    pub fn context_value(&self, key: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient.unwrap_or_else(|| self.kind.is_transient())
    }
}

/// `error` and its sources on one line, joined with `: `, skipping a cause whose text the
/// line already holds (many errors repeat their source in their own message).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if !self.context.is_empty() {
            f.write_str(" (")?;
            for (i, (key, value)) in self.context.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{key}: {value}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if !self.context.is_empty() {
            d.field("context", &self.context);
        }
        if let Some(transient) = self.transient {
            d.field("transient", &transient);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_appends_context_but_not_the_source() {
        let io = std::io::Error::other("connection reset by peer");
        let err = Error::new(ErrorKind::Unavailable, "could not reach the cluster")
            .with_context("connector", "aws-eu")
            .with_context("namespace", "ml")
            .with_source(io);
        assert_eq!(
            err.to_string(),
            "could not reach the cluster (connector: aws-eu, namespace: ml)"
        );
        assert_eq!(
            std::error::Error::source(&err)
                .map(|s| s.to_string())
                .as_deref(),
            Some("connection reset by peer")
        );
        assert_eq!(err.context_value("namespace"), Some("ml"));
    }

    #[test]
    fn transience_follows_the_kind_unless_overridden() {
        let transient = [ErrorKind::Unavailable, ErrorKind::Timeout];
        for kind in [
            ErrorKind::InvalidSettings,
            ErrorKind::Unauthenticated,
            ErrorKind::PermissionDenied,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::Cancelled,
            ErrorKind::Unsupported,
            ErrorKind::Internal,
        ] {
            let err = Error::new(kind, "x");
            assert_eq!(err.is_transient(), transient.contains(&kind), "{kind}");
            assert_eq!(err.kind(), kind);
        }
        assert!(
            Error::new(ErrorKind::Internal, "x")
                .set_transient(true)
                .is_transient()
        );
        assert!(
            !Error::new(ErrorKind::Timeout, "x")
                .set_transient(false)
                .is_transient()
        );
    }
}
