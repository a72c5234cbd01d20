//! Listing GKE clusters across locations, and the errors for missing, ambiguous and
//! inaccessible clusters.

use stepstack_core::ErrorKind;
use stepstack_core::connector::KUBERNETES_CLUSTER;
use stepstack_core::{ConnectorConfig, ServiceConnector};
use stepstack_testkit::cloud::gcp::FakeGkeCluster;

use crate::common::*;

fn add_more_clusters(env: &Env) {
    for (name, location) in [
        ("dev", "europe-west1-b"),
        ("ml", "us-east1"),
        ("ml", "asia-east1"),
    ] {
        env.fake
            .add_cluster(FakeGkeCluster::for_cluster(name, location, &env.cluster));
    }
}

#[tokio::test]
async fn list_resources_shows_the_clusters_of_every_location() {
    let env = env().await;
    add_more_clusters(&env);
    let connector = build(env.service_account("gke", SA));
    let report = connector.verify(None, None).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    let ids = report
        .entry(KUBERNETES_CLUSTER)
        .and_then(|e| e.resource_ids.clone())
        .unwrap();
    // Unique names stay bare; a name in two locations is listed as location/name.
    assert_eq!(ids, ["asia-east1/ml", "dev", "prod", "us-east1/ml"]);
    let one = connector
        .verify(Some(KUBERNETES_CLUSTER), Some("dev"))
        .await
        .unwrap();
    assert_eq!(
        one.entry(KUBERNETES_CLUSTER).unwrap().resource_ids,
        Some(vec!["dev".to_owned()])
    );
    assert!(env.fake.count("listClusters") >= 2);
}

#[tokio::test]
async fn missing_and_ambiguous_clusters_give_clear_errors() {
    let env = env().await;
    add_more_clusters(&env);
    let connector = build(env.service_account("gke", SA));

    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("nope"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.message().contains("GKE cluster `nope` not found or not accessible in any location of project `stepstack-test`"),
        "{err}"
    );
    assert!(
        err.message()
            .contains("clusters found: asia-east1/ml, dev, prod, us-east1/ml"),
        "{err}"
    );
    assert_eq!(err.context_value("connector"), Some("gke"));
    assert_eq!(err.context_value("cluster"), Some("nope"));

    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), Some("nope"))
        .await
        .unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        error.contains("authorization failure") && error.contains("`nope` not found"),
        "{error}"
    );

    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("ml"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
    assert!(
        err.message().contains("`ml` is ambiguous")
            && err.message().contains("asia-east1, us-east1")
            && err.message().contains("`asia-east1/ml`"),
        "{err}"
    );

    // location/name resolves the ambiguity, with a direct GET of that cluster.
    connect(&connector, "us-east1/ml").await;
    assert!(env.fake.count("getCluster") >= 1);
    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("us-west1/prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("in location `us-west1`"), "{err}");

    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("Prod/x/y"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
    assert!(err.message().contains("location/name"), "{err}");
}

#[tokio::test]
async fn another_project_is_an_authorization_failure() {
    let env = env().await;
    let config = env
        .service_account("other", SA)
        .with_value("project_id", "someone-else");
    let report = build(config).verify(None, None).await.unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        error.contains("authorization failure")
            && error.contains("project `someone-else`")
            && error.contains("roles/container.clusterViewer"),
        "{error}"
    );
}

#[tokio::test]
async fn the_connector_type_passes_conformance_and_reaches_its_clusters() {
    stepstack_core::conformance::check_connector_type(&flavor());
    let env = env().await;
    env.allow_on_cluster(SA);
    let connector = build(env.service_account("gke", SA));
    stepstack_core::conformance::check_connector_reaches_its_clusters(&connector).await;
    // The registry takes the flavor once.
    let mut registry = stepstack_core::Registry::new();
    stepstack_connector_gcp::register(&mut registry).unwrap();
    assert!(stepstack_connector_gcp::register(&mut registry).is_err());
    let _ = ConnectorConfig::new("x", "gcp", "implicit");
}
