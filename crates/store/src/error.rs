//! The store's error type.

use std::fmt;
use std::path::PathBuf;

use stepstack_core::{Error, ErrorKind};

/// A `Result` whose error defaults to [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What kind of stored object an error is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntityKind {
    /// A service connector.
    Connector,
    /// A stack component of the given type (e.g. `step_operator`).
    Component(String),
    /// A stack.
    Stack,
    /// A secret.
    Secret,
    /// A step run.
    StepRun,
    /// A project directory initialised with `stepstack init`.
    Project,
}

impl EntityKind {
    /// What to do when an object of this kind is not found, for error messages.
    pub fn not_found_hint(&self) -> String {
        match self {
            EntityKind::Connector => {
                "see `stepstack service-connector list` for the registered ones".to_owned()
            }
            EntityKind::Component(t) => format!(
                "see `stepstack {} list` for the registered ones",
                t.replace('_', "-")
            ),
            EntityKind::Stack => "see `stepstack stack list` for the registered ones".to_owned(),
            EntityKind::Secret => "check the secret's name".to_owned(),
            EntityKind::StepRun => {
                "check the step-run id printed when the step was launched".to_owned()
            }
            EntityKind::Project => "run `stepstack init` in the project directory first".to_owned(),
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntityKind::Connector => f.write_str("service connector"),
            EntityKind::Component(t) => f.write_str(&t.replace('_', " ")),
            EntityKind::Stack => f.write_str("stack"),
            EntityKind::Secret => f.write_str("secret"),
            EntityKind::StepRun => f.write_str("step run"),
            EntityKind::Project => f.write_str("project"),
        }
    }
}

/// Why a store operation failed. Messages say what, which name, and what to do; they
/// never contain secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No object of `kind` is called `name` (or has that id).
    #[error("{kind} `{name}` not found; {}", kind.not_found_hint())]
    NotFound {
        /// The kind of object looked up.
        kind: EntityKind,
        /// The name or id that was looked up.
        name: String,
    },
    /// An object of `kind` named `name` already exists.
    #[error(
        "a {kind} named `{name}` already exists; choose another name or update or delete the existing one"
    )]
    AlreadyExists {
        /// The kind of object.
        kind: EntityKind,
        /// The conflicting name.
        name: String,
    },
    /// The object cannot be deleted or changed because others refer to it.
    #[error("{kind} `{name}` is in use by {used_by}; {action}")]
    InUse {
        /// The kind of object.
        kind: EntityKind,
        /// Its name.
        name: String,
        /// Who uses it, e.g. "step operator `k8s`".
        used_by: String,
        /// What to do first, e.g. "disconnect them first".
        action: String,
    },
    /// The request is invalid; the message says why and what to do.
    #[error("{message}")]
    Invalid {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The database failed (corrupt, locked too long, disk full, …).
    #[error("{message}")]
    Database {
        /// What failed and what to do.
        message: String,
        /// The SQLite error, when there is one.
        #[source]
        source: Option<rusqlite::Error>,
    },
    /// Encrypting or decrypting secrets failed (missing or wrong key, corrupt data).
    #[error("{message}")]
    Crypto {
        /// What failed and what to do.
        message: String,
    },
    /// A file or directory of the store could not be read or written. The message names
    /// the action and the path; the I/O error stays the source, so it is printed once.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done, e.g. "could not create the stepstack home".
        action: String,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn not_found(kind: EntityKind, name: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub(crate) fn already_exists(kind: EntityKind, name: impl Into<String>) -> Self {
        StoreError::AlreadyExists {
            kind,
            name: name.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        StoreError::Invalid {
            message: message.into(),
        }
    }

    pub(crate) fn crypto(message: impl Into<String>) -> Self {
        StoreError::Crypto {
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(what: impl fmt::Display) -> Self {
        StoreError::Database {
            message: format!(
                "the store holds invalid data ({what}); it may have been edited by hand or by a newer stepstack"
            ),
            source: None,
        }
    }

    pub(crate) fn io(
        action: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StoreError::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }

    /// The [`ErrorKind`] this error maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::AlreadyExists { .. } | StoreError::InUse { .. } => ErrorKind::Conflict,
            StoreError::Invalid { .. } => ErrorKind::InvalidSettings,
            StoreError::Database { source, .. } => {
                if source.as_ref().is_some_and(is_busy) {
                    ErrorKind::Unavailable
                } else {
                    ErrorKind::Internal
                }
            }
            StoreError::Crypto { .. } => ErrorKind::Unauthenticated,
            StoreError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Internal,
            },
        }
    }
}

/// Whether a SQLite error means another connection held the lock for too long.
pub(crate) fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        let message = if is_busy(&err) {
            "the store is locked by another stepstack process for too long; retry the command"
                .to_owned()
        } else {
            match err.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                    "the store's database file is corrupt or not a stepstack store; move it away and start over, or point --home elsewhere".to_owned()
                }
                Some(rusqlite::ErrorCode::DiskFull) => "the disk holding the store is full; free some space and retry".to_owned(),
                Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied | rusqlite::ErrorCode::CannotOpen) => {
                    "the store's database file cannot be opened for writing; check the permissions of the stepstack home".to_owned()
                }
                // The SQLite error is the source; the chain printer adds it once.
                _ => "the store's database failed".to_owned(),
            }
        };
        StoreError::Database {
            message,
            source: Some(err),
        }
    }
}

impl From<StoreError> for Error {
    /// The message is the store error's own; the source is the store error's cause (the
    /// SQLite or I/O error), not the store error itself, whose text the message already
    /// holds: a chain printer would otherwise print the sentence twice.
    fn from(err: StoreError) -> Self {
        let kind = err.kind();
        let mut out = Error::new(kind, err.to_string());
        match &err {
            StoreError::NotFound { kind: entity, name }
            | StoreError::AlreadyExists { kind: entity, name }
            | StoreError::InUse {
                kind: entity, name, ..
            } => {
                out = out.with_context(context_key(entity), name.clone());
            }
            StoreError::Io { path, .. } => {
                out = out.with_context("path", path.display().to_string());
            }
            _ => {}
        }
        if kind == ErrorKind::Unavailable {
            out = out.set_transient(true);
        }
        match err {
            // rusqlite's own errors repeat their text in their source (`disk I/O error`
            // over `Error code 10: disk I/O error`), so only its top line is kept.
            StoreError::Database {
                source: Some(source),
                ..
            } => out.with_source(source.to_string()),
            StoreError::Io { source, .. } => out.with_source(source),
            _ => out,
        }
    }
}

fn context_key(kind: &EntityKind) -> &'static str {
    match kind {
        EntityKind::Connector => "connector",
        EntityKind::Component(_) => "component",
        EntityKind::Stack => "stack",
        EntityKind::Secret => "secret",
        EntityKind::StepRun => "step_run",
        EntityKind::Project => "project",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_which_and_what_to_do() {
        let err = StoreError::not_found(EntityKind::Component("step_operator".into()), "k8s");
        assert_eq!(
            err.to_string(),
            "step operator `k8s` not found; see `stepstack step-operator list` for the registered ones"
        );
        let err = StoreError::already_exists(EntityKind::Connector, "aws-eu");
        assert!(
            err.to_string()
                .contains("service connector named `aws-eu` already exists")
        );
    }

    #[test]
    fn maps_to_core_error_kinds() {
        let cases = [
            (
                StoreError::not_found(EntityKind::Stack, "s"),
                ErrorKind::NotFound,
            ),
            (
                StoreError::already_exists(EntityKind::Stack, "s"),
                ErrorKind::Conflict,
            ),
            (StoreError::invalid("bad"), ErrorKind::InvalidSettings),
            (StoreError::crypto("bad key"), ErrorKind::Unauthenticated),
            (StoreError::corrupt("x"), ErrorKind::Internal),
            (
                StoreError::io(
                    "could not read",
                    "/x",
                    std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                ),
                ErrorKind::PermissionDenied,
            ),
        ];
        for (err, kind) in cases {
            let core: Error = err.into();
            assert_eq!(core.kind(), kind);
        }
        let core: Error = StoreError::not_found(EntityKind::Connector, "aws-eu").into();
        assert_eq!(core.context_value("connector"), Some("aws-eu"));
        // The message is the whole story: no source that repeats it.
        assert!(std::error::Error::source(&core).is_none());
    }

    /// Every clause of `err` and its sources, in the order a chain printer prints them.
    fn clauses(err: &dyn std::error::Error) -> Vec<String> {
        let mut out = Vec::new();
        let mut next = Some(err);
        while let Some(e) = next {
            out.extend(
                e.to_string()
                    .split(": ")
                    .flat_map(|c| c.split("; "))
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            );
            next = e.source();
        }
        out
    }

    #[test]
    fn a_core_error_from_a_store_error_never_repeats_its_cause() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let sqlite = || {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some("disk I/O error".into()),
            )
        };
        let cases = [
            StoreError::not_found(EntityKind::StepRun, "abc"),
            StoreError::already_exists(EntityKind::Stack, "s"),
            StoreError::InUse {
                kind: EntityKind::Connector,
                name: "c".into(),
                used_by: "step operator `k8s`".into(),
                action: "disconnect them first".into(),
            },
            StoreError::invalid("bad name"),
            StoreError::corrupt("a handle"),
            StoreError::crypto("wrong key"),
            StoreError::io("could not read", "/x/store.db", io()),
            StoreError::from(sqlite()),
        ];
        for err in cases {
            let core: Error = err.into();
            let clauses = clauses(&core);
            for (i, clause) in clauses.iter().enumerate() {
                assert!(
                    !clauses[..i].contains(clause),
                    "`{clause}` twice in {clauses:?}"
                );
            }
        }
    }

    #[test]
    fn the_store_can_move_to_another_thread() {
        fn is_send<T: Send>() {}
        is_send::<crate::Store>();
        is_send::<StoreError>();
    }

    #[test]
    fn busy_database_errors_are_transient() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        let err = StoreError::from(busy);
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        let core: Error = err.into();
        assert!(core.is_transient());
    }
}
