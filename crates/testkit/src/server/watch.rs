//! Watch streams over HTTP: newline-delimited JSON watch events, synthetic ADDED events,
//! bookmarks, `timeoutSeconds`, 410 Gone as an ERROR event, and fault-driven drops.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Ctx;
use super::respond::{self, Body};
use crate::api::{Req, table, verbs};
use crate::error::ApiError;
use crate::selectors::{FieldRequirement, FieldSelector};
use crate::store::{ResourceKind, WatchEventType};

fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn bookmark(kind: ResourceKind, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": kind.kind(), "apiVersion": kind.api_version(), "metadata": meta})
}

/// Serves `?watch=true`.
pub(crate) fn watch(ctx: Arc<Ctx>, req: Req) -> Response<Body> {
    match start(ctx, req) {
        Ok(r) => r,
        Err(e) => respond::error(&e),
    }
}

fn start(ctx: Arc<Ctx>, req: Req) -> Result<Response<Body>, ApiError> {
    let kind = req.route.kind;
    let mut filter = verbs::filter_of(&req)?;
    if let Some(name) = &req.route.name {
        filter
            .fields
            .get_or_insert_with(FieldSelector::default)
            .requirements
            .push(FieldRequirement {
                field: "metadata.name".into(),
                value: name.clone(),
                negated: false,
            });
    }
    let ns = req.ns().map(str::to_string);
    let bookmarks = req.q("allowWatchBookmarks") == Some("true");
    let send_initial = req.q("sendInitialEvents") == Some("true");
    let timeout = match req.q("timeoutSeconds") {
        Some(t) => Some(Duration::from_secs(t.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {t:?}"))
        })?)),
        None => None,
    };
    let as_table = req.wants_table();
    let rv = req.q("resourceVersion");
    let store = &ctx.store;
    let mut initial: Vec<Value> = Vec::new();
    let mut initial_rv = None;
    let stream = match rv {
        None | Some("0") => {
            let (items, lrv) = store.list(kind, ns.as_deref(), &filter);
            initial = items;
            initial_rv = Some(lrv);
            store.watch_filtered(kind, ns.as_deref(), Some(lrv), filter)
        }
        Some(rv) => {
            let rv: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            if send_initial {
                let (items, lrv) = store.list(kind, ns.as_deref(), &filter);
                initial = items;
                initial_rv = Some(lrv);
                store.watch_filtered(kind, ns.as_deref(), Some(lrv), filter)
            } else {
                store.watch_filtered(kind, ns.as_deref(), Some(rv), filter)
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let render = move |o: &Value| -> Value {
        if as_table {
            table::table(kind, std::slice::from_ref(o), None, None)
        } else {
            o.clone()
        }
    };
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => {
            // Like the real server: 200 with an ERROR event carrying the Status.
            let _ = tx.try_send(Ok(line("ERROR", &e.to_status_json())));
            drop(tx);
            return Ok(watch_response(rx));
        }
    };
    let guard = ctx.accounting.watch_opened();
    let faults = ctx.faults.clone();
    let shutdown = ctx.shutdown.clone();
    let bookmark_interval = ctx.bookmark_interval;
    tokio::spawn(async move {
        let _guard = guard;
        let mut drop_rx = faults.drop_signal();
        let mut drop_gen = *drop_rx.borrow_and_update();
        let mut delivered: u64 = 0;
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        for o in &initial {
            if tx.send(Ok(line("ADDED", &render(o)))).await.is_err() {
                return;
            }
        }
        if send_initial && bookmarks {
            let b = bookmark(kind, initial_rv.unwrap_or(0), true);
            if tx.send(Ok(line("BOOKMARK", &b))).await.is_err() {
                return;
            }
        }
        let mut tick = tokio::time::interval(bookmark_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(Ok(ev)) => {
                        let t = ev.kind.as_str();
                        let obj = if ev.kind == WatchEventType::Bookmark { ev.object } else { render(&ev.object) };
                        if tx.send(Ok(line(t, &obj))).await.is_err() {
                            return;
                        }
                        delivered += 1;
                        if faults.drop_after().is_some_and(|n| delivered >= n) {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "watch subscriber dropped");
                        return;
                    }
                    None => return,
                },
                _ = tick.tick(), if bookmarks => {
                    let b = bookmark(kind, stream.last_resource_version(), false);
                    if tx.send(Ok(line("BOOKMARK", &b))).await.is_err() {
                        return;
                    }
                }
                changed = drop_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let g = *drop_rx.borrow_and_update();
                    if g != drop_gen {
                        return;
                    }
                    drop_gen = g;
                    delivered = 0;
                    if faults.drop_after() == Some(0) {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(watch_response(rx))
}

fn watch_response(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Response<Body> {
    let body = respond::streamed(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut r = Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
