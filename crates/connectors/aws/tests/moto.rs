//! The `aws` connector against `moto` (PyPI `moto[server]`), an AWS emulator nobody here
//! wrote: each test starts `python3 -m moto.server` on a free port, creates an IAM user
//! with an access key and a role (boto3), creates EKS clusters with the AWS SDK's
//! `CreateCluster`, and runs the connector's verify/list-resources against it. For the
//! bad-key checks it then turns on moto's IAM authentication (`/moto-api/reset-auth`),
//! after which unknown keys and bad signatures are refused as on AWS.
//!
//! Install: `python3 -m pip install 'moto[server]'`. Without moto the tests are skipped
//! with a loud message, unless `STEPSTACK_REQUIRE_MOTO=1` is set (CI), which makes a
//! missing moto a failure. `STEPSTACK_MOTO_PYTHON` picks the interpreter (default
//! `python3`).

use std::process::Stdio;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use stepstack_connector_aws::AwsConnectorFlavor;
use stepstack_core::connector::{ImplicitAuthGate, KUBERNETES_CLUSTER};
use stepstack_core::{ConnectorConfig, ConnectorFlavor, ErrorKind};
use tokio::process::{Child, Command};

const REGION: &str = "us-east-1";

/// Creates the IAM user, its key and a role (IAM authentication still off).
const SETUP: &str = r#"
import json, sys, urllib.request
import boto3
endpoint, region = sys.argv[1], sys.argv[2]
iam = boto3.client("iam", endpoint_url=endpoint, region_name=region,
                   aws_access_key_id="setup", aws_secret_access_key="setup")
allow_all = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
iam.create_user(UserName="stepstack")
iam.put_user_policy(UserName="stepstack", PolicyName="all", PolicyDocument=json.dumps(allow_all))
key = iam.create_access_key(UserName="stepstack")["AccessKey"]
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]}
role = iam.create_role(RoleName="eks-deployer", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
iam.put_role_policy(RoleName="eks-deployer", PolicyName="all", PolicyDocument=json.dumps(allow_all))
print(json.dumps({"key": key["AccessKeyId"], "secret": key["SecretAccessKey"], "role": role["Arn"]}))
"#;

/// Switches moto's IAM authentication on: from now on unknown keys and bad signatures
/// are refused.
const ENABLE_AUTH: &str = r#"
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/moto-api/reset-auth", data=b"0",
                       headers={"Content-Type": "text/plain"}, method="POST")).read()
"#;

async fn enable_auth(moto: &Moto) {
    let out = Command::new(python())
        .args(["-c", ENABLE_AUTH, &moto.endpoint])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "enabling moto's IAM authentication failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn python() -> String {
    std::env::var("STEPSTACK_MOTO_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether moto (and boto3) can be imported; if not, says so loudly, or fails when
/// `STEPSTACK_REQUIRE_MOTO=1`. The message goes straight to the process's stderr, past
/// the test harness's output capture, so it shows in a normal `cargo test` run.
async fn moto_available() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import moto.server, boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let required = std::env::var("STEPSTACK_REQUIRE_MOTO").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "STEPSTACK_REQUIRE_MOTO=1 but moto is not installed; run: {} -m pip install 'moto[server]'",
            python()
        );
        let message = format!(
            "\n*** SKIPPED: moto is not installed for `{}`; the moto tests of stepstack-connector-aws did not run. Install it with: {} -m pip install 'moto[server]' ***\n",
            python(),
            python()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
    }
    ok
}

struct Moto {
    endpoint: String,
    _child: Child,
    key: String,
    secret: String,
    role: String,
}

async fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python())
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start moto");
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..150 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "moto did not listen on {endpoint} within 15 s");
    let out = Command::new(python())
        .args(["-c", SETUP, &endpoint, REGION])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "moto setup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Moto {
        endpoint,
        _child: child,
        key: v["key"].as_str().unwrap().to_owned(),
        secret: v["secret"].as_str().unwrap().to_owned(),
        role: v["role"].as_str().unwrap().to_owned(),
    }
}

/// Creates EKS clusters in moto with the AWS SDK, signed with the user's key.
async fn create_clusters(moto: &Moto, names: &[&str]) {
    let config = aws_types::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(REGION))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            &moto.key,
            &moto.secret,
            None,
            None,
            "moto",
        )))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    let eks = aws_sdk_eks::Client::new(&config);
    for name in names {
        eks.create_cluster()
            .name(*name)
            .role_arn(&moto.role)
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .subnet_ids("subnet-12345678")
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateCluster {name} in moto: {e:?}"));
    }
}

fn connector_config(moto: &Moto, method: &str) -> ConnectorConfig {
    ConnectorConfig::new("moto-aws", "aws", method)
        .with_value("region", REGION)
        .with_value("endpoint_url", moto.endpoint.as_str())
        .with_secret("aws_access_key_id", moto.key.as_str())
        .with_secret("aws_secret_access_key", moto.secret.as_str())
}

fn flavor() -> AwsConnectorFlavor {
    AwsConnectorFlavor::new().with_implicit_gate(ImplicitAuthGate::new(false))
}

#[tokio::test]
async fn moto_clusters_are_listed_and_missing_ones_and_bad_keys_are_explained() {
    if !moto_available().await {
        return;
    }
    let moto = start_moto().await;
    create_clusters(&moto, &["ml-prod", "ml-dev", "analytics"]).await;
    let connector = flavor()
        .build(connector_config(&moto, "secret-key"))
        .unwrap();

    // list-resources: every cluster moto has, plus the generic resource.
    let report = connector.verify(None, None).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        report.entry(KUBERNETES_CLUSTER).unwrap().resource_ids,
        Some(vec!["analytics".into(), "ml-dev".into(), "ml-prod".into()])
    );
    assert_eq!(
        report.entry("aws-generic").unwrap().resource_ids,
        Some(vec![REGION.into()])
    );
    // One cluster, by name and by ARN.
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), Some("ml-dev"))
        .await
        .unwrap();
    assert_eq!(
        report.entry(KUBERNETES_CLUSTER).unwrap().resource_ids,
        Some(vec!["ml-dev".into()])
    );
    let arn = format!("arn:aws:eks:{REGION}:123456789012:cluster/ml-prod");
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), Some(&arn))
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");

    // A missing cluster: a clear error naming the cluster, region, connector and code.
    let report = connector
        .verify(Some(KUBERNETES_CLUSTER), Some("no-such-cluster"))
        .await
        .unwrap();
    let error = report
        .entry(KUBERNETES_CLUSTER)
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(error.contains("connector `moto-aws`"), "{error}");
    assert!(
        error.contains("EKS cluster `no-such-cluster` does not exist in region us-east-1"),
        "{error}"
    );
    assert!(error.contains("ResourceNotFoundException"), "{error}");

    // Connecting reads the endpoint and CA from DescribeCluster; moto's CA is a random
    // string rather than base64 PEM. The connection still issues tokens (they need no
    // CA), but a client built from it reports the CA instead of trusting anything.
    let connection = connector
        .connect(KUBERNETES_CLUSTER, Some("ml-prod"))
        .await
        .unwrap();
    let token = connection
        .token_source
        .as_ref()
        .unwrap()
        .token()
        .await
        .unwrap();
    assert!(
        stepstack_core::secrecy::ExposeSecret::expose_secret(&token.value)
            .starts_with("k8s-aws-v1.")
    );
    let Err(err) = connection.into_client() else {
        panic!("a client without a readable CA");
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.message().contains(
            "the certificate authority of EKS cluster `ml-prod` in region us-east-1 is unreadable"
        ),
        "{err}"
    );
    assert_eq!(err.context_value("cluster"), Some("ml-prod"));

    // Bad keys: moto with IAM authentication on refuses them like AWS. (moto 5.2's
    // signature check rejects every signed GET of the EKS REST API, even boto3's, so the
    // EKS calls above ran with authentication off; STS, where the connector checks the
    // identity first, is verified for real.)
    enable_auth(&moto).await;
    let report = connector.verify(Some("aws-generic"), None).await.unwrap();
    assert!(
        report.is_ok(),
        "the right key passes moto's signature check: {report:?}"
    );
    let unknown = flavor()
        .build(
            connector_config(&moto, "secret-key")
                .with_secret("aws_access_key_id", "AKIAUNKNOWNKEY000000"),
        )
        .unwrap();
    let report = unknown
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
        error.starts_with("connector `moto-aws` authorization failure"),
        "{error}"
    );
    assert!(error.contains("InvalidClientTokenId"), "{error}");
    let wrong_secret = flavor()
        .build(
            connector_config(&moto, "secret-key")
                .with_secret("aws_secret_access_key", "not-the-secret"),
        )
        .unwrap();
    let report = wrong_secret.verify(None, None).await.unwrap();
    let error = report.error.clone().unwrap();
    assert!(error.contains("authorization failure"), "{error}");
    assert!(error.contains("SignatureDoesNotMatch"), "{error}");
    assert!(!error.contains("not-the-secret"), "{error}");
    let err = unknown
        .connect(KUBERNETES_CLUSTER, Some("ml-prod"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert_eq!(err.context_value("connector"), Some("moto-aws"));
}

#[tokio::test]
async fn moto_temporary_credentials_reach_the_clusters() {
    if !moto_available().await {
        return;
    }
    let moto = start_moto().await;
    create_clusters(&moto, &["ml-prod"]).await;
    for (method, extra) in [
        ("iam-role", Some(("role_arn", moto.role.clone()))),
        ("session-token", None),
        ("federation-token", None),
    ] {
        let mut config = connector_config(&moto, method);
        if let Some((k, v)) = extra {
            config = config.with_value(k, v);
        }
        let connector = flavor().build(config).unwrap();
        let report = connector
            .verify(Some(KUBERNETES_CLUSTER), None)
            .await
            .unwrap();
        assert_eq!(
            report.entry(KUBERNETES_CLUSTER).unwrap().resource_ids,
            Some(vec!["ml-prod".into()]),
            "{method}: {report:?}"
        );
    }
}
