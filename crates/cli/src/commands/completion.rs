//! `stepstack completion SHELL`.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::exit::{CliResult, Exit};

#[derive(Debug, Args)]
pub(crate) struct CompletionArgs {
    /// The shell to generate completions for.
    shell: Shell,
}

pub(crate) fn run(args: CompletionArgs) -> CliResult<Exit> {
    let mut command = super::Cli::command();
    // Generated into memory and printed through `output`, which ends quietly when the
    // reader closes the pipe (clap_complete's own writer would panic).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "stepstack", &mut script);
    crate::output::print(&String::from_utf8_lossy(&script))?;
    Ok(Exit::Ok)
}
