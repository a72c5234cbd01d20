//! Each auth method obtains its tokens through its real HTTP path; bad credentials give
//! clear errors without secrets; expired tokens are refreshed; admin credentials only
//! when configured, and refused on clusters with local accounts disabled.

use stepstack_connector_azure::{AzureConnectorFlavor, AzureEnvironment};
use stepstack_core::connector::KUBERNETES_CLUSTER;
use stepstack_core::{ConnectorConfig, ErrorKind, ServiceConnector};
use stepstack_testkit::cloud::azure::{AKS_SCOPE, ARM_SCOPE, CLUSTER_ADMIN_USER, FakeAksCluster};

use crate::common::*;

#[tokio::test]
async fn a_service_principal_gets_arm_and_aks_tokens_from_entra_id() {
    let env = env().await;
    env.allow_on_cluster(SP);
    let connector = build(env.service_principal("sp", SP));
    assert_works(&connector).await;
    assert!(env.fake.issued_tokens(ARM_SCOPE) >= 1);
    assert!(env.fake.issued_tokens(AKS_SCOPE) >= 1);
    assert!(env.fake.count("listClusterUserCredential") >= 1);
    assert_eq!(env.fake.count("listClusterAdminCredential"), 0);
    let debug = format!("{connector:?}");
    let config = env.service_principal("sp2", SP);
    let secret = config.secret("client_secret").unwrap();
    use secrecy::ExposeSecret as _;
    assert!(!debug.contains(secret.expose_secret()));
}

#[tokio::test]
async fn bad_service_principal_credentials_give_aadsts_errors_without_secrets() {
    let env = env().await;
    env.fake.add_service_principal(SP);
    let wrong = env.endpoints(
        ConnectorConfig::new("bad", "azure", "service-principal")
            .with_value("tenant_id", env.fake.tenant_id())
            .with_value("client_id", SP)
            .with_secret("client_secret", "not-the-secret"),
    );
    let err = build(wrong)
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(
        err.message().contains("AADSTS7000215") && err.message().contains(SP),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-secret"), "{err}");

    let other_tenant = env
        .service_principal("tenant", SP)
        .with_value("tenant_id", "contoso.onmicrosoft.com");
    let err = build(other_tenant)
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.message().contains("AADSTS90002"), "{err}");

    let missing = ConnectorConfig::new("x", "azure", "service-principal")
        .with_value("client_id", SP)
        .with_value("subscription_id", env.fake.subscription_id())
        .with_secret("client_secret", "s");
    let err = flavor().build_connector(missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
    assert!(err.message().contains("tenant_id"), "{err}");
}

#[tokio::test]
async fn access_tokens_are_used_as_given_and_expire_with_the_connector() {
    let env = env().await;
    env.allow_on_cluster("alice@contoso.com");
    let (arm, expires_at) = env.fake.issue_token("alice@contoso.com", ARM_SCOPE);
    let (aks, _) = env.fake.issue_token("alice@contoso.com", AKS_SCOPE);
    let mut config = env.endpoints(
        ConnectorConfig::new("tok", "azure", "access-token")
            .with_secret("token", arm.clone())
            .with_secret("kubernetes_token", aks),
    );
    config.expires_at = Some(expires_at);
    let connector = build(config);
    assert_works(&connector).await;
    let connection = connect(&connector, "prod").await;
    assert_eq!(connection.expires_at, Some(expires_at));
    assert_eq!(env.fake.count("token"), 0, "no grant for given tokens");

    // Without the AKS token the clusters are listed but cannot be reached.
    let mut arm_only = env
        .endpoints(ConnectorConfig::new("arm", "azure", "access-token").with_secret("token", arm));
    arm_only.expires_at = Some(expires_at);
    let connector = build(arm_only);
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
    assert!(err.message().contains("kubernetes_token"), "{err}");
}

#[tokio::test]
async fn expired_tokens_are_refreshed_for_the_cluster_and_arm() {
    let env = env().await;
    env.allow_on_cluster(SP);
    let connector = build(env.service_principal("long", SP));
    let client = connect(&connector, "prod").await.into_client().unwrap();
    namespaces(&client).await.unwrap();
    let issued = env.fake.issued_tokens(AKS_SCOPE);
    env.fake.expire_tokens();
    // The cluster answers 401 to the expired token; the client fetches a new one and retries.
    namespaces(&client)
        .await
        .expect("the request is retried with a fresh token");
    assert!(env.fake.issued_tokens(AKS_SCOPE) > issued);
    // The connector's cached ARM token expired too: the ARM call retries once.
    let arm = env.fake.issued_tokens(ARM_SCOPE);
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(env.fake.issued_tokens(ARM_SCOPE) > arm);

    // Short-lived tokens are replaced before use.
    env.fake
        .set_token_lifetime(std::time::Duration::from_secs(30));
    let before = env.fake.issued_tokens(AKS_SCOPE);
    let client = connect(&connector, "prod").await.into_client().unwrap();
    namespaces(&client).await.unwrap();
    namespaces(&client).await.unwrap();
    assert!(env.fake.issued_tokens(AKS_SCOPE) >= before + 2);
}

#[tokio::test]
async fn admin_credentials_only_when_configured_and_local_accounts_exist() {
    let env = env().await;
    env.fake.add_cluster(FakeAksCluster::for_cluster(
        "rg-legacy",
        "legacy",
        &env.cluster,
    ));
    let admin = build(
        env.service_principal("admin", SP)
            .with_value("use_admin_credentials", true),
    );
    let err = admin
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.message().contains("local accounts are disabled")
            && err.message().contains("use_admin_credentials"),
        "{err}"
    );
    // On a cluster with local accounts the admin kubeconfig works (no Entra ID token for
    // the cluster, and the service principal has no rules there).
    let client = connect(&admin, "legacy").await.into_client().unwrap();
    namespaces(&client).await.unwrap();
    assert_eq!(env.fake.issued_tokens(AKS_SCOPE), 0);
    assert!(!CLUSTER_ADMIN_USER.is_empty());
}

#[tokio::test]
async fn the_implicit_method_is_gated_and_reads_the_azure_variables() {
    let env = env().await;
    env.allow_on_cluster(SP);
    let secret = env.fake.add_service_principal(SP);
    let config = ConnectorConfig::new("imp", "azure", "implicit")
        .with_value("authority_host", env.fake.endpoint_url())
        .with_value("management_endpoint", env.fake.endpoint_url())
        .with_value("ca_certificate", env.fake.ca_pem());
    let closed = AzureConnectorFlavor::with_environment(
        AzureEnvironment::empty()
            .with_service_principal(env.fake.tenant_id(), SP, secret.clone())
            .with_subscription(env.fake.subscription_id()),
    );
    let err = closed
        .build_connector(config.clone())
        .unwrap()
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    let open = AzureConnectorFlavor::with_environment(
        AzureEnvironment::empty()
            .with_implicit_auth(true)
            .with_service_principal(env.fake.tenant_id(), SP, secret)
            .with_subscription(env.fake.subscription_id()),
    );
    assert_works(&open.build_connector(config.clone()).unwrap()).await;

    // Nothing else to find: no managed identity, no Azure CLI.
    let dir = tempfile::tempdir().unwrap();
    let empty = AzureConnectorFlavor::with_environment(
        AzureEnvironment::empty()
            .with_implicit_auth(true)
            .with_subscription(env.fake.subscription_id()),
    );
    let config = config
        .with_value("managed_identity_endpoint", env.fake.managed_identity_url())
        .with_value("azure_cli", dir.path().join("az").display().to_string());
    let err = empty
        .build_connector(config)
        .unwrap()
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert!(err.message().contains("AZURE_CLIENT_SECRET"), "{err}");
}

#[tokio::test]
async fn the_fakes_are_https_and_only_the_configured_ca_is_trusted() {
    let env = env().await;
    assert!(env.fake.endpoint_url().starts_with("https://"));
    let mut config = env.service_principal("untrusting", SP);
    config.values.remove("ca_certificate");
    let err = build(config)
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("could not reach"), "{err}");

    let bad = env
        .service_principal("bad-ca", SP)
        .with_value("ca_certificate", "not a certificate");
    let err = flavor().build_connector(bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
    assert!(err.message().contains("ca_certificate"), "{err}");
}

#[tokio::test]
async fn a_service_principal_with_a_client_certificate_signs_its_client_assertions() {
    let env = env().await;
    env.allow_on_cluster(SP);
    let certificate = env.fake.add_client_certificate(SP);
    let connector = build(env.certificate_principal("cert", SP, &certificate.pem));
    assert_works(&connector).await;
    assert!(env.fake.issued_tokens(ARM_SCOPE) >= 1);
    assert!(env.fake.issued_tokens(AKS_SCOPE) >= 1);
    // The key never shows; the (public) thumbprint may.
    let debug = format!("{connector:?}");
    let key_line = certificate.private_key_pem.lines().nth(1).unwrap();
    assert!(!debug.contains(key_line), "{debug}");
    assert!(debug.contains(&certificate.thumbprint), "{debug}");

    // Tokens renew through new assertions once the old ones lapse.
    let client = connect(&connector, "prod").await.into_client().unwrap();
    let issued = env.fake.issued_tokens(AKS_SCOPE);
    env.fake.expire_tokens();
    namespaces(&client)
        .await
        .expect("a fresh token from a new assertion");
    assert!(env.fake.issued_tokens(AKS_SCOPE) > issued);
}

#[tokio::test]
async fn entra_id_refuses_a_wrong_key_and_an_unregistered_certificate() {
    let env = env().await;
    let registered = env.fake.add_client_certificate(SP);
    // Another application's certificate: the fake's next key, so a different one.
    let other = env
        .fake
        .add_client_certificate("99999999-2222-4333-8444-555555555555");
    assert_ne!(other.private_key_pem, registered.private_key_pem);
    let mismatched = format!("{}\n{}", registered.certificate_pem, other.private_key_pem);
    let err = connect_fails(
        env.certificate_principal("wrong-key", SP, &mismatched),
        "prod",
        ErrorKind::Unauthenticated,
        &[
            "AADSTS700027",
            "signature validation",
            &registered.thumbprint,
            "private key",
        ],
    )
    .await;
    let key_line = other.private_key_pem.lines().nth(1).unwrap();
    assert!(!err.to_string().contains(key_line), "{err}");

    let stranger = env.fake.unregistered_client_certificate(SP);
    connect_fails(
        env.certificate_principal("unregistered", SP, &stranger.pem),
        "prod",
        ErrorKind::Unauthenticated,
        &[
            "AADSTS700027",
            "not registered on application",
            &stranger.thumbprint,
        ],
    )
    .await;
    assert_eq!(env.fake.issued_tokens(ARM_SCOPE), 0);
}

#[tokio::test]
async fn client_certificate_settings_are_checked_before_any_call() {
    let env = env().await;
    let certificate = env.fake.add_client_certificate(SP);
    let check = |pem: String, password: Option<&str>, expected: &[&str]| {
        let mut config = env.certificate_principal("bad", SP, &pem);
        if let Some(password) = password {
            config = config.with_secret("client_certificate_password", password);
        }
        let err = flavor().build_connector(config).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
        for text in expected {
            assert!(err.message().contains(text), "{text:?} in {err}");
        }
        assert!(!err.message().contains("hunter2"), "{err}");
    };
    let encrypted = format!(
        "{}-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
        certificate.certificate_pem
    );
    check(
        encrypted.clone(),
        None,
        &["`client_certificate`", "encrypted", "openssl pkcs8"],
    );
    check(
        encrypted,
        Some("hunter2"),
        &["`client_certificate_password` cannot be used"],
    );
    check(
        certificate.certificate_pem.clone(),
        None,
        &["`client_certificate`", "no PEM private key"],
    );
    check(
        certificate.private_key_pem.clone(),
        None,
        &["`client_certificate`", "no PEM certificate"],
    );
    let both = env
        .certificate_principal("both", SP, &certificate.pem)
        .with_secret("client_secret", "s");
    let err = flavor().build_connector(both).unwrap_err();
    assert!(err.message().contains("keep one"), "{err}");
    let neither = env.endpoints(
        ConnectorConfig::new("neither", "azure", "service-principal")
            .with_value("tenant_id", env.fake.tenant_id())
            .with_value("client_id", SP),
    );
    let err = flavor().build_connector(neither).unwrap_err();
    assert!(
        err.message()
            .contains("missing `client_secret` (or `client_certificate`"),
        "{err}"
    );
    assert_eq!(env.fake.count("token"), 0);
}
