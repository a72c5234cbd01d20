//! The API server against idle and slow clients: a socket that never finishes the TLS
//! handshake, or finishes it and never sends a request, is closed by the server; at the
//! connection limit new connections wait to be accepted (queued, not refused) and a real
//! client is served once a slot frees up. Timeouts here only guard against hangs.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use stepstack_testkit::{Cluster, ClusterOptions, ConnectionOptions};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A hang guard, never a claim about how long anything takes.
const GUARD: Duration = Duration::from_secs(60);

/// Longer than any test runs: a timeout that must not fire.
const NEVER: Duration = Duration::from_secs(3600);

async fn cluster(connections: ConnectionOptions) -> Cluster {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    Cluster::start(ClusterOptions {
        connections,
        ..ClusterOptions::default()
    })
    .await
    .expect("cluster starts")
}

fn address(cluster: &Cluster) -> String {
    cluster.url().trim_start_matches("https://").to_string()
}

/// A TCP connection that sends nothing.
async fn idle_socket(cluster: &Cluster) -> TcpStream {
    TcpStream::connect(address(cluster))
        .await
        .expect("connects")
}

/// A connection that finishes the TLS handshake (trusting the cluster CA) and then
/// sends nothing.
async fn handshaken_socket(cluster: &Cluster) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cluster.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = idle_socket(cluster).await;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio::time::timeout(
        GUARD,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("the handshake does not hang")
    .expect("the handshake succeeds")
}

/// Whether the server closed the connection: a read ends (EOF or reset) without data.
/// Panics when it does not end within the hang guard.
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(GUARD, stream.read(&mut buf)).await {
        Err(_) => panic!("the server left the idle connection open"),
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
    }
}

/// Waits until the server holds `n` connections open.
async fn open_connections(cluster: &Cluster, n: usize) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while cluster.open_connections() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server holds {} connections, not {n}",
            cluster.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A real client's request: the server's version through kube-rs.
async fn version(cluster: &Cluster) -> Result<String, kube::Error> {
    let client = cluster.client().await.expect("client");
    client.apiserver_version().await.map(|v| v.git_version)
}

#[tokio::test]
async fn a_socket_that_never_handshakes_is_closed() {
    let cluster = cluster(ConnectionOptions {
        tls_handshake_timeout: Duration::from_millis(200),
        header_read_timeout: NEVER,
        ..ConnectionOptions::default()
    })
    .await;
    let mut socket = idle_socket(&cluster).await;
    assert!(closed_by_server(&mut socket).await);
    open_connections(&cluster, 0).await;
}

#[tokio::test]
async fn a_socket_that_handshakes_but_sends_no_headers_is_closed() {
    let cluster = cluster(ConnectionOptions {
        tls_handshake_timeout: NEVER,
        header_read_timeout: Duration::from_millis(200),
        ..ConnectionOptions::default()
    })
    .await;
    let mut socket = handshaken_socket(&cluster).await;
    assert!(closed_by_server(&mut socket).await);
    open_connections(&cluster, 0).await;
    // A client that does send its request is served.
    assert!(version(&cluster).await.unwrap().starts_with('v'));
}

/// Many idle sockets at a small limit: they are accepted a few at a time and each is
/// closed by the handshake timeout; a real client queued behind them is served.
#[tokio::test]
async fn idle_sockets_at_the_limit_time_out_and_a_real_client_is_served() {
    const LIMIT: usize = 3;
    let cluster = cluster(ConnectionOptions {
        tls_handshake_timeout: Duration::from_secs(1),
        header_read_timeout: NEVER,
        max_connections: LIMIT,
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 * LIMIT {
        idle.push(idle_socket(&cluster).await);
    }
    // The first ones hold every slot; the rest, and then the client, wait their turn.
    open_connections(&cluster, LIMIT).await;
    let client = {
        let kubeconfig = cluster.kubeconfig().unwrap();
        tokio::spawn(async move {
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .unwrap();
            kube::Client::try_from(config)
                .unwrap()
                .apiserver_version()
                .await
        })
    };
    for socket in &mut idle {
        assert!(closed_by_server(socket).await);
        assert!(cluster.open_connections() <= LIMIT);
    }
    let served = tokio::time::timeout(GUARD, client)
        .await
        .expect("the client is served")
        .unwrap()
        .expect("the request succeeds");
    assert!(served.git_version.starts_with('v'));
}

/// At the limit a new connection is not refused and not served either: it waits until
/// a slot frees up. Here nothing times out, so only closing an idle socket frees one.
#[tokio::test]
async fn at_the_limit_new_connections_wait_for_a_free_slot() {
    const LIMIT: usize = 2;
    let cluster = cluster(ConnectionOptions {
        tls_handshake_timeout: NEVER,
        header_read_timeout: NEVER,
        max_connections: LIMIT,
    })
    .await;
    // Handshaken sockets are certainly accepted: they hold both slots.
    let first = handshaken_socket(&cluster).await;
    let _second = handshaken_socket(&cluster).await;
    open_connections(&cluster, LIMIT).await;

    let kubeconfig = cluster.kubeconfig().unwrap();
    let mut client = tokio::spawn(async move {
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config)
            .unwrap()
            .apiserver_version()
            .await
    });
    // Not a duration claim: while both slots are held the request cannot be served at
    // all, so however long this waits it must find the request still pending.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut client)
            .await
            .is_err(),
        "a connection beyond the limit was served"
    );
    assert_eq!(cluster.open_connections(), LIMIT);

    drop(first);
    let served = tokio::time::timeout(GUARD, client)
        .await
        .expect("the client is served once a slot is free")
        .unwrap()
        .expect("the request succeeds");
    assert!(served.git_version.starts_with('v'));
}
