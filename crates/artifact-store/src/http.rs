//! The HTTP client under the remote flavors: `object_store`'s `*-base` features bring no
//! client of their own, so this one plugs hyper (HTTP/1.1) with rustls on `ring` into
//! `object_store`'s [`HttpConnector`] seam. That keeps reqwest, aws-lc-rs and openssl
//! out of the build; the workspace already compiles hyper, hyper-rustls and ring for kube
//! and the connectors.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as HyperHttpConnector;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
    HttpRequestBody, HttpResponse, HttpResponseBody, HttpService,
};

/// How long connecting may take before the attempt counts as failed (and is retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long sending a request (its body included, at most one part) and receiving the
/// response head may take. Response bodies stream without a deadline (a 1 GiB download
/// is not a timeout).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How many body chunks a download buffers ahead of its reader.
const BODY_CHANNEL: usize = 4;

/// The [`HttpConnector`] of the remote flavors.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HyperConnector;

impl HttpConnector for HyperConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        // `allow_http` is enforced by each flavor's configuration (an `http://` endpoint
        // needs `allow_http: true`) and by object_store's builders; the client itself can
        // speak both.
        Ok(HttpClient::new(HyperService::new()?))
    }
}

/// One pooled hyper client.
#[derive(Clone)]
struct HyperService {
    client: Client<HttpsConnector<HyperHttpConnector>, HttpRequestBody>,
}

impl std::fmt::Debug for HyperService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperService").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl HyperService {
    fn new() -> object_store::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = |roots: rustls::RootCertStore| {
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth())
                .map_err(|e| object_store::Error::Generic {
                    store: "HTTP",
                    source: Box::new(e),
                })
        };
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "no system CA certificates; HTTPS calls will fail");
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls(rustls::RootCertStore::empty())?)
            }
        };
        let mut http = HyperHttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(HyperService { client })
    }
}

/// The kind object_store's retry logic needs: connection and transport failures are
/// retried, the rest is not.
fn classify(err: &hyper_util::client::legacy::Error) -> HttpErrorKind {
    if err.is_connect() {
        return HttpErrorKind::Connect;
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_closed() || h.is_incomplete_message() || h.is_body_write_aborted() {
                return HttpErrorKind::Request;
            }
            if h.is_timeout() {
                return HttpErrorKind::Timeout;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::TimedOut => return HttpErrorKind::Timeout,
                K::ConnectionAborted | K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof => {
                    return HttpErrorKind::Interrupted;
                }
                _ => {}
            }
        }
        source = e.source();
    }
    HttpErrorKind::Request
}

#[async_trait]
impl HttpService for HyperService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = tokio::time::timeout(RESPONSE_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| {
                HttpError::new(
                    HttpErrorKind::Timeout,
                    Message(format!(
                        "no response within {} s",
                        RESPONSE_TIMEOUT.as_secs()
                    )),
                )
            })?
            .map_err(|e| HttpError::new(classify(&e), e))?;
        let (parts, incoming) = response.into_parts();
        // hyper's body is not `Sync`, object_store's response body must be: a task
        // forwards the chunks through a bounded channel (back-pressure, flat memory).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, HttpError>>(BODY_CHANNEL);
        tokio::spawn(async move {
            let mut stream = incoming.into_data_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    let kind = if e.is_timeout() {
                        HttpErrorKind::Timeout
                    } else {
                        HttpErrorKind::Interrupted
                    };
                    HttpError::new(kind, e)
                });
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        let frames = ChannelStream(rx).map(|chunk| chunk.map(hyper::body::Frame::data));
        let body = HttpResponseBody::new(http_body_util::StreamBody::new(frames));
        Ok(HttpResponse::from_parts(parts, body))
    }
}

/// A receiver as a stream: `Sync`, unlike a boxed stream, and safe to poll after its end
/// (hyper's body machinery does).
struct ChannelStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures::Stream for ChannelStream<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
