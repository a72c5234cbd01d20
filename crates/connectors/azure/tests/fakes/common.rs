//! Helpers shared by the tests.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use stepstack_connector_azure::{AzureConnector, AzureConnectorFlavor, AzureEnvironment};
use stepstack_core::connector::KUBERNETES_CLUSTER;
use stepstack_core::{ClusterConnection, ConnectorConfig, ErrorKind, ServiceConnector};
use stepstack_testkit::cloud::azure::{FakeAksCluster, FakeAzure, FakeAzureOptions};
use stepstack_testkit::{Cluster, ClusterOptions, Rule};

/// The service principal (client id) most tests authenticate as.
pub(crate) const SP: &str = "11111111-2222-4333-8444-555555555555";

/// An emulated cluster that accepts only the fake's AKS tokens, and the fake, which lists
/// it as AKS cluster `prod` (local accounts disabled) in resource group `rg-prod`.
pub(crate) struct Env {
    pub(crate) cluster: Cluster,
    pub(crate) fake: FakeAzure,
}

impl Env {
    /// Lets `principal` do anything on the emulated cluster.
    pub(crate) fn allow_on_cluster(&self, principal: &str) {
        self.cluster
            .set_user_rules(principal, vec![Rule::new(&["*"], &["*"], &["*"])]);
    }

    /// A `service-principal` connector configuration with a new secret for `client_id`.
    pub(crate) fn service_principal(&self, name: &str, client_id: &str) -> ConnectorConfig {
        let secret = self.fake.add_service_principal(client_id);
        self.endpoints(
            ConnectorConfig::new(name, "azure", "service-principal")
                .with_value("tenant_id", self.fake.tenant_id())
                .with_value("client_id", client_id)
                .with_secret("client_secret", secret),
        )
    }

    /// A `service-principal` connector configuration with a client certificate (`pem`:
    /// certificate and private key).
    pub(crate) fn certificate_principal(
        &self,
        name: &str,
        client_id: &str,
        pem: &str,
    ) -> ConnectorConfig {
        self.endpoints(
            ConnectorConfig::new(name, "azure", "service-principal")
                .with_value("tenant_id", self.fake.tenant_id())
                .with_value("client_id", client_id)
                .with_secret("client_certificate", pem),
        )
    }

    /// `config` with the subscription and every endpoint pointing at the fake.
    pub(crate) fn endpoints(&self, config: ConnectorConfig) -> ConnectorConfig {
        config
            .with_value("subscription_id", self.fake.subscription_id())
            .with_value("authority_host", self.fake.endpoint_url())
            .with_value("management_endpoint", self.fake.endpoint_url())
            .with_value("ca_certificate", self.fake.ca_pem())
    }

    /// Adds cluster `name` in `group`, served by the emulated cluster.
    pub(crate) fn add(&self, group: &str, name: &str) {
        self.fake
            .add_cluster(FakeAksCluster::for_cluster(group, name, &self.cluster));
    }
}

pub(crate) async fn env() -> Env {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
    let cluster = Cluster::start(ClusterOptions::default())
        .await
        .expect("the testkit cluster starts");
    let fake = FakeAzure::start(FakeAzureOptions::default())
        .await
        .expect("the fake starts");
    cluster.set_token_validator(Some(fake.aks_token_validator()));
    fake.add_cluster(
        FakeAksCluster::for_cluster("rg-prod", "prod", &cluster).with_local_accounts_disabled(true),
    );
    Env { cluster, fake }
}

/// A flavor whose environment holds nothing (implicit method off).
pub(crate) fn flavor() -> AzureConnectorFlavor {
    AzureConnectorFlavor::with_environment(AzureEnvironment::empty())
}

pub(crate) fn build(config: ConnectorConfig) -> AzureConnector {
    flavor()
        .build_connector(config)
        .expect("the connector builds")
}

pub(crate) async fn connect(connector: &dyn ServiceConnector, id: &str) -> ClusterConnection {
    connector
        .connect(KUBERNETES_CLUSTER, Some(id))
        .await
        .unwrap_or_else(|e| panic!("connecting to `{id}` failed: {e}"))
}

/// Connects a connector built from `config` to cluster `id`, which must fail with an
/// error of `kind` whose message holds each of `texts`; returns that error.
pub(crate) async fn connect_fails(
    config: ConnectorConfig,
    id: &str,
    kind: ErrorKind,
    texts: &[&str],
) -> stepstack_core::Error {
    connector_fails(&build(config), id, kind, texts).await
}

/// Connects `connector` to cluster `id`, which must fail as [`connect_fails`] says.
pub(crate) async fn connector_fails(
    connector: &dyn ServiceConnector,
    id: &str,
    kind: ErrorKind,
    texts: &[&str],
) -> stepstack_core::Error {
    let err = connector
        .connect(KUBERNETES_CLUSTER, Some(id))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    for text in texts {
        assert!(err.message().contains(text), "{text:?} in {err}");
    }
    err
}

/// A logged-in Azure CLI stand-in (see [`fake_az`]) in a new directory, with tokens the
/// fake issued to `user`; also returns the tokens' expiry.
pub(crate) fn logged_in_az(
    env: &Env,
    user: &str,
) -> (tempfile::TempDir, std::path::PathBuf, jiff::Timestamp) {
    use stepstack_testkit::cloud::azure::{AKS_SCOPE, ARM_SCOPE};
    let (arm, expires_at) = env.fake.issue_token(user, ARM_SCOPE);
    let (aks, _) = env.fake.issue_token(user, AKS_SCOPE);
    let dir = tempfile::tempdir().unwrap();
    let az = fake_az(
        dir.path(),
        &arm,
        &aks,
        expires_at.as_second(),
        &env.fake.subscription_id(),
        &env.fake.tenant_id(),
    );
    (dir, az, expires_at)
}

/// Writes a stand-in for the Azure CLI to `dir`: `az account get-access-token --scope S`
/// prints the JSON the real one prints, with `aks` for the AKS server application's
/// scope and `arm` for any other; with `arm` empty it fails as a logged-out `az` does.
/// Each call appends its arguments to `dir/az.args`.
pub(crate) fn fake_az(
    dir: &std::path::Path,
    arm: &str,
    aks: &str,
    expires_on: i64,
    subscription: &str,
    tenant: &str,
) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("az");
    let body = if arm.is_empty() {
        "echo \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n".to_owned()
    } else {
        format!(
            "case \"$*\" in\n  *{}*) token='{aks}' ;;\n  *) token='{arm}' ;;\nesac\nprintf '{{\"accessToken\": \"%s\", \"expiresOn\": \"2030-01-01 00:00:00.000000\", \"expires_on\": {expires_on}, \"subscription\": \"{subscription}\", \"tenant\": \"{tenant}\", \"tokenType\": \"Bearer\"}}\\n' \"$token\"\n",
            stepstack_connector_azure::AKS_SERVER_APP_ID
        )
    };
    let script = format!("#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/az.args\"\n{body}");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Lists namespaces with `client`: a real authenticated request.
pub(crate) async fn namespaces(client: &kube::Client) -> kube::Result<Vec<String>> {
    let list = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect())
}

/// Asserts that `connector` reaches cluster `prod` and can list namespaces there.
pub(crate) async fn assert_works(connector: &dyn ServiceConnector) {
    let client = connect(connector, "prod")
        .await
        .into_client()
        .expect("a client builds");
    let names = namespaces(&client).await.expect("listing namespaces works");
    assert!(names.iter().any(|n| n == "default"), "{names:?}");
}
