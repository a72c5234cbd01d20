//! Steps run end to end through an `azure` connector: the Kubernetes step operator gets
//! its `ClusterConnection` from the connector (server and CA from
//! `listClusterUserCredential`, an Entra ID token for the AKS server application), on an
//! emulated cluster whose local accounts are disabled and which accepts only AKS-scope
//! tokens the fake issued. Every token lapses while the first step runs; the operator's
//! remaining calls (and the next step's) get 401, a fresh token and a retry.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use stepstack_core::connector::KUBERNETES_CLUSTER;
use stepstack_core::{ServiceConnector as _, StepLaunch, StepOperatorContext, StepOperatorFlavor};
use stepstack_k8s_operator::KubernetesStepOperatorFlavor;
use stepstack_testkit::cloud::azure::AKS_SCOPE;

use crate::common::*;

#[tokio::test]
async fn steps_run_through_an_azure_connector_and_survive_expiring_tokens() {
    let env = env().await;
    env.allow_on_cluster(SP);
    let admin = env.cluster.client().await.unwrap();
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "ml"}})).unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();

    let connector = build(env.service_principal("aks", SP));
    let connection = connector
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap();
    let flavor = KubernetesStepOperatorFlavor;
    let config = flavor
        .validate_config(&serde_json::json!({"kubernetes_namespace": "ml"}))
        .unwrap();
    let operator = flavor
        .build(
            &config,
            StepOperatorContext::new("k8s").with_connection(connection),
        )
        .unwrap();

    let handle = operator
        .submit(StepLaunch::new(
            "aks_pipeline",
            "trainer",
            "busybox:1.36",
            ["sh", "-c", "echo start; sleep 2; echo done"],
        ))
        .await
        .unwrap();
    // Once the step's pod runs, every token the fake issued lapses (the connector and the
    // client still believe they are valid for an hour).
    let pods: Api<Pod> = Api::namespaced(admin, "ml");
    let mut running = false;
    for _ in 0..600 {
        let list = pods
            .list(&ListParams::default().labels("step=trainer"))
            .await
            .unwrap();
        if list
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running, "the step's pod started");
    let issued = env.fake.issued_tokens(AKS_SCOPE);
    env.fake.expire_tokens();

    let outcome = tokio::time::timeout(Duration::from_secs(60), operator.wait(&handle))
        .await
        .expect("the step finishes")
        .expect("the step's API calls succeed after its token lapsed");
    assert!(outcome.is_success(), "{outcome:?}");
    let second = operator
        .launch(StepLaunch::new(
            "aks_pipeline",
            "evaluator",
            "busybox:1.36",
            ["sh", "-c", "echo ok"],
        ))
        .await
        .unwrap();
    assert!(second.is_success(), "{second:?}");

    assert!(
        env.fake.refused("clusterToken", 401) >= 1,
        "the cluster saw the lapsed token: {:?}",
        env.fake.calls()
    );
    assert!(
        env.fake.issued_tokens(AKS_SCOPE) > issued,
        "a fresh AKS token replaced it"
    );
    // Entra ID tokens only: no admin credentials were asked for (the cluster has none).
    assert_eq!(env.fake.count("listClusterAdminCredential"), 0);
    assert!(env.fake.count("listClusterUserCredential") >= 1);
}
