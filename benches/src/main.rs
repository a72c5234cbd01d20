//! `stepstack-bench`: the end-to-end benchmarks of `cargo xtask bench`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod baseline;
mod cli;
mod env;
mod launch;
mod logs;
mod scale;
mod stats;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::stats::Summary;

#[derive(Parser)]
#[command(name = "stepstack-bench", about = "stepstack end-to-end benchmarks")]
struct Flags {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every end-to-end benchmark and write `OUT/e2e.json`.
    Run {
        /// Where to write the results.
        #[arg(long)]
        out: PathBuf,
        /// Small counts, to check the harness quickly.
        #[arg(long)]
        quick: bool,
        /// The `stepstack` binary whose start-up to measure.
        #[arg(long)]
        cli: Option<PathBuf>,
    },
    /// (internal) Runs a command once and prints its peak memory in MB.
    #[command(hide = true)]
    PeakRss {
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// (internal) The operator side of the largest concurrent run.
    #[command(hide = true)]
    ScaleChild {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        steps: usize,
    },
    /// (profiling) Log throughput alone against a running cluster (namespace `bench`):
    /// the emulator's endpoint read raw, then through the operator.
    #[command(hide = true)]
    Logs {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        lines: u64,
    },
}

/// The sizes of one benchmark run.
struct Sizes {
    launches: usize,
    scales: [usize; 3],
    log_lines: u64,
    cli_runs: usize,
}

const FULL: Sizes = Sizes {
    launches: 30,
    scales: [1, 100, 1000],
    // `seq` prints ~8 bytes a line: about 100 MB.
    log_lines: 13_000_000,
    cli_runs: 50,
};

const QUICK: Sizes = Sizes {
    launches: 5,
    scales: [1, 20, 100],
    log_lines: 200_000,
    cli_runs: 10,
};

#[derive(Serialize)]
struct Results {
    quick: bool,
    profile: &'static str,
    baseline_launch_ms: Summary,
    operator_launch_ms: Summary,
    /// operator / baseline, pair by pair (run i of each, interleaved).
    launch_ratio_to_baseline: Summary,
    detection_latency_ms: Option<Summary>,
    scale: Vec<scale::ScaleRun>,
    logs: logs::LogThroughput,
    /// The same log read straight from the emulator, without the operator.
    logs_raw: logs::LogThroughput,
    cli: Vec<cli::CliStartup>,
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match Flags::parse().command {
        Command::Run { out, quick, cli } => runtime.block_on(run(out, quick, cli)),
        Command::PeakRss { command } => {
            println!("{:.1}", cli::peak_rss_child(&command)?);
            Ok(())
        }
        Command::ScaleChild { kubeconfig, steps } => runtime.block_on(async {
            let state = tempfile::tempdir()?;
            let report = scale::child(&kubeconfig, steps, state.path()).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }),
        Command::Logs { kubeconfig, lines } => runtime.block_on(async {
            let state = tempfile::tempdir()?;
            let operator = scale::operator_from(&kubeconfig, state.path()).await?;
            let client = kube_client(&kubeconfig).await?;
            let raw = logs::raw_throughput(&operator, &client, lines).await?;
            println!("raw {}", serde_json::to_string(&raw)?);
            let through = logs::throughput(&operator, lines).await?;
            println!("operator {}", serde_json::to_string(&through)?);
            Ok(())
        }),
    }
}

async fn kube_client(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

async fn run(out: PathBuf, quick: bool, cli_binary: Option<PathBuf>) -> anyhow::Result<()> {
    let sizes = if quick { QUICK } else { FULL };
    let bench = env::Bench::start().await?;
    let client = bench.cluster.client().await?;
    let operator = bench.operator("launch").await?;

    eprintln!(
        "bench: {} launches, interleaved with the kube-rs baseline",
        sizes.launches
    );
    // One warm-up of each, not counted.
    baseline::launch(&client, usize::MAX).await?;
    launch::launch(&bench, &operator, usize::MAX).await?;
    let (mut base, mut ours, mut ratios, mut detection) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..sizes.launches {
        let b = baseline::launch(&client, i).await?;
        let (o, d) = launch::launch(&bench, &operator, i).await?;
        base.push(b);
        ours.push(o);
        ratios.push(o / b);
        detection.extend(d);
    }

    let mut scale = Vec::new();
    for (index, steps) in sizes.scales.into_iter().enumerate() {
        eprintln!("bench: {steps} concurrent steps");
        let run = if index + 1 == sizes.scales.len() {
            scale::in_child(&bench, steps).await?
        } else {
            scale::in_process(&bench, steps).await?
        };
        scale.push(run);
    }

    eprintln!("bench: log throughput ({} lines)", sizes.log_lines);
    let logs_raw = logs::raw_throughput(&operator, &client, sizes.log_lines).await?;
    let logs = logs::throughput(&operator, sizes.log_lines).await?;

    let cli = match cli_binary {
        Some(binary) => {
            eprintln!("bench: CLI start-up ({} runs per command)", sizes.cli_runs);
            cli::startup(&binary, sizes.cli_runs)?
        }
        None => Vec::new(),
    };

    let results = Results {
        quick,
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        baseline_launch_ms: Summary::of(&base),
        operator_launch_ms: Summary::of(&ours),
        launch_ratio_to_baseline: Summary::of(&ratios),
        detection_latency_ms: (!detection.is_empty()).then(|| Summary::of(&detection)),
        scale,
        logs,
        logs_raw,
        cli,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("e2e.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    bench.cluster.shutdown().await;
    Ok(())
}
