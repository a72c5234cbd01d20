//! Exit codes and the error type that carries one.

use std::fmt;
use std::process::ExitCode;

use stepstack_core::ErrorKind;

/// The documented exit codes of `stepstack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Ok = 0,
    /// 1: a step ran and failed (or was cancelled).
    StepFailed = 1,
    /// 2: bad usage, invalid settings or configuration, unknown names.
    Usage = 2,
    /// 3: the cluster or cloud could not be reached, or refused the credentials.
    Connection = 3,
    /// 4: an internal error; please report it.
    Internal = 4,
    /// 130 (128 + SIGINT, the shells' convention): interrupted by Ctrl-C, SIGTERM or
    /// SIGHUP; the step was cancelled or kept as its `on_interrupt` setting says.
    Interrupted = 130,
}

impl Exit {
    /// The exit code for an error of `kind`.
    pub fn for_kind(kind: ErrorKind) -> Exit {
        match kind {
            ErrorKind::InvalidSettings
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Unsupported => Exit::Usage,
            ErrorKind::Unauthenticated
            | ErrorKind::PermissionDenied
            | ErrorKind::Unavailable
            | ErrorKind::Timeout => Exit::Connection,
            ErrorKind::Cancelled => Exit::StepFailed,
            _ => Exit::Internal,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// An error that ends the command with a specific exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    /// The exit code.
    pub(crate) exit: Exit,
    /// What went wrong and what to do.
    pub(crate) error: anyhow::Error,
}

impl CliError {
    /// An error with exit code `exit`.
    pub(crate) fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        CliError {
            exit,
            error: error.into(),
        }
    }

    /// A usage or settings error (exit code 2).
    pub(crate) fn usage(message: impl fmt::Display) -> Self {
        CliError::new(Exit::Usage, anyhow::anyhow!("{message}"))
    }
}

impl From<stepstack_core::Error> for CliError {
    fn from(error: stepstack_core::Error) -> Self {
        CliError::new(Exit::for_kind(error.kind()), error)
    }
}

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        // A core error anywhere in the chain decides the code; anything else is internal.
        let exit = error
            .chain()
            .find_map(|e| e.downcast_ref::<stepstack_core::Error>())
            .map(|e| Exit::for_kind(e.kind()))
            .unwrap_or(Exit::Internal);
        CliError { exit, error }
    }
}

/// `error` and its causes on one line, as the CLI prints it after `error: `.
///
/// Each cause is printed once: our messages never hold their source's text (the rule of
/// `stepstack_core::error`, checked by the `error_catalog` tests), and a third-party
/// cause whose text the line already holds is skipped ([`stepstack_core::error_chain`]).
pub(crate) fn render(error: &anyhow::Error) -> String {
    let error: &(dyn std::error::Error + 'static) = error.as_ref();
    stepstack_core::error_chain(error)
}

/// The result of a command.
pub(crate) type CliResult<T = ()> = Result<T, CliError>;
