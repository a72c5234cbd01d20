//! How commands print: tables for people, JSON or YAML for programs.

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
            write_out(&format!("{}\n", text.as_ref()))?;
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
        write_out(&text)
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

/// Writes to stdout; a closed pipe (`stepstack … | head`) is not an error.
fn write_out(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::new(Exit::Internal, e)),
    }
}
