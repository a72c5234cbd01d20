//! The `stepstack` binary with a cloud connector that reaches several clusters: the
//! testkit's GKE fake lists two clusters backed by the emulated cluster, which accepts
//! only tokens the fake issued.

use stepstack_e2e::{Output, Stepstack};
use stepstack_testkit::cloud::gcp::{FakeGcp, FakeGcpOptions, FakeGkeCluster};
use stepstack_testkit::{Cluster, ClusterOptions, Rule};

const SERVICE_ACCOUNT: &str = "deployer@stepstack-test.iam.gserviceaccount.com";

/// The emulated cluster and the GCP fake, served by a runtime of their own while the
/// test drives the binary from this thread.
struct Gcp {
    fake: FakeGcp,
    _cluster: Cluster,
    _runtime: tokio::runtime::Runtime,
}

fn gcp_with_two_clusters() -> Gcp {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (cluster, fake) = runtime.block_on(async {
        let cluster = Cluster::start(ClusterOptions::default())
            .await
            .expect("the emulated cluster starts");
        let fake = FakeGcp::start(FakeGcpOptions::default())
            .await
            .expect("the GCP fake starts");
        (cluster, fake)
    });
    cluster.set_token_validator(Some(fake.token_validator()));
    cluster.set_user_rules(SERVICE_ACCOUNT, vec![Rule::new(&["*"], &["*"], &["*"])]);
    fake.add_cluster(FakeGkeCluster::for_cluster("prod", "us-central1", &cluster));
    fake.add_cluster(FakeGkeCluster::for_cluster(
        "staging",
        "europe-west1",
        &cluster,
    ));
    Gcp {
        fake,
        _cluster: cluster,
        _runtime: runtime,
    }
}

fn ok(out: Output) -> Output {
    assert_eq!(out.code, 0, "expected success: {out:?}");
    out
}

/// Registers a `gcp` connector named `gke` with a new service-account key.
fn register_gke(cli: &Stepstack, gcp: &Gcp) {
    let key = cli.home().join("key.json");
    std::fs::write(&key, gcp.fake.add_service_account(SERVICE_ACCOUNT)).expect("key written");
    let out = ok(cli.run([
        "service-connector".to_owned(),
        "register".to_owned(),
        "gke".to_owned(),
        "--type".to_owned(),
        "gcp".to_owned(),
        "--auth-method".to_owned(),
        "service-account".to_owned(),
        format!("--service_account_json=@{}", key.display()),
        format!("--token_endpoint={}", gcp.fake.token_url()),
        format!("--iam_credentials_endpoint={}", gcp.fake.endpoint_url()),
        format!("--container_endpoint={}", gcp.fake.endpoint_url()),
    ]));
    assert!(
        !out.stdout.contains("BEGIN PRIVATE KEY"),
        "the key is never printed: {}",
        out.stdout
    );
}

#[test]
fn connecting_to_a_connector_with_several_clusters_asks_for_one_then_runs_a_step() {
    let gcp = gcp_with_two_clusters();
    let cli = Stepstack::new();
    register_gke(&cli, &gcp);
    ok(cli.run([
        "step-operator",
        "register",
        "k8s",
        "--flavor",
        "kubernetes",
        "--kubernetes_namespace=default",
    ]));

    let out = cli.run(["step-operator", "connect", "k8s", "--connector", "gke"]);
    assert_eq!(out.code, 2, "several clusters is a usage error: {out:?}");
    assert!(
        out.stderr.contains(
            "Multiple kubernetes-cluster resources are available for the selected connector"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--resource-id"),
        "says how to choose: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("prod, staging"),
        "lists both clusters: {}",
        out.stderr
    );

    let out = cli.run([
        "step-operator",
        "connect",
        "k8s",
        "--connector",
        "gke",
        "--resource-id",
        "us-central1/missing",
    ]);
    assert_ne!(out.code, 0, "a missing cluster is refused: {out:?}");
    assert!(out.stderr.contains("missing"), "{}", out.stderr);

    ok(cli.run([
        "step-operator",
        "connect",
        "k8s",
        "--connector",
        "gke",
        "--resource-id",
        "us-central1/prod",
    ]));
    ok(cli.run(["stack", "update", "-s", "k8s"]));
    let out = ok(cli.run(["step", "run", "hello", "--", "sh", "-c", "echo through-gke"]));
    assert!(out.stdout.contains("through-gke\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Step `hello` succeeded."),
        "{}",
        out.stdout
    );
}

/// Runs the kubeconfig user's exec plugin the way kubectl does and returns its token.
fn exec_token(exec: &serde_json::Value) -> String {
    let mut command = std::process::Command::new(exec["command"].as_str().expect("a command"));
    for arg in exec["args"].as_array().expect("args") {
        command.arg(arg.as_str().expect("string args"));
    }
    for var in exec["env"].as_array().into_iter().flatten() {
        command.env(
            var["name"].as_str().expect("env name"),
            var["value"].as_str().expect("env value"),
        );
    }
    let output = command.output().expect("the exec plugin runs");
    assert!(output.status.success(), "{output:?}");
    let credential: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("an ExecCredential");
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(credential["kind"], "ExecCredential");
    assert!(
        credential["status"]["expirationTimestamp"].is_string(),
        "{credential}"
    );
    credential["status"]["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

#[test]
fn login_writes_a_kubectl_user_that_fetches_fresh_tokens() {
    let gcp = gcp_with_two_clusters();
    let cli = Stepstack::new();
    register_gke(&cli, &gcp);
    let kubeconfig = cli.home().join("kubeconfig");
    let output = cli
        .command(["service-connector", "login", "gke", "--resource-id", "prod"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("stepstack runs");
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("fresh token"),
        "{output:?}"
    );

    let written = std::fs::read_to_string(&kubeconfig).expect("login wrote the kubeconfig");
    let written: serde_json::Value =
        serde_norway::from_str(&written).expect("the kubeconfig is YAML");
    let current = written["current-context"]
        .as_str()
        .expect("a current context");
    let context = written["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == current)
        .expect("the current context exists");
    let user = written["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == context["context"]["user"])
        .expect("the context's user exists");
    assert!(
        user["user"].get("token").is_none(),
        "no static token: {user}"
    );
    let exec = &user["user"]["exec"];

    let first = exec_token(exec);
    assert_eq!(
        gcp.fake.token_principal(&first).as_deref(),
        Some(SERVICE_ACCOUNT)
    );
    gcp.fake.expire_tokens();
    assert_eq!(gcp.fake.token_principal(&first), None);
    let second = exec_token(exec);
    assert_ne!(first, second);
    assert_eq!(
        gcp.fake.token_principal(&second).as_deref(),
        Some(SERVICE_ACCOUNT)
    );

    // The real kubectl, when the machine has it (.ci/run installs it).
    if let Ok(out) = std::process::Command::new("kubectl")
        .args(["get", "namespaces", "-o", "name"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
    {
        assert!(out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("namespace/default"),
            "{out:?}"
        );
    }
}

#[test]
fn login_with_static_token_writes_the_token_itself() {
    let gcp = gcp_with_two_clusters();
    let cli = Stepstack::new();
    register_gke(&cli, &gcp);
    let kubeconfig = cli.home().join("kubeconfig");
    let output = cli
        .command([
            "service-connector",
            "login",
            "gke",
            "--resource-id",
            "prod",
            "--static-token",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("stepstack runs");
    assert!(output.status.success(), "{output:?}");
    let written = std::fs::read_to_string(&kubeconfig).expect("login wrote the kubeconfig");
    assert!(written.contains("token:"), "{written}");
    assert!(!written.contains("exec:"), "{written}");
}
