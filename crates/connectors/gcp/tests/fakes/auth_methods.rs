//! Each auth method obtains its token through its real HTTP path against the fakes.

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use stepstack_connector_gcp::{GcpConnectorFlavor, GcpEnvironment};
use stepstack_core::connector::KUBERNETES_CLUSTER;
use stepstack_core::{ConnectorConfig, ErrorKind, ServiceConnector};

use crate::common::*;

const TARGET: &str = "runner@stepstack-test.iam.gserviceaccount.com";
const USER: &str = "alice@example.com";

#[tokio::test]
async fn service_account_keys_use_the_jwt_grant_raw_or_base64() {
    let env = env().await;
    env.allow_on_cluster(SA);
    let key = env.fake.add_service_account(SA);
    for key in [
        key.clone(),
        base64::engine::general_purpose::STANDARD.encode(&key),
    ] {
        let before = env.fake.count("jwt-bearer");
        // The key's own token_uri points at the fake: no token endpoint override needed.
        let config = ConnectorConfig::new("sa", "gcp", "service-account")
            .with_secret("service_account_json", key)
            .with_value("container_endpoint", env.fake.endpoint_url());
        let connector = build(config);
        assert_eq!(connector.project_id(), "stepstack-test");
        assert_works(&connector).await;
        assert!(env.fake.count("jwt-bearer") > before);
    }
    let debug = format!("{:?}", build(env.service_account("sa", SA)));
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
}

#[tokio::test]
async fn a_key_signed_by_another_private_key_is_refused() {
    let env = env().await;
    env.fake.add_service_account(SA);
    let forged = env.fake.forged_service_account_key(SA).unwrap();
    let config = env.endpoints(
        ConnectorConfig::new("forged", "gcp", "service-account")
            .with_secret("service_account_json", forged),
    );
    let report = build(config).verify(None, None).await.unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        error.contains("authorization failure") && error.contains("Invalid JWT Signature"),
        "{error}"
    );
    assert!(!error.contains("BEGIN PRIVATE KEY"), "{error}");
}

#[tokio::test]
async fn user_accounts_use_the_refresh_token_grant() {
    let env = env().await;
    env.allow_on_cluster(USER);
    let credentials = env.fake.add_user_account(USER);
    let config = env.endpoints(
        ConnectorConfig::new("user", "gcp", "user-account")
            .with_secret("user_account_json", credentials),
    );
    let connector = build(config);
    assert_eq!(
        connector.project_id(),
        "stepstack-test",
        "from quota_project_id"
    );
    assert_works(&connector).await;
    assert!(env.fake.count("refresh_token") >= 1);

    let mut revoked: serde_json::Value =
        serde_json::from_str(&env.fake.add_user_account(USER)).unwrap();
    revoked["client_secret"] = "wrong".into();
    let config = env.endpoints(
        ConnectorConfig::new("user", "gcp", "user-account")
            .with_secret("user_account_json", revoked.to_string()),
    );
    let err = build(config)
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.message().contains("invalid_client"), "{err}");
}

#[tokio::test]
async fn a_given_oauth2_token_is_used_until_it_expires() {
    let env = env().await;
    env.allow_on_cluster(SA);
    let (token, expires_at) = env.fake.issue_token(SA);
    let mut config = env.endpoints(
        ConnectorConfig::new("token", "gcp", "oauth2-token")
            .with_secret("token", token)
            .with_value("project_id", "stepstack-test"),
    );
    config.expires_at = Some(expires_at);
    let connector = build(config.clone());
    let connection = connect(&connector, "prod").await;
    assert_eq!(connection.expires_at, Some(expires_at));
    assert!(
        connection.token_source.is_none(),
        "a given token is not renewed"
    );
    assert_works(&connector).await;
    assert_eq!(
        env.fake.count("jwt-bearer") + env.fake.count("refresh_token"),
        0
    );

    config.expires_at = Some(Timestamp::now() + SignedDuration::from_secs(60));
    let err = build(config)
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert!(err.message().contains("have expired"), "{err}");
}

#[tokio::test]
async fn impersonation_calls_generate_access_token_for_the_target() {
    let env = env().await;
    // Only the target may use the cluster: the token must be the target's.
    env.allow_on_cluster(TARGET);
    let config = env
        .service_account("imp", SA)
        .with_value("target_principal", TARGET);
    let mut config = config;
    config.auth_method = "impersonation".into();
    let denied = build(config.clone())
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied, "{denied}");
    assert!(
        denied.message().contains(TARGET)
            && denied
                .message()
                .contains("roles/iam.serviceAccountTokenCreator"),
        "{denied}"
    );

    env.fake.allow_impersonation(SA, TARGET);
    let connector = build(config.clone());
    assert_eq!(connector.config().expiration_seconds, Some(3600));
    assert_works(&connector).await;
    assert!(env.fake.count("generateAccessToken") >= 1);
    let calls = env.fake.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.kind == "generateAccessToken" && c.principal.as_deref() == Some(TARGET))
    );

    let mut too_long = config;
    too_long.expiration_seconds = Some(7200);
    let err = flavor().build_connector(too_long).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings);
    assert!(err.message().contains("at most 3600 s"), "{err}");
}

#[tokio::test]
async fn implicit_credentials_are_gated_then_use_the_metadata_server_or_adc_file() {
    let env = env().await;
    env.allow_on_cluster(SA);
    env.allow_on_cluster(USER);
    let config = env.endpoints(
        ConnectorConfig::new("ambient", "gcp", "implicit")
            .with_value("project_id", "stepstack-test"),
    );
    let err = build(config.clone())
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(
        err.message()
            .contains("STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS"),
        "{err}"
    );

    // No credentials file: the metadata server's service account.
    env.fake.set_metadata_identity(Some(SA));
    let metadata = GcpConnectorFlavor::with_environment(
        GcpEnvironment::empty()
            .with_implicit_auth(true)
            .with_metadata_host(env.fake.metadata_host()),
    );
    assert_works(&metadata.build_connector(config.clone()).unwrap()).await;
    assert!(env.fake.count("metadata") >= 1);

    // GOOGLE_APPLICATION_CREDENTIALS with user credentials: the refresh-token grant.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adc.json");
    std::fs::write(&path, env.fake.add_user_account(USER)).unwrap();
    let adc = GcpConnectorFlavor::with_environment(
        GcpEnvironment::empty()
            .with_implicit_auth(true)
            .with_application_credentials(&path),
    );
    let before = env.fake.count("refresh_token");
    assert_works(&adc.build_connector(config).unwrap()).await;
    assert!(env.fake.count("refresh_token") > before);
}

#[tokio::test]
async fn external_accounts_exchange_the_subject_token_at_sts_then_impersonate() {
    let env = env().await;
    env.allow_on_cluster(TARGET);
    let audience = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/providers/github";
    let principal = env
        .fake
        .add_workload_identity(audience, "repo:acme/ml", "oidc-subject-token");
    env.fake.allow_impersonation(&principal, TARGET);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token.json");
    std::fs::write(&token_file, r#"{"id_token": "oidc-subject-token"}"#).unwrap();
    let external = |file: &std::path::Path| {
        serde_json::json!({
            "type": "external_account",
            "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": env.fake.sts_url(),
            "service_account_impersonation_url": env.fake.impersonation_url(TARGET),
            "credential_source": {
                "file": file,
                "format": {"type": "json", "subject_token_field_name": "id_token"},
            },
        })
        .to_string()
    };
    let config = |json: String| {
        env.endpoints(
            ConnectorConfig::new("wif", "gcp", "external-account")
                .with_secret("external_account_json", json)
                .with_value("project_id", "stepstack-test"),
        )
    };
    // It reads ambient credentials (a local file): gated like implicit.
    let report = build(config(external(&token_file)))
        .verify(None, None)
        .await
        .unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        error.contains("STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS"),
        "{error}"
    );

    let open =
        GcpConnectorFlavor::with_environment(GcpEnvironment::empty().with_implicit_auth(true));
    assert_works(&open.build_connector(config(external(&token_file))).unwrap()).await;
    assert!(env.fake.count("token-exchange") >= 1);
    assert!(env.fake.count("generateAccessToken") >= 1);

    // A subject token STS does not accept is an authentication error.
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, r#"{"id_token": "someone-else"}"#).unwrap();
    let err = open
        .build_connector(config(external(&wrong)))
        .unwrap()
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.message().contains("invalid_grant"), "{err}");
    assert!(!err.message().contains("someone-else"), "{err}");
}
