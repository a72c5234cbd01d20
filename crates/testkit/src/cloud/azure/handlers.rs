//! The HTTPS server and the routes: each request goes to the Entra ID endpoints (`entra`)
//! or to Azure Resource Manager (`arm`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use http::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::arm::{arm, subscriptions};
use super::entra::{managed_identity, token};
use super::respond::arm_error;
use super::state::AzureState;

/// Accepts TLS connections until `shutdown`, answering each request with [`handle`].
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<AzureState>,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let state = state.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        handle(State(state), request.map(Body::new)).await,
                    )
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

async fn handle(State(state): State<Arc<AzureState>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(_) => return arm_error(400, "InvalidRequestContent", "unreadable body"),
    };
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();
    if method == http::Method::POST
        && let Some(tenant) = path.strip_suffix("/oauth2/v2.0/token")
    {
        return token(&state, tenant.trim_start_matches('/'), &body);
    }
    if method == http::Method::GET
        && (path == "/metadata/identity/oauth2/token" || path == "/msi/token")
    {
        let query = parts.uri.query().unwrap_or_default();
        return managed_identity(&state, &path, query, &parts.headers);
    }
    if method == http::Method::GET && path.trim_end_matches('/') == "/subscriptions" {
        return subscriptions(
            &state,
            parts.uri.query().unwrap_or_default(),
            &parts.headers,
        );
    }
    if path.starts_with("/subscriptions/") {
        if !parts
            .uri
            .query()
            .unwrap_or_default()
            .contains("api-version=")
        {
            return arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        }
        return arm(&state, &method, &path, &parts.headers);
    }
    arm_error(
        404,
        "NotFound",
        &format!("no fake Azure API at {method} {path}"),
    )
}
