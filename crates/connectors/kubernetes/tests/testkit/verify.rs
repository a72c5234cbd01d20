//! `verify` asks the API server what the connector's identity may do.

use stepstack_core::connector::KUBERNETES_CLUSTER;
use stepstack_core::{ConnectorConfig, ErrorKind, ServiceConnector};
use stepstack_testkit::{NewUser, Rule};

use crate::common::*;

#[tokio::test]
async fn verify_lists_the_cluster_when_jobs_and_logs_are_allowed() {
    let cluster = cluster().await;
    let user = step_operator_user(&cluster, "runner");
    let connector = build(
        &flavor(),
        token_config("runner", &cluster, user.token.as_deref().unwrap()),
    );
    let report = connector.verify(None, None).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.connector_name, "runner");
    assert_eq!(report.connector_type, "kubernetes");
    assert_eq!(
        report.entry(KUBERNETES_CLUSTER).unwrap().resource_ids,
        Some(vec!["127.0.0.1".to_owned()])
    );
    // With the resource named explicitly, too.
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), Some("127.0.0.1"))
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[tokio::test]
async fn a_user_without_create_jobs_gets_a_verify_result_that_says_so() {
    let cluster = cluster().await;
    let user = cluster
        .add_user(NewUser::token(
            "reader",
            vec![Rule::new(
                &["get", "list", "watch"],
                &["pods", "pods/log", "jobs"],
                &["default"],
            )],
        ))
        .unwrap();
    let connector = build(
        &flavor(),
        token_config("reader", &cluster, user.token.as_deref().unwrap()),
    );
    let report = connector.verify(None, None).await.unwrap();
    assert_eq!(report.error, None, "only the cluster entry fails");
    let entry = report.entry(KUBERNETES_CLUSTER).unwrap();
    assert_eq!(entry.resource_ids, None);
    assert_eq!(
        entry.error.as_deref(),
        Some(
            "connector `reader` authorization failure: the identity may not create jobs.batch in namespace `default` of cluster `127.0.0.1`; grant it with a Role and RoleBinding, e.g. `kubectl create role stepstack --verb=create,get --resource=jobs.batch,pods/log -n default`"
        )
    );
}

#[tokio::test]
async fn verify_checks_the_configured_namespace_and_names_every_missing_permission() {
    let cluster = cluster().await;
    let user = step_operator_user(&cluster, "default-only");
    let config =
        token_config("ml", &cluster, user.token.as_deref().unwrap()).with_value("namespace", "ml");
    let report = build(&flavor(), config).verify(None, None).await.unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        error.contains("may not create jobs.batch or get pods/log in namespace `ml`"),
        "{error}"
    );
}

#[tokio::test]
async fn verify_refuses_other_resources_and_types() {
    let cluster = cluster().await;
    let connector = build(
        &flavor(),
        token_config("c", &cluster, cluster.admin_token()),
    );
    let err = connector.verify(Some("s3-bucket"), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings);
    assert_eq!(
        err.message(),
        "connector `c` is configured for resource type `kubernetes-cluster`, but resource type `s3-bucket` was requested; ask for `kubernetes-cluster` or use another connector"
    );
    let err = connector
        .verify(Some(KUBERNETES_CLUSTER), Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
}

#[tokio::test]
async fn bad_configurations_are_refused_at_build_with_what_to_do() {
    let flavor = flavor();
    let err = flavor
        .build_connector(ConnectorConfig::new("c", "kubernetes", "oauth"))
        .unwrap_err();
    assert_eq!(
        err.message(),
        "connector type `kubernetes` has no auth method `oauth`; use one of: token, client-certificate, password, kubeconfig, in-cluster"
    );
    let err = flavor
        .build_connector(
            ConnectorConfig::new("c", "kubernetes", "token")
                .with_value("server", "https://k8s.example.com")
                .with_secret("certificate_authority", "not a certificate"),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings);
    assert_eq!(
        err.to_string(),
        "`certificate_authority` is neither PEM nor base64-encoded PEM; give the content of the PEM file (connector: c)"
    );
    let mut config = ConnectorConfig::new("c", "kubernetes", "token")
        .with_value("server", "https://k8s.example.com");
    config.expiration_seconds = Some(3600);
    let err = flavor.build_connector(config).unwrap_err();
    assert!(
        err.message()
            .contains("does not issue temporary credentials"),
        "{err}"
    );
}
