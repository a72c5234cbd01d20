//! `configure_local_client` (login) writes a context the real `kubectl` uses.

use std::path::Path;
use std::time::Duration;

use kube::config::Kubeconfig;
use stepstack_connector_kubernetes::{KubernetesFlavor, LocalEnvironment};
use stepstack_core::ServiceConnector;
use stepstack_core::connector::KUBERNETES_CLUSTER;

use crate::common::*;

const OTHER: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://other.example.com:6443
    certificate-authority: relative/ca.crt
users:
- name: other
  user:
    token: other-token
contexts:
- name: other
  context:
    cluster: other
    user: other
    namespace: team
current-context: other
"#;

/// Runs `kubectl --kubeconfig F ARGS` with an isolated home.
async fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> (bool, String, String) {
    let mut command = tokio::process::Command::new("kubectl");
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(args)
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("kubectl finishes")
        .expect("kubectl is on PATH (.ci/run installs it)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn entry_yaml<T: serde::Serialize>(items: &[T], name: impl Fn(&T) -> &str, wanted: &str) -> String {
    let item = items
        .iter()
        .find(|i| name(i) == wanted)
        .expect("the entry exists");
    serde_json::to_string(item).unwrap()
}

#[tokio::test]
async fn login_writes_a_context_kubectl_uses_and_keeps_the_others() {
    let cluster = cluster().await;
    let home = tempfile::tempdir().unwrap();
    let kube_dir = home.path().join("kube");
    std::fs::create_dir(&kube_dir).unwrap();
    let path = kube_dir.join("config");
    std::fs::write(&path, OTHER).unwrap();
    let before = Kubeconfig::from_yaml(OTHER).unwrap();

    let second = home.path().join("second-config");
    let env =
        LocalEnvironment::empty().with_kubeconfig(std::env::join_paths([&path, &second]).unwrap());
    let flavor = KubernetesFlavor::with_environment(env);
    let user = step_operator_user(&cluster, "kubectl-user");
    let connector = build(
        &flavor,
        token_config("emu", &cluster, user.token.as_deref().unwrap())
            .with_value("cluster_name", "emulated"),
    );
    let message = connector
        .configure_local_client(KUBERNETES_CLUSTER, None)
        .await
        .unwrap();
    assert_eq!(
        message,
        format!(
            "updated the kubeconfig {} with cluster `emulated`; the current context is now `emulated`",
            path.display()
        )
    );
    assert!(
        !second.exists(),
        "only the first KUBECONFIG entry is written"
    );
    let names: Vec<String> = std::fs::read_dir(&kube_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["config"], "no temporary file is left behind");

    let (ok, stdout, stderr) = kubectl(&path, home.path(), &["get", "ns"]).await;
    assert!(ok, "kubectl get ns failed: {stderr}");
    assert!(stdout.contains("default"), "{stdout}");
    let (ok, stdout, _) = kubectl(&path, home.path(), &["config", "current-context"]).await;
    assert!(ok);
    assert_eq!(stdout.trim(), "emulated");
    let (ok, stdout, stderr) = kubectl(
        &path,
        home.path(),
        &["auth", "can-i", "create", "jobs.batch", "-n", "default"],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "yes");

    // The other context, its cluster and user are untouched.
    let after = Kubeconfig::from_yaml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        entry_yaml(&after.contexts, |c| &c.name, "other"),
        entry_yaml(&before.contexts, |c| &c.name, "other")
    );
    assert_eq!(
        entry_yaml(&after.clusters, |c| &c.name, "other"),
        entry_yaml(&before.clusters, |c| &c.name, "other")
    );
    assert_eq!(
        entry_yaml(&after.auth_infos, |c| &c.name, "other"),
        entry_yaml(&before.auth_infos, |c| &c.name, "other")
    );

    // Logging in again updates the same entries instead of adding new ones.
    connector
        .configure_local_client(KUBERNETES_CLUSTER, None)
        .await
        .unwrap();
    let again = Kubeconfig::from_yaml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(again.contexts.len(), 2);
    assert_eq!(again.clusters.len(), 2);
    assert_eq!(again.auth_infos.len(), 2);
}

#[tokio::test]
async fn login_with_a_client_certificate_creates_the_kubeconfig() {
    let cluster = cluster().await;
    let home = tempfile::tempdir().unwrap();
    let flavor =
        KubernetesFlavor::with_environment(LocalEnvironment::empty().with_home(home.path()));
    let admin = cluster.admin_credentials();
    let connector = build(
        &flavor,
        stepstack_core::ConnectorConfig::new("cert", "kubernetes", "client-certificate")
            .with_value("server", cluster.url())
            .with_secret("certificate_authority", cluster.ca_pem())
            .with_secret("client_certificate", admin.client_cert_pem.clone().unwrap())
            .with_secret("client_key", admin.client_key_pem.clone().unwrap()),
    );
    connector
        .configure_local_client(KUBERNETES_CLUSTER, None)
        .await
        .unwrap();
    let path = home.path().join(".kube").join("config");
    let (ok, stdout, stderr) = kubectl(&path, home.path(), &["get", "ns"]).await;
    assert!(ok, "kubectl get ns failed: {stderr}");
    assert!(stdout.contains("kube-system"), "{stdout}");
}

#[tokio::test]
async fn login_needs_a_path() {
    let cluster = cluster().await;
    let connector = build(
        &flavor(),
        token_config("c", &cluster, cluster.admin_token()),
    );
    let err = connector
        .configure_local_client(KUBERNETES_CLUSTER, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "no kubeconfig path to write to; set KUBECONFIG or HOME"
    );
}

#[tokio::test]
async fn login_with_a_stored_exec_plugin_context_works_for_kubectl() {
    let cluster = cluster().await;
    let home = tempfile::tempdir().unwrap();
    let plugin = exec_plugin(home.path(), cluster.admin_token());
    let source = home.path().join("source-config");
    let mut yaml = cluster.kubeconfig_yaml();
    // Swap the certificate user for one that runs the plugin.
    let mut kubeconfig = Kubeconfig::from_yaml(&yaml).unwrap();
    let user = kubeconfig.auth_infos[0].auth_info.as_mut().unwrap();
    user.client_certificate_data = None;
    user.client_key_data = None;
    user.exec = Some(kube::config::ExecConfig {
        api_version: Some("client.authentication.k8s.io/v1beta1".to_owned()),
        command: Some(plugin.display().to_string()),
        ..Default::default()
    });
    yaml = serde_norway::to_string(&kubeconfig).unwrap();
    std::fs::write(&source, yaml).unwrap();
    let target = home.path().join("target-config");
    let env = LocalEnvironment::empty()
        .with_kubeconfig(&source)
        .with_implicit_auth(true);
    let flavor = KubernetesFlavor::with_environment(env);
    let config = stepstack_core::ConnectorFlavor::auto_configure(
        &flavor,
        stepstack_core::AutoConfigureRequest::new("plugin"),
    )
    .await
    .unwrap();
    assert_eq!(config.auth_method, "kubeconfig");
    // Log in elsewhere: a second environment whose KUBECONFIG is the target file.
    let login_flavor = KubernetesFlavor::with_environment(
        LocalEnvironment::empty()
            .with_kubeconfig(&target)
            .with_implicit_auth(true),
    );
    build(&login_flavor, config)
        .configure_local_client(KUBERNETES_CLUSTER, None)
        .await
        .unwrap();
    let (ok, stdout, stderr) = kubectl(&target, home.path(), &["get", "ns"]).await;
    assert!(ok, "kubectl get ns failed: {stderr}");
    assert!(stdout.contains("default"), "{stdout}");
}
