//! `stepstack local-cluster start|stop|status`: the testkit's emulated Kubernetes
//! cluster as a background process, so everything can be tried without a real cluster.
//!
//! `start` re-executes this binary as `local-cluster serve` in its own process group,
//! waits for its ready line, and records its pid, URL and kubeconfig under
//! `<home>/local-cluster/`. The cluster has a CPU node and a GPU node (4 ×
//! `nvidia.com/gpu`, label `gpu-type=a100`, taint `nvidia.com/gpu=present:NoSchedule`).
//!
//! Everything here lives under the home and is private: the kubeconfig holds the
//! cluster-admin's client key. Files are 0600 and directories 0700
//! (`stepstack_core::private_fs`), and `serve` runs with umask 077, so what the emulator
//! and its pods write under `state/` is private too.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use stepstack_core::private_fs;
use stepstack_testkit::{Cluster, ClusterOptions, NodeConfig, RuntimeOptions};

use super::Context;
use crate::exit::{CliError, CliResult, Exit};

/// How long `start` waits for the cluster's ready line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits for the process to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The name of the service connector `start` registers for the local cluster.
pub(crate) const LOCAL_CONNECTOR: &str = "local-cluster";
/// The prefix of the line `serve` prints once it accepts requests.
const READY_PREFIX: &str = "ready ";

#[derive(Debug, Subcommand)]
pub(crate) enum LocalClusterCommand {
    /// Start the emulated cluster in the background (if it runs already, only create the
    /// namespaces asked for).
    Start(StartArgs),
    /// Stop the emulated cluster.
    Stop,
    /// Say whether the emulated cluster runs, where, and its kubeconfig.
    Status,
    /// Serve the emulated cluster in the foreground (what `start` runs in the background).
    #[command(hide = true)]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// Namespaces to create besides `default` (repeatable).
    #[arg(long = "namespace", value_name = "NAME")]
    namespaces: Vec<String>,
    /// The port to listen on (default: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where to write the kubeconfig.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Namespaces to create besides `default`.
    #[arg(long = "namespace", value_name = "NAME")]
    namespaces: Vec<String>,
    /// The port to listen on.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where pods run and keep their logs.
    #[arg(long)]
    state_dir: PathBuf,
}

/// What `start` records about the running cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LocalCluster {
    /// The cluster's process.
    pub(crate) pid: u32,
    /// The API server URL.
    pub(crate) url: String,
    /// The kubeconfig that reaches it as the admin user.
    pub(crate) kubeconfig: PathBuf,
}

pub(crate) fn run(command: LocalClusterCommand, ctx: &Context<'_>) -> CliResult<Exit> {
    match command {
        LocalClusterCommand::Start(args) => start(args, ctx),
        LocalClusterCommand::Stop => stop(ctx),
        LocalClusterCommand::Status => status(ctx),
        LocalClusterCommand::Serve(args) => serve(args),
    }
}

fn start(args: StartArgs, ctx: &Context<'_>) -> CliResult<Exit> {
    // Opening the store first creates the home directory with its private permissions.
    drop(ctx.store()?);
    let dir = cluster_dir(&ctx.home()?);
    let printer = ctx.printer();
    if let Some(running) = running(&dir)? {
        printer.line(format!(
            "The local cluster is already running at {} (kubeconfig: {}).",
            running.url,
            running.kubeconfig.display()
        ))?;
        // The namespaces asked for are made now: `start --namespace x` must leave `x`
        // existing, whether or not the cluster was running.
        for (namespace, created) in ensure_namespaces(ctx, &running, &args.namespaces)? {
            printer.line(if created {
                format!("Created namespace `{namespace}`.")
            } else {
                format!("Namespace `{namespace}` exists already.")
            })?;
        }
        printer.data(&running, || summary_table(&running))?;
        return Ok(Exit::Ok);
    }
    // An older version made it 0755: tighten it along with the files rewritten below.
    private_fs::create_dir_all(&dir)
        .and_then(|()| private_fs::set_mode(&dir, private_fs::DIR_MODE))
        .map_err(|e| internal(format!("could not create {}: {e}", dir.display())))?;
    let kubeconfig = dir.join("kubeconfig");
    let log_path = dir.join("cluster.log");
    let log = private_fs::create(&log_path)
        .map_err(|e| internal(format!("could not create {}: {e}", log_path.display())))?;
    let exe = std::env::current_exe()
        .map_err(|e| internal(format!("could not find this program's path: {e}")))?;
    let mut command = Command::new(exe);
    command
        .args(["local-cluster", "serve", "--port", &args.port.to_string()])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--state-dir")
        .arg(dir.join("state"));
    for ns in &args.namespaces {
        command.args(["--namespace", ns]);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        // Its own process group: Ctrl-C in this terminal must not stop the cluster.
        .process_group(0)
        .spawn()
        .map_err(|e| internal(format!("could not start the local cluster: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| internal("the cluster's output is not readable"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
    let Some(url) = line
        .strip_prefix(READY_PREFIX)
        .and_then(|rest| rest.split_whitespace().next())
    else {
        let _ = child.kill();
        return Err(CliError::new(
            Exit::Internal,
            anyhow::anyhow!(
                "the local cluster did not start within {}s; see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            ),
        ));
    };
    let cluster = LocalCluster {
        pid: child.id(),
        url: url.to_owned(),
        kubeconfig,
    };
    write_state(&dir, &cluster)?;
    register_connector(ctx, &cluster)?;
    printer.line(format!(
        "Started the local cluster at {} and registered the service connector `{LOCAL_CONNECTOR}` for it.\n\
         Use it with kubectl: export KUBECONFIG={}",
        cluster.url,
        cluster.kubeconfig.display()
    ))?;
    printer.data(&cluster, || summary_table(&cluster))?;
    Ok(Exit::Ok)
}

/// Registers (or, after a restart on another port, updates) the `local-cluster`
/// connector from the cluster's kubeconfig.
fn register_connector(ctx: &Context<'_>, cluster: &LocalCluster) -> CliResult {
    use stepstack_connector_kubernetes::{KubernetesFlavor, LocalEnvironment};
    use stepstack_core::{AutoConfigureRequest, ConnectorFlavor, Error};
    use stepstack_store::{ConnectorUpdate, NewConnector};

    let flavor = KubernetesFlavor::with_environment(
        LocalEnvironment::empty().with_kubeconfig(&cluster.kubeconfig),
    );
    let config =
        ctx.block_on(flavor.auto_configure(AutoConfigureRequest::new(LOCAL_CONNECTOR)))??;
    let mut store = ctx.store()?;
    match store.get_connector(LOCAL_CONNECTOR) {
        Ok(_) => {
            store
                .update_connector(LOCAL_CONNECTOR, ConnectorUpdate::replace_with(config))
                .map_err(Error::from)?;
        }
        Err(stepstack_store::StoreError::NotFound { .. }) => {
            store
                .create_connector(
                    NewConnector::from_config(config)
                        .with_description("the local emulated cluster"),
                )
                .map_err(Error::from)?;
        }
        Err(e) => return Err(Error::from(e).into()),
    }
    Ok(())
}

fn stop(ctx: &Context<'_>) -> CliResult<Exit> {
    let dir = cluster_dir(&ctx.home()?);
    let printer = ctx.printer();
    let Some(cluster) = running(&dir)? else {
        printer.line("The local cluster is not running.")?;
        return Ok(Exit::Ok);
    };
    let pid = nix::unistd::Pid::from_raw(cluster.pid as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while is_alive(cluster.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if is_alive(cluster.pid) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(dir.join("cluster.json"));
    printer.line(format!("Stopped the local cluster at {}.", cluster.url))?;
    Ok(Exit::Ok)
}

fn status(ctx: &Context<'_>) -> CliResult<Exit> {
    let dir = cluster_dir(&ctx.home()?);
    let printer = ctx.printer();
    match running(&dir)? {
        Some(cluster) => {
            printer.line(format!("The local cluster is running at {}.", cluster.url))?;
            printer.data(&cluster, || summary_table(&cluster))?;
            Ok(Exit::Ok)
        }
        None => {
            printer.line(
                "The local cluster is not running; start it with `stepstack local-cluster start`.",
            )?;
            printer.structured(&serde_json::json!({"running": false}))?;
            Ok(Exit::Connection)
        }
    }
}

/// Runs the emulated cluster until SIGTERM or SIGINT.
fn serve(args: ServeArgs) -> CliResult<Exit> {
    // Everything this process and the pods it runs create lives under the home: make it
    // private whatever the caller's umask (the testkit and the steps' commands create
    // their files with default modes).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    private_fs::create_dir_all(&args.state_dir).map_err(|e| {
        internal(format!(
            "could not create {}: {e}",
            args.state_dir.display()
        ))
    })?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| internal(format!("could not start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let options = ClusterOptions {
            port: args.port,
            runtime: RuntimeOptions {
                nodes: vec![
                    NodeConfig::new("cpu-node-1"),
                    NodeConfig::gpu("gpu-node-1", "a100", 4).with_label("pool", "gpu"),
                ],
                root_dir: Some(args.state_dir.clone()),
                ..RuntimeOptions::default()
            },
            ..ClusterOptions::default()
        };
        let cluster = Cluster::start(options)
            .await
            .map_err(|e| internal(format!("could not start the emulated cluster: {e}")))?;
        let client = cluster
            .client()
            .await
            .map_err(|e| internal(format!("could not connect to the emulated cluster: {e}")))?;
        for ns in &args.namespaces {
            create_namespace(&client, ns).await?;
        }
        // The admin's client key is in it.
        private_fs::write(&args.kubeconfig, cluster.kubeconfig_yaml()).map_err(|e| {
            internal(format!(
                "could not write {}: {e}",
                args.kubeconfig.display()
            ))
        })?;
        crate::output::print_line(format_args!(
            "{READY_PREFIX}{} kubeconfig={}",
            cluster.url(),
            args.kubeconfig.display()
        ))?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| internal(format!("could not listen for SIGTERM: {e}")))?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        cluster.shutdown().await;
        Ok(Exit::Ok)
    })
}

/// Creates namespace `name`; `Ok(false)` when it exists already.
async fn create_namespace(client: &kube::Client, name: &str) -> CliResult<bool> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};
    let api: Api<Namespace> = Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(name.to_owned());
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(kube::Error::Api(status)) if status.code == 422 => Err(CliError::usage(format!(
            "could not create namespace `{name}`: {}",
            status.message
        ))),
        Err(e) => Err(CliError::new(
            Exit::Connection,
            anyhow::anyhow!(
                "could not create namespace `{name}` in the local cluster: {}",
                stepstack_core::error_chain(&e)
            ),
        )),
    }
}

/// Creates `namespaces` in the running cluster through its kubeconfig; says for each
/// whether it was created (or existed).
fn ensure_namespaces(
    ctx: &Context<'_>,
    cluster: &LocalCluster,
    namespaces: &[String],
) -> CliResult<Vec<(String, bool)>> {
    if namespaces.is_empty() {
        return Ok(Vec::new());
    }
    ctx.block_on(async {
        let unusable = |e: &dyn std::error::Error| {
            internal(format!(
                "could not use the local cluster's kubeconfig {}: {}",
                cluster.kubeconfig.display(),
                stepstack_core::error_chain(e)
            ))
        };
        let kubeconfig =
            kube::config::Kubeconfig::read_from(&cluster.kubeconfig).map_err(|e| unusable(&e))?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| unusable(&e))?;
        let client = kube::Client::try_from(config).map_err(|e| unusable(&e))?;
        let mut done = Vec::new();
        for namespace in namespaces {
            let created = create_namespace(&client, namespace).await?;
            done.push((namespace.clone(), created));
        }
        Ok(done)
    })?
}

fn cluster_dir(home: &Path) -> PathBuf {
    home.join("local-cluster")
}

/// The recorded cluster, if its process is still alive.
pub(crate) fn running(dir: &Path) -> CliResult<Option<LocalCluster>> {
    let path = dir.join("cluster.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(internal(format!("could not read {}: {e}", path.display()))),
    };
    let cluster: LocalCluster = serde_json::from_str(&text).map_err(|e| {
        internal(format!(
            "{} is corrupt ({e}); delete it and start again",
            path.display()
        ))
    })?;
    Ok(is_alive(cluster.pid).then_some(cluster))
}

fn write_state(dir: &Path, cluster: &LocalCluster) -> CliResult {
    let path = dir.join("cluster.json");
    let text = serde_json::to_string_pretty(cluster).map_err(|e| internal(e.to_string()))?;
    private_fs::write(&path, text)
        .map_err(|e| internal(format!("could not write {}: {e}", path.display())))
}

fn is_alive(pid: u32) -> bool {
    // Signal 0 checks that the process exists without touching it.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

fn summary_table(cluster: &LocalCluster) -> comfy_table::Table {
    let mut t = crate::output::table(["URL", "KUBECONFIG", "PID"]);
    t.add_row([
        cluster.url.clone(),
        cluster.kubeconfig.display().to_string(),
        cluster.pid.to_string(),
    ]);
    t
}

fn internal(message: impl Into<String>) -> CliError {
    CliError::new(Exit::Internal, anyhow::anyhow!(message.into()))
}
