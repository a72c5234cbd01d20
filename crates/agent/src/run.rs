//! One agent run: inputs in, the command (signals forwarded, exit code kept), outputs out
//! with their manifests last, and the result as an exit code and a termination message.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;

use serde::Serialize;
use stepstack_core::artifact_store::{ArtifactDigest, ArtifactError, ReadOptions, TransferOptions};
use stepstack_core::registry::ArtifactStoreContext;
use stepstack_core::{ArtifactStore, Registry, error_chain};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::spec::AgentSpec;

/// The agent's own exit codes; any other code is the command's.
pub mod exit_code {
    /// The spec could not be read or used (or the store could not be built).
    pub const SPEC: i32 = 200;
    /// An input could not be downloaded or failed its checks.
    pub const ARTIFACT_DOWNLOAD: i32 = 201;
    /// The command could not be started (not found, not executable).
    pub const COMMAND_START: i32 = 202;
    /// The command succeeded but did not write a declared output.
    pub const MISSING_OUTPUT: i32 = 203;
    /// An output could not be uploaded or committed.
    pub const ARTIFACT_UPLOAD: i32 = 204;
}

/// How a run ended, as the termination message says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The command exited 0 and every output was committed.
    Succeeded,
    /// The command exited non-zero or was killed by a signal; outputs were not uploaded.
    NonZeroExit,
    /// The spec could not be used.
    AgentSpec,
    /// An input could not be downloaded or failed its checks.
    ArtifactDownload,
    /// The command could not be started.
    CommandStart,
    /// A declared output was not written.
    MissingOutput,
    /// An output could not be uploaded or committed.
    ArtifactUpload,
    /// The agent was told to stop (SIGTERM/SIGINT) outside the command.
    Terminated,
}

/// The result of a run: what to exit with and what to say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunResult {
    /// Always `stepstack-agent`, so a reader knows whose message this is.
    pub agent: &'static str,
    /// How the run ended.
    pub reason: Reason,
    /// The agent's exit code.
    pub exit_code: i32,
    /// The signal that killed the command, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The input, output or phase concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// One line about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The committed outputs' digests, by output name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, ArtifactDigest>,
}

/// The longest termination message Kubernetes keeps.
pub const MAX_TERMINATION_MESSAGE: usize = 4096;

impl RunResult {
    fn new(reason: Reason, exit_code: i32) -> Self {
        RunResult {
            agent: "stepstack-agent",
            reason,
            exit_code,
            signal: None,
            artifact: None,
            message: None,
            outputs: BTreeMap::new(),
        }
    }

    /// A failure of the agent itself.
    pub fn failure(
        reason: Reason,
        exit_code: i32,
        artifact: Option<&str>,
        message: String,
    ) -> Self {
        RunResult {
            artifact: artifact.map(str::to_owned),
            message: Some(message),
            ..RunResult::new(reason, exit_code)
        }
    }

    /// The termination message: one line of JSON, at most 4096 bytes (the message is
    /// shortened, then the output digests dropped, to fit).
    pub fn termination_message(&self) -> String {
        let mut result = self.clone();
        loop {
            let line = serde_json::to_string(&result).unwrap_or_default();
            if line.len() <= MAX_TERMINATION_MESSAGE {
                return line;
            }
            match &mut result.message {
                Some(message) if message.len() > 200 => {
                    let mut cut = 200;
                    while !message.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    message.truncate(cut);
                    message.push('…');
                }
                _ if !result.outputs.is_empty() => result.outputs.clear(),
                _ => {
                    result.message = None;
                    result.artifact = None;
                }
            }
        }
    }
}

/// Builds the store the spec names from the flavors in `registry`.
pub fn build_store(
    spec: &AgentSpec,
    registry: &Registry,
) -> Result<Arc<dyn ArtifactStore>, stepstack_core::Error> {
    let flavor = registry.artifact_store(&spec.store.flavor)?;
    let mut context = ArtifactStoreContext::new("agent");
    if spec.part_size.is_some() || spec.max_concurrency.is_some() {
        let defaults = TransferOptions::DEFAULT;
        context = context.with_transfer(TransferOptions::new(
            spec.part_size.unwrap_or(defaults.part_size),
            spec.max_concurrency.unwrap_or(defaults.max_concurrency),
        ));
    }
    flavor.build(&spec.store.config, context)
}

/// SIGTERM and SIGINT, installed before anything else happens so none is lost.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal received.
    async fn next(&mut self) -> nix::sys::signal::Signal {
        tokio::select! {
            _ = self.term.recv() => nix::sys::signal::Signal::SIGTERM,
            _ = self.int.recv() => nix::sys::signal::Signal::SIGINT,
        }
    }
}

fn terminated(signal: nix::sys::signal::Signal, phase: &str) -> RunResult {
    RunResult {
        signal: Some(signal as i32),
        ..RunResult::failure(
            Reason::Terminated,
            128 + signal as i32,
            None,
            format!("stopped by {signal} while {phase}"),
        )
    }
}

/// Runs the whole agent: download, command, upload. `command` is the user's argv.
pub async fn run(
    spec: &AgentSpec,
    store: &dyn ArtifactStore,
    command: &[String],
    signals: &mut Signals,
) -> RunResult {
    // 1. Inputs, each checked against its manifest (and the recorded digest).
    let download = download_inputs(spec, store);
    let downloaded = tokio::select! {
        result = download => result,
        signal = signals.next() => return terminated(signal, "downloading inputs"),
    };
    if let Err((name, err)) = downloaded {
        return RunResult::failure(
            Reason::ArtifactDownload,
            exit_code::ARTIFACT_DOWNLOAD,
            Some(&name),
            format!("input `{name}`: {}", error_chain(&err)),
        );
    }
    for (name, output) in &spec.outputs {
        if let Err(err) = std::fs::create_dir_all(&output.path) {
            return RunResult::failure(
                Reason::ArtifactUpload,
                exit_code::ARTIFACT_UPLOAD,
                Some(name),
                format!(
                    "output `{name}`: could not create {}: {err}",
                    output.path.display()
                ),
            );
        }
    }

    // 2. The command, with signals forwarded and its exit code kept.
    let status = match run_command(command, signals).await {
        Ok(status) => status,
        Err(err) => {
            return RunResult::failure(
                Reason::CommandStart,
                exit_code::COMMAND_START,
                None,
                format!(
                    "could not start `{}`: {err}",
                    command.first().map(String::as_str).unwrap_or("")
                ),
            );
        }
    };
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let (code, signal) = match (status.code(), status.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(signal)) => (128 + signal, Some(signal)),
            (None, None) => (1, None),
        };
        return RunResult {
            signal,
            ..RunResult::new(Reason::NonZeroExit, code)
        };
    }

    // 3. Outputs: every declared one must exist; then each is uploaded, manifest last.
    for (name, output) in &spec.outputs {
        if let Some(problem) = missing_output(&output.path, output.allow_empty) {
            return RunResult::failure(
                Reason::MissingOutput,
                exit_code::MISSING_OUTPUT,
                Some(name),
                format!("output `{name}` at {}: {problem}", output.path.display()),
            );
        }
    }
    let mut result = RunResult::new(Reason::Succeeded, 0);
    for (name, output) in &spec.outputs {
        let upload = store.write_tree(&output.address, &output.path);
        let written = tokio::select! {
            written = upload => written,
            signal = signals.next() => return terminated(signal, "uploading outputs"),
        };
        match written {
            Ok(manifest) => {
                tracing::info!(output = %name, artifact = %output.address, files = manifest.files.len(), bytes = manifest.total_size(), digest = %manifest.digest, "output stored");
                result.outputs.insert(name.clone(), manifest.digest);
            }
            Err(err) => {
                return RunResult::failure(
                    Reason::ArtifactUpload,
                    exit_code::ARTIFACT_UPLOAD,
                    Some(name),
                    format!("output `{name}`: {}", error_chain(&err)),
                );
            }
        }
    }
    result
}

async fn download_inputs(
    spec: &AgentSpec,
    store: &dyn ArtifactStore,
) -> Result<(), (String, ArtifactError)> {
    for (name, input) in &spec.inputs {
        let mut options = ReadOptions::default();
        if let Some(digest) = &input.digest {
            options = options.expect_digest(digest.clone());
        }
        if let Some(parent) = input.path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| {
                (
                    name.clone(),
                    ArtifactError::Io {
                        operation: "create directory",
                        path: parent.to_owned(),
                        source,
                    },
                )
            })?;
        }
        let manifest = store
            .read_tree(&input.address, &input.path, &options)
            .await
            .map_err(|err| (name.clone(), err))?;
        tracing::info!(input = %name, artifact = %input.address, files = manifest.files.len(), bytes = manifest.total_size(), "input placed");
    }
    Ok(())
}

async fn run_command(command: &[String], signals: &mut Signals) -> std::io::Result<ExitStatus> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no command given after `--`"))?;
    let mut child = tokio::process::Command::new(program).args(args).spawn()?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(nix::unistd::Pid::from_raw);
    loop {
        tokio::select! {
            status = child.wait() => return status,
            signal = signals.next() => {
                if let Some(pid) = pid {
                    tracing::info!(%signal, "forwarding a signal to the command");
                    if let Err(err) = nix::sys::signal::kill(pid, signal) {
                        tracing::warn!(%signal, error = %err, "could not forward a signal");
                    }
                }
            }
        }
    }
}

/// Why an output directory does not count as written, if it does not.
fn missing_output(path: &Path, allow_empty: bool) -> Option<String> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Some("the command did not write it".to_owned()),
        Ok(meta) if !meta.is_dir() => {
            Some("it is not a directory; an output is a directory".to_owned())
        }
        Ok(_) if allow_empty => None,
        Ok(_) => match std::fs::read_dir(path).map(|mut entries| entries.next().is_none()) {
            Ok(true) => Some(
                "the command left it empty (set allow_empty for outputs that may be)".to_owned(),
            ),
            Ok(false) => None,
            Err(err) => Some(format!("it cannot be read: {err}")),
        },
    }
}

/// Writes `result`'s termination message to `path`, creating it; a path that cannot be
/// written is logged and skipped (the exit code still says what happened).
pub fn write_termination_message(path: &Path, result: &RunResult) {
    let line = result.termination_message();
    if let Err(err) = std::fs::write(path, format!("{line}\n")) {
        tracing::warn!(path = %path.display(), error = %err, "could not write the termination message");
    }
}
