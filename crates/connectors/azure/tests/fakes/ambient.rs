//! The implicit method's ambient credentials (managed identity through the instance
//! metadata service or an App Service identity endpoint, the Azure CLI) and
//! `auto_configure`, against the fakes and a stand-in `az` script.

use stepstack_connector_azure::{AzureConnectorFlavor, AzureEnvironment};
use stepstack_core::registry::AutoConfigureRequest;
use stepstack_core::{ConnectorConfig, ConnectorFlavor as _, ErrorKind};
use stepstack_testkit::cloud::azure::AKS_SCOPE;

use crate::common::*;

/// The client id of the emulated machine's managed identity.
const MANAGED: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";

/// An `implicit` configuration against the fake; `az` is `cli`.
fn implicit(env: &Env, name: &str, cli: &std::path::Path) -> ConnectorConfig {
    env.endpoints(ConnectorConfig::new(name, "azure", "implicit"))
        .with_value("managed_identity_endpoint", env.fake.managed_identity_url())
        .with_value("azure_cli", cli.display().to_string())
}

fn open_flavor(environment: AzureEnvironment) -> AzureConnectorFlavor {
    AzureConnectorFlavor::with_environment(environment.with_implicit_auth(true))
}

#[tokio::test]
async fn implicit_uses_the_managed_identity_of_the_instance_metadata_service() {
    let env = env().await;
    env.allow_on_cluster(MANAGED);
    env.fake.set_managed_identity(Some(MANAGED));
    let dir = tempfile::tempdir().unwrap();
    let connector = open_flavor(AzureEnvironment::empty())
        .build_connector(implicit(&env, "mi", &dir.path().join("no-az")))
        .unwrap();
    assert_works(&connector).await;
    assert!(
        env.fake.count("managedIdentity") >= 2,
        "{:?}",
        env.fake.calls()
    );
    assert!(env.fake.issued_tokens(AKS_SCOPE) >= 1);
    // A user-assigned identity is asked for by its client id (AZURE_CLIENT_ID).
    let other = open_flavor(AzureEnvironment::from_lookup(|name| {
        (name == "AZURE_CLIENT_ID").then(|| "12345678-0000-4000-8000-000000000000".into())
    }))
    .build_connector(implicit(&env, "mi-other", &dir.path().join("no-az")))
    .unwrap();
    connector_fails(
        &other,
        "prod",
        ErrorKind::NotFound,
        &["Identity not found", "az login"],
    )
    .await;
}

#[tokio::test]
async fn implicit_uses_an_app_service_identity_endpoint_with_its_header() {
    let env = env().await;
    env.allow_on_cluster(MANAGED);
    env.fake.set_managed_identity(Some(MANAGED));
    let dir = tempfile::tempdir().unwrap();
    let config = implicit(&env, "app", &dir.path().join("no-az"));
    let flavor = open_flavor(
        AzureEnvironment::empty()
            .with_identity_endpoint(env.fake.identity_endpoint_url(), env.fake.identity_header()),
    );
    assert_works(&flavor.build_connector(config.clone()).unwrap()).await;

    let wrong = open_flavor(
        AzureEnvironment::empty()
            .with_identity_endpoint(env.fake.identity_endpoint_url(), "not-the-header"),
    );
    let err = connector_fails(
        &wrong.build_connector(config).unwrap(),
        "prod",
        ErrorKind::Unauthenticated,
        &["/msi/token", "X-IDENTITY-HEADER"],
    )
    .await;
    assert!(!err.message().contains("not-the-header"), "{err}");
}

#[tokio::test]
async fn implicit_falls_back_to_the_azure_cli_and_then_stays_with_it() {
    let env = env().await;
    env.allow_on_cluster("alice@contoso.com");
    let (dir, az, _) = logged_in_az(&env, "alice@contoso.com");
    let connector = open_flavor(AzureEnvironment::empty())
        .build_connector(implicit(&env, "cli", &az))
        .unwrap();
    assert_works(&connector).await;
    let args = std::fs::read_to_string(dir.path().join("az.args")).unwrap();
    assert!(
        args.contains(
            "account get-access-token --scope https://management.azure.com/.default -o json"
        ) && args.contains(&format!("--scope {AKS_SCOPE}")),
        "{args}"
    );
    // The metadata service was probed once (no identity there), then the CLI kept.
    assert_eq!(env.fake.count("managedIdentity"), 0);
    let probes = env
        .fake
        .calls()
        .iter()
        .filter(|c| c.kind == "managedIdentity")
        .count();
    assert_eq!(probes, 1, "{:?}", env.fake.calls());
}

#[tokio::test]
async fn without_ambient_credentials_the_error_says_what_was_tried() {
    let env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let logged_out = fake_az(dir.path(), "", "", 0, "", "");
    let connector = open_flavor(AzureEnvironment::empty())
        .build_connector(implicit(&env, "none", &logged_out))
        .unwrap();
    connector_fails(
        &connector,
        "prod",
        ErrorKind::NotFound,
        &[
            "no AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE",
            "Identity not found",
            "Please run 'az login'",
            "AZURE_CLIENT_SECRET",
        ],
    )
    .await;
    let missing = open_flavor(AzureEnvironment::empty())
        .build_connector(implicit(&env, "no-az", &dir.path().join("missing")))
        .unwrap();
    connector_fails(
        &missing,
        "prod",
        ErrorKind::NotFound,
        &["not installed or not on PATH"],
    )
    .await;
}

/// An auto-configuration request pointing every endpoint at the fake.
fn request(env: &Env, name: &str) -> AutoConfigureRequest {
    let mut request = AutoConfigureRequest::new(name);
    for (key, value) in [
        ("authority_host", env.fake.endpoint_url().to_owned()),
        ("management_endpoint", env.fake.endpoint_url().to_owned()),
        ("ca_certificate", env.fake.ca_pem().to_owned()),
    ] {
        request.values.insert(key.to_owned(), value);
    }
    request
}

#[tokio::test]
async fn auto_configure_takes_a_service_principal_from_the_environment() {
    let env = env().await;
    env.allow_on_cluster(SP);
    assert!(flavor().connector_type().supports_auto_configuration);
    let secret = env.fake.add_service_principal(SP);
    let flavor = AzureConnectorFlavor::with_environment(
        AzureEnvironment::empty()
            .with_service_principal(env.fake.tenant_id(), SP, secret.clone())
            .with_subscription(env.fake.subscription_id()),
    );
    let config = flavor
        .auto_configure(request(&env, "auto-sp"))
        .await
        .unwrap();
    assert_eq!(config.auth_method, "service-principal");
    assert_eq!(config.values["client_id"], SP);
    assert_eq!(config.values["subscription_id"], env.fake.subscription_id());
    assert_works(&flavor.build_connector(config).unwrap()).await;

    // AZURE_CLIENT_CERTIFICATE_PATH: the certificate file's PEM becomes the secret.
    let certificate = env.fake.add_client_certificate(SP);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sp.pem");
    std::fs::write(&path, &certificate.pem).unwrap();
    let flavor = AzureConnectorFlavor::with_environment(
        AzureEnvironment::empty()
            .with_application(env.fake.tenant_id(), SP)
            .with_client_certificate_path(&path)
            .with_subscription(env.fake.subscription_id()),
    );
    let config = flavor
        .auto_configure(request(&env, "auto-cert"))
        .await
        .unwrap();
    assert_eq!(config.auth_method, "service-principal");
    assert!(config.secret("client_certificate").is_some());
    assert_works(&flavor.build_connector(config).unwrap()).await;
    // The implicit method reads the same file when a token is needed.
    let implicit = open_flavor(
        AzureEnvironment::empty()
            .with_application(env.fake.tenant_id(), SP)
            .with_client_certificate_path(&path)
            .with_subscription(env.fake.subscription_id()),
    );
    let config = env.endpoints(ConnectorConfig::new("imp-cert", "azure", "implicit"));
    assert_works(&implicit.build_connector(config).unwrap()).await;
}

#[tokio::test]
async fn auto_configure_takes_tokens_from_the_azure_cli() {
    let env = env().await;
    env.allow_on_cluster("alice@contoso.com");
    let (_dir, az, expires_at) = logged_in_az(&env, "alice@contoso.com");
    let flavor =
        AzureConnectorFlavor::with_environment(AzureEnvironment::empty().with_azure_cli(&az));
    let mut ask = request(&env, "auto-cli");
    ask.values
        .insert("tenant_id".to_owned(), env.fake.tenant_id());
    let config = flavor.auto_configure(ask).await.unwrap();
    // The CLI is asked for the given tenant's tokens.
    let args = std::fs::read_to_string(az.with_file_name("az.args")).unwrap();
    assert!(
        args.contains(&format!("-o json --tenant {}", env.fake.tenant_id())),
        "{args}"
    );
    assert_eq!(config.auth_method, "access-token");
    assert_eq!(config.values["subscription_id"], env.fake.subscription_id());
    assert_eq!(config.values["tenant_id"], env.fake.tenant_id());
    assert_eq!(
        config.expires_at.map(|t| t.as_second()),
        Some(expires_at.as_second())
    );
    assert!(config.secret("token").is_some() && config.secret("kubernetes_token").is_some());
    assert_works(&flavor.build_connector(config).unwrap()).await;
    assert_eq!(
        env.fake.count("token"),
        0,
        "no grant: the CLI's tokens are used"
    );

    // Logged out: the error says what was looked at and to run `az login`.
    let other_dir = tempfile::tempdir().unwrap();
    let logged_out = fake_az(other_dir.path(), "", "", 0, "", "");
    let flavor = AzureConnectorFlavor::with_environment(
        AzureEnvironment::empty().with_azure_cli(&logged_out),
    );
    let err = flavor
        .auto_configure(request(&env, "auto-none"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.message().contains("Please run 'az login'")
            && err.message().contains("AZURE_CLIENT_SECRET"),
        "{err}"
    );
}

#[tokio::test]
async fn auto_configure_gives_implicit_only_when_asked_and_allowed() {
    let env = env().await;
    let mut ask = request(&env, "auto-imp");
    ask.auth_method = Some("implicit".to_owned());
    ask.values.insert(
        "managed_identity_endpoint".to_owned(),
        env.fake.managed_identity_url(),
    );
    let closed = AzureConnectorFlavor::with_environment(AzureEnvironment::empty());
    let err = closed.auto_configure(ask.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let config = open_flavor(AzureEnvironment::empty())
        .auto_configure(ask)
        .await
        .unwrap();
    assert_eq!(config.auth_method, "implicit");
    assert_eq!(
        config.values["managed_identity_endpoint"],
        env.fake.managed_identity_url()
    );

    let mut wrong = request(&env, "auto-wrong");
    wrong.auth_method = Some("service-principal".to_owned());
    let err = closed.auto_configure(wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
    assert!(err.message().contains("AZURE_CLIENT_SECRET"), "{err}");
}

#[tokio::test]
async fn implicit_uses_workload_identity_and_rereads_the_rotated_token_file() {
    let env = env().await;
    env.allow_on_cluster(SP);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, env.fake.add_federated_token(SP)).unwrap();
    let flavor = open_flavor(
        AzureEnvironment::empty()
            .with_application(env.fake.tenant_id(), SP)
            .with_federated_token_file(&file)
            .with_subscription(env.fake.subscription_id()),
    );
    let connector = flavor
        .build_connector(implicit(&env, "wi", &dir.path().join("no-az")))
        .unwrap();
    let client = connect(&connector, "prod").await.into_client().unwrap();
    namespaces(&client).await.unwrap();
    assert_eq!(
        env.fake
            .calls()
            .iter()
            .filter(|c| c.kind == "managedIdentity")
            .count(),
        0
    );

    // The kubelet rotates the projected token; every token so far lapses.
    env.fake.expire_tokens();
    std::fs::write(&file, env.fake.add_federated_token(SP)).unwrap();
    namespaces(&client)
        .await
        .expect("a fresh token from the rotated federated token");

    // A token the application has no federated credential for is refused, with a hint.
    std::fs::write(
        &file,
        env.fake
            .add_federated_token("99999999-0000-4000-8000-000000000000"),
    )
    .unwrap();
    env.fake.expire_tokens();
    let fresh = flavor
        .build_connector(implicit(&env, "wi-wrong", &dir.path().join("no-az")))
        .unwrap();
    connector_fails(
        &fresh,
        "prod",
        ErrorKind::Unauthenticated,
        &[
            "AADSTS70021",
            "federated credential",
            "azure.workload.identity/client-id",
        ],
    )
    .await;
}
