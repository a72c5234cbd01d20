//! The spec the orchestrator hands the agent: which store, which inputs go where, which
//! local directories become which outputs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use stepstack_core::artifact_store::{ArtifactAddress, ArtifactDigest};

/// The largest spec file the agent reads.
pub const MAX_SPEC_BYTES: u64 = 1024 * 1024;

/// Where the termination message goes unless the spec says otherwise.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";

/// What one agent run does.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// The artifact store to use.
    pub store: StoreSpec,
    /// Inputs by name: downloaded (and checked) before the command runs.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    /// Outputs by name: uploaded after the command succeeded.
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputSpec>,
    /// Where to write the one-line result; `/dev/termination-log` by default. A path that
    /// cannot be written (outside Kubernetes) is skipped with a log line.
    #[serde(default)]
    pub termination_log: Option<PathBuf>,
    /// Part size in bytes for uploads (the flavor's default when absent).
    #[serde(default)]
    pub part_size: Option<usize>,
    /// Transfers in flight at once (the flavor's default when absent).
    #[serde(default)]
    pub max_concurrency: Option<usize>,
}

/// The artifact store: a flavor and its configuration, as the component holds them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// The flavor, e.g. `local`.
    pub flavor: String,
    /// Its configuration (validated by the flavor).
    #[serde(default)]
    pub config: serde_json::Value,
}

/// One input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The artifact to read.
    pub address: ArtifactAddress,
    /// The local directory to place it at (must not exist or be empty).
    pub path: PathBuf,
    /// The digest the producer recorded; another artifact at the address is refused.
    #[serde(default)]
    pub digest: Option<ArtifactDigest>,
}

/// One output.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Where to store it.
    pub address: ArtifactAddress,
    /// The local directory the command writes it into (created before the command runs).
    pub path: PathBuf,
    /// Whether an output with no files or directories counts as written.
    #[serde(default)]
    pub allow_empty: bool,
}

/// Why a spec could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("could not read the spec {}", path.display())]
    Read {
        /// The spec file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_SPEC_BYTES`].
    #[error("the spec {} is larger than 1 MiB", path.display())]
    TooLarge {
        /// The spec file.
        path: PathBuf,
    },
    /// The JSON is malformed or has unknown fields.
    #[error("the spec {} is invalid", path.display())]
    Parse {
        /// The spec file.
        path: PathBuf,
        /// The cause, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A path in the spec is relative; the agent never depends on its working directory.
    #[error("{what} `{name}`: the path {} is relative; give an absolute path", path.display())]
    RelativePath {
        /// `input` or `output`.
        what: &'static str,
        /// The input's or output's name.
        name: String,
        /// The path.
        path: PathBuf,
    },
}

impl AgentSpec {
    /// Reads and checks the spec at `path`.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let file = std::fs::File::open(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut text = Vec::new();
        file.take(MAX_SPEC_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|source| SpecError::Read {
                path: path.to_owned(),
                source,
            })?;
        if text.len() as u64 > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge {
                path: path.to_owned(),
            });
        }
        let spec: AgentSpec = serde_json::from_slice(&text).map_err(|source| SpecError::Parse {
            path: path.to_owned(),
            source,
        })?;
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), SpecError> {
        let inputs = self.inputs.iter().map(|(n, i)| ("input", n, &i.path));
        let outputs = self.outputs.iter().map(|(n, o)| ("output", n, &o.path));
        for (what, name, path) in inputs.chain(outputs) {
            if !path.is_absolute() {
                return Err(SpecError::RelativePath {
                    what,
                    name: name.clone(),
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }

    /// Where the termination message goes.
    pub fn termination_log(&self) -> &Path {
        self.termination_log
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_TERMINATION_LOG))
    }
}
