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
    let err = build(config)
        .connect(KUBERNETES_CLUSTER, Some(id))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    for text in texts {
        assert!(err.message().contains(text), "{text:?} in {err}");
    }
    err
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
