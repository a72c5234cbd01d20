//! The `stepstack` binary: the built-in flavors and nothing else.

fn main() -> std::process::ExitCode {
    stepstack_cli::main_with(|_registry| Ok(()))
}
