//! The `local` flavor: artifacts in a directory, through `object_store`'s
//! `LocalFileSystem` (create-if-absent by hard link, multipart uploads into a staging file
//! renamed on completion, so a reader never sees a half-written object).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use serde::Deserialize;
use stepstack_core::artifact_store::{
    ByteStream, ObjectInfo, ObjectKey, ObjectListing, PartUpload, PutMode, TransferOptions,
};
use stepstack_core::registry::{ArtifactStoreContext, ArtifactStoreFlavor};
use stepstack_core::{ArtifactStore, Error, ErrorKind, Result};

use crate::error::LocalStoreError;
use crate::remote::{RemoteArtifactStore, to_path};

/// The flavor name.
pub const LOCAL_FLAVOR: &str = "local";

/// Configuration of a `local` artifact store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalStoreConfig {
    /// The store's root directory, absolute; created when missing.
    pub path: PathBuf,
}

/// An artifact store in a local directory.
///
/// Valid only where every step sees the same file system as the orchestrator: local
/// steps, and the embedded local cluster whose pods run on this machine.
#[derive(Clone)]
pub struct LocalArtifactStore {
    root: PathBuf,
    /// The object primitives, shared with the remote flavors.
    inner: RemoteArtifactStore,
}

impl fmt::Debug for LocalArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalArtifactStore")
            .field("root", &self.root)
            .field("transfer", &self.inner.transfer_options())
            .finish()
    }
}

impl LocalArtifactStore {
    /// A store rooted at `root` (absolute), created when it does not exist.
    pub fn new(root: impl AsRef<Path>) -> std::result::Result<Self, LocalStoreError> {
        let root = root.as_ref();
        if !root.is_absolute() {
            return Err(LocalStoreError::RelativeRoot {
                path: root.to_owned(),
            });
        }
        std::fs::create_dir_all(root).map_err(|source| LocalStoreError::CreateRoot {
            path: root.to_owned(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(root)
            .map_err(|source| LocalStoreError::Open {
                path: root.to_owned(),
                source,
            })?
            // Deleting an artifact removes the directories it leaves empty.
            .with_automatic_cleanup(true);
        Ok(LocalArtifactStore {
            root: root.to_owned(),
            // A file has no minimum part size.
            inner: RemoteArtifactStore::new(
                LOCAL_FLAVOR,
                root.display().to_string(),
                Arc::new(store),
                None,
                1,
            ),
        })
    }

    /// Uses `transfer` for part size and concurrency.
    pub fn with_transfer_options(mut self, transfer: TransferOptions) -> Self {
        self.inner = self.inner.with_transfer_options(transfer);
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the object `key` lives on disk (segments escaped as object_store does).
    pub fn file_path(&self, key: &ObjectKey) -> PathBuf {
        let mut path = self.root.clone();
        for part in to_path(key).parts() {
            path.push(part.as_ref());
        }
        path
    }
}

/// Every primitive is the shared one over `LocalFileSystem`, whose create-if-absent is a
/// hard link and whose multipart uploads rename a staging file into place.
#[async_trait]
impl ArtifactStore for LocalArtifactStore {
    fn flavor(&self) -> &str {
        LOCAL_FLAVOR
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn transfer_options(&self) -> TransferOptions {
        self.inner.transfer_options()
    }

    async fn put_object(&self, key: &ObjectKey, data: Bytes, mode: PutMode) -> Result<()> {
        self.inner.put_object(key, data, mode).await
    }

    async fn start_upload(&self, key: &ObjectKey) -> Result<Box<dyn PartUpload>> {
        self.inner.start_upload(key).await
    }

    async fn get_object(&self, key: &ObjectKey) -> Result<ByteStream> {
        self.inner.get_object(key).await
    }

    async fn head_object(&self, key: &ObjectKey) -> Result<Option<u64>> {
        self.inner.head_object(key).await
    }

    fn list_objects(&self, prefix: &ObjectKey) -> BoxStream<'static, Result<ObjectInfo>> {
        self.inner.list_objects(prefix)
    }

    async fn list_children(&self, prefix: &ObjectKey) -> Result<ObjectListing> {
        self.inner.list_children(prefix).await
    }

    async fn delete_object(&self, key: &ObjectKey) -> Result<()> {
        self.inner.delete_object(key).await
    }
}

/// The `local` flavor for the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFlavor;

impl ArtifactStoreFlavor for LocalFlavor {
    fn name(&self) -> &str {
        LOCAL_FLAVOR
    }

    fn description(&self) -> &str {
        "artifacts in a directory on this machine (local steps and the embedded local cluster)"
    }

    fn config_schema(&self) -> serde_json::Value {
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "LocalStoreConfig",
            "type": "object",
            "additionalProperties": false,
            "required": ["path"],
            "properties": {
                "path": {
                    "type": "string",
                    "description": "The store's root directory, absolute; created when missing."
                }
            }
        })
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
        let parsed: LocalStoreConfig = serde_json::from_value(config.clone()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidSettings,
                format!("invalid `local` artifact-store configuration: {e}"),
            )
            .with_context("flavor", LOCAL_FLAVOR)
        })?;
        if !parsed.path.is_absolute() {
            return Err(
                Error::from(LocalStoreError::RelativeRoot { path: parsed.path })
                    .with_context("flavor", LOCAL_FLAVOR),
            );
        }
        Ok(serde_json::json!({ "path": parsed.path }))
    }

    fn build(
        &self,
        config: &serde_json::Value,
        context: ArtifactStoreContext,
    ) -> Result<Arc<dyn ArtifactStore>> {
        let config = self.validate_config(config)?;
        let path = config["path"].as_str().unwrap_or_default();
        let store = LocalArtifactStore::new(path).map_err(|e| {
            Error::from(e)
                .with_context("flavor", LOCAL_FLAVOR)
                .with_context("component", context.component_name.clone())
        })?;
        let store = match context.transfer {
            Some(transfer) => store.with_transfer_options(transfer),
            None => store,
        };
        Ok(Arc::new(store))
    }
}
