//! Helpers shared by the tests.

use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use stepstack_connector_kubernetes::{KubernetesConnector, KubernetesFlavor, LocalEnvironment};
use stepstack_core::connector::KUBERNETES_CLUSTER;
use stepstack_core::{ClusterConnection, ConnectorConfig, ServiceConnector};
use stepstack_testkit::{Cluster, ClusterOptions, NewUser, Rule, UserCredentials};

/// Starts an emulated cluster.
pub(crate) async fn cluster() -> Cluster {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
    Cluster::start(ClusterOptions::default())
        .await
        .expect("the testkit cluster starts")
}

/// A flavor whose environment holds nothing (no kubeconfig, no home, implicit methods off).
pub(crate) fn flavor() -> KubernetesFlavor {
    KubernetesFlavor::with_environment(LocalEnvironment::empty())
}

/// A `token` connector configuration for `token` against `cluster`.
pub(crate) fn token_config(name: &str, cluster: &Cluster, token: &str) -> ConnectorConfig {
    ConnectorConfig::new(name, "kubernetes", "token")
        .with_value("server", cluster.url())
        .with_secret("certificate_authority", cluster.ca_pem())
        .with_secret("token", token)
}

/// Builds a connector.
pub(crate) fn build(flavor: &KubernetesFlavor, config: ConnectorConfig) -> KubernetesConnector {
    flavor
        .build_connector(config)
        .expect("the connector builds")
}

/// Connects to the connector's cluster.
pub(crate) async fn connect(connector: &dyn ServiceConnector) -> ClusterConnection {
    connector
        .connect(KUBERNETES_CLUSTER, None)
        .await
        .expect("the connector connects")
}

/// Lists namespaces through `connection`: a real authenticated request.
pub(crate) async fn namespaces(connection: ClusterConnection) -> kube::Result<Vec<String>> {
    let client = connection.into_client().expect("a client builds");
    let list = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect())
}

/// Asserts that `connector` connects and lists namespaces (`default` among them).
pub(crate) async fn assert_works(connector: &dyn ServiceConnector) {
    let names = namespaces(connect(connector).await)
        .await
        .expect("listing namespaces works");
    assert!(
        names.iter().any(|n| n == "default"),
        "namespaces: {names:?}"
    );
}

/// Rules that allow everything the step operator needs in `default`, plus listing namespaces.
pub(crate) fn step_operator_rules() -> Vec<Rule> {
    vec![
        Rule::new(
            &["create", "get", "list", "watch", "delete"],
            &["jobs", "pods", "pods/log"],
            &["default"],
        ),
        Rule::new(&["list", "get"], &["namespaces"], &["*"]),
    ]
}

/// A token user with the step operator's permissions.
pub(crate) fn step_operator_user(cluster: &Cluster, name: &str) -> UserCredentials {
    cluster
        .add_user(NewUser::token(name, step_operator_rules()))
        .expect("the user is added")
}

/// Writes an executable shell script.
pub(crate) fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// An exec plugin script that prints an ExecCredential holding `token`.
pub(crate) fn exec_plugin(dir: &Path, token: &str) -> std::path::PathBuf {
    let path = dir.join("credential-plugin.sh");
    write_script(
        &path,
        &format!(
            r#"cat <<'EOF'
{{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{{"token":"{token}"}}}}
EOF"#
        ),
    );
    path
}
