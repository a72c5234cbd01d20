//! Owned by the runtime engineer; contract used by the API server: Runtime::start,
//! Runtime::pod_log, RuntimeOptions, NodeConfig, LogQuery.
//!
//! This is a minimal stub so the crate compiles; the runtime engineer replaces its body.

use std::sync::Arc;

use futures::stream::BoxStream;
use serde::Deserialize;

use crate::error::ApiError;

mod logs;
mod nodes;
mod quantity;
mod scheduler;

pub use nodes::{NodeConfig, NodesFileError, TaintConfig};
use crate::store::Store;

/// Runtime options.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The nodes to create.
    pub nodes: Vec<NodeConfig>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            nodes: vec![NodeConfig::new("node-1")],
        }
    }
}

/// The query of `GET /api/v1/namespaces/{ns}/pods/{name}/log`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct LogQuery {
    /// `container`.
    pub container: Option<String>,
    /// `follow`.
    pub follow: bool,
    /// `previous`.
    pub previous: bool,
    /// `timestamps`.
    pub timestamps: bool,
    /// `sinceSeconds`.
    pub since_seconds: Option<i64>,
    /// `sinceTime` (RFC 3339).
    pub since_time: Option<String>,
    /// `tailLines`.
    pub tail_lines: Option<i64>,
    /// `limitBytes`.
    pub limit_bytes: Option<i64>,
}

/// The scheduler, job controller and process kubelet.
#[derive(Debug)]
pub struct Runtime {
    store: Store,
}

impl Runtime {
    /// Starts the runtime's controllers over the store.
    pub fn start(store: Store, options: RuntimeOptions) -> Arc<Runtime> {
        let _ = options;
        Arc::new(Runtime { store })
    }

    /// Streams a pod's logs.
    pub async fn pod_log(
        &self,
        namespace: &str,
        pod: &str,
        query: LogQuery,
    ) -> Result<BoxStream<'static, Result<bytes::Bytes, std::io::Error>>, ApiError> {
        let _ = query;
        self.store
            .get(crate::store::ResourceKind::Pod, Some(namespace), pod)?;
        Ok(Box::pin(futures::stream::empty()))
    }

    /// Stops the runtime (kills processes). Called when the cluster shuts down.
    pub fn shutdown(&self) {}
}
