//! `stepstack-testkit serve --kubeconfig PATH [--port N] [--nodes FILE]`: runs an
//! emulated cluster until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use stepstack_testkit::{Cluster, ClusterOptions, NodeConfig, RuntimeOptions};

#[derive(Parser)]
#[command(
    name = "stepstack-testkit",
    version,
    about = "A Kubernetes API emulator for tests and demos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster, write its admin kubeconfig and serve until stopped.
    Serve {
        /// Where to write the admin kubeconfig.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// A YAML/JSON file describing the nodes.
        #[arg(long)]
        nodes: Option<PathBuf>,
    },
}

#[allow(clippy::print_stdout)]
fn ready_line(url: &str, kubeconfig: &std::path::Path) {
    println!("ready {url} kubeconfig={}", kubeconfig.display());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            kubeconfig,
            port,
            nodes,
        } => {
            let mut runtime = RuntimeOptions::default();
            if let Some(path) = nodes {
                runtime.nodes = NodeConfig::load_file(&path)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("reading nodes file {}", path.display()))?;
            }
            let cluster = Cluster::start(ClusterOptions {
                port,
                runtime,
                ..ClusterOptions::default()
            })
            .await
            .context("starting the cluster")?;
            cluster
                .write_kubeconfig(&kubeconfig)
                .with_context(|| format!("writing {}", kubeconfig.display()))?;
            ready_line(cluster.url(), &kubeconfig);
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            cluster.shutdown().await;
            Ok(())
        }
    }
}
