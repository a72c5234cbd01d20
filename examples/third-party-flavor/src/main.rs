//! `stepstack-example`: the `stepstack` CLI with the `local-process` flavor registered
//! next to the built-ins, as a third party ships it.

fn main() -> std::process::ExitCode {
    stepstack_cli::main_with(stepstack_example_flavor::register)
}
