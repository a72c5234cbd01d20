//! `auto_configure` from local kubeconfigs and from a pod's service account produces
//! connectors that work.

use std::path::Path;

use base64::Engine as _;
use secrecy::ExposeSecret;
use stepstack_connector_kubernetes::{KubernetesFlavor, LocalEnvironment};
use stepstack_core::{AutoConfigureRequest, ConnectorConfig, ConnectorFlavor, ErrorKind};
use stepstack_testkit::{Cluster, NewUser};

use crate::common::*;

fn write(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn with_kubeconfig(value: impl Into<std::ffi::OsString>) -> KubernetesFlavor {
    KubernetesFlavor::with_environment(LocalEnvironment::empty().with_kubeconfig(value))
}

async fn auto(flavor: &KubernetesFlavor, request: AutoConfigureRequest) -> ConnectorConfig {
    flavor
        .auto_configure(request)
        .await
        .expect("auto-configuration succeeds")
}

/// A kubeconfig whose one context `name` uses `user_yaml` (indented user fields).
fn kubeconfig_with_user(cluster: &Cluster, name: &str, user_yaml: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(cluster.ca_pem());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {}\n    certificate-authority-data: {b64}\nusers:\n- name: {name}\n  user:\n{user_yaml}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\ncurrent-context: {name}\n",
        cluster.url()
    )
}

#[tokio::test]
async fn a_token_kubeconfig_gives_a_token_connector() {
    let cluster = cluster().await;
    let user = step_operator_user(&cluster, "dev");
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", &cluster.kubeconfig_yaml_for(&user));
    let flavor = with_kubeconfig(&path);
    let config = auto(&flavor, AutoConfigureRequest::new("from-token")).await;
    assert_eq!(config.auth_method, "token");
    assert_eq!(config.str_value("server"), Some(cluster.url()));
    assert_eq!(config.str_value("cluster_name"), Some("127.0.0.1"));
    assert_eq!(config.str_value("namespace"), Some("default"));
    assert_eq!(
        config.secret("token").unwrap().expose_secret(),
        user.token.as_deref().unwrap()
    );
    assert!(
        !config.values.contains_key("token"),
        "the token is a secret, not a value"
    );
    let connector = build(&flavor, config);
    assert_works(&connector).await;
    assert!(
        stepstack_core::ServiceConnector::verify(&connector, None, None)
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn a_client_certificate_kubeconfig_gives_a_client_certificate_connector() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config", &cluster.kubeconfig_yaml());
    let flavor = with_kubeconfig(&path);
    let config = auto(&flavor, AutoConfigureRequest::new("from-cert")).await;
    assert_eq!(config.auth_method, "client-certificate");
    assert!(config.secret("client_key").is_some());
    assert_works(&build(&flavor, config)).await;
}

#[tokio::test]
async fn files_token_files_merge_rules_and_named_contexts_are_followed() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let cert_user = cluster
        .add_user(NewUser::client_cert("files", step_operator_rules()))
        .unwrap();
    write(&certs, "ca.crt", cluster.ca_pem());
    write(
        &certs,
        "client.crt",
        cert_user.client_cert_pem.as_deref().unwrap(),
    );
    write(
        &certs,
        "client.key",
        cert_user.client_key_pem.as_deref().unwrap(),
    );
    let token_user = step_operator_user(&cluster, "token-file");
    write(
        &certs,
        "token",
        &format!("{}\n", token_user.token.as_deref().unwrap()),
    );
    // The first file sets the current context and a `shared` user that the second file's
    // `shared` user must not override (first wins). Paths are relative to the file.
    let first = format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: emu
  cluster:
    server: {url}
    certificate-authority: certs/ca.crt
users:
- name: cert-files
  user:
    client-certificate: certs/client.crt
    client-key: certs/client.key
- name: shared
  user:
    tokenFile: certs/token
contexts:
- name: by-files
  context: {{cluster: emu, user: cert-files, namespace: default}}
current-context: by-files
"#,
        url = cluster.url()
    );
    let second = r#"apiVersion: v1
kind: Config
users:
- name: shared
  user:
    token: from-the-second-file
contexts:
- name: by-token-file
  context: {cluster: emu, user: shared}
current-context: ignored
"#;
    let first = write(dir.path(), "first", &first);
    let second = write(dir.path(), "second", second);
    let missing = dir.path().join("missing");
    let kubeconfig = std::env::join_paths([&missing, &first, &second]).unwrap();
    let flavor = with_kubeconfig(kubeconfig);

    let config = auto(&flavor, AutoConfigureRequest::new("files")).await;
    assert_eq!(config.auth_method, "client-certificate");
    assert_works(&build(&flavor, config)).await;

    let mut request = AutoConfigureRequest::new("token-file");
    request
        .values
        .insert("kubernetes_context".to_owned(), "by-token-file".to_owned());
    let config = auto(&flavor, request).await;
    assert_eq!(config.auth_method, "token");
    assert_eq!(
        config.secret("token").unwrap().expose_secret(),
        token_user.token.as_deref().unwrap()
    );
    assert_works(&build(&flavor, config)).await;

    let mut request = AutoConfigureRequest::new("nope");
    request
        .values
        .insert("kubernetes_context".to_owned(), "nope".to_owned());
    let err = flavor.auto_configure(request).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings);
    assert_eq!(
        err.message(),
        "the kubeconfig has no context `nope`; available contexts: by-files, by-token-file"
    );
}

#[tokio::test]
async fn a_basic_auth_kubeconfig_gives_a_password_connector() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = kubeconfig_with_user(
        &cluster,
        "basic",
        "    username: alice\n    password: s3cret",
    );
    let flavor = with_kubeconfig(write(dir.path(), "config", &yaml));
    let config = auto(&flavor, AutoConfigureRequest::new("basic")).await;
    assert_eq!(config.auth_method, "password");
    assert_eq!(config.secret("username").unwrap().expose_secret(), "alice");
    assert_eq!(config.secret("password").unwrap().expose_secret(), "s3cret");
    // The connection sends them (the emulator has no basic-auth users yet; the
    // `password_is_sent_as_http_basic_auth` test checks the wire).
    let connection = connect(&build(&flavor, config)).await;
    assert_eq!(
        connection.config.auth_info.username.as_deref(),
        Some("alice")
    );
    assert_eq!(
        connection
            .config
            .auth_info
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_owned()),
        Some("s3cret".to_owned())
    );
}

#[tokio::test]
async fn an_exec_plugin_kubeconfig_gives_an_implicit_kubeconfig_connector() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let plugin = exec_plugin(dir.path(), cluster.admin_token());
    let user = format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {}",
        plugin.display()
    );
    let path = write(
        dir.path(),
        "config",
        &kubeconfig_with_user(&cluster, "plugin", &user),
    );

    let err = with_kubeconfig(&path)
        .auto_configure(AutoConfigureRequest::new("plugin"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(
        err.message()
            .contains("STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS"),
        "{err}"
    );

    let flavor = KubernetesFlavor::with_environment(
        LocalEnvironment::empty()
            .with_kubeconfig(&path)
            .with_implicit_auth(true),
    );
    let config = auto(&flavor, AutoConfigureRequest::new("plugin")).await;
    assert_eq!(config.auth_method, "kubeconfig");
    assert_eq!(config.str_value("context"), Some("plugin"));
    // The short-lived token is not stored: the plugin runs when the connector connects.
    let stored = config
        .secret("kubeconfig")
        .unwrap()
        .expose_secret()
        .to_owned();
    assert!(!stored.contains(cluster.admin_token()), "{stored}");
    assert!(stored.contains("credential-plugin.sh"));
    assert_works(&build(&flavor, config)).await;

    // Asking for a static method for a plugin user is refused with a reason.
    let mut request = AutoConfigureRequest::new("static");
    request.auth_method = Some("token".to_owned());
    let err = flavor.auto_configure(request).await.unwrap_err();
    assert!(
        err.message().contains("use the `kubeconfig` auth method"),
        "{err}"
    );
}

#[tokio::test]
async fn an_in_cluster_setup_gives_an_in_cluster_connector() {
    let cluster = cluster().await;
    let user = step_operator_user(&cluster, "system:serviceaccount:default:stepstack");
    let sa = tempfile::tempdir().unwrap();
    write(sa.path(), "token", user.token.as_deref().unwrap());
    write(sa.path(), "ca.crt", cluster.ca_pem());
    write(sa.path(), "namespace", "default");
    let env = LocalEnvironment::empty()
        .with_service_account_dir(sa.path())
        .with_in_cluster_server(cluster.url())
        .with_implicit_auth(true);
    let flavor = KubernetesFlavor::with_environment(env);
    let config = auto(&flavor, AutoConfigureRequest::new("pod")).await;
    assert_eq!(config.auth_method, "in-cluster");
    assert!(
        config.secrets.is_empty(),
        "nothing secret is stored: the pod's files are read"
    );
    let connector = build(&flavor, config);
    assert_works(&connector).await;
    assert!(
        stepstack_core::ServiceConnector::verify(&connector, None, None)
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn host_names_are_parsed_not_stripped() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://https-api.example.com:6443\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n";
    let flavor = with_kubeconfig(write(dir.path(), "config", yaml));
    let config = auto(&flavor, AutoConfigureRequest::new("host")).await;
    // ZenML's `strip("https://")` made this `-api.example.com`.
    assert_eq!(
        config.str_value("cluster_name"),
        Some("https-api.example.com")
    );
    assert_eq!(
        config.values.get("insecure"),
        Some(&serde_json::json!(true))
    );
    assert!(
        config.secret("certificate_authority").is_none(),
        "no CA is assumed"
    );
}

#[tokio::test]
async fn no_kubeconfig_and_no_service_account_says_where_it_looked() {
    let flavor = KubernetesFlavor::with_environment(
        LocalEnvironment::empty()
            .with_home("/nonexistent-home")
            .with_service_account_dir("/nonexistent-sa"),
    );
    let err = flavor
        .auto_configure(AutoConfigureRequest::new("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.message(),
        "no kubeconfig found (looked at /nonexistent-home/.kube/config); set KUBECONFIG or create ~/.kube/config"
    );
}
