//! The `local` flavor: artifacts in a directory, through `object_store`'s
//! `LocalFileSystem` (create-if-absent by hard link, multipart uploads into a staging file
//! renamed on completion, so a reader never sees a half-written object).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::{ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use serde::Deserialize;
use stepstack_core::artifact_store::{
    ByteStream, ObjectInfo, ObjectKey, ObjectListing, PartUpload, PutMode, TransferOptions,
};
use stepstack_core::registry::{ArtifactStoreContext, ArtifactStoreFlavor};
use stepstack_core::{ArtifactStore, Error, ErrorKind, Result};

use crate::error::{LocalStoreError, map_object_store_error};

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
    store: Arc<LocalFileSystem>,
    transfer: TransferOptions,
}

impl fmt::Debug for LocalArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalArtifactStore")
            .field("root", &self.root)
            .field("transfer", &self.transfer)
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
            store: Arc::new(store),
            transfer: TransferOptions::DEFAULT,
        })
    }

    /// Uses `transfer` for part size and concurrency.
    pub fn with_transfer_options(mut self, transfer: TransferOptions) -> Self {
        self.transfer = transfer;
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

/// One key segment per path part, escaped by `object_store` (`#` → `%23`, …), so any
/// name a manifest allows maps to one file name and back.
fn to_path(key: &ObjectKey) -> ObjectPath {
    key.segments()
        .iter()
        .map(|s| PathPart::from(s.as_str()))
        .collect()
}

fn from_path(path: &ObjectPath) -> ObjectKey {
    ObjectKey::from_segments(path.parts().map(|part| {
        percent_encoding::percent_decode_str(part.as_ref())
            .decode_utf8_lossy()
            .into_owned()
    }))
}

#[async_trait]
impl ArtifactStore for LocalArtifactStore {
    fn flavor(&self) -> &str {
        LOCAL_FLAVOR
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn transfer_options(&self) -> TransferOptions {
        self.transfer
    }

    async fn put_object(&self, key: &ObjectKey, data: Bytes, mode: PutMode) -> Result<()> {
        let mode = match mode {
            PutMode::Overwrite => object_store::PutMode::Overwrite,
            PutMode::Create => object_store::PutMode::Create,
        };
        self.store
            .put_opts(
                &to_path(key),
                PutPayload::from(data),
                PutOptions::from(mode),
            )
            .await
            .map(drop)
            .map_err(|e| map_object_store_error("put", key, e))
    }

    async fn start_upload(&self, key: &ObjectKey) -> Result<Box<dyn PartUpload>> {
        let upload = self
            .store
            .put_multipart(&to_path(key))
            .await
            .map_err(|e| map_object_store_error("start an upload of", key, e))?;
        Ok(Box::new(LocalPartUpload {
            key: key.clone(),
            upload,
        }))
    }

    async fn get_object(&self, key: &ObjectKey) -> Result<ByteStream> {
        let result = self
            .store
            .get(&to_path(key))
            .await
            .map_err(|e| map_object_store_error("get", key, e))?;
        let key = key.clone();
        Ok(result
            .into_stream()
            .map(move |chunk| chunk.map_err(|e| map_object_store_error("read", &key, e)))
            .boxed())
    }

    async fn head_object(&self, key: &ObjectKey) -> Result<Option<u64>> {
        match self.store.head(&to_path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_object_store_error("head", key, e)),
        }
    }

    fn list_objects(&self, prefix: &ObjectKey) -> BoxStream<'static, Result<ObjectInfo>> {
        let key = prefix.clone();
        self.store
            .list(Some(&to_path(prefix)))
            .map(move |meta| {
                meta.map(|m| ObjectInfo {
                    key: from_path(&m.location),
                    size: m.size,
                })
                .map_err(|e| map_object_store_error("list", &key, e))
            })
            .boxed()
    }

    async fn list_children(&self, prefix: &ObjectKey) -> Result<ObjectListing> {
        let result = self.store.list_with_delimiter(Some(&to_path(prefix))).await;
        let result = match result {
            Ok(result) => result,
            // A prefix that was never written is an empty listing, as on object stores.
            Err(object_store::Error::NotFound { .. }) => return Ok(ObjectListing::default()),
            Err(e) => return Err(map_object_store_error("list", prefix, e)),
        };
        Ok(ObjectListing {
            objects: result
                .objects
                .iter()
                .map(|m| ObjectInfo {
                    key: from_path(&m.location),
                    size: m.size,
                })
                .collect(),
            prefixes: result.common_prefixes.iter().map(from_path).collect(),
        })
    }

    async fn delete_object(&self, key: &ObjectKey) -> Result<()> {
        match self.store.delete(&to_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_object_store_error("delete", key, e)),
        }
    }
}

struct LocalPartUpload {
    key: ObjectKey,
    upload: Box<dyn object_store::MultipartUpload>,
}

#[async_trait]
impl PartUpload for LocalPartUpload {
    fn put_part(&mut self, data: Bytes) -> BoxFuture<'static, Result<()>> {
        let key = self.key.clone();
        self.upload
            .put_part(PutPayload::from(data))
            .map(move |r| r.map_err(|e| map_object_store_error("upload a part of", &key, e)))
            .boxed()
    }

    async fn complete(&mut self) -> Result<()> {
        self.upload
            .complete()
            .await
            .map(drop)
            .map_err(|e| map_object_store_error("complete the upload of", &self.key, e))
    }

    async fn abort(&mut self) -> Result<()> {
        self.upload
            .abort()
            .await
            .map_err(|e| map_object_store_error("abort the upload of", &self.key, e))
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
