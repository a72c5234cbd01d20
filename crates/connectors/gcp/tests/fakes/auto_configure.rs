//! Auto-configuration from application default credentials.

use stepstack_connector_gcp::{ADC_FILE, GcpConnectorFlavor, GcpEnvironment};
use stepstack_core::{AutoConfigureRequest, ConnectorFlavor, ErrorKind};

use crate::common::*;

fn request(env: &Env) -> AutoConfigureRequest {
    let mut request = AutoConfigureRequest::new("auto");
    request
        .values
        .insert("container_endpoint".into(), env.fake.endpoint_url().into());
    request
        .values
        .insert("token_endpoint".into(), env.fake.token_url());
    request
}

#[tokio::test]
async fn a_service_account_key_in_google_application_credentials_configures_service_account() {
    let env = env().await;
    env.allow_on_cluster(SA);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    std::fs::write(&path, env.fake.add_service_account(SA)).unwrap();
    let flavor = GcpConnectorFlavor::with_environment(
        GcpEnvironment::empty().with_application_credentials(&path),
    );
    let config = flavor.auto_configure(request(&env)).await.unwrap();
    assert_eq!(config.auth_method, "service-account");
    assert_eq!(config.str_value("project_id"), Some("stepstack-test"));
    assert!(config.secret("service_account_json").is_some());
    assert_works(&flavor.build_connector(config).unwrap()).await;
}

#[tokio::test]
async fn gcloud_user_credentials_configure_user_account() {
    let env = env().await;
    env.allow_on_cluster("bob@example.com");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(ADC_FILE),
        env.fake.add_user_account("bob@example.com"),
    )
    .unwrap();
    let flavor = GcpConnectorFlavor::with_environment(
        GcpEnvironment::empty()
            .with_gcloud_config_dir(dir.path())
            .with_project("stepstack-test"),
    );
    let config = flavor.auto_configure(request(&env)).await.unwrap();
    assert_eq!(config.auth_method, "user-account");
    assert_works(&flavor.build_connector(config).unwrap()).await;
}

#[tokio::test]
async fn without_credentials_the_error_says_how_to_create_them() {
    let env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let flavor = GcpConnectorFlavor::with_environment(
        GcpEnvironment::empty().with_gcloud_config_dir(dir.path()),
    );
    let err = flavor.auto_configure(request(&env)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.message()
            .contains("gcloud auth application-default login"),
        "{err}"
    );
    // Implicit is configured only where it is allowed.
    let mut implicit = request(&env);
    implicit.auth_method = Some("implicit".into());
    implicit
        .values
        .insert("project_id".into(), "stepstack-test".into());
    let err = flavor.auto_configure(implicit.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let open =
        GcpConnectorFlavor::with_environment(GcpEnvironment::empty().with_implicit_auth(true));
    let config = open.auto_configure(implicit).await.unwrap();
    assert_eq!(config.auth_method, "implicit");
}
