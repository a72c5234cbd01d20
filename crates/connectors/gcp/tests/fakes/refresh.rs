//! Access tokens are replaced before they expire, and after Google or the cluster
//! rejected them.

use stepstack_core::ServiceConnector;
use stepstack_core::connector::KUBERNETES_CLUSTER;

use crate::common::*;

#[tokio::test]
async fn tokens_that_expire_within_the_refresh_margin_are_replaced_before_use() {
    let env = env().await;
    env.allow_on_cluster(SA);
    let connector = build(env.service_account("short", SA));
    let client = connect(&connector, "prod").await.into_client().unwrap();
    // Tokens living 30 s are inside the client's 60 s refresh margin: every request
    // fetches a fresh one through the JWT grant.
    env.fake
        .set_token_lifetime(std::time::Duration::from_secs(30));
    let before = env.fake.count("jwt-bearer");
    namespaces(&client).await.unwrap();
    namespaces(&client).await.unwrap();
    assert!(
        env.fake.count("jwt-bearer") >= before + 2,
        "grants: {} -> {}",
        before,
        env.fake.count("jwt-bearer")
    );
}

#[tokio::test]
async fn expired_tokens_are_refreshed_for_the_cluster_and_the_gke_api() {
    let env = env().await;
    env.allow_on_cluster(SA);
    let connector = build(env.service_account("long", SA));
    let client = connect(&connector, "prod").await.into_client().unwrap();
    namespaces(&client).await.unwrap();
    let issued = env.fake.issued_tokens();
    env.fake.expire_tokens();
    // The cluster answers 401 to the expired token; the client fetches a new one and retries.
    namespaces(&client)
        .await
        .expect("the request is retried with a fresh token");
    assert!(env.fake.issued_tokens() > issued);
    // The connector's cached API token was expired too: the GKE API call retries once.
    env.fake.expire_tokens();
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
}
