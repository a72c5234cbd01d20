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

    step("rust-version");
    crate::msrv::run(sh)?;

    step("dependencies (cargo deny: licenses, bans, sources)");
    deny(sh, &cargo)?;

    step("clippy");
    cmd!(
        sh,
        "{cargo} clippy --workspace --all-targets --locked -- -D warnings"
    )
    .run()?;

    step("the CLI without default features (no embedded local cluster)");
    cmd!(
        sh,
        "{cargo} build -p stepstack-cli --no-default-features --bins --locked"
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

/// `cargo deny` with the committed `deny.toml`. Advisories are not checked: the
/// advisory database is a git repository that the build machines cannot reach (no
/// network but the package registries). In CI a missing `cargo deny` is an error;
/// locally it is skipped with a note.
fn deny(sh: &Shell, cargo: &str) -> anyhow::Result<()> {
    let installed = cmd!(sh, "{cargo} deny --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    if !installed {
        if std::env::var_os("CI").is_some() {
            anyhow::bail!("cargo-deny is not installed; .ci/run installs it");
        }
        #[allow(clippy::print_stderr)]
        {
            eprintln!("cargo-deny is not installed (`cargo install cargo-deny --locked`); skipped");
        }
        return Ok(());
    }
    cmd!(
        sh,
        "{cargo} deny --locked check --hide-inclusion-graph bans licenses sources"
    )
    .run()?;
    Ok(())
}

fn step(name: &str) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("\n==> xtask ci: {name}");
    }
}
