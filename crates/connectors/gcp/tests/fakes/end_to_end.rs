//! A step-like pod runs end to end on the emulated cluster through a `gcp` connector;
//! the cluster accepts only tokens the fake issued. Also the DNS endpoint choice.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams};
use stepstack_core::ServiceConnector;
use stepstack_core::connector::KUBERNETES_CLUSTER;
use stepstack_testkit::cloud::gcp::FakeGkeCluster;

use crate::common::*;

#[tokio::test]
async fn a_pod_runs_through_a_gcp_connection_and_only_fake_tokens_are_accepted() {
    let env = env().await;
    env.allow_on_cluster(SA);
    let connector = build(env.service_account("gke", SA));
    let client = connect(&connector, "us-central1/prod")
        .await
        .into_client()
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gke-step"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "echo hello-from-gke"]}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let mut phase = String::new();
    for _ in 0..600 {
        phase = pods
            .get("gke-step")
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
    let logs = pods.logs("gke-step", &LogParams::default()).await.unwrap();
    assert_eq!(logs.trim(), "hello-from-gke");

    // The emulated cluster refuses tokens the fake did not issue, and expired ones.
    let mut forged = kube::Config::new(env.cluster.url().parse().unwrap());
    forged.root_cert = connect(&connector, "prod").await.config.root_cert;
    forged.auth_info.token = Some("ya29.not-issued".to_owned().into());
    let client = kube::Client::try_from(forged).unwrap();
    let err = namespaces(&client).await.unwrap_err();
    assert!(
        err.to_string().contains("401") || format!("{err:?}").contains("401"),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_dns_endpoint_is_used_only_when_it_allows_external_traffic() {
    let env = env().await;
    env.fake.add_cluster(
        FakeGkeCluster::for_cluster("public", "europe-west4", &env.cluster).with_external_dns(true),
    );
    let connector = build(env.service_account("gke", SA));
    let dns = connect(&connector, "public").await;
    let url = dns.config.cluster_url.to_string();
    assert!(
        url.starts_with("https://gke-") && url.contains(".europe-west4.gke.goog"),
        "{url}"
    );
    assert!(
        dns.config.root_cert.is_none(),
        "the DNS endpoint uses the system roots"
    );
    let ip = connect(&connector, "prod").await;
    assert_eq!(
        ip.config.cluster_url.to_string().trim_end_matches('/'),
        env.cluster.url().trim_end_matches('/')
    );
    assert!(
        ip.config.root_cert.is_some(),
        "the IP endpoint uses the cluster CA"
    );
    assert!(ip.token_source.is_some());
    let _ = connector
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn login_writes_a_current_kubeconfig_context_that_works() {
    let env = env().await;
    env.allow_on_cluster(SA);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, env.cluster.kubeconfig_yaml()).unwrap();
    let flavor = stepstack_connector_gcp::GcpConnectorFlavor::with_environment(
        stepstack_connector_gcp::GcpEnvironment::empty().with_kubeconfig(&path),
    );
    let connector = flavor
        .build_connector(env.service_account("gke", SA))
        .unwrap();
    let message = connector
        .configure_local_client(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap();
    assert!(
        message.contains("the current context is now `gke_stepstack-test_us-central1_prod`"),
        "{message}"
    );
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    assert_eq!(kubeconfig.contexts.len(), 2, "the existing context is kept");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    assert!(
        namespaces(&client)
            .await
            .unwrap()
            .iter()
            .any(|n| n == "default")
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files are left behind");
}
