//! A step runs end to end through an `aws` connector: the Kubernetes step operator gets
//! its `ClusterConnection` from the connector (EKS endpoint and CA from the EKS fake, a
//! presigned token per request), the emulated cluster accepts the token through the STS
//! fake, and a token that lapsed after the first step is replaced (401, fresh token,
//! retry) without failing the second. (`tests/fake.rs` polls a running pod while 1-second
//! tokens expire under it.)

use std::time::Duration;

use stepstack_connector_aws::AwsConnectorFlavor;
use stepstack_core::connector::{ImplicitAuthGate, KUBERNETES_CLUSTER};
use stepstack_core::{
    ConnectorConfig, ConnectorFlavor, StepLaunch, StepOperatorContext, StepOperatorFlavor,
};
use stepstack_k8s_operator::KubernetesStepOperatorFlavor;
use stepstack_testkit::cloud::aws::{FakeAws, FakeAwsOptions};
use stepstack_testkit::{Cluster, ClusterOptions, UserInfo};

#[tokio::test]
async fn steps_run_end_to_end_with_eks_tokens_that_renew() {
    let fake = FakeAws::start(FakeAwsOptions {
        region: "eu-west-1".into(),
        // Presigned URLs count as expired 1 s after signing.
        presigned_max_age: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await
    .unwrap();
    let arn = fake.add_user_key("deployer", "AKIAFAKESTEP00000001", "step-secret");
    let cluster = Cluster::start(ClusterOptions {
        token_validator: Some(fake.eks_token_validator("prod")),
        ..Default::default()
    })
    .await
    .unwrap();
    fake.add_cluster_for("prod", &cluster);
    fake.map_identity(
        &arn,
        UserInfo::new("deployer", vec!["system:masters".into()]),
    );
    let admin = cluster.client().await.unwrap();
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(admin);
    namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "ml"}})).unwrap(),
        )
        .await
        .unwrap();

    let connector = AwsConnectorFlavor::new()
        .with_implicit_gate(ImplicitAuthGate::new(false))
        .build(
            ConnectorConfig::new("aws-eu", "aws", "secret-key")
                .with_value("region", "eu-west-1")
                .with_value("endpoint_url", fake.endpoint_url())
                .with_secret("aws_access_key_id", "AKIAFAKESTEP00000001")
                .with_secret("aws_secret_access_key", "step-secret"),
        )
        .unwrap();
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
    let launch = StepLaunch::new(
        "eks_pipeline",
        "trainer",
        "busybox:1.36",
        ["sh", "-c", "echo start; sleep 4; echo done"],
    );
    let outcome = tokio::time::timeout(Duration::from_secs(60), operator.launch(launch))
        .await
        .expect("the step finishes")
        .expect("the step's API calls succeed while tokens expire");
    assert!(outcome.is_success(), "{outcome:?}");

    // The token of the first step has lapsed by now (the watch that followed the step
    // was authenticated once, when it opened, as on a real API server); the next step
    // gets 401, a fresh token and a retry, and succeeds.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = operator
        .launch(StepLaunch::new(
            "eks_pipeline",
            "evaluator",
            "busybox:1.36",
            ["sh", "-c", "echo ok"],
        ))
        .await
        .unwrap();
    assert!(second.is_success(), "{second:?}");

    let checks: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.params.get("presigned").map(String::as_str) == Some("eks-token"))
        .collect();
    let accepted = checks.iter().filter(|c| c.error_code.is_none()).count();
    let expired = checks
        .iter()
        .filter(|c| c.error_code.as_deref() == Some("ExpiredToken"))
        .count();
    assert!(
        expired >= 1 && accepted >= 2,
        "a token expired and was replaced: {checks:?}"
    );
}
