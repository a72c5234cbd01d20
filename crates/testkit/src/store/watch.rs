//! Watch streams over the store's event fan-out.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use serde_json::Value;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::ResourceKind;
use crate::error::ApiError;
use crate::selectors::ListFilter;

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchEventType {
    /// The object was created (or started matching the watch's selector).
    Added,
    /// The object changed.
    Modified,
    /// The object was removed (or stopped matching the watch's selector).
    Deleted,
    /// A bookmark carrying only a resourceVersion.
    Bookmark,
}

impl WatchEventType {
    /// The wire name (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`).
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventType::Added => "ADDED",
            WatchEventType::Modified => "MODIFIED",
            WatchEventType::Deleted => "DELETED",
            WatchEventType::Bookmark => "BOOKMARK",
        }
    }
}

/// One event delivered to a watcher.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// What happened.
    pub kind: WatchEventType,
    /// The object after the change (for `Deleted`, its last state).
    pub object: Value,
}

/// One change recorded by the store, as fanned out to all subscribers.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    /// The resource kind.
    pub resource: ResourceKind,
    /// The object's namespace (`None` for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
    /// What happened (never `Bookmark`).
    pub kind: WatchEventType,
    /// The resourceVersion of this change.
    pub resource_version: u64,
    /// The object after the change (for deletes, its final state).
    pub object: Value,
    /// The object before the change (for `Modified`), used to turn selector
    /// transitions into `Added`/`Deleted` for filtered watches.
    pub old_object: Option<Value>,
}

/// A stream of watch events for one kind (optionally one namespace and a filter).
///
/// It yields `Err` once and then ends if the subscriber fell too far behind the
/// writers (its channel overflowed); the caller should re-watch from the last
/// resourceVersion it saw.
pub struct WatchStream {
    replay: VecDeque<Arc<StoreEvent>>,
    live: BroadcastStream<Arc<StoreEvent>>,
    resource: ResourceKind,
    namespace: Option<String>,
    filter: ListFilter,
    last_rv: u64,
    done: bool,
}

impl WatchStream {
    pub(super) fn new(
        replay: VecDeque<Arc<StoreEvent>>,
        live: tokio::sync::broadcast::Receiver<Arc<StoreEvent>>,
        resource: ResourceKind,
        namespace: Option<String>,
        filter: ListFilter,
        start_rv: u64,
    ) -> Self {
        Self {
            replay,
            live: BroadcastStream::new(live),
            resource,
            namespace,
            filter,
            last_rv: start_rv,
            done: false,
        }
    }

    /// The resourceVersion of the last event delivered (or the start point).
    pub fn last_resource_version(&self) -> u64 {
        self.last_rv
    }

    fn translate(&mut self, ev: &StoreEvent) -> Option<WatchEvent> {
        if ev.resource != self.resource || ev.resource_version <= self.last_rv {
            return None;
        }
        if let Some(ns) = &self.namespace
            && ev.namespace.as_deref() != Some(ns.as_str())
        {
            return None;
        }
        self.last_rv = ev.resource_version;
        let now = self.filter.matches(&ev.object);
        let kind = match ev.kind {
            WatchEventType::Modified => {
                let before = ev
                    .old_object
                    .as_ref()
                    .is_none_or(|o| self.filter.matches(o));
                match (before, now) {
                    (true, true) => WatchEventType::Modified,
                    (false, true) => WatchEventType::Added,
                    (true, false) => WatchEventType::Deleted,
                    (false, false) => return None,
                }
            }
            k => {
                if !now {
                    return None;
                }
                k
            }
        };
        Some(WatchEvent {
            kind,
            object: ev.object.clone(),
        })
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        while let Some(ev) = this.replay.pop_front() {
            if let Some(out) = this.translate(&ev) {
                return Poll::Ready(Some(Ok(out)));
            }
        }
        loop {
            match Pin::new(&mut this.live).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(ApiError::internal(format!(
                        "watch subscriber fell behind by {n} events; re-watch from the last resourceVersion"
                    )))));
                }
                Poll::Ready(Some(Ok(ev))) => {
                    if let Some(out) = this.translate(&ev) {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
            }
        }
    }
}
