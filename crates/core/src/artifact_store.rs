//! The `ArtifactStore` contract: directory trees in and out of an object store, committed
//! by a manifest written last.
//!
//! A flavor (local directory, S3, GCS, Azure Blob) implements only the object primitives of
//! [`ArtifactStore`]: put (plain or create-if-absent), multipart uploads whose parts may be
//! in flight concurrently, streaming get, head, listing and delete. Everything that makes an
//! artifact trustworthy is implemented once, here, on `dyn ArtifactStore` (`write_tree`,
//! `read_tree`, `begin_write`, `manifest`, `list`, `exists`, `delete`), so every flavor
//! gets the same guarantees:
//!
//! - **Layout.** The artifact `<pipeline>/<run id>/<step>/<output>` ([`ArtifactAddress`])
//!   keeps its files under `<address>/data/<upload id>/<relative path>` and its manifest at
//!   `<address>/manifest.json`. Each write uses a fresh upload id, so a second writer never
//!   touches the objects of a committed artifact (object stores have no rename, and an
//!   overwrite there would corrupt what readers trust).
//! - **Manifest last.** The manifest (every file's relative path, size and sha256, the
//!   empty directories, and the artifact's content [`ArtifactDigest`]) is written after all
//!   files, with create-if-absent ([`PutMode::Create`]): its presence is the commit point,
//!   and a second commit of the same address is a [`ArtifactError::Conflict`]. Files
//!   without a manifest are never read ([`ArtifactError::Incomplete`]).
//! - **Untrusted manifests.** A manifest is input from whoever can write to the store: its
//!   paths are validated ([`validate_relative_path`]: no `..`, no absolute path, no empty
//!   or `.` segment, no control characters or backslashes), its entries must not collide,
//!   and reading checks every file's size and sha256. Files are only ever created (never
//!   opened through an existing entry) inside a destination that must be new or empty, so
//!   no pre-existing symlink can redirect a write.
//! - **Bounded memory.** Files larger than [`TransferOptions::part_size`] stream up in
//!   parts through [`PartUpload`]; at most [`TransferOptions::max_concurrency`] buffers
//!   (whole small files or parts) are in memory or in flight at once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::{Error, ErrorKind, Result};

/// The manifest's `format` field for this layout.
pub const MANIFEST_FORMAT: &str = "stepstack.artifact.v1";
/// The name of the manifest object under an artifact's prefix.
pub const MANIFEST_NAME: &str = "manifest.json";
/// The segment under which an artifact's files live (`<address>/data/<upload id>/…`).
pub const DATA_SEGMENT: &str = "data";
/// The largest manifest a reader accepts; a manifest is untrusted input.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024 * 1024;
/// The longest relative path accepted in an artifact, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// The longest segment of a relative path, in bytes (a common file-system limit).
pub const MAX_SEGMENT_BYTES: usize = 255;
/// The deepest relative path accepted in an artifact, in segments.
pub const MAX_PATH_DEPTH: usize = 128;
/// The longest segment of an artifact address (pipeline, run id, step, output).
pub const MAX_ADDRESS_SEGMENT: usize = 128;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// What went wrong with an artifact. Converts into [`Error`] with a matching kind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// Nothing is stored at the address.
    #[error("artifact {address} does not exist")]
    NotFound {
        /// The address asked for.
        address: ArtifactAddress,
    },
    /// Files were uploaded but the manifest was never written: a write was interrupted.
    #[error(
        "artifact {address} is incomplete: its upload was interrupted before the manifest was written"
    )]
    Incomplete {
        /// The address asked for.
        address: ArtifactAddress,
    },
    /// The address already holds a committed artifact; artifacts are never overwritten.
    #[error("artifact {address} already exists; artifacts are written once and never overwritten")]
    Conflict {
        /// The address written to.
        address: ArtifactAddress,
    },
    /// A stored file does not match its manifest entry (size or sha256).
    #[error(
        "file `{path}` of artifact {address} does not match its manifest: expected {expected}, found {found}"
    )]
    ContentMismatch {
        /// The artifact read.
        address: ArtifactAddress,
        /// The file's relative path.
        path: String,
        /// What the manifest says (`sha256:…` or `N bytes`).
        expected: String,
        /// What was read.
        found: String,
    },
    /// The artifact's content digest is not the one the reader expected.
    #[error("artifact {address} has digest {found}, expected {expected}")]
    DigestMismatch {
        /// The artifact read.
        address: ArtifactAddress,
        /// The digest the reader asked for.
        expected: ArtifactDigest,
        /// The digest in the manifest.
        found: ArtifactDigest,
    },
    /// The manifest cannot be trusted: malformed, for another address, colliding entries, …
    #[error("the manifest of artifact {address} is invalid: {reason}")]
    InvalidManifest {
        /// The artifact read.
        address: ArtifactAddress,
        /// What is wrong with it.
        reason: String,
    },
    /// A relative path that an artifact may not contain.
    #[error("path `{path}` is not allowed in an artifact: {reason}")]
    UnsafePath {
        /// The offending path (control characters escaped).
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A local entry that cannot be stored (a symlink leaving the tree, a device, a FIFO, a
    /// name that is not UTF-8, …).
    #[error("cannot store {}: {reason}", path.display())]
    UnsupportedEntry {
        /// The local path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The directory to write into or read from is not what the operation needs.
    #[error("{}: {reason}", path.display())]
    BadDirectory {
        /// The local directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An artifact address or one of its segments is malformed.
    #[error("invalid artifact address `{value}`: {reason}")]
    InvalidAddress {
        /// The text given.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A local file-system operation failed.
    #[error("could not {operation} {}", path.display())]
    Io {
        /// What was being done (`read`, `create`, …).
        operation: &'static str,
        /// The local path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store failed an object operation.
    #[error("the artifact store could not {operation} `{key}`")]
    Store {
        /// The object operation (`put`, `get`, `list`, …).
        operation: &'static str,
        /// The object key.
        key: ObjectKey,
        /// The flavor's error.
        #[source]
        source: Error,
    },
}

impl ArtifactError {
    /// The [`ErrorKind`] this error converts to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ArtifactError::NotFound { .. } | ArtifactError::Incomplete { .. } => {
                ErrorKind::NotFound
            }
            ArtifactError::Conflict { .. } => ErrorKind::Conflict,
            ArtifactError::ContentMismatch { .. }
            | ArtifactError::DigestMismatch { .. }
            | ArtifactError::InvalidManifest { .. } => ErrorKind::Internal,
            ArtifactError::UnsafePath { .. }
            | ArtifactError::UnsupportedEntry { .. }
            | ArtifactError::BadDirectory { .. }
            | ArtifactError::InvalidAddress { .. } => ErrorKind::InvalidSettings,
            ArtifactError::Io { .. } => ErrorKind::Internal,
            ArtifactError::Store { source, .. } => source.kind(),
        }
    }

    /// Whether retrying the same operation may succeed (a transient store error).
    pub fn is_transient(&self) -> bool {
        match self {
            ArtifactError::Store { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    fn store(operation: &'static str, key: &ObjectKey, source: Error) -> Self {
        ArtifactError::Store {
            operation,
            key: key.clone(),
            source,
        }
    }

    fn io(operation: &'static str, path: &Path, source: std::io::Error) -> Self {
        ArtifactError::Io {
            operation,
            path: path.to_owned(),
            source,
        }
    }
}

impl From<ArtifactError> for Error {
    fn from(err: ArtifactError) -> Self {
        let kind = err.kind();
        let transient = err.is_transient();
        let address = match &err {
            ArtifactError::NotFound { address }
            | ArtifactError::Incomplete { address }
            | ArtifactError::Conflict { address }
            | ArtifactError::ContentMismatch { address, .. }
            | ArtifactError::DigestMismatch { address, .. }
            | ArtifactError::InvalidManifest { address, .. } => Some(address.to_string()),
            _ => None,
        };
        let mut out = Error::new(kind, err.to_string()).set_transient(transient);
        if let Some(address) = address {
            out = out.with_context("artifact", address);
        }
        match err {
            ArtifactError::Io { source, .. } => out.with_source(source),
            ArtifactError::Store { source, .. } => out.with_source(source),
            _ => out,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Addresses and keys
// ---------------------------------------------------------------------------------------

/// Where an artifact lives in a store: `<pipeline>/<run id>/<step>/<output>`.
///
/// Each segment is 1 to 128 ASCII letters, digits, `-`, `_` or `.`, starting with a letter
/// or digit, so an address is the same object key on every store and a path on every file
/// system.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArtifactAddress {
    // The whole address as text, `p/r/s/o`: cheap to clone and small inside errors.
    text: Arc<str>,
}

impl ArtifactAddress {
    /// The address of `output` of `step` in run `run_id` of `pipeline`.
    pub fn new(
        pipeline: impl AsRef<str>,
        run_id: impl AsRef<str>,
        step: impl AsRef<str>,
        output: impl AsRef<str>,
    ) -> Result<Self, ArtifactError> {
        let segments = [
            pipeline.as_ref(),
            run_id.as_ref(),
            step.as_ref(),
            output.as_ref(),
        ];
        for segment in segments {
            check_address_segment(segment)?;
        }
        Ok(ArtifactAddress {
            text: segments.join("/").into(),
        })
    }

    /// The pipeline's name.
    pub fn pipeline(&self) -> &str {
        self.segments()[0]
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        self.segments()[1]
    }

    /// The step's name.
    pub fn step(&self) -> &str {
        self.segments()[2]
    }

    /// The output's name.
    pub fn output(&self) -> &str {
        self.segments()[3]
    }

    fn segments(&self) -> [&str; 4] {
        let mut parts = self.text.splitn(4, '/');
        let mut next = || parts.next().unwrap_or_default();
        [next(), next(), next(), next()]
    }

    /// The prefix under which every object of this artifact lives.
    pub fn prefix(&self) -> ObjectKey {
        ObjectKey(self.segments().iter().map(|s| (*s).to_owned()).collect())
    }

    /// The key of this artifact's manifest.
    pub fn manifest_key(&self) -> ObjectKey {
        self.prefix().child(MANIFEST_NAME)
    }

    /// The key of the file at `path` (already validated) in upload `upload_id`.
    pub fn data_key(&self, upload_id: &str, path: &str) -> ObjectKey {
        let mut key = self.prefix().child(DATA_SEGMENT).child(upload_id);
        key.0.extend(path.split('/').map(str::to_owned));
        key
    }
}

impl fmt::Display for ArtifactAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for ArtifactAddress {
    type Err = ArtifactError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [pipeline, run, step, output] => ArtifactAddress::new(*pipeline, *run, *step, *output)
                .map_err(|err| match err {
                    ArtifactError::InvalidAddress { reason, .. } => ArtifactError::InvalidAddress {
                        value: s.to_owned(),
                        reason,
                    },
                    other => other,
                }),
            _ => Err(ArtifactError::InvalidAddress {
                value: s.to_owned(),
                reason: "an address has four segments: <pipeline>/<run id>/<step>/<output>",
            }),
        }
    }
}

impl Serialize for ArtifactAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ArtifactAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn check_address_segment(segment: &str) -> Result<(), ArtifactError> {
    let invalid = |reason| {
        Err(ArtifactError::InvalidAddress {
            value: segment.to_owned(),
            reason,
        })
    };
    if segment.is_empty() {
        return invalid("a segment is empty");
    }
    if segment.len() > MAX_ADDRESS_SEGMENT {
        return invalid("a segment is longer than 128 characters");
    }
    if !segment.as_bytes()[0].is_ascii_alphanumeric() {
        return invalid("a segment starts with a letter or digit");
    }
    if !segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return invalid("a segment holds only ASCII letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

/// A part of the store to list: a pipeline, optionally narrowed to one run and one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactPrefix {
    segments: Vec<String>,
}

impl ArtifactPrefix {
    /// Every artifact of `pipeline`.
    pub fn pipeline(pipeline: impl Into<String>) -> Result<Self, ArtifactError> {
        let pipeline = pipeline.into();
        check_address_segment(&pipeline)?;
        Ok(ArtifactPrefix {
            segments: vec![pipeline],
        })
    }

    /// Narrows to one run.
    pub fn run(mut self, run_id: impl Into<String>) -> Result<Self, ArtifactError> {
        self.push(run_id.into(), 1)?;
        Ok(self)
    }

    /// Narrows to one step of the run.
    pub fn step(mut self, step: impl Into<String>) -> Result<Self, ArtifactError> {
        self.push(step.into(), 2)?;
        Ok(self)
    }

    fn push(&mut self, segment: String, depth: usize) -> Result<(), ArtifactError> {
        check_address_segment(&segment)?;
        if self.segments.len() != depth {
            return Err(ArtifactError::InvalidAddress {
                value: segment,
                reason: "narrow a prefix by pipeline, then run, then step",
            });
        }
        self.segments.push(segment);
        Ok(())
    }

    fn key(&self) -> ObjectKey {
        ObjectKey(self.segments.clone())
    }
}

/// An object's key relative to the store's root, as segments.
///
/// Segments are never empty and never contain `/`; a flavor maps them onto its own key
/// syntax (escaping characters its service reserves) one to one, so that
/// [`ArtifactStore::list_objects`] returns the same segments that were written. Prefixes
/// match whole segments: the prefix `a/b` contains `a/b/c` but not `a/bc`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ObjectKey(Vec<String>);

impl ObjectKey {
    /// A key from its segments.
    pub fn from_segments(segments: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ObjectKey(segments.into_iter().map(Into::into).collect())
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// This key with `segment` appended.
    pub fn child(mut self, segment: impl Into<String>) -> Self {
        self.0.push(segment.into());
        self
    }

    /// Whether `self` is `prefix` or lies under it (whole segments).
    pub fn starts_with(&self, prefix: &ObjectKey) -> bool {
        self.0.len() >= prefix.0.len() && self.0[..prefix.0.len()] == prefix.0[..]
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

// ---------------------------------------------------------------------------------------
// The flavor's primitives
// ---------------------------------------------------------------------------------------

/// How a put treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Create-if-absent: fail with an [`ErrorKind::Conflict`] error when the object exists
    /// (S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`, Azure `If-None-Match: *`, a hard
    /// link on a local file system). This is the commit point of an artifact.
    Create,
}

/// An object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub size: u64,
}

/// One level of a delimited listing: the objects directly under a prefix and the
/// sub-prefixes (one segment deeper) that hold more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectListing {
    /// Objects directly under the prefix.
    pub objects: Vec<ObjectInfo>,
    /// Prefixes one segment deeper.
    pub prefixes: Vec<ObjectKey>,
}

/// A stream of an object's bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// A multipart upload in progress.
///
/// Parts are numbered in the order `put_part` is called; the futures it returns may be
/// awaited concurrently (the caller bounds how many are in flight) and must not borrow the
/// upload. `complete` is called once every part future has resolved successfully; until
/// then no object is visible at the key. Dropping an upload without `complete` must leave
/// no object at the key (a flavor may leave parts for the service's cleanup rules).
#[async_trait]
pub trait PartUpload: Send {
    /// Starts uploading the next part.
    fn put_part(&mut self, data: Bytes) -> BoxFuture<'static, Result<()>>;

    /// Assembles the parts into the object.
    async fn complete(&mut self) -> Result<()>;

    /// Gives the upload up and frees its parts.
    async fn abort(&mut self) -> Result<()>;
}

/// How files move in and out of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferOptions {
    /// Files up to this size go up in one put; larger ones in parts of this size.
    pub part_size: usize,
    /// How many buffers (whole small files, parts, downloads) are in flight at once.
    pub max_concurrency: usize,
}

impl TransferOptions {
    /// 8 MiB parts (above S3's 5 MiB minimum), 4 at a time: at most 32 MiB buffered.
    pub const DEFAULT: TransferOptions = TransferOptions {
        part_size: 8 * 1024 * 1024,
        max_concurrency: 4,
    };

    /// Parts of `part_size` bytes, `max_concurrency` in flight (each at least 1).
    pub fn new(part_size: usize, max_concurrency: usize) -> Self {
        TransferOptions {
            part_size: part_size.max(1),
            max_concurrency: max_concurrency.max(1),
        }
    }
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions::DEFAULT
    }
}

/// A store of artifacts: the object primitives a flavor implements.
///
/// Keys are relative to the store's root (a directory, a bucket and prefix, …). Errors use
/// [`ErrorKind::NotFound`] for a missing object and [`ErrorKind::Conflict`] for a
/// [`PutMode::Create`] onto an existing one; transient failures (5xx, 429, resets) say so
/// through [`Error::is_transient`]. Callers work with whole artifacts through the methods
/// on `dyn ArtifactStore` (`write_tree`, `read_tree`, `list`, `exists`, `delete`,
/// `manifest`), which keep the manifest-last and verification rules for every flavor; the
/// conformance suite (`conformance::check_artifact_store`) checks a flavor against them.
#[async_trait]
pub trait ArtifactStore: Send + Sync + fmt::Debug {
    /// The flavor name, e.g. `local`.
    fn flavor(&self) -> &str;

    /// Where the store is, for messages (a path, `s3://bucket/prefix`); never a secret.
    fn location(&self) -> String;

    /// Part size and concurrency for transfers.
    fn transfer_options(&self) -> TransferOptions {
        TransferOptions::DEFAULT
    }

    /// Writes `data` as the object `key` in one request.
    async fn put_object(&self, key: &ObjectKey, data: Bytes, mode: PutMode) -> Result<()>;

    /// Starts a multipart upload to `key` (always overwriting: data objects never need
    /// create-if-absent, their keys are unique per upload).
    async fn start_upload(&self, key: &ObjectKey) -> Result<Box<dyn PartUpload>>;

    /// Streams the object `key`; a missing object is an [`ErrorKind::NotFound`] error.
    async fn get_object(&self, key: &ObjectKey) -> Result<ByteStream>;

    /// The size of the object `key`, or `None` when it does not exist.
    async fn head_object(&self, key: &ObjectKey) -> Result<Option<u64>>;

    /// Every object under `prefix`, at any depth, in no particular order.
    fn list_objects(&self, prefix: &ObjectKey) -> BoxStream<'static, Result<ObjectInfo>>;

    /// The objects and sub-prefixes directly under `prefix`.
    async fn list_children(&self, prefix: &ObjectKey) -> Result<ObjectListing>;

    /// Deletes the object `key`; deleting a missing object is not an error.
    async fn delete_object(&self, key: &ObjectKey) -> Result<()>;
}

// ---------------------------------------------------------------------------------------
// Digests and manifests
// ---------------------------------------------------------------------------------------

/// The content digest of an artifact, `sha256:<64 hex digits>`: a hash over its sorted
/// file paths, sizes, sha256s, executable bits and empty directories. Two artifacts with
/// the same tree have the same digest, wherever and whenever they were written, so it can
/// go into cache keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArtifactDigest(String);

impl ArtifactDigest {
    /// The digest as text, `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ArtifactDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ArtifactDigest {
    type Err = ArtifactError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(hex) if is_sha256_hex(hex) => Ok(ArtifactDigest(s.to_owned())),
            _ => Err(ArtifactError::InvalidAddress {
                value: s.to_owned(),
                reason: "a digest is `sha256:` followed by 64 lowercase hex digits",
            }),
        }
    }
}

impl Serialize for ArtifactDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ArtifactDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    /// Whether the file was executable by its owner; reads restore mode 0755 then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

/// What an artifact holds; written last, its presence commits the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// The artifact's own address (a manifest copied to another address is refused).
    pub address: ArtifactAddress,
    /// The upload whose objects hold the files (`<address>/data/<upload id>/…`).
    pub upload_id: String,
    /// The content digest over `files` and `directories`.
    pub digest: ArtifactDigest,
    /// The files, sorted by path.
    pub files: Vec<ManifestFile>,
    /// Directories that hold no file (every other directory is implied by a file path),
    /// sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<String>,
}

impl Manifest {
    /// The content digest of a tree with these files and empty directories (in any order).
    pub fn digest_of(files: &[ManifestFile], directories: &[String]) -> ArtifactDigest {
        let mut files: Vec<&ManifestFile> = files.iter().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut directories: Vec<&String> = directories.iter().collect();
        directories.sort();
        // NUL and newline cannot occur in a valid path, so the encoding is unambiguous.
        let mut hasher = Sha256::new();
        hasher.update(b"stepstack-artifact-v1\n");
        for file in files {
            hasher.update(b"file\0");
            hasher.update(file.path.as_bytes());
            hasher.update(format!(
                "\0{}\0{}\0{}\n",
                file.size, file.sha256, file.executable
            ));
        }
        for dir in directories {
            hasher.update(b"dir\0");
            hasher.update(dir.as_bytes());
            hasher.update(b"\n");
        }
        ArtifactDigest(format!("sha256:{}", hex(&hasher.finalize())))
    }

    /// The number of bytes in all files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Checks everything a reader relies on; `address` is the address it was read from.
    pub fn validate(&self, address: &ArtifactAddress) -> Result<(), ArtifactError> {
        let invalid = |reason: String| ArtifactError::InvalidManifest {
            address: address.clone(),
            reason,
        };
        if self.format != MANIFEST_FORMAT {
            return Err(invalid(format!(
                "unknown format `{}` (this reader knows `{MANIFEST_FORMAT}`)",
                escape(&self.format)
            )));
        }
        if &self.address != address {
            return Err(invalid(format!(
                "it describes artifact {} instead",
                self.address
            )));
        }
        check_address_segment(&self.upload_id)
            .map_err(|_| invalid("its upload id is not a valid key segment".to_owned()))?;
        let mut files = HashSet::with_capacity(self.files.len());
        for file in &self.files {
            validate_relative_path(&file.path)?;
            if !is_sha256_hex(&file.sha256) {
                return Err(invalid(format!(
                    "file `{}` has a malformed sha256",
                    file.path
                )));
            }
            if !files.insert(file.path.as_str()) {
                return Err(invalid(format!("file `{}` is listed twice", file.path)));
            }
        }
        let mut directories = HashSet::with_capacity(self.directories.len());
        for dir in &self.directories {
            validate_relative_path(dir)?;
            if files.contains(dir.as_str()) || !directories.insert(dir.as_str()) {
                return Err(invalid(format!("directory `{dir}` is listed twice")));
            }
        }
        // No entry may lie under a file: `a` and `a/b` cannot both be files.
        for path in files.iter().chain(directories.iter()) {
            for (i, _) in path.match_indices('/') {
                if files.contains(&path[..i]) {
                    return Err(invalid(format!(
                        "`{path}` lies under `{}`, which is a file",
                        &path[..i]
                    )));
                }
            }
        }
        let digest = Manifest::digest_of(&self.files, &self.directories);
        if digest != self.digest {
            return Err(invalid(format!(
                "its digest {} does not match its entries ({digest})",
                self.digest
            )));
        }
        Ok(())
    }
}

/// Checks a relative path from a manifest or a local tree: non-empty, at most
/// [`MAX_PATH_BYTES`] bytes and [`MAX_PATH_DEPTH`] segments, `/`-separated, not absolute,
/// no empty, `.` or `..` segment, no segment over [`MAX_SEGMENT_BYTES`] bytes, no
/// backslash (a separator elsewhere) and no control character.
pub fn validate_relative_path(path: &str) -> Result<(), ArtifactError> {
    let unsafe_path = |reason| {
        Err(ArtifactError::UnsafePath {
            path: escape(path),
            reason,
        })
    };
    if path.is_empty() {
        return unsafe_path("it is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return unsafe_path("it is longer than 4096 bytes");
    }
    if path.starts_with('/') {
        return unsafe_path("it is absolute");
    }
    if path.contains('\\') {
        return unsafe_path("it contains a backslash");
    }
    if path.chars().any(char::is_control) {
        return unsafe_path("it contains a control character");
    }
    let mut depth = 0;
    for segment in path.split('/') {
        depth += 1;
        match segment {
            "" => return unsafe_path("it has an empty segment"),
            "." | ".." => return unsafe_path("it has a `.` or `..` segment"),
            s if s.len() > MAX_SEGMENT_BYTES => {
                return unsafe_path("a segment is longer than 255 bytes");
            }
            _ => {}
        }
    }
    if depth > MAX_PATH_DEPTH {
        return unsafe_path("it is nested more than 128 levels deep");
    }
    Ok(())
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Untrusted text in a message, with control characters escaped.
fn escape(text: &str) -> String {
    text.chars().flat_map(char::escape_debug).collect()
}

/// Options for reading an artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadOptions {
    /// The digest the reader expects (from the producer's record): a manifest with any
    /// other digest is refused before anything is downloaded.
    pub expected_digest: Option<ArtifactDigest>,
}

impl ReadOptions {
    /// Refuses an artifact whose digest is not `digest`.
    pub fn expect_digest(mut self, digest: ArtifactDigest) -> Self {
        self.expected_digest = Some(digest);
        self
    }
}

// ---------------------------------------------------------------------------------------
// Whole artifacts, on every flavor
// ---------------------------------------------------------------------------------------

impl dyn ArtifactStore + '_ {
    /// Starts writing the artifact at `address`; nothing is readable until
    /// [`ArtifactWriter::commit`]. Fails with [`ArtifactError::Conflict`] when the address
    /// is already committed.
    pub async fn begin_write(
        &self,
        address: &ArtifactAddress,
    ) -> Result<ArtifactWriter<'_>, ArtifactError> {
        if self.exists(address).await? {
            return Err(ArtifactError::Conflict {
                address: address.clone(),
            });
        }
        Ok(ArtifactWriter {
            store: self,
            address: address.clone(),
            upload_id: uuid::Uuid::new_v4().simple().to_string(),
            files: BTreeMap::new(),
            directories: BTreeSet::new(),
        })
    }

    /// Stores the directory tree at `source` as the artifact `address` and commits it.
    ///
    /// Regular files and directories are stored; a symlink to a regular file inside the
    /// tree is stored as a copy of that file; any other symlink, device, FIFO or socket,
    /// and any name that is not UTF-8 or breaks [`validate_relative_path`], is refused
    /// before anything is uploaded.
    pub async fn write_tree(
        &self,
        address: &ArtifactAddress,
        source: &Path,
    ) -> Result<Manifest, ArtifactError> {
        let tree = scan_tree(source).await?;
        let mut writer = self.begin_write(address).await?;
        let options = self.transfer_options();
        let permits = Arc::new(Semaphore::new(options.max_concurrency));
        let uploads = futures::stream::iter(tree.files.into_iter().map(|file| {
            let key = address.data_key(&writer.upload_id, &file.path);
            let permits = Arc::clone(&permits);
            async move {
                let uploaded =
                    upload_file(self, &key, &file.local, file.executable, options, permits).await?;
                Ok::<_, ArtifactError>(ManifestFile {
                    path: file.path,
                    ..uploaded
                })
            }
        }))
        .buffer_unordered(options.max_concurrency);
        let result: Result<Vec<ManifestFile>, ArtifactError> = uploads.try_collect().await;
        match result {
            Ok(files) => {
                writer.files = files.into_iter().map(|f| (f.path.clone(), f)).collect();
                writer.directories = tree.empty_directories.into_iter().collect();
                writer.commit().await
            }
            Err(err) => {
                writer.abort().await;
                Err(err)
            }
        }
    }

    /// Reads the committed artifact `address` into `destination`, which must not exist or
    /// be an empty directory, checking every file's size and sha256. On any failure what
    /// was written into `destination` is removed again.
    pub async fn read_tree(
        &self,
        address: &ArtifactAddress,
        destination: &Path,
        options: &ReadOptions,
    ) -> Result<Manifest, ArtifactError> {
        let manifest = self.manifest(address).await?;
        if let Some(expected) = &options.expected_digest
            && expected != &manifest.digest
        {
            return Err(ArtifactError::DigestMismatch {
                address: address.clone(),
                expected: expected.clone(),
                found: manifest.digest.clone(),
            });
        }
        prepare_destination(destination).await?;
        match self.download(&manifest, destination).await {
            Ok(()) => Ok(manifest),
            Err(err) => {
                clear_directory(destination).await;
                Err(err)
            }
        }
    }

    async fn download(&self, manifest: &Manifest, destination: &Path) -> Result<(), ArtifactError> {
        // Directories first, parents before children, each created (never reused) by us.
        let mut directories = BTreeSet::new();
        for path in manifest
            .files
            .iter()
            .map(|f| f.path.as_str())
            .chain(manifest.directories.iter().map(String::as_str))
        {
            for (i, _) in path.match_indices('/') {
                directories.insert(&path[..i]);
            }
        }
        directories.extend(manifest.directories.iter().map(String::as_str));
        for dir in &directories {
            let local = destination.join(dir);
            tokio::fs::create_dir(&local)
                .await
                .map_err(|e| ArtifactError::io("create directory", &local, e))?;
        }
        let max = self.transfer_options().max_concurrency;
        futures::stream::iter(manifest.files.iter().map(|file| async move {
            let key = manifest.address.data_key(&manifest.upload_id, &file.path);
            self.download_file(manifest, file, &key, &destination.join(&file.path))
                .await
        }))
        .buffer_unordered(max)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(())
    }

    async fn download_file(
        &self,
        manifest: &Manifest,
        file: &ManifestFile,
        key: &ObjectKey,
        local: &Path,
    ) -> Result<(), ArtifactError> {
        let mismatch = |expected: String, found: String| ArtifactError::ContentMismatch {
            address: manifest.address.clone(),
            path: file.path.clone(),
            expected,
            found,
        };
        let mut stream = match self.get_object(key).await {
            Ok(stream) => stream,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                return Err(mismatch(
                    format!("{} bytes", file.size),
                    "no stored object".to_owned(),
                ));
            }
            Err(err) => return Err(ArtifactError::store("get", key, err)),
        };
        // `create_new` fails on any existing entry, a symlink included: nothing we did not
        // create is ever written through.
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if file.executable { 0o755 } else { 0o644 })
            .open(local)
            .await
            .map_err(|e| ArtifactError::io("create", local, e))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ArtifactError::store("get", key, e))?;
            size += chunk.len() as u64;
            if size > file.size {
                return Err(mismatch(
                    format!("{} bytes", file.size),
                    "more bytes".to_owned(),
                ));
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| ArtifactError::io("write", local, e))?;
        }
        out.flush()
            .await
            .map_err(|e| ArtifactError::io("write", local, e))?;
        if size != file.size {
            return Err(mismatch(
                format!("{} bytes", file.size),
                format!("{size} bytes"),
            ));
        }
        let sha256 = hex(&hasher.finalize());
        if sha256 != file.sha256 {
            return Err(mismatch(
                format!("sha256:{}", file.sha256),
                format!("sha256:{sha256}"),
            ));
        }
        Ok(())
    }

    /// The validated manifest of the committed artifact `address`.
    pub async fn manifest(&self, address: &ArtifactAddress) -> Result<Manifest, ArtifactError> {
        let key = address.manifest_key();
        let mut stream = match self.get_object(&key).await {
            Ok(stream) => stream,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                return Err(self.missing(address).await?);
            }
            Err(err) => return Err(ArtifactError::store("get", &key, err)),
        };
        let mut bytes = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ArtifactError::store("get", &key, e))?;
            if bytes.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return Err(ArtifactError::InvalidManifest {
                    address: address.clone(),
                    reason: "it is larger than 64 MiB".to_owned(),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| ArtifactError::InvalidManifest {
                address: address.clone(),
                reason: e.to_string(),
            })?;
        manifest.validate(address)?;
        Ok(manifest)
    }

    /// The content digest of the committed artifact `address`.
    pub async fn digest(&self, address: &ArtifactAddress) -> Result<ArtifactDigest, ArtifactError> {
        Ok(self.manifest(address).await?.digest)
    }

    /// Whether `address` holds a committed artifact (its manifest exists).
    pub async fn exists(&self, address: &ArtifactAddress) -> Result<bool, ArtifactError> {
        let key = address.manifest_key();
        self.head_object(&key)
            .await
            .map(|size| size.is_some())
            .map_err(|e| ArtifactError::store("head", &key, e))
    }

    /// The committed artifacts under `prefix`, sorted. Incomplete ones are left out.
    pub async fn list(
        &self,
        prefix: &ArtifactPrefix,
    ) -> Result<Vec<ArtifactAddress>, ArtifactError> {
        let mut found = Vec::new();
        let mut pending = vec![prefix.key()];
        while let Some(key) = pending.pop() {
            let listing = self
                .list_children(&key)
                .await
                .map_err(|e| ArtifactError::store("list", &key, e))?;
            if key.segments().len() == 4 {
                if listing
                    .objects
                    .iter()
                    .any(|o| o.key.segments().last().map(String::as_str) == Some(MANIFEST_NAME))
                {
                    let s = key.segments();
                    // Keys that are no valid address were not written by us: skip them.
                    if let Ok(address) = ArtifactAddress::new(&s[0], &s[1], &s[2], &s[3]) {
                        found.push(address);
                    }
                }
            } else {
                pending.extend(listing.prefixes.into_iter().filter(|p| {
                    p.segments().len() == key.segments().len() + 1
                        && p.starts_with(&key)
                        && p.segments()
                            .last()
                            .is_some_and(|s| check_address_segment(s).is_ok())
                }));
            }
        }
        found.sort();
        Ok(found)
    }

    /// Deletes the artifact `address`, committed or incomplete: the manifest first (so it
    /// is unreadable from then on), then its files. Returns whether anything was there.
    pub async fn delete(&self, address: &ArtifactAddress) -> Result<bool, ArtifactError> {
        let manifest = address.manifest_key();
        let existed = self.exists(address).await?;
        self.delete_object(&manifest)
            .await
            .map_err(|e| ArtifactError::store("delete", &manifest, e))?;
        let prefix = address.prefix();
        let objects: Vec<ObjectInfo> = self
            .list_objects(&prefix)
            .try_collect()
            .await
            .map_err(|e| ArtifactError::store("list", &prefix, e))?;
        let max = self.transfer_options().max_concurrency;
        futures::stream::iter(objects.iter().map(|object| async move {
            self.delete_object(&object.key)
                .await
                .map_err(|e| ArtifactError::store("delete", &object.key, e))
        }))
        .buffer_unordered(max)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(existed || !objects.is_empty())
    }

    /// NotFound or Incomplete, depending on whether any object lies under the address.
    async fn missing(&self, address: &ArtifactAddress) -> Result<ArtifactError, ArtifactError> {
        let prefix = address.prefix();
        let mut objects = self.list_objects(&prefix);
        match objects.next().await {
            Some(Err(err)) => Err(ArtifactError::store("list", &prefix, err)),
            Some(Ok(_)) => Ok(ArtifactError::Incomplete {
                address: address.clone(),
            }),
            None => Ok(ArtifactError::NotFound {
                address: address.clone(),
            }),
        }
    }
}

/// An artifact being written: files go up one by one, and nothing is readable until
/// [`commit`](ArtifactWriter::commit) writes the manifest. Dropping a writer without
/// committing leaves its files unreadable (an incomplete artifact that
/// `delete` removes); [`abort`](ArtifactWriter::abort) removes them at once.
#[derive(Debug)]
pub struct ArtifactWriter<'a> {
    store: &'a dyn ArtifactStore,
    address: ArtifactAddress,
    upload_id: String,
    files: BTreeMap<String, ManifestFile>,
    directories: BTreeSet<String>,
}

impl ArtifactWriter<'_> {
    /// The address being written.
    pub fn address(&self) -> &ArtifactAddress {
        &self.address
    }

    /// This write's upload id (its files live under `<address>/data/<upload id>/`).
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// Uploads the local regular file `local` as `path`.
    pub async fn put_file(
        &mut self,
        path: &str,
        local: &Path,
    ) -> Result<&ManifestFile, ArtifactError> {
        validate_relative_path(path)?;
        let metadata = tokio::fs::metadata(local)
            .await
            .map_err(|e| ArtifactError::io("read", local, e))?;
        if !metadata.is_file() {
            return Err(ArtifactError::UnsupportedEntry {
                path: local.to_owned(),
                reason: "only regular files can be stored".to_owned(),
            });
        }
        let key = self.address.data_key(&self.upload_id, path);
        let options = self.store.transfer_options();
        let permits = Arc::new(Semaphore::new(options.max_concurrency));
        let file = upload_file(
            self.store,
            &key,
            local,
            is_executable(&metadata),
            options,
            permits,
        )
        .await?;
        Ok(self.record(ManifestFile {
            path: path.to_owned(),
            ..file
        }))
    }

    /// Uploads `data` as the file `path`.
    pub async fn put_bytes(
        &mut self,
        path: &str,
        data: Bytes,
    ) -> Result<&ManifestFile, ArtifactError> {
        validate_relative_path(path)?;
        let key = self.address.data_key(&self.upload_id, path);
        let sha256 = hex(&Sha256::digest(&data));
        let size = data.len() as u64;
        self.store
            .put_object(&key, data, PutMode::Overwrite)
            .await
            .map_err(|e| ArtifactError::store("put", &key, e))?;
        Ok(self.record(ManifestFile {
            path: path.to_owned(),
            size,
            sha256,
            executable: false,
        }))
    }

    /// Records an (empty) directory.
    pub fn add_directory(&mut self, path: &str) -> Result<(), ArtifactError> {
        validate_relative_path(path)?;
        self.directories.insert(path.to_owned());
        Ok(())
    }

    fn record(&mut self, file: ManifestFile) -> &ManifestFile {
        let path = file.path.clone();
        self.files.insert(path.clone(), file);
        &self.files[&path]
    }

    /// Writes the manifest with create-if-absent, committing the artifact. When another
    /// writer committed first this is [`ArtifactError::Conflict`], and this writer's files
    /// are removed.
    pub async fn commit(self) -> Result<Manifest, ArtifactError> {
        let files: Vec<ManifestFile> = self.files.values().cloned().collect();
        // A directory that holds a file is implied; keep only the empty ones.
        let mut implied = HashSet::new();
        for path in self.files.keys().chain(self.directories.iter()) {
            for (i, _) in path.match_indices('/') {
                implied.insert(&path[..i]);
            }
        }
        let directories: Vec<String> = self
            .directories
            .iter()
            .filter(|d| !implied.contains(d.as_str()))
            .cloned()
            .collect();
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            address: self.address.clone(),
            upload_id: self.upload_id.clone(),
            digest: Manifest::digest_of(&files, &directories),
            files,
            directories,
        };
        // What we write must be what readers accept (e.g. `a` both file and directory).
        if let Err(err) = manifest.validate(&self.address) {
            self.abort().await;
            return Err(err);
        }
        let body =
            serde_json::to_vec_pretty(&manifest).map_err(|e| ArtifactError::InvalidManifest {
                address: self.address.clone(),
                reason: e.to_string(),
            })?;
        let key = self.address.manifest_key();
        match self
            .store
            .put_object(&key, Bytes::from(body), PutMode::Create)
            .await
        {
            Ok(()) => {
                tracing::debug!(artifact = %self.address, files = manifest.files.len(), digest = %manifest.digest, "artifact committed");
                Ok(manifest)
            }
            Err(err) if err.kind() == ErrorKind::Conflict => {
                let address = self.address.clone();
                self.abort().await;
                Err(ArtifactError::Conflict { address })
            }
            Err(err) => {
                let err = ArtifactError::store("put", &key, err);
                self.abort().await;
                Err(err)
            }
        }
    }

    /// Removes this writer's files (best effort: a failure is logged, and the files stay
    /// unreadable without a manifest either way).
    pub async fn abort(self) {
        let prefix = self
            .address
            .prefix()
            .child(DATA_SEGMENT)
            .child(&self.upload_id);
        let objects: Vec<ObjectInfo> = match self.store.list_objects(&prefix).try_collect().await {
            Ok(objects) => objects,
            Err(err) => {
                tracing::warn!(prefix = %prefix, error = %crate::error_chain(&err), "could not list an aborted upload's files");
                return;
            }
        };
        for object in objects {
            if let Err(err) = self.store.delete_object(&object.key).await {
                tracing::warn!(key = %object.key, error = %crate::error_chain(&err), "could not delete an aborted upload's file");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Local trees
// ---------------------------------------------------------------------------------------

struct ScannedFile {
    path: String,
    local: PathBuf,
    executable: bool,
}

struct ScannedTree {
    files: Vec<ScannedFile>,
    empty_directories: Vec<String>,
}

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o100 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

async fn scan_tree(root: &Path) -> Result<ScannedTree, ArtifactError> {
    let root = root.to_owned();
    tokio::task::spawn_blocking(move || scan_tree_blocking(&root))
        .await
        .map_err(|e| ArtifactError::Io {
            operation: "scan",
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
}

fn scan_tree_blocking(root: &Path) -> Result<ScannedTree, ArtifactError> {
    let metadata = std::fs::metadata(root).map_err(|e| ArtifactError::io("read", root, e))?;
    if !metadata.is_dir() {
        return Err(ArtifactError::BadDirectory {
            path: root.to_owned(),
            reason: "an artifact is written from a directory",
        });
    }
    let canonical_root =
        std::fs::canonicalize(root).map_err(|e| ArtifactError::io("resolve", root, e))?;
    let mut tree = ScannedTree {
        files: Vec::new(),
        empty_directories: Vec::new(),
    };
    let mut pending = vec![(root.to_owned(), String::new())];
    while let Some((dir, relative)) = pending.pop() {
        let mut entries = std::fs::read_dir(&dir)
            .map_err(|e| ArtifactError::io("read directory", &dir, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ArtifactError::io("read directory", &dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        if entries.is_empty() && !relative.is_empty() {
            tree.empty_directories.push(relative.clone());
        }
        for entry in entries {
            let local = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(ArtifactError::UnsupportedEntry {
                    path: local,
                    reason: "its name is not valid UTF-8".to_owned(),
                });
            };
            let path = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            validate_relative_path(&path)?;
            let file_type = entry
                .file_type()
                .map_err(|e| ArtifactError::io("read", &local, e))?;
            if file_type.is_dir() {
                pending.push((local, path));
            } else if file_type.is_file() {
                let metadata = entry
                    .metadata()
                    .map_err(|e| ArtifactError::io("read", &local, e))?;
                tree.files.push(ScannedFile {
                    path,
                    local,
                    executable: is_executable(&metadata),
                });
            } else if file_type.is_symlink() {
                // A link to a file inside the tree is stored as a copy; anything else
                // would leak files from outside the output or loop.
                let target =
                    std::fs::canonicalize(&local).map_err(|e| ArtifactError::UnsupportedEntry {
                        path: local.clone(),
                        reason: format!("it is a symlink that does not resolve ({e})"),
                    })?;
                if !target.starts_with(&canonical_root) {
                    return Err(ArtifactError::UnsupportedEntry {
                        path: local,
                        reason: "it is a symlink that leads out of the directory".to_owned(),
                    });
                }
                let metadata = std::fs::metadata(&target)
                    .map_err(|e| ArtifactError::io("read", &target, e))?;
                if !metadata.is_file() {
                    return Err(ArtifactError::UnsupportedEntry {
                        path: local,
                        reason: "it is a symlink to something other than a regular file".to_owned(),
                    });
                }
                tree.files.push(ScannedFile {
                    path,
                    local: target,
                    executable: is_executable(&metadata),
                });
            } else {
                return Err(ArtifactError::UnsupportedEntry {
                    path: local,
                    reason: "only regular files, directories and symlinks to files are stored"
                        .to_owned(),
                });
            }
        }
    }
    Ok(tree)
}

/// Uploads one local file to `key`: in one put up to the part size, in parts above it.
/// Every buffer holds a permit of `permits` until its upload finished.
async fn upload_file(
    store: &dyn ArtifactStore,
    key: &ObjectKey,
    local: &Path,
    executable: bool,
    options: TransferOptions,
    permits: Arc<Semaphore>,
) -> Result<ManifestFile, ArtifactError> {
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(|e| ArtifactError::io("open", local, e))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let permit = Arc::clone(&permits)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let first = read_chunk(&mut file, local, options.part_size).await?;
    hasher.update(&first);
    size += first.len() as u64;
    if first.len() < options.part_size {
        // The whole file fits in one part: one request.
        store
            .put_object(key, first, PutMode::Overwrite)
            .await
            .map_err(|e| ArtifactError::store("put", key, e))?;
        drop(permit);
    } else {
        let mut upload = store
            .start_upload(key)
            .await
            .map_err(|e| ArtifactError::store("start an upload of", key, e))?;
        let mut in_flight = Vec::new();
        let mut next = Some((first, permit));
        let result: Result<(), ArtifactError> = async {
            while let Some((chunk, permit)) = next.take() {
                let part = upload.put_part(chunk);
                in_flight.push(tokio::spawn(async move {
                    let result = part.await;
                    drop(permit);
                    result
                }));
                let permit = Arc::clone(&permits)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let chunk = read_chunk(&mut file, local, options.part_size).await?;
                if !chunk.is_empty() {
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    next = Some((chunk, permit));
                }
            }
            for part in in_flight.drain(..) {
                part.await
                    .map_err(|e| {
                        ArtifactError::store(
                            "upload a part of",
                            key,
                            Error::new(ErrorKind::Internal, "an upload task failed").with_source(e),
                        )
                    })?
                    .map_err(|e| ArtifactError::store("upload a part of", key, e))?;
            }
            upload
                .complete()
                .await
                .map_err(|e| ArtifactError::store("complete the upload of", key, e))
        }
        .await;
        if let Err(err) = result {
            for part in in_flight {
                part.abort();
            }
            if let Err(abort) = upload.abort().await {
                tracing::warn!(key = %key, error = %crate::error_chain(&abort), "could not abort a multipart upload");
            }
            return Err(err);
        }
    }
    Ok(ManifestFile {
        path: String::new(),
        size,
        sha256: hex(&hasher.finalize()),
        executable,
    })
}

/// Reads up to `size` bytes (fewer only at the end of the file).
async fn read_chunk(
    file: &mut tokio::fs::File,
    local: &Path,
    size: usize,
) -> Result<Bytes, ArtifactError> {
    let mut buffer = BytesMut::with_capacity(size);
    while buffer.len() < size {
        let remaining = size - buffer.len();
        let read = file
            .read_buf(&mut (&mut buffer).limit(remaining))
            .await
            .map_err(|e| ArtifactError::io("read", local, e))?;
        if read == 0 {
            break;
        }
    }
    Ok(buffer.freeze())
}

async fn prepare_destination(destination: &Path) -> Result<(), ArtifactError> {
    match tokio::fs::symlink_metadata(destination).await {
        Ok(metadata) if metadata.is_dir() => {
            let mut entries = tokio::fs::read_dir(destination)
                .await
                .map_err(|e| ArtifactError::io("read directory", destination, e))?;
            if entries
                .next_entry()
                .await
                .map_err(|e| ArtifactError::io("read directory", destination, e))?
                .is_some()
            {
                return Err(ArtifactError::BadDirectory {
                    path: destination.to_owned(),
                    reason: "the destination is not empty; an artifact is read into a new or empty directory",
                });
            }
            Ok(())
        }
        Ok(_) => Err(ArtifactError::BadDirectory {
            path: destination.to_owned(),
            reason: "the destination is not a directory",
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            tokio::fs::create_dir_all(destination)
                .await
                .map_err(|e| ArtifactError::io("create directory", destination, e))
        }
        Err(err) => Err(ArtifactError::io("read", destination, err)),
    }
}

/// Empties `destination` after a failed read (it was empty before), best effort.
async fn clear_directory(destination: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(destination).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        let removed = match entry.file_type().await {
            Ok(t) if t.is_dir() => tokio::fs::remove_dir_all(&path).await,
            _ => tokio::fs::remove_file(&path).await,
        };
        if let Err(err) = removed {
            tracing::warn!(path = %path.display(), error = %err, "could not remove a partly read file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_refuse_bad_segments() {
        let address: ArtifactAddress = "train_pipeline/run-1/trainer/model".parse().unwrap();
        assert_eq!(address.step(), "trainer");
        assert_eq!(address.to_string(), "train_pipeline/run-1/trainer/model");
        assert_eq!(
            address.data_key("u1", "a/b.bin").to_string(),
            "train_pipeline/run-1/trainer/model/data/u1/a/b.bin"
        );
        for bad in [
            "a/b/c",
            "a/b/c/d/e",
            "a//c/d",
            "../b/c/d",
            ".a/b/c/d",
            "a/b c/c/d",
            "a/b/c/d#1",
        ] {
            let err = bad.parse::<ArtifactAddress>().unwrap_err();
            assert!(
                matches!(err, ArtifactError::InvalidAddress { .. }),
                "{bad}: {err}"
            );
        }
        let long = "x".repeat(129);
        assert!(ArtifactAddress::new(long, "r", "s", "o").is_err());
    }

    #[test]
    fn relative_paths_follow_the_rule_over_generated_inputs() {
        // Every path built from these pieces is checked against an independent statement
        // of the rule.
        let pieces = [
            "a", "b.txt", "", ".", "..", "\\", "\0", "\n", "é", "#1", " ",
        ];
        let mut checked = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for lead in ["", "/"] {
                        let path = format!("{lead}{a}/{b}{c}");
                        let segments: Vec<&str> = path.split('/').collect();
                        let expected_ok = !path.starts_with('/')
                            && !path.contains('\\')
                            && !path.chars().any(char::is_control)
                            && segments
                                .iter()
                                .all(|s| !s.is_empty() && *s != "." && *s != "..");
                        assert_eq!(
                            validate_relative_path(&path).is_ok(),
                            expected_ok,
                            "{path:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 2000);
        assert!(validate_relative_path(&"a/".repeat(128)[..255]).is_ok());
        assert!(validate_relative_path(&"a/".repeat(129)[..257]).is_err());
        assert!(validate_relative_path(&"x".repeat(256)).is_err());
    }

    fn file(path: &str, size: u64, fill: char) -> ManifestFile {
        ManifestFile {
            path: path.to_owned(),
            size,
            sha256: fill.to_string().repeat(64),
            executable: false,
        }
    }

    #[test]
    fn the_digest_ignores_order_and_sees_every_field() {
        let a = file("a", 1, 'a');
        let b = file("d/b", 2, 'b');
        let base = Manifest::digest_of(&[a.clone(), b.clone()], &["e".to_owned()]);
        assert_eq!(
            base,
            Manifest::digest_of(&[b.clone(), a.clone()], &["e".to_owned()])
        );
        let variants = [
            Manifest::digest_of(std::slice::from_ref(&a), &["e".to_owned()]),
            Manifest::digest_of(&[a.clone(), b.clone()], &[]),
            Manifest::digest_of(&[file("a", 2, 'a'), b.clone()], &["e".to_owned()]),
            Manifest::digest_of(&[file("a", 1, 'c'), b.clone()], &["e".to_owned()]),
            Manifest::digest_of(&[file("A", 1, 'a'), b.clone()], &["e".to_owned()]),
            Manifest::digest_of(
                &[
                    ManifestFile {
                        executable: true,
                        ..a.clone()
                    },
                    b.clone(),
                ],
                &["e".to_owned()],
            ),
        ];
        for variant in variants {
            assert_ne!(variant, base);
        }
        assert!(base.as_str().parse::<ArtifactDigest>().is_ok());
    }

    #[test]
    fn manifests_with_colliding_entries_are_invalid() {
        let address: ArtifactAddress = "p/r/s/o".parse().unwrap();
        let manifest = |files: Vec<ManifestFile>, directories: Vec<String>| Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            address: address.clone(),
            upload_id: "u1".to_owned(),
            digest: Manifest::digest_of(&files, &directories),
            files,
            directories,
        };
        assert!(
            manifest(vec![file("a", 1, 'a')], vec!["b".into()])
                .validate(&address)
                .is_ok()
        );
        for bad in [
            manifest(vec![file("a", 1, 'a'), file("a", 1, 'a')], vec![]),
            manifest(vec![file("a", 1, 'a'), file("a/b", 1, 'a')], vec![]),
            manifest(vec![file("a", 1, 'a')], vec!["a".into()]),
            manifest(vec![file("a", 1, 'a')], vec!["a/x".into()]),
            manifest(vec![file("a", 1, 'A')], vec![]),
        ] {
            assert!(
                matches!(
                    bad.validate(&address),
                    Err(ArtifactError::InvalidManifest { .. })
                ),
                "{bad:?}"
            );
        }
        let mut wrong_digest = manifest(vec![file("a", 1, 'a')], vec![]);
        wrong_digest.files[0].size = 2;
        assert!(wrong_digest.validate(&address).is_err());
        let other: ArtifactAddress = "p/r/s/other".parse().unwrap();
        assert!(
            manifest(vec![], vec![])
                .validate(&other)
                .unwrap_err()
                .to_string()
                .contains("describes artifact p/r/s/o instead")
        );
    }

    #[test]
    fn errors_map_to_kinds_without_repeating_their_cause() {
        let address: ArtifactAddress = "p/r/s/o".parse().unwrap();
        let err: Error = ArtifactError::Conflict {
            address: address.clone(),
        }
        .into();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(err.context_value("artifact"), Some("p/r/s/o"));
        let store = ArtifactError::store(
            "get",
            &address.manifest_key(),
            Error::new(ErrorKind::Unavailable, "connection reset"),
        );
        assert!(store.is_transient());
        assert!(!store.to_string().contains("connection reset"));
        let err: Error = store.into();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.is_transient());
        assert_eq!(
            crate::error_chain(&err),
            "the artifact store could not get `p/r/s/o/manifest.json`: connection reset"
        );
        let incomplete: Error = ArtifactError::Incomplete { address }.into();
        assert_eq!(incomplete.kind(), ErrorKind::NotFound);
    }
}
