//! Helpers shared by the tests.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use stepstack_connector_gcp::{GcpConnector, GcpConnectorFlavor, GcpEnvironment};
use stepstack_core::connector::KUBERNETES_CLUSTER;
use stepstack_core::{ClusterConnection, ConnectorConfig, ServiceConnector};
use stepstack_testkit::cloud::gcp::{FakeGcp, FakeGcpOptions, FakeGkeCluster};
use stepstack_testkit::{Cluster, ClusterOptions, Rule};

/// The service account most tests authenticate as.
pub(crate) const SA: &str = "deployer@stepstack-test.iam.gserviceaccount.com";

/// An emulated cluster that accepts only the fake's tokens, and the fake, which lists it
/// as GKE cluster `prod` in `us-central1`.
pub(crate) struct Env {
    pub(crate) cluster: Cluster,
    pub(crate) fake: FakeGcp,
}

impl Env {
    /// Lets `principal` do anything on the emulated cluster.
    pub(crate) fn allow_on_cluster(&self, principal: &str) {
        self.cluster
            .set_user_rules(principal, vec![Rule::new(&["*"], &["*"], &["*"])]);
    }

    /// A `service-account` connector configuration for a new key of `email`.
    pub(crate) fn service_account(&self, name: &str, email: &str) -> ConnectorConfig {
        let key = self.fake.add_service_account(email);
        self.endpoints(
            ConnectorConfig::new(name, "gcp", "service-account")
                .with_secret("service_account_json", key),
        )
    }

    /// `config` with every endpoint pointing at the fake.
    pub(crate) fn endpoints(&self, config: ConnectorConfig) -> ConnectorConfig {
        config
            .with_value("token_endpoint", self.fake.token_url())
            .with_value("iam_credentials_endpoint", self.fake.endpoint_url())
            .with_value("container_endpoint", self.fake.endpoint_url())
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
    let fake = FakeGcp::start(FakeGcpOptions::default())
        .await
        .expect("the fake starts");
    cluster.set_token_validator(Some(fake.token_validator()));
    fake.add_cluster(FakeGkeCluster::for_cluster("prod", "us-central1", &cluster));
    Env { cluster, fake }
}

/// A flavor whose environment holds nothing (no ADC, implicit methods off).
pub(crate) fn flavor() -> GcpConnectorFlavor {
    GcpConnectorFlavor::with_environment(GcpEnvironment::empty())
}

pub(crate) fn build(config: ConnectorConfig) -> GcpConnector {
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
