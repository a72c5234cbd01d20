//! Bearer-token authentication that refreshes itself: a cache in front of a
//! [`TokenSource`] and a tower layer that puts its token on every request.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::header::{AUTHORIZATION, HeaderValue};
use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use kube::client::Body;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tower::{BoxError, Layer, Service, ServiceExt};

use super::{BearerToken, TokenSource};

/// Caches the current token and fetches a new one when it is about to expire or was
/// rejected. Concurrent callers share one fetch.
#[derive(Debug)]
pub(crate) struct TokenCache {
    source: Arc<dyn TokenSource>,
    refresh_margin: Duration,
    current: Mutex<Option<BearerToken>>,
}

impl TokenCache {
    pub(crate) fn new(source: Arc<dyn TokenSource>, refresh_margin: Duration) -> Self {
        TokenCache {
            source,
            refresh_margin,
            current: Mutex::new(None),
        }
    }

    /// The token to use now, fetching a new one if there is none or it expires within
    /// the refresh margin.
    async fn token(&self) -> crate::Result<SecretString> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| self.is_fresh(t)) {
            return Ok(token.value.clone());
        }
        self.fetch_into(&mut current).await
    }

    /// A token to retry with after the API rejected `rejected`: a new one, unless another
    /// request already replaced the rejected token.
    async fn replace(&self, rejected: &SecretString) -> crate::Result<SecretString> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && token.value.expose_secret() != rejected.expose_secret()
            && self.is_fresh(token)
        {
            return Ok(token.value.clone());
        }
        self.fetch_into(&mut current).await
    }

    async fn fetch_into(&self, slot: &mut Option<BearerToken>) -> crate::Result<SecretString> {
        tracing::debug!("fetching a new bearer token");
        let token = self.source.token().await?;
        let value = token.value.clone();
        *slot = Some(token);
        Ok(value)
    }

    fn is_fresh(&self, token: &BearerToken) -> bool {
        let Some(expires_at) = token.expires_at else {
            return true;
        };
        let margin = jiff::SignedDuration::try_from(self.refresh_margin)
            .unwrap_or(jiff::SignedDuration::MAX);
        match expires_at.checked_sub(margin) {
            Ok(refresh_at) => Timestamp::now() < refresh_at,
            Err(_) => false,
        }
    }
}

/// Adds the cached bearer token to each request and retries once on 401.
#[derive(Clone)]
pub(crate) struct RefreshingAuthLayer {
    cache: Arc<TokenCache>,
}

impl RefreshingAuthLayer {
    pub(crate) fn new(cache: Arc<TokenCache>) -> Self {
        RefreshingAuthLayer { cache }
    }
}

impl<S> Layer<S> for RefreshingAuthLayer {
    type Service = RefreshingAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RefreshingAuth {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// The service of [`RefreshingAuthLayer`].
#[derive(Clone)]
pub(crate) struct RefreshingAuth<S> {
    inner: S,
    cache: Arc<TokenCache>,
}

impl<S, B> Service<Request<Body>> for RefreshingAuth<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<B>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The service that was polled ready serves the first attempt; a clone serves the retry.
        let retry_service = self.inner.clone();
        let mut first_service = std::mem::replace(&mut self.inner, retry_service.clone());
        let cache = self.cache.clone();
        Box::pin(async move {
            let token = cache.token().await?;
            let retry = try_clone(&request);
            set_bearer(&mut request, &token)?;
            let response = first_service.call(request).await.map_err(Into::into)?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let Some(mut retry) = retry else {
                // A streamed body cannot be replayed; the caller sees the 401.
                return Ok(response);
            };
            tracing::debug!(
                "the API server rejected the bearer token; retrying once with a new one"
            );
            let fresh = cache.replace(&token).await?;
            set_bearer(&mut retry, &fresh)?;
            retry_service.oneshot(retry).await.map_err(Into::into)
        })
    }
}

/// A copy of `request` for a retry, if its body can be replayed.
fn try_clone(request: &Request<Body>) -> Option<Request<Body>> {
    let body = request.body().try_clone()?;
    let mut copy = Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone())
        .version(request.version())
        .body(body)
        .ok()?;
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

fn set_bearer(request: &mut Request<Body>, token: &SecretString) -> Result<(), BoxError> {
    let mut value =
        HeaderValue::try_from(format!("Bearer {}", token.expose_secret())).map_err(|_| {
            BoxError::from(
                "the bearer token contains characters that are not allowed in an HTTP header",
            )
        })?;
    value.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}
