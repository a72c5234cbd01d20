//! `stepstack-agent`: runs inside a step's pod (or next to a local step). `run` downloads
//! the declared inputs, runs the command with signals forwarded, uploads the outputs with
//! their manifests last and reports through its exit code and a termination message;
//! `install DIR` copies the binary for an init container.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stepstack_agent::run::{RunResult, Signals, build_store, run, write_termination_message};
use stepstack_agent::{AgentSpec, Reason, exit_code};
use stepstack_core::error_chain;

#[derive(Debug, Parser)]
#[command(
    name = "stepstack-agent",
    version,
    about = "Runs one step: inputs in, command, outputs out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download the inputs, run COMMAND, upload the outputs.
    Run {
        /// The JSON spec (store, inputs, outputs).
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Copy this binary to DIR/stepstack-agent (for an init container).
    Install {
        /// The directory, e.g. an emptyDir mounted at /stepstack/bin.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STEPSTACK_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let _ = err.print();
            return exit(exit_code::SPEC);
        }
    };
    match cli.command {
        Command::Install { dir } => match stepstack_agent::install(&dir) {
            Ok(path) => {
                tracing::info!(path = %path.display(), "installed");
                ExitCode::SUCCESS
            }
            Err(err) => {
                report(
                    &anyhow::Error::new(err)
                        .context(format!("could not install into {}", dir.display())),
                );
                exit(exit_code::SPEC)
            }
        },
        Command::Run { spec, command } => {
            let result = run_agent(&spec, &command);
            exit(result)
        }
    }
}

fn run_agent(spec_path: &std::path::Path, command: &[String]) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report(&anyhow::Error::new(err).context("could not start the runtime"));
            return exit_code::SPEC;
        }
    };
    runtime.block_on(async {
        // Signals first: a SIGTERM from here on is never lost.
        let mut signals = match Signals::install() {
            Ok(signals) => signals,
            Err(err) => {
                report(&anyhow::Error::new(err).context("could not install signal handlers"));
                return exit_code::SPEC;
            }
        };
        let spec = match AgentSpec::load(spec_path) {
            Ok(spec) => spec,
            Err(err) => {
                let result =
                    RunResult::failure(Reason::AgentSpec, exit_code::SPEC, None, error_chain(&err));
                write_termination_message(
                    std::path::Path::new(stepstack_agent::spec::DEFAULT_TERMINATION_LOG),
                    &result,
                );
                report(&anyhow::Error::new(err));
                return result.exit_code;
            }
        };
        let result = match stepstack_agent::registry().and_then(|r| build_store(&spec, &r)) {
            Ok(store) => run(&spec, store.as_ref(), command, &mut signals).await,
            Err(err) => RunResult::failure(
                Reason::AgentSpec,
                exit_code::SPEC,
                None,
                format!("could not open the artifact store: {}", error_chain(&err)),
            ),
        };
        if let Some(message) = &result.message {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("stepstack-agent: {message}");
            }
        }
        write_termination_message(spec.termination_log(), &result);
        result.exit_code
    })
}

fn report(err: &anyhow::Error) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("stepstack-agent: {err:#}");
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
