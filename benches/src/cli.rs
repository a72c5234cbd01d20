//! Whole-process start-up time and peak memory of `stepstack` commands.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;

use crate::stats::Summary;

/// One command's start-up figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CliStartup {
    pub(crate) command: String,
    pub(crate) wall_ms: Summary,
    pub(crate) peak_rss_mb: f64,
}

/// Runs each command `runs` times against a fresh home with a registered step operator.
pub(crate) fn startup(binary: &Path, runs: usize) -> anyhow::Result<Vec<CliStartup>> {
    let home = tempfile::tempdir()?;
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new(binary)
            .args(args)
            .env("STEPSTACK_HOME", home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "`stepstack {}` failed", args.join(" "));
        Ok(())
    };
    run(&[
        "step-operator",
        "register",
        "k8s",
        "--flavor",
        "kubernetes",
        "--kubernetes_namespace=ml",
    ])?;
    run(&["stack", "update", "-s", "k8s"])?;
    let mut figures = Vec::new();
    for args in [&["stack", "list"][..], &["step-operator", "list"][..]] {
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            run(args)?;
            samples.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        figures.push(CliStartup {
            command: format!("stepstack {}", args.join(" ")),
            wall_ms: Summary::of(&samples),
            peak_rss_mb: peak_rss_of(binary, home.path(), args)?,
        });
    }
    Ok(figures)
}

/// The peak resident set size of one run of the command, measured by a fresh
/// `stepstack-bench peak-rss` process so no other child's peak is mixed in.
fn peak_rss_of(binary: &Path, home: &Path, args: &[&str]) -> anyhow::Result<f64> {
    let output = Command::new(std::env::current_exe()?)
        .arg("peak-rss")
        .arg("--")
        .arg(binary)
        .args(args)
        .env("STEPSTACK_HOME", home)
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "measuring `stepstack {}` failed",
        args.join(" ")
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse::<f64>()?)
}

/// Runs `command` once and returns its peak resident set size in MB (this process's
/// only child, so RUSAGE_CHILDREN is exactly its figure).
pub(crate) fn peak_rss_child(command: &[std::ffi::OsString]) -> anyhow::Result<f64> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no command to measure"))?;
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "the measured command failed");
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    Ok(usage.max_rss() as f64 / 1024.0)
}
