//! Service-connector commands through the real binary: what they print when an endpoint
//! refuses connections, that secrets (a kubeconfig's token, an AWS access key id) never
//! reach errors or `-vv` logs, and EKS tokens for a cluster whose CA is unreadable.

mod common;

use common::{Cli, Output};
use stepstack_testkit::cloud::aws::{FakeAws, FakeAwsOptions, FakeEksCluster};

/// A local port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn assert_no_kube_noise(out: &Output) {
    for noise in ["ERROR", "failed with error", "unexpected"] {
        assert!(
            !out.stderr.contains(noise) && !out.stdout.contains(noise),
            "`{noise}` in the output: {out:?}"
        );
    }
}

#[test]
fn list_resources_says_which_connector_could_not_reach_what_without_log_noise() {
    let cli = Cli::new();
    let port = closed_port();
    let server = format!("https://127.0.0.1:{port}");
    cli.ok([
        "service-connector",
        "register",
        "gone",
        "--type",
        "kubernetes",
        "--auth-method",
        "token",
        &format!("--server={server}"),
        "--token=abc",
        "--no-verify",
    ]);
    let out = cli.ok(["service-connector", "list-resources", "-o", "json"]);
    assert_no_kube_noise(&out);
    assert_eq!(out.stderr, "", "nothing on stderr without -v");
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let error = rows[0]["error"].as_str().expect("an error for `gone`");
    let expected = format!(
        "connector `gone`: could not reach the API server of cluster `127.0.0.1` at {server}: "
    );
    assert!(error.starts_with(&expected), "{error}");
    // The table says it too (cut to its width).
    let out = cli.ok(["service-connector", "list-resources"]);
    assert_no_kube_noise(&out);
    assert!(
        out.stdout
            .contains("error: connector `gone`: could not reach"),
        "{}",
        out.stdout
    );
    // Leaving errors out leaves nothing, and no log lines either.
    let out = cli.ok(["service-connector", "list-resources", "-e"]);
    assert_no_kube_noise(&out);
    assert_eq!(out.stderr, "");
    assert!(
        out.stdout
            .contains("No service connector resources match the given filters."),
        "{}",
        out.stdout
    );
    // verify fails with exit 3 and the same words.
    let out = cli.run(["service-connector", "verify", "gone"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert_no_kube_noise(&out);
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
}

/// The token the malformed kubeconfigs carry.
const KUBE_TOKEN: &str = "kc-SeCrEt-t0ken-7d1e0c";

fn malformed_kubeconfigs() -> Vec<String> {
    let t = KUBE_TOKEN;
    let head = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n";
    vec![
        format!("{head}users:\n- name: u\n  user:\n    token: \"{t}\n"),
        format!("{head}users:\n- name: u\n  user:\n    token: {t}\n   bad: x\n"),
        format!("{head}users:\n- name: u\n  user:\n\ttoken: {t}\n"),
        format!("{head}users: \"token: {t}\"\n"),
        format!("{head}users:\n- name: u\n  user:\n    token: [{t}]\n"),
        t.to_owned(),
        format!("{{\"users\": [{{\"name\": \"u\", \"user\": {{\"token\": \"{t}\"}}}}]"),
        format!("{head}users:\n- name: u\n  user:\n    token: {t}: more\n"),
        format!("{head}users:\n- name: u\n  user:\n    token: *{t}\n"),
        format!("{head}users:\n- name: u\n  user:\n    token: {t}\n    token: {t}\n"),
        format!("{head}users:\n- name: u\n  user: {{{t}: x\n"),
    ]
}

#[test]
fn a_malformed_kubeconfig_is_reported_by_line_and_its_token_never_shown() {
    let cli = Cli::new();
    for (i, text) in malformed_kubeconfigs().into_iter().enumerate() {
        let file = cli.base().join(format!("kubeconfig-{i}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let out = cli.run([
            "-vv".to_owned(),
            "service-connector".to_owned(),
            "register".to_owned(),
            format!("kc{i}"),
            "--type".to_owned(),
            "kubernetes".to_owned(),
            "--auth-method".to_owned(),
            "kubeconfig".to_owned(),
            format!("--kubeconfig=@{}", file.display()),
            "--no-verify".to_owned(),
        ]);
        assert_eq!(out.code, 2, "shape {i}: {out:?}");
        let all = format!("{}{}", out.stdout, out.stderr);
        for start in 0..=KUBE_TOKEN.len() - 8 {
            assert!(
                !all.contains(&KUBE_TOKEN[start..start + 8]),
                "shape {i} shows the token: {all}"
            );
        }
        assert!(
            out.stderr.contains(
                "`kubeconfig` is not a valid kubeconfig: it is not valid kubeconfig YAML"
            ),
            "shape {i}: {}",
            out.stderr
        );
    }
}

const REGION: &str = "eu-west-1";
const KEY: &str = "AKIAFAKEDEPLOYER0042";
const SECRET: &str = "fake/Secret+Key/for-the-cli-test";

async fn fake_aws() -> FakeAws {
    let fake = FakeAws::start(FakeAwsOptions {
        region: REGION.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    fake.add_user_key("deployer", KEY, SECRET);
    // DescribeCluster answers with base64 of text that is no certificate.
    fake.add_cluster(FakeEksCluster::new(
        "broken",
        "https://127.0.0.1:1",
        "not a certificate",
    ));
    fake
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_debug_logs_never_show_the_access_key_id() {
    let fake = fake_aws().await;
    let kubeconfig = tempfile::tempdir().unwrap();
    let cli = Cli::new().env(
        "KUBECONFIG",
        kubeconfig.path().join("config").to_str().unwrap(),
    );
    let endpoint = format!("--endpoint_url={}", fake.endpoint_url());
    let runs: Vec<Vec<String>> = [
        vec![
            "-vv",
            "service-connector",
            "register",
            "aws-eu",
            "--type",
            "aws",
            "--auth-method",
            "secret-key",
            "--region=eu-west-1",
            &endpoint,
            &format!("--aws_access_key_id={KEY}"),
            &format!("--aws_secret_access_key={SECRET}"),
        ],
        vec!["-vv", "service-connector", "list-resources"],
        vec!["-vv", "service-connector", "verify", "aws-eu"],
        vec![
            "-vv",
            "service-connector",
            "token",
            "aws-eu",
            "--resource-id",
            "broken",
        ],
        vec![
            "-vv",
            "service-connector",
            "describe",
            "aws-eu",
            "--resource-type",
            "kubernetes-cluster",
            "--resource-id",
            "broken",
        ],
    ]
    .into_iter()
    .map(|args| args.into_iter().map(str::to_owned).collect())
    .collect();
    let mut logged = 0;
    for args in runs {
        let out = blocking(|| cli.run(&args));
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(out.stderr.contains("DEBUG"), "-vv logs: {}", out.stderr);
        logged += out.stderr.lines().count();
        for secret in [KEY, SECRET] {
            assert!(
                !out.stderr.contains(secret) && !out.stdout.contains(secret),
                "{args:?} shows `{secret}`: {out:?}"
            );
        }
    }
    assert!(logged > 20, "{logged} log lines");
    // The SDK did sign with the key: the fake saw it.
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.access_key_id.as_deref() == Some(KEY))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eks_cluster_with_an_unreadable_ca_gets_tokens_and_login_says_what_is_wrong() {
    let fake = fake_aws().await;
    let kubeconfig = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig.path().join("config");
    let cli = Cli::new().env("KUBECONFIG", kubeconfig.to_str().unwrap());
    let endpoint = format!("--endpoint_url={}", fake.endpoint_url());
    let key = format!("--aws_access_key_id={KEY}");
    let secret = format!("--aws_secret_access_key={SECRET}");
    blocking(|| {
        cli.ok([
            "service-connector",
            "register",
            "aws-eu",
            "--type",
            "aws",
            "--auth-method",
            "secret-key",
            "--region=eu-west-1",
            &endpoint,
            &key,
            &secret,
        ])
    });
    let out = blocking(|| {
        cli.ok([
            "service-connector",
            "token",
            "aws-eu",
            "--resource-id",
            "broken",
        ])
    });
    let credential: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(credential["kind"], "ExecCredential");
    assert!(
        credential["status"]["token"]
            .as_str()
            .unwrap()
            .starts_with("k8s-aws-v1."),
        "{credential}"
    );
    // describe shows the connection is no use for a client, and why.
    let out = blocking(|| {
        cli.ok([
            "service-connector",
            "describe",
            "aws-eu",
            "--resource-type",
            "kubernetes-cluster",
            "--resource-id",
            "broken",
            "-o",
            "json",
        ])
    });
    let described: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        described["client_refusal"]
            .as_str()
            .is_some_and(|r| r.contains("is unreadable (no certificate)")),
        "{described}"
    );
    // login needs the CA for the kubeconfig: exit 3, the CA named, nothing written.
    let out = blocking(|| {
        cli.run([
            "service-connector",
            "login",
            "aws-eu",
            "--resource-id",
            "broken",
        ])
    });
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains(
            "the certificate authority of EKS cluster `broken` in region eu-west-1 is unreadable (no certificate)"
        ),
        "{}",
        out.stderr
    );
    assert!(!kubeconfig.exists());
}
