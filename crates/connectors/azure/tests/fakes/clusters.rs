//! Listing AKS clusters across resource groups, and the errors for missing, ambiguous
//! and out-of-scope clusters; the subscription when `subscription_id` is unset.

use stepstack_core::ErrorKind;
use stepstack_core::ServiceConnector;
use stepstack_core::connector::KUBERNETES_CLUSTER;

use crate::common::*;

fn add_more_clusters(env: &Env) {
    env.add("rg-dev", "dev");
    env.add("rg-ml-east", "ml");
    env.add("rg-ml-west", "ml");
}

#[tokio::test]
async fn list_resources_shows_the_clusters_of_every_resource_group() {
    let env = env().await;
    add_more_clusters(&env);
    let connector = build(env.service_principal("aks", SP));
    let report = connector.verify(None, None).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    let ids = report
        .entry(KUBERNETES_CLUSTER)
        .and_then(|e| e.resource_ids.clone())
        .unwrap();
    // Unique names stay bare; a name in two resource groups is listed as group/name.
    assert_eq!(ids, ["dev", "prod", "rg-ml-east/ml", "rg-ml-west/ml"]);
    let one = connector
        .verify(Some(KUBERNETES_CLUSTER), Some("dev"))
        .await
        .unwrap();
    assert_eq!(
        one.entry(KUBERNETES_CLUSTER).unwrap().resource_ids,
        Some(vec!["dev".to_owned()])
    );
    assert!(env.fake.count("listClusters") >= 2);

    // Limited to one resource group, only its clusters are listed.
    let limited = build(
        env.service_principal("aks-ml", SP)
            .with_value("resource_group", "rg-ml-east"),
    );
    let report = limited
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
    assert_eq!(
        report.entry(KUBERNETES_CLUSTER).unwrap().resource_ids,
        Some(vec!["ml".to_owned()])
    );
    let err = limited
        .connect(KUBERNETES_CLUSTER, Some("rg-ml-west/ml"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.message()
            .contains("limited to resource group `rg-ml-east`"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_and_ambiguous_clusters_give_clear_errors() {
    let env = env().await;
    add_more_clusters(&env);
    env.allow_on_cluster(SP);
    let connector = build(env.service_principal("aks", SP));
    let subscription = env.fake.subscription_id();

    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("nope"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.message().contains(&format!(
            "AKS cluster `nope` not found or not accessible in any resource group of subscription `{subscription}`"
        )),
        "{err}"
    );
    assert!(
        err.message()
            .contains("clusters found: dev, prod, rg-ml-east/ml, rg-ml-west/ml"),
        "{err}"
    );
    assert_eq!(err.context_value("connector"), Some("aks"));
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
    assert!(error.contains("`nope` not found"), "{error}");

    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("ml"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
    assert!(
        err.message().contains("`ml` is ambiguous")
            && err.message().contains("rg-ml-east, rg-ml-west")
            && err.message().contains("`rg-ml-east/ml`"),
        "{err}"
    );

    // resource-group/name resolves the ambiguity, with a direct GET of that cluster.
    assert_works_on(&connector, "rg-ml-west/ml").await;
    assert!(env.fake.count("getCluster") >= 1);
    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("rg-dev/prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.message().contains("in resource group `rg-dev`"),
        "{err}"
    );

    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("a/b/c"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
    assert!(err.message().contains("resource-group/name"), "{err}");
}

async fn assert_works_on(connector: &dyn ServiceConnector, id: &str) {
    let client = connect(connector, id).await.into_client().unwrap();
    namespaces(&client).await.unwrap();
}

#[tokio::test]
async fn another_subscription_is_an_error_naming_it() {
    let env = env().await;
    let config = env
        .service_principal("other", SP)
        .with_value("subscription_id", "99999999-0000-4000-8000-000000000000");
    let report = build(config)
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        error.contains("subscription `99999999-0000-4000-8000-000000000000`")
            && error.contains("SubscriptionNotFound"),
        "{error}"
    );
}

#[tokio::test]
async fn the_connector_type_passes_conformance_and_reaches_its_clusters() {
    stepstack_core::conformance::check_connector_type(&flavor());
    let env = env().await;
    env.allow_on_cluster(SP);
    let connector = build(env.service_principal("aks", SP));
    stepstack_core::conformance::check_connector_reaches_its_clusters(&connector).await;
    let mut registry = stepstack_core::Registry::new();
    stepstack_connector_azure::register(&mut registry).unwrap();
    assert!(stepstack_connector_azure::register(&mut registry).is_err());
}

#[tokio::test]
async fn without_a_subscription_id_the_only_visible_subscription_is_used() {
    let env = env().await;
    env.allow_on_cluster(SP);
    let mut config = env.service_principal("any-sub", SP);
    config.values.remove("subscription_id");
    let connector = build(config);
    assert_eq!(connector.subscription_id(), None);
    assert_works(&connector).await;
    let subscription = env.fake.subscription_id();
    assert_eq!(connector.subscription_id(), Some(subscription.as_str()));
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    // Looked up once, then remembered.
    assert_eq!(env.fake.count("listSubscriptions"), 1);
}

#[tokio::test]
async fn no_or_several_visible_subscriptions_ask_for_a_subscription_id() {
    let env = env().await;
    env.allow_on_cluster(SP);
    let without = |name: &str| {
        let mut config = env.service_principal(name, SP);
        config.values.remove("subscription_id");
        config
    };
    let subscription = env.fake.subscription_id();
    env.fake.set_visible_subscriptions(vec![
        (subscription.clone(), "Production".to_owned()),
        (
            "22222222-0000-4000-8000-000000000000".to_owned(),
            "Dev/Test".to_owned(),
        ),
    ]);
    let err = connect_fails(
        without("several"),
        "prod",
        ErrorKind::InvalidSettings,
        &[
            "`subscription_id` is not set",
            "sees 2 Azure subscriptions",
            &format!("{subscription} (Production)"),
            "22222222-0000-4000-8000-000000000000 (Dev/Test)",
            "set `subscription_id`",
        ],
    )
    .await;
    assert_eq!(err.context_value("subscription"), None, "{err}");
    // list-resources fails as a whole: the configuration is incomplete.
    let err = build(without("several-verify"))
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
    assert!(
        err.message().contains("sees 2 Azure subscriptions"),
        "{err}"
    );

    env.fake.set_visible_subscriptions(Vec::new());
    connect_fails(
        without("none"),
        "prod",
        ErrorKind::InvalidSettings,
        &[
            "sees no Azure subscription",
            "set `subscription_id`",
            "role (e.g. Reader)",
        ],
    )
    .await;
    assert_eq!(env.fake.count("listClusters"), 0);
}
