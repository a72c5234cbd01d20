//! A step-like pod runs end to end through an `azure` connection on an emulated cluster
//! whose local accounts are disabled; the cluster accepts only AKS-scope Entra ID tokens.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams};
use stepstack_testkit::cloud::azure::ARM_SCOPE;

use crate::common::*;

#[tokio::test]
async fn a_pod_runs_through_an_azure_connection_with_local_accounts_disabled() {
    let env = env().await;
    env.allow_on_cluster(SP);
    let connector = build(env.service_principal("aks", SP));
    let client = connect(&connector, "rg-prod/prod")
        .await
        .into_client()
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "aks-step"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "echo hello-from-aks"]}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let mut phase = String::new();
    for _ in 0..600 {
        phase = pods
            .get("aks-step")
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase)
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(phase, "Succeeded");
    let logs = pods.logs("aks-step", &LogParams::default()).await.unwrap();
    assert_eq!(logs.trim(), "hello-from-aks");
    assert_eq!(env.fake.count("listClusterAdminCredential"), 0);

    // The emulated cluster refuses an ARM-scope token: only the AKS scope is accepted.
    let (arm, _) = env.fake.issue_token(SP, ARM_SCOPE);
    let mut wrong = kube::Config::new(env.cluster.url().parse().unwrap());
    wrong.root_cert = connect(&connector, "prod").await.config.root_cert;
    wrong.auth_info.token = Some(arm.into());
    let client = kube::Client::try_from(wrong).unwrap();
    let err = namespaces(&client).await.unwrap_err();
    assert!(
        err.to_string().contains("401") || format!("{err:?}").contains("401"),
        "{err:?}"
    );
}

#[tokio::test]
async fn login_writes_a_kubeconfig_context_with_an_entra_id_token() {
    let env = env().await;
    env.allow_on_cluster(SP);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    let flavor = stepstack_connector_azure::AzureConnectorFlavor::with_environment(
        stepstack_connector_azure::AzureEnvironment::empty().with_kubeconfig(&path),
    );
    let connector = flavor
        .build_connector(env.service_principal("aks", SP))
        .unwrap();
    use stepstack_core::ServiceConnector as _;
    let message = connector
        .configure_local_client(stepstack_core::connector::KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap();
    assert!(message.contains("aks_rg-prod_prod"), "{message}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(env.cluster.url().trim_end_matches('/')),
        "{text}"
    );
}
