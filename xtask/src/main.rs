//! `cargo xtask`: the project's workflows as code (see `cargo xtask --help`).

mod bench;
mod ci;
mod codegen;
mod demo;
mod msrv;
mod tidy;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use xshell::Shell;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "stepstack project workflows")]
struct Flags {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI checks: formatting, clippy, tests, docs, generated files, repo rules.
    Ci,
    /// Benchmarks against the emulated cluster; writes target/bench/report.{json,md}.
    Bench {
        /// Small counts and a debug build: checks the harness in a few minutes.
        #[arg(long)]
        quick: bool,
    },
    /// The seed workflow on the embedded emulated cluster, through the real binary.
    Demo,
    /// Regenerates committed files (JSON Schemas under `schemas/`).
    Codegen {
        /// Fail instead of writing when a generated file is stale.
        #[arg(long)]
        check: bool,
    },
    /// Checks repository rules (workspace lints, crate READMEs as docs, …).
    Tidy,
    /// Checks the declared `rust-version` against the toolchain and every dependency.
    Msrv,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match flags.task {
        Task::Ci => ci::run(&sh),
        Task::Demo => demo::run(&sh),
        Task::Bench { quick } => bench::run(&sh, quick),
        Task::Codegen { check } => codegen::run(&sh, check),
        Task::Tidy => tidy::run(&sh),
        Task::Msrv => msrv::run(&sh),
    }
}

/// The workspace root: the parent of this crate's directory.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
