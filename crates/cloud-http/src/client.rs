//! The HTTPS client of the cloud connectors and the helpers around one request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret as _, SecretString};
use stepstack_core::error_chain;

use crate::error::{HResult, HttpError};

/// How long a request may wait for its answer, and then for the answer's body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP client of every cloud call: HTTPS through rustls (ring), plain HTTP allowed
/// for local endpoints (metadata servers, fakes).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client trusting the system roots, or, when `ca_certificates` (DER) is given, only
/// those certificates.
pub fn http_client(ca_certificates: Option<&[Vec<u8>]>) -> HResult<HttpClient> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let with_roots = |roots: rustls::RootCertStore| {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .map_err(|e| HttpError::Tls {
                reason: e.to_string(),
            })
    };
    let builder = if let Some(certs) = ca_certificates {
        let mut roots = rustls::RootCertStore::empty();
        for der in certs {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| HttpError::InvalidCertificate {
                    reason: format!("it is not a usable CA certificate: {e}"),
                })?;
        }
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(with_roots(roots)?)
    } else {
        match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "no system CA certificates; HTTPS calls will fail");
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(with_roots(rustls::RootCertStore::empty())?)
            }
        }
    };
    let connector = builder.https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// A response: status and body.
#[derive(Clone)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
}

impl std::fmt::Debug for HttpResponse {
    // The body may hold a token: only its size is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl HttpResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as `T`, or a [`HttpError::BadResponse`] naming `endpoint`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, endpoint: &str) -> HResult<T> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::BadResponse {
            endpoint: endpoint.to_owned(),
            status: self.status,
            reason: format!("the body is not the expected JSON: {e}"),
        })
    }

    /// The body as JSON, `Null` when it is not JSON.
    pub fn json_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The first 200 characters of the body, for error messages about non-JSON answers.
    pub fn excerpt(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(200)
            .collect()
    }
}

/// Sends `request`; `endpoint` names it in errors. Both the answer and its body must
/// arrive within [`REQUEST_TIMEOUT`].
pub async fn send(
    client: &HttpClient,
    request: http::Request<Full<Bytes>>,
    endpoint: &str,
) -> HResult<HttpResponse> {
    let unreachable = |reason: String| HttpError::Unreachable {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
        .await
        .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
        .map_err(|e| unreachable(error_chain(&e)))?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| unreachable("the response body did not arrive in time".to_owned()))?
        .map_err(|e| unreachable(error_chain(&e)))?
        .to_bytes();
    Ok(HttpResponse { status, body })
}

/// An `Authorization: Bearer …` header value, marked sensitive.
pub fn bearer_header(token: &SecretString) -> HResult<http::HeaderValue> {
    let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
        .map_err(|_| HttpError::InvalidToken)?;
    value.set_sensitive(true);
    Ok(value)
}

/// A `method` request to `url` with `token` as bearer, accepting JSON, without a body.
pub fn bearer_request(
    method: http::Method,
    url: &str,
    token: &SecretString,
    headers: &[(&str, &str)],
) -> HResult<http::Request<Full<Bytes>>> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(url)
        .header(http::header::AUTHORIZATION, bearer_header(token)?)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::CONTENT_LENGTH, "0");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::new()))
        .map_err(|e| HttpError::InvalidRequest {
            endpoint: url.to_owned(),
            reason: e.to_string(),
        })
}

/// A `POST` of `form` (`application/x-www-form-urlencoded`) to `url`, accepting JSON.
pub fn form_request(url: &str, form: &[(&str, &str)]) -> HResult<http::Request<Full<Bytes>>> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    http::Request::post(url)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| HttpError::InvalidRequest {
            endpoint: url.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_and_never_show_their_body() {
        let response = HttpResponse {
            status: 200,
            body: Bytes::from_static(br#"{"access_token":"s3cr3t","n":1}"#),
        };
        assert!(response.is_success());
        assert_eq!(response.json_value()["n"], 1);
        assert!(!format!("{response:?}").contains("s3cr3t"));
        let err = response
            .json::<Vec<u8>>("https://example.invalid/x")
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("https://example.invalid/x answered with an unexpected response (HTTP 200): the body is not the expected JSON"),
            "{err}"
        );
    }

    #[test]
    fn bearer_headers_are_sensitive_and_refuse_newlines() {
        let value = bearer_header(&SecretString::from("abc")).unwrap();
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), "Bearer abc");
        assert!(matches!(
            bearer_header(&SecretString::from("a\nb")),
            Err(HttpError::InvalidToken)
        ));
        let request = form_request("https://h/token", &[("a", "b c"), ("d", "&")]).unwrap();
        assert_eq!(
            request.headers()[http::header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert!(matches!(
            form_request("not a url", &[]),
            Err(HttpError::InvalidRequest { .. })
        ));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_named_with_its_cause() {
        // A port nothing listens on: bound, then released.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        drop(listener);
        let client = http_client(None).unwrap();
        let err = send(&client, form_request(&url, &[]).unwrap(), &url)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("could not reach {url}: ")),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }
}
