//! `cargo xtask ci`: the checks CI runs, in order of how fast they fail.

use xshell::{Shell, cmd};

pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());

    step("format");
    cmd!(sh, "{cargo} fmt --all -- --check").run()?;

    step("repository rules");
    crate::tidy::run(sh)?;

    step("generated files");
    crate::codegen::run(sh, true)?;

    step("clippy");
    cmd!(
        sh,
        "{cargo} clippy --workspace --all-targets --locked -- -D warnings"
    )
    .run()?;

    step("tests");
    // The end-to-end tests run the real `stepstack` binary.
    cmd!(sh, "{cargo} build -p stepstack-cli --bins --locked").run()?;
    if cmd!(sh, "{cargo} nextest --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
    {
        cmd!(
            sh,
            "{cargo} nextest run --workspace --locked --no-fail-fast"
        )
        .run()?;
    } else {
        cmd!(
            sh,
            "{cargo} test --workspace --locked --no-fail-fast --lib --bins --tests"
        )
        .run()?;
    }

    step("doc tests");
    cmd!(sh, "{cargo} test --workspace --locked --doc").run()?;

    step("docs");
    {
        let _env = sh.push_env("RUSTDOCFLAGS", "-D warnings");
        cmd!(sh, "{cargo} doc --workspace --no-deps --locked").run()?;
    }

    step("benchmarks (quick: checks the harness; CI does not judge the numbers)");
    crate::bench::run(sh, true)?;
    Ok(())
}

fn step(name: &str) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("\n==> xtask ci: {name}");
    }
}
