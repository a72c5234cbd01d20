//! The client built from a `ClusterConnection` with a token source, exercised over real
//! HTTP against a loopback API server that checks bearer tokens.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use stepstack_core::{BearerToken, ClusterConnection, ErrorKind, TokenSource};

/// What the fake API server saw: the bearer token and body of each request.
#[derive(Default)]
struct Seen {
    requests: Vec<(Option<String>, Bytes)>,
}

/// A loopback API server that accepts only the tokens in `accepted`.
struct FakeApiServer {
    url: String,
    accepted: Arc<Mutex<HashSet<String>>>,
    seen: Arc<Mutex<Seen>>,
}

impl FakeApiServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(Mutex::new(HashSet::new()));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (accepted2, seen2) = (accepted.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (accepted, seen) = (accepted2.clone(), seen2.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (accepted, seen) = (accepted.clone(), seen.clone());
                        async move { Ok::<_, Infallible>(answer(req, &accepted, &seen).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeApiServer {
            url,
            accepted,
            seen,
        }
    }

    fn accept(&self, token: &str) {
        self.accepted.lock().unwrap().insert(token.to_owned());
    }

    fn revoke(&self, token: &str) {
        self.accepted.lock().unwrap().remove(token);
    }

    fn seen(&self) -> Vec<(Option<String>, Bytes)> {
        self.seen.lock().unwrap().requests.clone()
    }
}

async fn answer(
    req: Request<Incoming>,
    accepted: &Mutex<HashSet<String>>,
    seen: &Mutex<Seen>,
) -> Response<Full<Bytes>> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    seen.lock()
        .unwrap()
        .requests
        .push((token.clone(), body.clone()));
    let authorized = token.is_some_and(|t| accepted.lock().unwrap().contains(&t));
    if !authorized {
        let status = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(status)))
            .unwrap();
    }
    let body = if path == "/version" {
        Bytes::from(
            r#"{"major":"1","minor":"33","gitVersion":"v1.33.0","gitCommit":"x","gitTreeState":"clean","buildDate":"2026-01-01T00:00:00Z","goVersion":"go1.24","compiler":"gc","platform":"linux/amd64"}"#,
        )
    } else {
        // Creating an object: echo it back, as the API server returns what it stored.
        body
    };
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap()
}

/// Issues `token-1`, `token-2`, … each valid for `lifetime` from the moment it is issued.
#[derive(Debug)]
struct CountingSource {
    issued: AtomicUsize,
    lifetime: SignedDuration,
}

impl CountingSource {
    fn new(lifetime: SignedDuration) -> Arc<Self> {
        Arc::new(CountingSource {
            issued: AtomicUsize::new(0),
            lifetime,
        })
    }

    fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenSource for CountingSource {
    async fn token(&self) -> stepstack_core::Result<BearerToken> {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(BearerToken::new(
            format!("token-{n}"),
            Some(Timestamp::now() + self.lifetime),
        ))
    }
}

fn connection(
    server: &FakeApiServer,
    source: Arc<CountingSource>,
    margin: Duration,
) -> ClusterConnection {
    let config = kube::Config::new(server.url.parse().unwrap());
    ClusterConnection::new(config)
        .with_token_source(source)
        .with_refresh_margin(margin)
}

#[tokio::test]
async fn a_token_about_to_expire_is_replaced_before_use() {
    let server = FakeApiServer::start().await;
    for n in 1..=3 {
        server.accept(&format!("token-{n}"));
    }
    // Each token is "about to expire" 500 ms after it is issued.
    let margin = Duration::from_secs(60);
    let source =
        CountingSource::new(SignedDuration::from_secs(60) + SignedDuration::from_millis(500));
    let client = connection(&server, source.clone(), margin)
        .into_client()
        .unwrap();

    client.apiserver_version().await.unwrap();
    client.apiserver_version().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    client.apiserver_version().await.unwrap();

    let tokens: Vec<_> = server.seen().into_iter().map(|(t, _)| t.unwrap()).collect();
    assert_eq!(tokens.len(), 3, "no request was retried: {tokens:?}");
    assert_eq!(tokens[0], "token-1");
    assert_ne!(tokens[2], tokens[0], "the expiring token was used again");
    assert!(source.issued() >= 2);
}

#[tokio::test]
async fn a_rejected_token_is_replaced_and_the_request_retried_exactly_once() {
    let server = FakeApiServer::start().await;
    server.accept("token-2");
    let source = CountingSource::new(SignedDuration::from_secs(3600));
    let client = connection(&server, source.clone(), Duration::from_secs(60))
        .into_client()
        .unwrap();

    // token-1 is not accepted (revoked on the server side, though not yet expired).
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("settings".into());
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("settings"));

    let seen = server.seen();
    assert_eq!(seen.len(), 2, "expected one rejected request and one retry");
    assert_eq!(seen[0].0.as_deref(), Some("token-1"));
    assert_eq!(seen[1].0.as_deref(), Some("token-2"));
    assert_eq!(seen[0].1, seen[1].1, "the retry must resend the same body");
    assert!(!seen[1].1.is_empty());
    assert_eq!(source.issued(), 2);

    // The fresh token is cached: the next request does not fetch again.
    client.apiserver_version().await.unwrap();
    assert_eq!(source.issued(), 2);
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_second_rejection_is_returned_not_retried_again() {
    let server = FakeApiServer::start().await;
    server.accept("token-1");
    let source = CountingSource::new(SignedDuration::from_secs(3600));
    let client = connection(&server, source.clone(), Duration::from_secs(60))
        .into_client()
        .unwrap();
    client.apiserver_version().await.unwrap();

    // Every token is rejected from now on.
    server.revoke("token-1");
    let err = client.apiserver_version().await.unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(status.code, 401);
    assert!(
        !err.to_string().contains("token-"),
        "the error leaks a token: {err}"
    );
    // One request that succeeded, then the rejected one and exactly one retry.
    assert_eq!(server.seen().len(), 3);
    assert_eq!(source.issued(), 2);
}

#[tokio::test]
async fn a_failing_token_source_surfaces_its_error() {
    #[derive(Debug)]
    struct Broken;
    #[async_trait]
    impl TokenSource for Broken {
        async fn token(&self) -> stepstack_core::Result<BearerToken> {
            Err(stepstack_core::Error::new(
                ErrorKind::Unauthenticated,
                "the STS credentials were rejected",
            ))
        }
    }
    let server = FakeApiServer::start().await;
    let config = kube::Config::new(server.url.parse().unwrap());
    let client = ClusterConnection::new(config)
        .with_token_source(Arc::new(Broken))
        .into_client()
        .unwrap();
    let err = client.apiserver_version().await.unwrap_err();
    assert!(
        format!("{err:?}").contains("the STS credentials were rejected"),
        "{err:?}"
    );
    assert!(
        server.seen().is_empty(),
        "no request may be sent without a token"
    );
}
