//! The HTTPS server: TLS accept loop, authentication, accounting, faults and dispatch.

pub(crate) mod auth;
pub(crate) mod respond;
pub(crate) mod router;
pub(crate) mod tls;
pub(crate) mod watch;

use base64::Engine as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::accounting::Accounting;
use crate::api;
use crate::error::ApiError;
use crate::faults::{Faults, RequestInfo};
use crate::runtime::Runtime;
use crate::store::Store;
use auth::{Attributes, AuthState, UserInfo};
use respond::Body;
use router::Route;

/// Everything a request handler needs.
pub(crate) struct Ctx {
    pub(crate) store: Store,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) auth: Arc<AuthState>,
    pub(crate) faults: Faults,
    pub(crate) accounting: Accounting,
    pub(crate) server_address: String,
    pub(crate) bookmark_interval: Duration,
    pub(crate) shutdown: CancellationToken,
}

/// The request asks for its connection to be dropped (an injected fault).
#[derive(Debug)]
pub(crate) struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by fault injection")
    }
}

impl std::error::Error for ResetConnection {}

const MAX_BODY: usize = 3 * 1024 * 1024;

/// How the API server treats connections, so idle or slow clients cannot starve it:
/// how long a client may take over the TLS handshake and over a request's headers, and
/// how many connections are served at once.
///
/// At the limit the server stops accepting: new connections wait in the kernel's listen
/// backlog (they are queued, not refused) and are accepted, in order, as soon as a
/// served connection ends, for example an idle one closed by a timeout. A real client
/// that arrives while idle sockets fill every slot is therefore served late, not
/// turned away, and the server never runs out of file descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionOptions {
    /// How long a client may take from connecting to finishing the TLS handshake; a
    /// socket that has not finished by then is closed. Default 10 s.
    pub tls_handshake_timeout: Duration,
    /// How long a client may take to send a request's headers, counted from the end of
    /// the handshake and, on a kept-alive connection, from the end of the previous
    /// response (hyper's `header_read_timeout`, so it also closes connections left idle
    /// that long between requests; clients reconnect). Default 32 s, kube-apiserver's
    /// `ReadHeaderTimeout`.
    pub header_read_timeout: Duration,
    /// How many connections are open at once (at least 1); more wait to be accepted.
    /// Default 512: well above what kubectl, the operator (at most 32 requests in
    /// flight plus its watches) or the benchmarks open, and half of the common soft
    /// limit of 1024 descriptors, leaving the rest to the process kubelet's pipes and
    /// log files.
    pub max_connections: usize,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(32),
            max_connections: 512,
        }
    }
}

/// The connection slots of a server: at most `max_connections` connections are open
/// at once, and how many are open can be read.
#[derive(Clone)]
pub(crate) struct ConnectionSlots {
    slots: Arc<Semaphore>,
    open: Arc<AtomicUsize>,
}

/// One open connection: holds its slot and counts as open until dropped.
struct OpenConnection {
    _slot: OwnedSemaphorePermit,
    open: Arc<AtomicUsize>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ConnectionSlots {
    /// Slots for `options.max_connections` connections (at least 1).
    pub(crate) fn new(options: &ConnectionOptions) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(options.max_connections.max(1))),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many connections are open now (accepted, handshaking or served).
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn opened(&self, slot: OwnedSemaphorePermit) -> OpenConnection {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenConnection {
            _slot: slot,
            open: self.open.clone(),
        }
    }
}

/// Accepts TLS connections until shutdown, at most `options.max_connections` at once.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    ctx: Arc<Ctx>,
    options: ConnectionOptions,
    slots: ConnectionSlots,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut at_limit = false;
    loop {
        if slots.slots.available_permits() == 0 && !at_limit {
            tracing::warn!(
                max_connections = options.max_connections,
                "connection limit reached; new connections wait to be accepted"
            );
        }
        at_limit = slots.slots.available_permits() == 0;
        // Take a slot before accepting, so that at the limit connections stay in the
        // listen backlog instead of costing a descriptor each.
        let slot = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            s = slots.slots.clone().acquire_owned() => s,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, _) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let connection = slots.opened(slot);
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ctx = ctx.clone();
        let options = options.clone();
        tokio::spawn(async move {
            let _connection = connection;
            let stream =
                match tokio::time::timeout(options.tls_handshake_timeout, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out; closing the connection");
                        return;
                    }
                };
            let cert: Option<Arc<[u8]>> = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::from(c.as_ref()));
            let shutdown = ctx.shutdown.clone();
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                let cert = cert.clone();
                async move { handle(ctx, cert.as_deref(), req).await }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(options.header_read_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn request_verb_resource(route: &Route, method: &Method, path: &str) -> (String, String) {
    match route {
        Route::Resource(r) => (r.verb.to_string(), r.resource_label()),
        Route::SelfSubjectReview(r) => ("create".into(), (*r).to_string()),
        _ => (method.as_str().to_ascii_lowercase(), path.to_string()),
    }
}

async fn handle(
    ctx: Arc<Ctx>,
    cert: Option<&[u8]>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ResetConnection> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = router::parse_query(parts.uri.query());
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.strip_prefix("Bearer "))
        .map(str::trim);
    let basic = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let basic = basic.as_deref().and_then(|s| s.split_once(':'));
    let route = router::route(&parts.method, &path, &query);
    let user = match ctx.auth.authenticate(bearer, basic, cert) {
        Ok(u) => u,
        Err(_) => {
            let public = matches!(
                path.as_str(),
                "/version" | "/healthz" | "/livez" | "/readyz"
            );
            if !public {
                let (verb, resource) = match &route {
                    Ok(r) => request_verb_resource(r, &parts.method, &path),
                    Err(_) => (parts.method.as_str().to_ascii_lowercase(), path.clone()),
                };
                ctx.accounting.record("system:anonymous", &verb, &resource);
                return Ok(respond::error(&ApiError::unauthorized()));
            }
            UserInfo::new("system:anonymous", vec!["system:unauthenticated".into()])
        }
    };
    let route = match route {
        Ok(r) => r,
        Err(e) => {
            ctx.accounting.record(
                &user.name,
                &parts.method.as_str().to_ascii_lowercase(),
                &path,
            );
            return Ok(respond::error(&e));
        }
    };
    let (verb, resource) = request_verb_resource(&route, &parts.method, &path);
    ctx.accounting.record(&user.name, &verb, &resource);
    tracing::debug!(user = %user.name, %verb, %resource, %path, "request");

    if let Route::Resource(_) | Route::SelfSubjectReview(_) = &route {
        let (ns, name) = match &route {
            Route::Resource(r) => (r.namespace.as_deref(), r.name.as_deref()),
            _ => (None, None),
        };
        let decision = ctx.faults.decide(&RequestInfo {
            verb: &verb,
            resource: &resource,
            namespace: ns,
            name,
        });
        if let Some(l) = decision.latency {
            tokio::time::sleep(l).await;
        }
        if decision.reset {
            return Err(ResetConnection);
        }
        if let Some(e) = decision.error {
            return Ok(respond::error(&e));
        }
    }

    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(respond::error(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            )));
        }
    };

    let resp = match route {
        Route::NonResource(p) => non_resource(&ctx, &parts.method, &p),
        Route::NotFound => respond::error(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
        Route::Admin(p) => {
            if !user.is_master() {
                respond::error(&ApiError::forbidden(
                    "_testkit",
                    "",
                    format!(
                        "User \"{}\" cannot use the testkit admin endpoint",
                        user.name
                    ),
                ))
            } else {
                api::admin::handle(&ctx, &parts.method, &p, &body)
            }
        }
        Route::SelfSubjectReview(which) => {
            api::review::handle(&ctx, &user, which, &parts.headers, &body)
        }
        Route::Resource(r) => {
            let attrs = Attributes {
                verb: r.verb,
                group: r.kind.group(),
                resource: r.kind.plural(),
                subresource: r.subresource.as_deref(),
                namespace: r.namespace.as_deref(),
                name: r.name.as_deref(),
            };
            if !ctx.auth.authorize(&user, &attrs) {
                let msg = auth::forbidden_message(&user, &attrs);
                let label = if r.kind.group().is_empty() {
                    r.resource_label()
                } else {
                    format!("{}.{}", r.resource_label(), r.kind.group())
                };
                respond::error(&ApiError::forbidden(
                    &label,
                    r.name.as_deref().unwrap_or(""),
                    msg,
                ))
            } else {
                let req = api::Req {
                    route: r,
                    query,
                    headers: parts.headers,
                    body,
                    user,
                };
                api::verbs::handle(ctx.clone(), req).await
            }
        }
    };
    Ok(resp)
}

fn non_resource(ctx: &Ctx, method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET {
        return respond::error(&ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let p = path.trim_end_matches('/');
    let v: Option<Value> = match p {
        "/version" => Some(api::discovery::version()),
        "/healthz" | "/livez" | "/readyz" => {
            let mut r = Response::new(respond::full("ok"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
            return r;
        }
        "/api" => Some(api::discovery::api_versions(&ctx.server_address)),
        "/apis" => Some(api::discovery::api_groups()),
        "/api/v1" => api::discovery::resource_list("v1"),
        "/apis/batch" => Some(api::discovery::api_group("batch")),
        "/apis/authorization.k8s.io" => Some(api::discovery::api_group("authorization.k8s.io")),
        "/apis/batch/v1" => api::discovery::resource_list("batch/v1"),
        "/apis/authorization.k8s.io/v1" => api::discovery::resource_list("authorization.k8s.io/v1"),
        "/openapi/v3" => Some(api::discovery::openapi_v3_index()),
        "" => Some(
            json!({"paths": ["/api", "/api/v1", "/apis", "/apis/batch/v1", "/apis/authorization.k8s.io/v1", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]}),
        ),
        other => other
            .strip_prefix("/openapi/v3/")
            .and_then(api::discovery::openapi_v3_doc),
    };
    match v {
        Some(v) => respond::json(200, &v),
        None => respond::error(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

/// Decodes a JSON or YAML request body into an object.
pub(crate) fn decode_body(
    kind: crate::store::ResourceKind,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if ct.contains("protobuf") {
        return api::protobuf::decode(kind, body);
    }
    let v: Value = if ct.contains("yaml") {
        // The input rule every stepstack loader uses: bounded size, depth and alias
        // expansion (an alias bomb is refused, not expanded).
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        stepstack_input::parse(
            text,
            stepstack_input::Format::Yaml,
            &stepstack_input::Limits::DEFAULT,
        )
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

/// Query parameters.
pub(crate) type Query = HashMap<String, String>;

/// Body bytes.
pub(crate) type BodyBytes = Bytes;
