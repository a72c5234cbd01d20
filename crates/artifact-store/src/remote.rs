//! What the remote flavors (`s3`, `gcs`, `azure`) share: the [`ArtifactStore`] object
//! primitives over any `object_store` client under a key prefix, the retry settings, and
//! the strict checks of the settings every remote configuration has.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutOptions, PutPayload, RetryConfig,
};
use serde::Deserialize;
use stepstack_core::artifact_store::{
    ByteStream, ObjectInfo, ObjectKey, ObjectListing, PartUpload, PutMode, TransferOptions,
};
use stepstack_core::{ArtifactStore, Result};

use crate::error::{RemoteStoreError, map_object_store_error};

/// How transient failures (5xx, 429, connection resets, timeouts) are retried: with
/// exponential backoff and jitter, up to `max_retries` times within `retry_timeout_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Retries of one request after its first attempt (0 to 100; default 10).
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// The time after which a failing request is not retried any more (1 to 3600 s;
    /// default 180).
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout_secs: u64,
}

fn default_max_retries() -> usize {
    10
}

fn default_retry_timeout() -> u64 {
    180
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: default_max_retries(),
            retry_timeout_secs: default_retry_timeout(),
        }
    }
}

impl RetrySettings {
    pub(crate) fn validate(
        &self,
        flavor: &'static str,
    ) -> std::result::Result<(), RemoteStoreError> {
        if self.max_retries > 100 {
            return Err(RemoteStoreError::invalid(
                flavor,
                "retry.max_retries must be at most 100",
            ));
        }
        if !(1..=3600).contains(&self.retry_timeout_secs) {
            return Err(RemoteStoreError::invalid(
                flavor,
                "retry.retry_timeout_secs must be between 1 and 3600",
            ));
        }
        Ok(())
    }

    /// As `object_store`'s retry configuration.
    pub(crate) fn to_retry_config(self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(15),
                base: 2.,
            },
            max_retries: self.max_retries,
            retry_timeout: Duration::from_secs(self.retry_timeout_secs),
        }
    }

    pub(crate) fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "max_retries": self.max_retries,
            "retry_timeout_secs": self.retry_timeout_secs,
        })
    }
}

/// The JSON schema of [`RetrySettings`].
pub(crate) fn retry_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        "description": "Retries of transient failures (5xx, 429, resets) with exponential backoff.",
        "properties": {
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 100, "default": 10},
            "retry_timeout_secs": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 180}
        }
    })
}

/// Checks a key prefix (`a/b`, no leading or trailing `/`, no empty, `.` or `..`
/// segments) and returns it, `None` for the bucket's root.
pub(crate) fn validate_prefix(
    flavor: &'static str,
    prefix: Option<&str>,
) -> std::result::Result<Option<String>, RemoteStoreError> {
    let Some(prefix) = prefix else {
        return Ok(None);
    };
    if prefix.is_empty() {
        return Ok(None);
    }
    if prefix.len() > 512 {
        return Err(RemoteStoreError::invalid(
            flavor,
            "prefix is longer than 512 bytes",
        ));
    }
    for segment in prefix.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(RemoteStoreError::invalid(
                flavor,
                format!(
                    "prefix `{prefix}` must be `/`-separated names without empty, `.` or `..` parts (no leading or trailing `/`)"
                ),
            ));
        }
        if segment.chars().any(|c| c.is_control() || c == '\\') {
            return Err(RemoteStoreError::invalid(
                flavor,
                format!("prefix `{prefix}` contains a control character or `\\`"),
            ));
        }
    }
    Ok(Some(prefix.to_owned()))
}

/// Checks an endpoint URL: `http` or `https`, no credentials, query or fragment, and
/// `http` only with `allow_http`. Returns it without a trailing `/`.
pub(crate) fn validate_endpoint(
    flavor: &'static str,
    endpoint: Option<&str>,
    allow_http: bool,
) -> std::result::Result<Option<String>, RemoteStoreError> {
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let url = url::Url::parse(endpoint).map_err(|e| {
        RemoteStoreError::invalid(
            flavor,
            format!("endpoint_url `{endpoint}` is not a URL: {e}"),
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(RemoteStoreError::invalid(
                flavor,
                format!(
                    "endpoint_url `{endpoint}` is plain http; set allow_http: true for a local emulator, or use https"
                ),
            ));
        }
        other => {
            return Err(RemoteStoreError::invalid(
                flavor,
                format!("endpoint_url `{endpoint}` has scheme `{other}`; use https"),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RemoteStoreError::invalid(
            flavor,
            "endpoint_url must not contain credentials; give them under `credentials`",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
        return Err(RemoteStoreError::invalid(
            flavor,
            format!("endpoint_url `{endpoint}` must be a scheme, host, port and path only"),
        ));
    }
    Ok(Some(endpoint.trim_end_matches('/').to_owned()))
}

/// Checks a bucket or container name: `min..=max` characters of lowercase letters,
/// digits and `extra`, starting and ending with a letter or digit.
pub(crate) fn validate_name(
    flavor: &'static str,
    what: &str,
    name: &str,
    (min, max): (usize, usize),
    extra: &[char],
) -> std::result::Result<(), RemoteStoreError> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = (min..=max).contains(&name.len())
        && name.chars().all(|c| alnum(c) || extra.contains(&c))
        && name.chars().next().is_some_and(alnum)
        && name.chars().last().is_some_and(alnum);
    if ok {
        Ok(())
    } else {
        let extra: String = extra.iter().map(|c| format!(" `{c}`")).collect();
        Err(RemoteStoreError::invalid(
            flavor,
            format!(
                "{what} `{name}` must be {min} to {max} lowercase letters, digits{}{extra}, starting and ending with a letter or digit",
                if extra.is_empty() { "" } else { " or" }
            ),
        ))
    }
}

/// An artifact store on an `object_store` client: a bucket or container under an
/// optional key prefix (the `s3`, `gcs` and `azure` flavors; the `local` flavor wraps one
/// on `LocalFileSystem`).
#[derive(Clone)]
pub struct RemoteArtifactStore {
    flavor: &'static str,
    location: String,
    store: Arc<dyn ObjectStore>,
    transfer: TransferOptions,
    min_part_size: usize,
}

/// The smallest part S3 and GCS's XML API accept (but for the last one).
pub(crate) const MIN_PART_SIZE_5_MIB: usize = 5 * 1024 * 1024;

impl fmt::Debug for RemoteArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client holds credentials: only where the store is appears here.
        f.debug_struct("RemoteArtifactStore")
            .field("flavor", &self.flavor)
            .field("location", &self.location)
            .field("transfer", &self.transfer)
            .finish_non_exhaustive()
    }
}

impl RemoteArtifactStore {
    pub(crate) fn new(
        flavor: &'static str,
        location: String,
        store: Arc<dyn ObjectStore>,
        prefix: Option<&str>,
        min_part_size: usize,
    ) -> Self {
        let store: Arc<dyn ObjectStore> = match prefix {
            Some(prefix) => Arc::new(PrefixStore::new(store, prefix)),
            None => store,
        };
        RemoteArtifactStore {
            flavor,
            location,
            store,
            transfer: TransferOptions::DEFAULT,
            min_part_size,
        }
    }

    /// Uses `transfer` for part size and concurrency; a part size below what the service
    /// accepts (5 MiB on S3 and GCS) is raised to it, since a smaller one would fail
    /// every multipart upload at its completion.
    pub fn with_transfer_options(mut self, transfer: TransferOptions) -> Self {
        self.transfer = TransferOptions::new(
            transfer.part_size.max(self.min_part_size),
            transfer.max_concurrency,
        );
        self
    }
}

/// A remote store as the registry hands it out: opened (an opening error names the
/// component) and given the component's transfer options. The one `build` of the
/// `s3`, `gcs` and `azure` flavors.
pub(crate) fn build_component(
    opened: std::result::Result<RemoteArtifactStore, RemoteStoreError>,
    context: &stepstack_core::registry::ArtifactStoreContext,
) -> Result<Arc<dyn ArtifactStore>> {
    let store = opened.map_err(|e| {
        stepstack_core::Error::from(e).with_context("component", context.component_name.clone())
    })?;
    Ok(Arc::new(match context.transfer {
        Some(transfer) => store.with_transfer_options(transfer),
        None => store,
    }))
}

/// One key segment per path part, escaped by `object_store` (`#` → `%23`, …), as in the
/// local flavor, so every name a manifest allows is one object key and back.
pub(crate) fn to_path(key: &ObjectKey) -> ObjectPath {
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
impl ArtifactStore for RemoteArtifactStore {
    fn flavor(&self) -> &str {
        self.flavor
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn transfer_options(&self) -> TransferOptions {
        self.transfer
    }

    async fn put_object(&self, key: &ObjectKey, data: Bytes, mode: PutMode) -> Result<()> {
        let mode = match mode {
            PutMode::Overwrite => object_store::PutMode::Overwrite,
            // S3: `If-None-Match: *`; GCS: `x-goog-if-generation-match: 0`; Azure:
            // `If-None-Match: *`. The store decides, so two writers cannot both win.
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
        Ok(Box::new(RemotePartUpload {
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
        let result = match self.store.list_with_delimiter(Some(&to_path(prefix))).await {
            Ok(result) => result,
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

struct RemotePartUpload {
    key: ObjectKey,
    upload: Box<dyn object_store::MultipartUpload>,
}

#[async_trait]
impl PartUpload for RemotePartUpload {
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
