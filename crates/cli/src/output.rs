//! How commands print: tables for people, JSON or YAML for programs.
//!
//! This module is the one place that writes to stdout and stderr (the crate denies
//! clippy's `print_stdout` and `print_stderr`). A closed stdout (`stepstack … | head`)
//! is the end of output, as in ripgrep: the write returns [`OutputClosed`], the command
//! stops, and the process exits 0 without a message. A failing stderr is ignored: there
//! is nowhere left to say so.

use std::fmt;
use std::io::Write;

use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use crate::exit::{CliError, CliResult, Exit};

/// The `-o/--output` format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Human-readable tables.
    #[default]
    Table,
    /// JSON, one document.
    Json,
    /// YAML, one document.
    Yaml,
}

/// Where and how a command prints.
pub(crate) struct Printer {
    /// The chosen format.
    pub(crate) format: OutputFormat,
}

/// The text shown in place of a secret value.
pub(crate) const HIDDEN: &str = "[HIDDEN]";

impl Printer {
    /// Prints a line of text (only in table format; programs get data, not prose).
    pub(crate) fn line(&self, text: impl AsRef<str>) -> CliResult {
        if self.format == OutputFormat::Table {
            print_line(text.as_ref())?;
        }
        Ok(())
    }

    /// Prints `data` as JSON or YAML; nothing in table format (the prose says it all).
    pub(crate) fn structured<T: Serialize>(&self, data: &T) -> CliResult {
        if self.format == OutputFormat::Table {
            return Ok(());
        }
        self.data(data, comfy_table::Table::new)
    }

    /// Prints `data` as JSON or YAML, or as `table` in table format.
    pub(crate) fn data<T: Serialize>(&self, data: &T, table: impl FnOnce() -> Table) -> CliResult {
        let text = match self.format {
            OutputFormat::Table => format!("{}\n", table()),
            OutputFormat::Json => {
                let mut s = serde_json::to_string_pretty(data)
                    .map_err(|e| CliError::new(Exit::Internal, e))?;
                s.push('\n');
                s
            }
            OutputFormat::Yaml => {
                serde_norway::to_string(data).map_err(|e| CliError::new(Exit::Internal, e))?
            }
        };
        print(&text)
    }
}

/// A table with the house style and the given header.
pub(crate) fn table<I, S>(header: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    table
}

/// A write found stdout closed: its reader has gone (`stepstack … | head -1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputClosed;

impl fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for OutputClosed {}

impl OutputClosed {
    /// As a contracts error, for code that returns [`stepstack_core::Result`] (a log
    /// stream printed from a task); [`is_closed`] still finds it in the chain.
    pub(crate) fn into_core(self) -> stepstack_core::Error {
        stepstack_core::Error::new(stepstack_core::ErrorKind::Cancelled, "output ended")
            .with_source(self)
    }
}

/// Whether `error` (or any of its causes) is a closed stdout, which ends the command
/// with exit code 0 and no message.
pub(crate) fn is_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<OutputClosed>())
}

/// [`is_closed`] for a contracts error (a log stream printed from a task).
pub(crate) fn is_closed_core(error: &stepstack_core::Error) -> bool {
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        if e.is::<OutputClosed>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Writes `text` to stdout as it is.
pub(crate) fn print(text: &str) -> CliResult {
    write_stdout(text.as_bytes()).map_err(|e| match e {
        Some(e) => CliError::new(
            Exit::Internal,
            anyhow::Error::new(e).context("could not write to stdout"),
        ),
        None => CliError::new(Exit::Ok, OutputClosed),
    })
}

/// Writes `text` and a newline to stdout.
pub(crate) fn print_line(text: impl fmt::Display) -> CliResult {
    print(&format!("{text}\n"))
}

/// [`print_line`] for code that returns the contracts' result (a log stream printed
/// from a task).
pub(crate) fn print_line_core(text: impl fmt::Display) -> stepstack_core::Result<()> {
    write_stdout(format!("{text}\n").as_bytes()).map_err(|e| match e {
        Some(e) => stepstack_core::Error::new(
            stepstack_core::ErrorKind::Internal,
            "could not write to stdout",
        )
        .with_source(e),
        None => OutputClosed.into_core(),
    })
}

/// Writes `text` and a newline to stderr (errors, warnings, progress notes). A failing
/// stderr is ignored.
pub(crate) fn message(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}").and_then(|()| err.flush());
}

/// Writes and flushes `bytes`; `Err(None)` means the reader closed the pipe.
fn write_stdout(bytes: &[u8]) -> Result<(), Option<std::io::Error>> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(None),
        Err(e) => Err(Some(e)),
    }
}
