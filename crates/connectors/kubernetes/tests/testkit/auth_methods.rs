//! Each auth method connects and runs a real request against the emulated cluster.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use stepstack_connector_kubernetes::LocalEnvironment;
use stepstack_core::connector::KUBERNETES_CLUSTER;
use stepstack_core::{ConnectorConfig, ErrorKind, ServiceConnector};
use stepstack_testkit::NewUser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

#[tokio::test]
async fn token_connects_and_its_secrets_stay_hidden() {
    let cluster = cluster().await;
    let connector = build(
        &flavor(),
        token_config("admin", &cluster, cluster.admin_token()),
    );
    assert_works(&connector).await;
    assert_eq!(connector.cluster_name(), "127.0.0.1");
    let debug = format!(
        "{connector:?} {:?} {:?}",
        connector.config(),
        connect(&connector).await
    );
    assert!(
        !debug.contains(cluster.admin_token()),
        "the token leaked into Debug: {debug}"
    );
    assert!(
        !debug.contains("BEGIN CERTIFICATE"),
        "the CA leaked into Debug"
    );
}

#[tokio::test]
async fn token_method_with_only_a_client_certificate_and_base64_pem() {
    let cluster = cluster().await;
    let user = cluster
        .add_user(NewUser::client_cert("carol", step_operator_rules()))
        .unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let config = ConnectorConfig::new("carol", "kubernetes", "token")
        .with_value("server", cluster.url())
        .with_secret("certificate_authority", b64(cluster.ca_pem()))
        .with_secret(
            "client_certificate",
            b64(user.client_cert_pem.as_deref().unwrap()),
        )
        .with_secret("client_key", b64(user.client_key_pem.as_deref().unwrap()));
    assert_works(&build(&flavor(), config)).await;
}

#[tokio::test]
async fn client_certificate_connects() {
    let cluster = cluster().await;
    let admin = cluster.admin_credentials();
    let config = ConnectorConfig::new("cert", "kubernetes", "client-certificate")
        .with_value("server", cluster.url())
        .with_value("cluster_name", "emulated")
        .with_secret("certificate_authority", cluster.ca_pem())
        .with_secret("client_certificate", admin.client_cert_pem.clone().unwrap())
        .with_secret("client_key", admin.client_key_pem.clone().unwrap());
    let connector = build(&flavor(), config);
    assert_eq!(connector.cluster_name(), "emulated");
    assert_works(&connector).await;
    // The single resource is the cluster name; another id is refused.
    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("other"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        err.message(),
        "connector `cert` does not reach the Kubernetes cluster `other`; it only reaches `emulated`"
    );
}

/// A plain-HTTP API server that records the Authorization header of each request and
/// answers `/version` and access reviews.
async fn recording_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        l.split_once(':')
                            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.trim().to_owned())
                    })
                };
                let length: usize = header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                seen.lock()
                    .unwrap()
                    .push(header("authorization").unwrap_or_default());
                let body = if head.starts_with("POST") {
                    r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{},"status":{"allowed":true}}"#
                } else {
                    r#"{"major":"1","minor":"33","gitVersion":"v1.33.0","gitCommit":"x","gitTreeState":"clean","buildDate":"2025-01-01T00:00:00Z","goVersion":"go1.24","compiler":"gc","platform":"linux/amd64"}"#
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn password_is_sent_as_http_basic_auth() {
    let (url, seen) = recording_server().await;
    let config = ConnectorConfig::new("basic", "kubernetes", "password")
        .with_value("server", url.as_str())
        .with_secret("username", "alice")
        .with_secret("password", "wonder land");
    let connector = build(&flavor(), config);
    let client = connect(&connector).await.into_client().unwrap();
    let version = client
        .apiserver_version()
        .await
        .expect("the fake server answers");
    assert_eq!(version.git_version, "v1.33.0");
    let report = connector.verify(None, None).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:wonder land")
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        3,
        "GET /version and two access reviews: {seen:?}"
    );
    assert!(seen.iter().all(|h| *h == expected), "{seen:?}");
}

#[tokio::test]
async fn password_connects_to_the_emulator() {
    let cluster = cluster().await;
    let user = cluster
        .add_user(NewUser::password("dave", step_operator_rules()))
        .unwrap();
    let password = user
        .password
        .clone()
        .expect("a password user has a password");
    let config = |password: &str| {
        ConnectorConfig::new("dave", "kubernetes", "password")
            .with_value("server", cluster.url())
            .with_value("cluster_name", "emulated")
            .with_secret("certificate_authority", cluster.ca_pem())
            .with_secret("username", "dave")
            .with_secret("password", password)
    };
    assert_works(&build(&flavor(), config(&password))).await;

    // A wrong password is an authorization failure naming the connector.
    let wrong = build(&flavor(), config("not-the-password"));
    let report = wrong.verify(None, None).await.unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .and_then(|e| e.error.clone())
        .or(report.error.clone())
        .expect("a wrong password fails verification");
    assert!(error.contains("dave"), "{error}");
    assert!(!error.contains(&password), "the password leaked: {error}");
}

#[tokio::test]
async fn kubeconfig_with_an_exec_plugin_works_when_implicit_methods_are_enabled() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = exec_plugin(dir.path(), cluster.admin_token());
    let b64 = base64::engine::general_purpose::STANDARD.encode(cluster.ca_pem());
    let kubeconfig = format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: emu
  cluster:
    server: {url}
    certificate-authority-data: {b64}
users:
- name: plugin-user
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: {plugin}
contexts:
- name: emu
  context:
    cluster: emu
    user: plugin-user
    namespace: default
current-context: emu
"#,
        url = cluster.url(),
        plugin = plugin.display()
    );
    let config = ConnectorConfig::new("local", "kubernetes", "kubeconfig")
        .with_secret("kubeconfig", kubeconfig);

    // Disabled by default, with a message saying how to enable it.
    let closed = build(&flavor(), config.clone());
    let err = closed.connect(KUBERNETES_CLUSTER, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(
        err.message()
            .contains("set STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS=true"),
        "{err}"
    );
    let report = closed.verify(None, None).await.unwrap();
    let entry = report.entry(KUBERNETES_CLUSTER).unwrap();
    assert!(
        entry
            .error
            .as_deref()
            .unwrap()
            .contains("STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS"),
        "{report:?}"
    );

    let open = stepstack_connector_kubernetes::KubernetesFlavor::with_environment(
        LocalEnvironment::empty().with_implicit_auth(true),
    );
    let connector = build(&open, config);
    assert_works(&connector).await;
    assert!(connector.verify(None, None).await.unwrap().is_ok());
}

#[tokio::test]
async fn in_cluster_reads_the_service_account_and_rereads_a_rotated_token() {
    let cluster = cluster().await;
    let user = step_operator_user(&cluster, "system:serviceaccount:default:runner");
    let sa = tempfile::tempdir().unwrap();
    std::fs::write(sa.path().join("ca.crt"), cluster.ca_pem()).unwrap();
    std::fs::write(sa.path().join("namespace"), "default\n").unwrap();
    std::fs::write(sa.path().join("token"), "not-yet-rotated-in").unwrap();
    let env = LocalEnvironment::empty()
        .with_implicit_auth(true)
        .with_service_account_dir(sa.path())
        .with_in_cluster_server(cluster.url());
    let flavor = stepstack_connector_kubernetes::KubernetesFlavor::with_environment(env);
    let connector = build(
        &flavor,
        ConnectorConfig::new("pod", "kubernetes", "in-cluster"),
    );
    let connection = connect(&connector).await;
    assert_eq!(connection.config.default_namespace, "default");
    let client = connection.into_client().unwrap();
    let api = kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client, "default");
    // The file holds a token the API server rejects: the client re-reads it once and fails.
    let err = api.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 401),
        "{err}"
    );
    // The kubelet rotates the token: the same client picks the new one up.
    std::fs::write(sa.path().join("token"), user.token.as_deref().unwrap()).unwrap();
    api.list(&Default::default())
        .await
        .expect("the rotated token is used");
    assert!(connector.verify(None, None).await.unwrap().is_ok());
}

#[tokio::test]
async fn insecure_skips_tls_verification_and_is_needed_without_a_ca() {
    let cluster = cluster().await;
    let without_ca = |insecure: bool| {
        ConnectorConfig::new("no-ca", "kubernetes", "token")
            .with_value("server", cluster.url())
            .with_value("insecure", insecure)
            .with_secret("token", cluster.admin_token())
    };
    // The emulator's CA is not in the system roots: verification fails…
    let strict = build(&flavor(), without_ca(false));
    let err = namespaces(connect(&strict).await).await.unwrap_err();
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "expected a TLS failure, got {err}"
    );
    let report = strict.verify(None, None).await.unwrap();
    assert!(
        report
            .entry(KUBERNETES_CLUSTER)
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("could not reach"),
        "{report:?}"
    );
    // …unless `insecure` is set, which is honoured.
    assert_works(&build(&flavor(), without_ca(true))).await;
}

#[tokio::test]
async fn a_wrong_token_is_an_authorization_failure_naming_the_connector() {
    let cluster = cluster().await;
    let connector = build(
        &flavor(),
        token_config("wrong-token", &cluster, "not-a-valid-token"),
    );
    let report = connector.verify(None, None).await.unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert_eq!(
        error,
        "connector `wrong-token` authorization failure: the API server of cluster `127.0.0.1` rejected the credentials (401 Unauthorized); check the token, password or client certificate"
    );
    assert!(!error.contains("not-a-valid-token"));
    let err = namespaces(connect(&connector).await).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 401),
        "{err}"
    );
}

#[tokio::test]
async fn implicit_in_cluster_is_refused_unless_enabled() {
    let sa = tempfile::tempdir().unwrap();
    let env = LocalEnvironment::empty().with_service_account_dir(sa.path());
    let flavor = stepstack_connector_kubernetes::KubernetesFlavor::with_environment(env);
    let connector = build(
        &flavor,
        ConnectorConfig::new("pod", "kubernetes", "in-cluster"),
    );
    let err = connector
        .connect(KUBERNETES_CLUSTER, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        err.message(),
        "auth method `in-cluster` of connector `pod` uses the local machine's own credentials (implicit authentication), which is disabled for security reasons; to enable it, set STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS=true in the environment of the process that authenticates"
    );
    let err = connector
        .configure_local_client(KUBERNETES_CLUSTER, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);

    // Enabled, but not in a pod: the error says which file is missing.
    let env = LocalEnvironment::empty()
        .with_service_account_dir(sa.path())
        .with_implicit_auth(true);
    let flavor = stepstack_connector_kubernetes::KubernetesFlavor::with_environment(env);
    let connector = build(
        &flavor,
        ConnectorConfig::new("pod", "kubernetes", "in-cluster"),
    );
    let err = connector
        .connect(KUBERNETES_CLUSTER, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message()
            .starts_with("the in-cluster service-account token at "),
        "{err}"
    );
    assert!(
        err.message().contains("is this process running in a pod"),
        "{err}"
    );
}

#[tokio::test]
async fn conformance_checks_pass() {
    let cluster = cluster().await;
    let flavor = flavor();
    stepstack_core::conformance::check_connector_type(&flavor);
    let user = step_operator_user(&cluster, "conformance");
    let connector = build(
        &flavor,
        token_config("conformance", &cluster, user.token.as_deref().unwrap()),
    );
    stepstack_core::conformance::check_connector_reaches_its_clusters(&connector).await;
    // Also through the registry, as the CLI builds connectors.
    let mut registry = stepstack_core::Registry::new();
    registry.register_connector(flavor).unwrap();
    let built = registry
        .connector("kubernetes")
        .unwrap()
        .build(token_config(
            "via-registry",
            &cluster,
            cluster.admin_token(),
        ))
        .unwrap();
    stepstack_core::conformance::check_connector_reaches_its_clusters(built.as_ref()).await;
}

/// A `MakeWriter` that keeps everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_reach_logs_or_errors() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let cluster = cluster().await;
    let home = tempfile::tempdir().unwrap();
    let flavor = stepstack_connector_kubernetes::KubernetesFlavor::with_environment(
        LocalEnvironment::empty().with_home(home.path()),
    );
    let secret_token = "wrong-but-secret-token-value";
    let mut errors = Vec::new();
    // A rejected token, an insecure connector and a login.
    let wrong = build(&flavor, token_config("wrong", &cluster, secret_token));
    let report = wrong.verify(None, None).await.unwrap();
    errors.push(format!("{report:?}"));
    errors.push(format!(
        "{:?}",
        namespaces(connect(&wrong).await).await.unwrap_err()
    ));
    let insecure = build(
        &flavor,
        token_config("insecure", &cluster, cluster.admin_token()).with_value("insecure", true),
    );
    assert_works(&insecure).await;
    insecure
        .configure_local_client(KUBERNETES_CLUSTER, None)
        .await
        .unwrap();
    let bad_pem = flavor
        .build_connector(
            ConnectorConfig::new("bad", "kubernetes", "client-certificate")
                .with_value("server", cluster.url())
                .with_secret("client_certificate", "secret-not-a-pem")
                .with_secret("client_key", "secret-not-a-key"),
        )
        .unwrap_err();
    errors.push(format!("{bad_pem} {bad_pem:?}"));

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("skips TLS verification"),
        "the insecure warning is logged"
    );
    for text in [&logs, &errors.join("\n")] {
        for secret in [secret_token, cluster.admin_token(), "secret-not-a"] {
            assert!(!text.contains(secret), "a secret leaked: {secret}");
        }
    }
}
