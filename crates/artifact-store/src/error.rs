//! The flavors' own errors, and how `object_store`'s errors map onto core's kinds at the
//! `ArtifactStore` boundary.

use std::path::PathBuf;

use stepstack_core::artifact_store::ObjectKey;
use stepstack_core::{Error, ErrorKind};

/// What can go wrong setting up a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalStoreError {
    /// The root must not depend on the working directory.
    #[error("the local artifact store's path {} is relative; give an absolute path", path.display())]
    RelativeRoot {
        /// The path given.
        path: PathBuf,
    },
    /// The root directory could not be created.
    #[error("could not create the local artifact store's directory {}", path.display())]
    CreateRoot {
        /// The root.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `object_store` refused the root.
    #[error("could not open the local artifact store at {}", path.display())]
    Open {
        /// The root.
        path: PathBuf,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
}

impl From<LocalStoreError> for Error {
    fn from(err: LocalStoreError) -> Self {
        let kind = match &err {
            LocalStoreError::RelativeRoot { .. } => ErrorKind::InvalidSettings,
            LocalStoreError::CreateRoot { .. } | LocalStoreError::Open { .. } => {
                ErrorKind::Unavailable
            }
        };
        // The message is this error's own text; only its cause becomes the source, so a
        // chain printer does not print the sentence twice.
        let out = Error::new(kind, err.to_string());
        match err {
            LocalStoreError::RelativeRoot { .. } => out,
            LocalStoreError::CreateRoot { source, .. } => out.with_source(source),
            LocalStoreError::Open { source, .. } => out.with_source(source),
        }
    }
}

/// What can go wrong setting up a remote (`s3`, `gcs`, `azure`) store. No variant carries
/// a credential: reasons name settings, never their secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteStoreError {
    /// The configuration is not valid.
    #[error("invalid `{flavor}` artifact-store configuration: {reason}")]
    Invalid {
        /// The flavor.
        flavor: &'static str,
        /// What is wrong and what to change.
        reason: String,
    },
    /// `object_store` could not build a client from a valid configuration.
    #[error("could not set up the `{flavor}` artifact store for {location}")]
    Build {
        /// The flavor.
        flavor: &'static str,
        /// The bucket or container.
        location: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
}

impl RemoteStoreError {
    pub(crate) fn invalid(flavor: &'static str, reason: impl Into<String>) -> Self {
        RemoteStoreError::Invalid {
            flavor,
            reason: reason.into(),
        }
    }
}

impl From<RemoteStoreError> for Error {
    fn from(err: RemoteStoreError) -> Self {
        let out = match &err {
            RemoteStoreError::Invalid { flavor, .. } => {
                Error::new(ErrorKind::InvalidSettings, err.to_string())
                    .with_context("flavor", *flavor)
            }
            RemoteStoreError::Build { flavor, .. } => {
                Error::new(ErrorKind::InvalidSettings, err.to_string())
                    .with_context("flavor", *flavor)
            }
        };
        match err {
            RemoteStoreError::Invalid { .. } => out,
            RemoteStoreError::Build { source, .. } => out.with_source(source),
        }
    }
}

/// An `object_store` error as core's [`Error`]: missing objects are `NotFound`, a
/// create-if-absent onto an existing object is `Conflict`, and so on, so the shared
/// artifact logic can tell them apart on every flavor.
pub(crate) fn map_object_store_error(
    operation: &'static str,
    key: &ObjectKey,
    err: object_store::Error,
) -> Error {
    use object_store::Error as E;
    let kind = match &err {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => ErrorKind::Conflict,
        E::NotSupported { .. } | E::NotImplemented { .. } => ErrorKind::Unsupported,
        E::PermissionDenied { .. } => ErrorKind::PermissionDenied,
        E::Unauthenticated { .. } => ErrorKind::Unauthenticated,
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => ErrorKind::InvalidSettings,
        // Generic covers I/O failures of the local store, and for the remote ones the
        // transport errors and 5xx/429 answers left after object_store's retries.
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("{operation} `{key}` failed")).with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setup_error_as_core_error_attaches_its_cause_not_itself() {
        let err = LocalStoreError::CreateRoot {
            path: "/data/artifacts".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let core = Error::from(err);
        let source = std::error::Error::source(&core).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("permission denied"));
        assert!(!core.to_string().contains("permission denied"), "{core}");
        let relative = Error::from(LocalStoreError::RelativeRoot {
            path: "data".into(),
        });
        assert!(std::error::Error::source(&relative).is_none());
    }
}
