//! The `aws` connector against the testkit's EKS/STS fakes and its emulated cluster: the
//! connector runs its real HTTP path (AWS SDK → fake EKS/STS, kube client → emulated API
//! server), and the API server accepts the presigned EKS token through the STS fake.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams};
use stepstack_connector_aws::{AwsConnectorFlavor, register};
use stepstack_core::connector::{ImplicitAuthGate, KUBERNETES_CLUSTER};
use stepstack_core::{
    ConnectorConfig, ConnectorFlavor, ErrorKind, Registry, ServiceConnector, conformance,
};
use stepstack_testkit::cloud::aws::{FakeAws, FakeAwsOptions};
use stepstack_testkit::{Cluster, ClusterOptions, UserInfo};

const REGION: &str = "eu-west-1";
const KEY: &str = "AKIAFAKEDEPLOYER0001";
const SECRET: &str = "fake/secret+key";

struct Env {
    fake: FakeAws,
    cluster: Cluster,
    user_arn: String,
}

/// A fake AWS with user `deployer`, EKS clusters `alpha`, `beta` and `prod` (`prod` served
/// by an emulated cluster that accepts EKS tokens and maps `deployer` to an admin).
async fn env() -> Env {
    let fake = FakeAws::start(FakeAwsOptions {
        region: REGION.into(),
        default_page_size: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let user_arn = fake.add_user_key("deployer", KEY, SECRET);
    let cluster = Cluster::start(ClusterOptions {
        token_validator: Some(fake.eks_token_validator("prod")),
        ..Default::default()
    })
    .await
    .unwrap();
    fake.add_cluster_for("prod", &cluster);
    fake.add_cluster_for("alpha", &cluster);
    fake.add_cluster_for("beta", &cluster);
    fake.map_identity(
        &user_arn,
        UserInfo::new("eks-deployer", vec!["system:masters".into()]),
    );
    Env {
        fake,
        cluster,
        user_arn,
    }
}

fn config(env: &Env, method: &str) -> ConnectorConfig {
    ConnectorConfig::new("aws-eu", "aws", method)
        .with_value("region", REGION)
        .with_value("endpoint_url", env.fake.endpoint_url())
        .with_secret("aws_access_key_id", KEY)
        .with_secret("aws_secret_access_key", SECRET)
}

fn flavor() -> AwsConnectorFlavor {
    AwsConnectorFlavor::new().with_implicit_gate(ImplicitAuthGate::new(false))
}

fn build(config: ConnectorConfig) -> Arc<dyn ServiceConnector> {
    flavor().build(config).unwrap()
}

#[test]
fn the_connector_type_passes_conformance_and_registers() {
    conformance::check_connector_type(&flavor());
    let mut registry = Registry::new();
    register(&mut registry).unwrap();
    let spec = registry.connector("aws").unwrap().connector_type().clone();
    let methods: Vec<&str> = spec
        .auth_methods
        .iter()
        .map(|m| m.auth_method.as_str())
        .collect();
    assert_eq!(
        methods,
        [
            "implicit",
            "secret-key",
            "sts-token",
            "iam-role",
            "session-token",
            "federation-token"
        ]
    );
    let bounds = |m: &str| {
        spec.auth_method(m)
            .unwrap()
            .expiration
            .map(|b| (b.min_seconds, b.max_seconds, b.default_seconds))
    };
    assert_eq!(
        bounds("session-token"),
        Some((Some(900), Some(129_600), Some(43_200)))
    );
    assert_eq!(
        bounds("federation-token"),
        Some((Some(900), Some(129_600), Some(43_200)))
    );
    assert_eq!(bounds("iam-role"), Some((Some(900), None, Some(3600))));
    assert_eq!(bounds("secret-key"), None);
    assert!(spec.auth_method("implicit").unwrap().implicit);
    assert!(
        spec.resource_type("kubernetes-cluster")
            .unwrap()
            .supports_instances
    );
    assert!(
        !spec
            .resource_type("aws-generic")
            .unwrap()
            .supports_instances
    );
    // Expiration outside the bounds is refused when the connector is built.
    let mut c = ConnectorConfig::new("x", "aws", "session-token")
        .with_value("region", REGION)
        .with_secret("aws_access_key_id", KEY)
        .with_secret("aws_secret_access_key", SECRET);
    c.expiration_seconds = Some(60);
    let err = flavor().build(c).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings);
    assert!(err.message().contains("at least 900"), "{err}");
}

#[tokio::test]
async fn verify_lists_every_cluster_across_pages_and_the_generic_resource() {
    let env = env().await;
    let connector = build(config(&env, "secret-key"));
    let report = connector.verify(None, None).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        report.entry(KUBERNETES_CLUSTER).unwrap().resource_ids,
        Some(vec!["alpha".into(), "beta".into(), "prod".into()])
    );
    assert_eq!(
        report.entry("aws-generic").unwrap().resource_ids,
        Some(vec![REGION.into()])
    );
    // Page size 2 ⇒ ListClusters was called twice (all pages were read).
    assert_eq!(env.fake.count("ListClusters"), 2);
    // One id, by name or ARN: DescribeCluster.
    let arn = format!("arn:aws:eks:{REGION}:123456789012:cluster/beta");
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), Some(&arn))
        .await
        .unwrap();
    assert_eq!(
        report.entry(KUBERNETES_CLUSTER).unwrap().resource_ids,
        Some(vec!["beta".into()])
    );
    // An ARN in another region is a configuration error that says so.
    let err = connector
        .verify(
            Some(KUBERNETES_CLUSTER),
            Some("arn:aws:eks:us-east-1:123456789012:cluster/beta"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSettings);
    assert!(err.message().contains("region us-east-1"), "{err}");
}

#[tokio::test]
async fn a_missing_cluster_and_bad_keys_give_clear_errors() {
    let env = env().await;
    let connector = build(config(&env, "secret-key"));
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), Some("nope"))
        .await
        .unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(error.contains("connector `aws-eu`"), "{error}");
    assert!(
        error.contains("EKS cluster `nope` does not exist in region eu-west-1"),
        "{error}"
    );
    assert!(error.contains("ResourceNotFoundException"), "{error}");
    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("nope"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("connector: aws-eu"), "{err}");

    let bad =
        build(config(&env, "secret-key").with_secret("aws_secret_access_key", "wrong-secret"));
    let report = bad.verify(Some(KUBERNETES_CLUSTER), None).await.unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        error.starts_with("connector `aws-eu` authorization failure"),
        "{error}"
    );
    assert!(error.contains("SignatureDoesNotMatch"), "{error}");
    assert!(!error.contains("wrong-secret"), "{error}");
    let unknown = build(config(&env, "secret-key").with_secret("aws_access_key_id", "AKIAUNKNOWN"));
    let report = unknown.verify(None, None).await.unwrap();
    let error = report.error.clone().unwrap();
    assert!(error.contains("InvalidClientTokenId"), "{error}");
    let err = unknown
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert!(
        err.message().contains("UnrecognizedClientException"),
        "{err}"
    );
}

#[tokio::test]
async fn connect_runs_kubernetes_requests_with_an_eks_token() {
    let env = env().await;
    let connector = build(config(&env, "secret-key"));
    conformance::check_connector_reaches_its_clusters(connector.as_ref()).await;
    let before = env.fake.calls().len();
    let connection = connector
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap();
    assert!(connection.token_source.is_some());
    assert_eq!(
        connection
            .config
            .cluster_url
            .to_string()
            .trim_end_matches('/'),
        env.cluster.url()
    );
    let client = connection.into_client().unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "from-eks"}, "data": {"k": "v"}
    }))
    .unwrap();
    maps.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(maps.get("from-eks").await.unwrap().data.unwrap()["k"], "v");
    // The API server called the STS fake with the presigned token of user deployer.
    let checks: Vec<_> = env
        .fake
        .calls()
        .into_iter()
        .skip(before)
        .filter(|c| c.params.get("presigned").map(String::as_str) == Some("eks-token"))
        .collect();
    assert!(!checks.is_empty());
    assert!(
        checks
            .iter()
            .all(|c| c.error_code.is_none() && c.access_key_id.as_deref() == Some(KEY)),
        "{checks:?}"
    );
    let _ = &env.user_arn;

    // A token for another cluster name is refused by this cluster: connect to `alpha`
    // (same API server, but its validator only accepts tokens for `prod`).
    let alpha = connector
        .connect(KUBERNETES_CLUSTER, Some("alpha"))
        .await
        .unwrap();
    let err = Api::<ConfigMap>::namespaced(alpha.into_client().unwrap(), "default")
        .list(&Default::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("401") || err.to_string().contains("Unauthorized"),
        "{err}"
    );
}

#[tokio::test]
async fn expiring_tokens_are_replaced_while_a_long_step_runs() {
    let env = env().await;
    // The STS fake now honours presigned URLs for 1 s only.
    env.fake.set_presigned_max_age(Some(Duration::from_secs(1)));
    let connector = build(config(&env, "secret-key"));
    let client = connector
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap()
        .into_client()
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "long-step"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "sleep 3; echo done"]}]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // Poll the step for longer than several token lifetimes; no request may fail.
    let mut phase = String::new();
    for _ in 0..200 {
        let p = pods
            .get("long-step")
            .await
            .expect("no request fails while tokens expire");
        phase = p.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(phase, "Succeeded");
    let checks: Vec<_> = env
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.params.get("presigned").map(String::as_str) == Some("eks-token"))
        .collect();
    let expired = checks
        .iter()
        .filter(|c| c.error_code.as_deref() == Some("ExpiredToken"))
        .count();
    let accepted = checks.iter().filter(|c| c.error_code.is_none()).count();
    assert!(
        expired >= 1,
        "some token should have expired during the step: {checks:?}"
    );
    assert!(
        accepted >= 2,
        "a fresh token should have replaced the expired one: {checks:?}"
    );
}

#[tokio::test]
async fn temporary_credential_methods_use_sts_with_scoped_session_policies() {
    let env = env().await;
    let role = "arn:aws:iam::123456789012:role/eks-deployer";
    env.fake.add_role(role);
    env.fake.map_identity(
        role,
        UserInfo::new("role-deployer", vec!["system:masters".into()]),
    );
    let connector = build(config(&env, "iam-role").with_value("role_arn", role));
    let client = connector
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap()
        .into_client()
        .unwrap();
    Api::<ConfigMap>::namespaced(client, "default")
        .list(&Default::default())
        .await
        .unwrap();
    let assume = env
        .fake
        .calls()
        .into_iter()
        .find(|c| c.action == "AssumeRole")
        .unwrap();
    assert_eq!(assume.error_code, None);
    assert_eq!(assume.params["DurationSeconds"], "3600");
    assert_eq!(assume.params["RoleSessionName"], "stepstack-aws-eu");
    let policy: serde_json::Value = serde_json::from_str(&assume.params["Policy"]).unwrap();
    assert_eq!(
        policy["Statement"][0]["Resource"],
        "arn:aws:eks:eu-west-1:*:cluster/prod"
    );
    // An explicit inline policy replaces the generated one.
    let explicit = build(
        config(&env, "iam-role")
            .with_value("role_arn", role)
            .with_value("policy", r#"{"Version":"2012-10-17","Statement":[]}"#),
    );
    explicit
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
    let last = env
        .fake
        .calls()
        .into_iter()
        .rfind(|c| c.action == "AssumeRole")
        .unwrap();
    assert_eq!(
        last.params["Policy"],
        r#"{"Version":"2012-10-17","Statement":[]}"#
    );
    // A role the user may not assume: an authorization failure naming the code.
    let denied = build(
        config(&env, "iam-role").with_value("role_arn", "arn:aws:iam::123456789012:role/other"),
    );
    let report = denied.verify(Some(KUBERNETES_CLUSTER), None).await.unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        error.contains("authorization failure") && error.contains("AccessDenied"),
        "{error}"
    );

    let mut session = config(&env, "session-token");
    session.expiration_seconds = Some(900);
    let report = build(session).verify(None, None).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    let call = env
        .fake
        .calls()
        .into_iter()
        .find(|c| c.action == "GetSessionToken")
        .unwrap();
    assert_eq!(call.params["DurationSeconds"], "900");

    let report = build(config(&env, "federation-token"))
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    let call = env
        .fake
        .calls()
        .into_iter()
        .find(|c| c.action == "GetFederationToken")
        .unwrap();
    assert_eq!(call.params["DurationSeconds"], "43200");
    assert!(call.params["Policy"].contains("cluster/*"), "{call:?}");
}

#[tokio::test]
async fn expired_sts_tokens_and_closed_implicit_gate_are_refused() {
    let env = env().await;
    let mut expired = config(&env, "sts-token").with_secret("aws_session_token", "tok");
    expired.expires_at = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60));
    let connector = build(expired);
    let report = connector.verify(None, None).await.unwrap();
    assert!(
        report.error.as_deref().unwrap().contains("have expired"),
        "{report:?}"
    );
    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);

    let implicit = ConnectorConfig::new("local", "aws", "implicit")
        .with_value("region", REGION)
        .with_value("endpoint_url", env.fake.endpoint_url());
    let connector = build(implicit);
    let err = connector
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(
        err.message()
            .contains("STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS"),
        "{err}"
    );
    let report = connector.verify(None, None).await.unwrap();
    assert!(
        report
            .error
            .as_deref()
            .unwrap()
            .contains("STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS"),
        "{report:?}"
    );
    // aws-generic has no Kubernetes API.
    let err = build(config(&env, "secret-key"))
        .connect("aws-generic", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn implicit_uses_the_injected_local_configuration_when_the_gate_is_open() {
    use stepstack_connector_aws::AwsEnvironment;
    let env = env().await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        format!("[ci]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let open = |vars: Vec<(&str, &str)>| {
        AwsConnectorFlavor::new()
            .with_implicit_gate(ImplicitAuthGate::new(true))
            .with_environment(AwsEnvironment::from_vars(vars).with_home(home.path()))
    };
    let implicit = || {
        ConnectorConfig::new("local", "aws", "implicit")
            .with_value("region", REGION)
            .with_value("endpoint_url", env.fake.endpoint_url())
    };
    // A profile of the shared credentials file.
    let connector = open(vec![])
        .build(implicit().with_value("profile_name", "ci"))
        .unwrap();
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    // Environment keys.
    let connector = open(vec![
        ("AWS_ACCESS_KEY_ID", KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ])
    .build(implicit())
    .unwrap();
    let client = connector
        .connect(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap()
        .into_client()
        .unwrap();
    Api::<ConfigMap>::namespaced(client, "default")
        .list(&Default::default())
        .await
        .unwrap();
    // A role assumed with the ambient credentials.
    let role = "arn:aws:iam::123456789012:role/ci-role";
    env.fake.add_role(role);
    let connector = open(vec![("AWS_PROFILE", "ci")])
        .build(implicit().with_value("role_arn", role))
        .unwrap();
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    let assume = env
        .fake
        .calls()
        .into_iter()
        .find(|c| c.action == "AssumeRole")
        .unwrap();
    assert_eq!(assume.params["RoleArn"], role);
    // No credentials at all: an authorization failure that says where it looked.
    let connector = open(vec![]).build(implicit()).unwrap();
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), None)
        .await
        .unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        error.contains("could not load the local AWS credentials"),
        "{error}"
    );
}

#[tokio::test]
async fn login_writes_a_working_kubeconfig_context_and_keeps_the_others() {
    use stepstack_connector_aws::AwsEnvironment;
    let env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kube").join("config");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://10.9.9.9\nusers:\n- name: other\n  user:\n    token: keep-me\ncontexts:\n- name: other\n  context:\n    cluster: other\n    user: other\ncurrent-context: other\n",
    )
    .unwrap();
    let flavor = flavor().with_environment(AwsEnvironment::from_vars([(
        "KUBECONFIG",
        path.to_str().unwrap(),
    )]));
    let connector = flavor.build(config(&env, "secret-key")).unwrap();
    let message = connector
        .configure_local_client(KUBERNETES_CLUSTER, Some("prod"))
        .await
        .unwrap();
    let arn = "arn:aws:eks:eu-west-1:123456789012:cluster/prod";
    assert!(
        message.contains(arn) && message.contains("expires at"),
        "{message}"
    );
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    assert_eq!(kubeconfig.current_context.as_deref(), Some(arn));
    assert!(kubeconfig.contexts.iter().any(|c| c.name == "other"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("keep-me") && text.contains("k8s-aws-v1."));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The written context works as it is (a static token, valid 15 minutes).
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    Api::<ConfigMap>::namespaced(client, "default")
        .list(&Default::default())
        .await
        .unwrap();
    // aws-generic has no kubeconfig.
    let err = connector
        .configure_local_client("aws-generic", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn an_unreadable_cluster_ca_still_gives_tokens_and_is_named_where_it_is_needed() {
    use stepstack_connector_aws::AwsEnvironment;
    use stepstack_core::secrecy::ExposeSecret;
    use stepstack_testkit::cloud::aws::FakeEksCluster;
    let env = env().await;
    // Base64 of text that is not PEM: DescribeCluster's `certificateAuthority.data`.
    env.fake.add_cluster(FakeEksCluster::new(
        "broken",
        env.cluster.url(),
        "not a certificate",
    ));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    let connector = flavor()
        .with_environment(AwsEnvironment::from_vars([(
            "KUBECONFIG",
            kubeconfig.to_str().unwrap(),
        )]))
        .build(config(&env, "secret-key"))
        .unwrap();
    let connection = connector
        .connect(KUBERNETES_CLUSTER, Some("broken"))
        .await
        .expect("a connection: its token needs no CA");
    let token = connection
        .token_source
        .as_ref()
        .expect("a token source")
        .token()
        .await
        .expect("a token");
    assert!(token.value.expose_secret().starts_with("k8s-aws-v1."));
    let refusal = connection.client_refusal().expect("no client").to_owned();
    assert!(
        refusal.contains("certificate authority of EKS cluster `broken` in region eu-west-1 is unreadable (no certificate)"),
        "{refusal}"
    );
    // A client needs the CA: building one says what is wrong with it.
    let Err(err) = connection.into_client() else {
        panic!("a client was built without a readable CA");
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.to_string().contains("is unreadable (no certificate)"),
        "{err}"
    );
    assert!(!err.to_string().contains("not a certificate"), "{err}");
    // So does login, whose kubeconfig needs it, and it writes nothing.
    let err = connector
        .configure_local_client(KUBERNETES_CLUSTER, Some("broken"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.to_string().contains("is unreadable (no certificate)"),
        "{err}"
    );
    assert!(!kubeconfig.exists());
}
