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
    clap_complete::generate(
        args.shell,
        &mut command,
        "stepstack",
        &mut std::io::stdout(),
    );
    Ok(Exit::Ok)
}
