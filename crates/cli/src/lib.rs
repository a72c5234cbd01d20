#![doc = include_str!("../README.md")]
// Everything is written through `output`, which treats a closed stdout as the end of
// output; the print macros would panic on it (exit 101).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod commands;
#[cfg(test)]
mod error_catalog;
mod exit;
mod freeform;
mod logging;
mod output;
mod progress;
mod signals;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use stepstack_core::{Registry, Result};

pub use exit::Exit;

/// Runs `stepstack` with the built-in flavors plus whatever `configure` registers, and
/// returns the process exit code (see [`Exit`]).
///
/// A third party ships its own binary with its flavors next to the built-ins:
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     stepstack_cli::main_with(|registry| {
///         // my_flavor::register(registry)
///         let _ = registry;
///         Ok(())
///     })
/// }
/// ```
pub fn main_with(configure: impl FnOnce(&mut Registry) -> Result<()>) -> ExitCode {
    let registry = match builtin_registry().and_then(|mut registry| {
        configure(&mut registry)?;
        Ok(registry)
    }) {
        Ok(registry) => registry,
        Err(e) => {
            output::message(&format!("error: could not register flavors: {e}"));
            return Exit::Internal.into();
        }
    };
    run(&registry, std::env::args_os().collect())
}

/// A registry with every built-in flavor.
pub fn builtin_registry() -> Result<Registry> {
    let mut registry = Registry::new();
    stepstack_k8s_operator::register(&mut registry)?;
    stepstack_connector_kubernetes::register(&mut registry)?;
    stepstack_connector_aws::register(&mut registry)?;
    stepstack_connector_gcp::register(&mut registry)?;
    stepstack_connector_azure::register(&mut registry)?;
    Ok(registry)
}

/// Parses `args` (program name first) and runs the command; returns the exit code.
pub fn run(registry: &Registry, args: Vec<OsString>) -> ExitCode {
    let command = commands::Cli::command();
    let (args, free_form) = match freeform::split(&command, args) {
        Ok(split) => split,
        Err(e) => return report(e),
    };
    let matches = match command.try_get_matches_from(args) {
        Ok(matches) => matches,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Ok.into()
                }
                _ => Exit::Usage.into(),
            };
        }
    };
    let cli = match commands::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Exit::Usage.into();
        }
    };
    init_tracing(cli.global.verbose);
    match commands::dispatch(cli, registry, free_form) {
        Ok(exit) => exit.into(),
        Err(e) => report(e),
    }
}

fn report(e: exit::CliError) -> ExitCode {
    // A reader that went away (`stepstack … | head`) ended the output: not an error.
    if output::is_closed(&e.error) {
        return Exit::Ok.into();
    }
    output::message(&format!("error: {}", exit::render(&e.error)));
    e.exit.into()
}

fn init_tracing(verbose: u8) {
    logging::init(verbose);
}
