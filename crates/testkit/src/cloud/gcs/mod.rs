//! A fake Google Cloud Storage for exactly the subset `object_store`'s GCS client uses (the
//! XML API), on one plain-HTTP address on 127.0.0.1: point the client's base URL at
//! [`FakeGcs::endpoint_url`]. No installable emulator handles that client's uploads
//! (fake-gcs-server lacks the XML multipart API), hence this fake; see `README.md` next
//! to this file for what it does not check.
//!
//! Served, with the status codes and XML shapes the client parses:
//! - `PUT /{bucket}/{object}`: a single-request upload, honouring
//!   `x-goog-if-generation-match` (`0` = only if absent; 412 otherwise).
//! - `POST /{bucket}/{object}?uploads`, `PUT …?partNumber=N&uploadId=U`,
//!   `POST …?uploadId=U` (`CompleteMultipartUpload`) and `DELETE …?uploadId=U`: XML
//!   multipart uploads; parts but the last must be at least 5 MiB, as on GCS.
//! - `GET` / `HEAD /{bucket}/{object}` with `ETag`, `Last-Modified`, `Content-Length`
//!   and `x-goog-generation`.
//! - `GET /{bucket}?list-type=2` with `prefix`, `delimiter`, `continuation-token`,
//!   `start-after` and `max-keys`, paged ([`FakeGcsOptions::page_size`]).
//! - `DELETE /{bucket}/{object}` (404 when absent).
//!
//! Every request needs `Authorization: Bearer <token>` with a token given to
//! [`FakeGcs::start`] (401 otherwise; 403 for a known token on a bucket it may not use).
//! [`FakeGcs::fail_next`] answers the next requests with 503, to show retries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

mod handlers;

/// The smallest part but the last of an XML multipart upload.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeGcsOptions {
    /// Tokens accepted, each with the buckets it may use (empty = every bucket).
    pub tokens: HashMap<String, HashSet<String>>,
    /// Objects per listing page (GCS: up to 1000).
    pub page_size: usize,
}

impl Default for FakeGcsOptions {
    fn default() -> Self {
        FakeGcsOptions {
            tokens: HashMap::new(),
            page_size: 1000,
        }
    }
}

impl FakeGcsOptions {
    /// Accepts `token` for every bucket.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.tokens.insert(token.into(), HashSet::new());
        self
    }

    /// Accepts `token` for `bucket` only (and any other bucket given for it).
    pub fn with_token_for(mut self, token: impl Into<String>, bucket: impl Into<String>) -> Self {
        self.tokens
            .entry(token.into())
            .or_default()
            .insert(bucket.into());
        self
    }

    /// Pages listings after `page_size` objects and prefixes.
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }
}

/// A stored object.
#[derive(Debug, Clone)]
pub(crate) struct StoredObject {
    pub(crate) data: bytes::Bytes,
    pub(crate) generation: u64,
    pub(crate) etag: String,
    pub(crate) updated: jiff::Timestamp,
}

/// A multipart upload in progress.
#[derive(Debug, Default)]
pub(crate) struct Upload {
    pub(crate) bucket: String,
    pub(crate) object: String,
    pub(crate) parts: BTreeMap<u32, (String, bytes::Bytes)>,
}

/// One request the fake answered: method, path (decoded) and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsCall {
    /// The HTTP method.
    pub method: String,
    /// `/{bucket}/{object}` (decoded) or `/{bucket}`.
    pub path: String,
    /// The query string as sent.
    pub query: String,
    /// The status answered.
    pub status: u16,
}

/// The fake's shared state.
#[derive(Debug)]
pub(crate) struct GcsState {
    pub(crate) options: FakeGcsOptions,
    pub(crate) buckets: Mutex<BTreeMap<String, BTreeMap<String, StoredObject>>>,
    pub(crate) uploads: Mutex<HashMap<String, Upload>>,
    pub(crate) next_generation: Mutex<u64>,
    pub(crate) failures: Mutex<usize>,
    pub(crate) calls: Mutex<Vec<GcsCall>>,
}

/// A running fake GCS. Dropping it stops the server.
pub struct FakeGcs {
    endpoint: String,
    state: Arc<GcsState>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for FakeGcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGcs")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl FakeGcs {
    /// Starts the fake on a free port of 127.0.0.1 (call within a Tokio runtime).
    pub async fn start(options: FakeGcsOptions) -> std::io::Result<FakeGcs> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let state = Arc::new(GcsState {
            options,
            buckets: Mutex::new(BTreeMap::new()),
            uploads: Mutex::new(HashMap::new()),
            next_generation: Mutex::new(1),
            failures: Mutex::new(0),
            calls: Mutex::new(Vec::new()),
        });
        let shutdown = CancellationToken::new();
        let router = axum::Router::new()
            .fallback(handlers::handle)
            .with_state(state.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the fake GCS stopped");
            }
        });
        tracing::info!(%endpoint, "fake GCS started");
        Ok(FakeGcs {
            endpoint,
            state,
            shutdown,
        })
    }

    /// The storage base URL (`http://127.0.0.1:PORT`).
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint
    }

    /// Creates an empty bucket (no-op when it exists).
    pub fn create_bucket(&self, bucket: &str) {
        self.state
            .buckets
            .lock()
            .entry(bucket.to_owned())
            .or_default();
    }

    /// The object names in `bucket`, as stored (sorted).
    pub fn object_names(&self, bucket: &str) -> Vec<String> {
        self.state
            .buckets
            .lock()
            .get(bucket)
            .map(|objects| objects.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The content of an object, if it exists.
    pub fn object(&self, bucket: &str, object: &str) -> Option<bytes::Bytes> {
        let buckets = self.state.buckets.lock();
        buckets.get(bucket)?.get(object).map(|o| o.data.clone())
    }

    /// Replaces an object's content (a tampering test's hand), keeping it existing.
    pub fn overwrite_object(&self, bucket: &str, object: &str, data: impl Into<bytes::Bytes>) {
        let mut buckets = self.state.buckets.lock();
        if let Some(o) = buckets.get_mut(bucket).and_then(|b| b.get_mut(object)) {
            o.data = data.into();
        }
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.state.uploads.lock().len()
    }

    /// Answers the next `n` requests with `503 Service Unavailable`.
    pub fn fail_next(&self, n: usize) {
        *self.state.failures.lock() = n;
    }

    /// Every request answered so far.
    pub fn calls(&self) -> Vec<GcsCall> {
        self.state.calls.lock().clone()
    }
}
