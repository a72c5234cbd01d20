//! Expiry: credentials count as expired `skew` before `expires_at`, and connector clients
//! derived for one resource are derived again before they are used past that point.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use stepstack_connector_kubernetes::KubernetesFlavor;
use stepstack_core::connector::{
    CachedConnection, ConnectorTypeSpec, KUBERNETES_CLUSTER, ResourcesReport, derived_client_config,
};
use stepstack_core::{ClusterConnection, ConnectorConfig, ErrorKind, Result, ServiceConnector};
use stepstack_testkit::Cluster;

use crate::common::*;

#[tokio::test]
async fn stored_credentials_past_expiry_minus_skew_are_refused() {
    let cluster = cluster().await;
    let mut config = token_config("short", &cluster, cluster.admin_token());
    config.expires_at = Some(Timestamp::now() + SignedDuration::from_secs(200));
    let connector = build(&flavor(), config.clone());
    let err = connector
        .connect(KUBERNETES_CLUSTER, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert!(err.message().contains("have expired"), "{err}");
    let report = connector.verify(None, None).await.unwrap();
    assert!(
        report.error.as_deref().unwrap().contains("have expired"),
        "{report:?}"
    );
    // A smaller skew tolerance makes the same credentials usable.
    config.expires_skew_tolerance = Some(60);
    let connector = build(&flavor(), config);
    let connection = connect(&connector).await;
    assert!(
        connection.expires_at.is_some(),
        "the connection carries its expiry"
    );
    assert_works(&connector).await;
}

/// Like a cloud connector: every `connect` mints a new 15-minute token for the cluster
/// and returns the connection of a derived `kubernetes` token connector.
struct MintingConnector {
    spec: ConnectorTypeSpec,
    config: ConnectorConfig,
    cluster: Arc<Cluster>,
    clock: Arc<AtomicI64>,
    minted: std::sync::Mutex<Vec<String>>,
    connects: AtomicUsize,
}

impl std::fmt::Debug for MintingConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintingConnector").finish_non_exhaustive()
    }
}

#[async_trait]
impl ServiceConnector for MintingConnector {
    fn connector_type(&self) -> &ConnectorTypeSpec {
        &self.spec
    }
    fn config(&self) -> &ConnectorConfig {
        &self.config
    }
    async fn verify(&self, _: Option<&str>, _: Option<&str>) -> Result<ResourcesReport> {
        Ok(ResourcesReport::new("cloud", "cloud"))
    }
    async fn connect(
        &self,
        resource_type: &str,
        resource_id: Option<&str>,
    ) -> Result<ClusterConnection> {
        let n = self.connects.fetch_add(1, Ordering::SeqCst);
        let user = step_operator_user(&self.cluster, &format!("minted-{n}"));
        let token = user.token.unwrap();
        self.minted.lock().unwrap().push(token.clone());
        let now = Timestamp::from_second(self.clock.load(Ordering::SeqCst)).unwrap();
        let mut client = token_config("cloud-client", &self.cluster, &token);
        client.expires_at = Some(now + SignedDuration::from_secs(900));
        let client = derived_client_config(&self.config, client);
        let flavor = KubernetesFlavor::with_environment(
            stepstack_connector_kubernetes::LocalEnvironment::empty(),
        );
        flavor
            .build_connector(client)?
            .connect(resource_type, resource_id)
            .await
    }
    async fn configure_local_client(&self, _: &str, _: Option<&str>) -> Result<String> {
        Err(stepstack_core::Error::new(
            stepstack_core::ErrorKind::Unsupported,
            "the minting test connector has no local client",
        ))
    }
}

#[tokio::test]
async fn a_derived_connection_past_expiry_minus_skew_is_refreshed_before_use() {
    let cluster = Arc::new(cluster().await);
    let start = Timestamp::now().as_second();
    let clock = Arc::new(AtomicI64::new(start));
    let minting = Arc::new(MintingConnector {
        spec: ConnectorTypeSpec::new("Cloud", "cloud", "mints tokens"),
        config: ConnectorConfig::new("cloud", "cloud", "role"),
        cluster: cluster.clone(),
        clock: clock.clone(),
        minted: Default::default(),
        connects: AtomicUsize::new(0),
    });
    let fake = clock.clone();
    let cached = CachedConnection::new(minting.clone(), KUBERNETES_CLUSTER, None).with_clock(
        Arc::new(move || Timestamp::from_second(fake.load(Ordering::SeqCst)).unwrap()),
    );

    let first = cached.connection().await.unwrap();
    assert_eq!(
        first.expires_at,
        Some(Timestamp::from_second(start + 900).unwrap())
    );
    assert!(namespaces(cached.connection().await.unwrap()).await.is_ok());
    assert_eq!(minting.connects.load(Ordering::SeqCst), 1);

    // 599 s later the token has 301 s left: still used as it is.
    clock.fetch_add(599, Ordering::SeqCst);
    let client = cached.client().await.unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client, "default")
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(minting.connects.load(Ordering::SeqCst), 1);

    // At expires_at - 300 s the first token counts as expired (here it really stops
    // working), and the next use gets a fresh one.
    clock.fetch_add(1, Ordering::SeqCst);
    let first_token = minting.minted.lock().unwrap()[0].clone();
    cluster.faults().expire_token(&first_token);
    let client = cached.client().await.unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client, "default")
        .list(&Default::default())
        .await
        .expect("the refreshed connection works");
    assert_eq!(minting.connects.load(Ordering::SeqCst), 2);
    let renewed = cached.connection().await.unwrap();
    assert_eq!(
        renewed.expires_at,
        Some(Timestamp::from_second(start + 600 + 900).unwrap())
    );
}
