//! Unit tests of the fake AWS endpoint: SigV4 verification against an independent test
//! vector (an EKS token computed by a Python reference and cross-checked with botocore),
//! and the HTTP surface with a minimal signer.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::sigv4::{
    amz_date, canonical_query, hex, hmac, parse_query, sha256_hex, signing_key, uri_encode,
};
use super::*;

/// `k8s-aws-v1.` token for AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region
/// eu-west-1, cluster `zenhacks-cluster`, signed at 2024-01-02T03:04:05Z (computed by
/// `crates/connectors/aws/tests/data/eks_token.py`, whose signature botocore reproduces).
const REFERENCE_TOKEN: &str = "k8s-aws-v1.aHR0cHM6Ly9zdHMuZXUtd2VzdC0xLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1BbXotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMjQwMTAyJTJGZXUtd2VzdC0xJTJGc3RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyNDAxMDJUMDMwNDA1WiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TaWduYXR1cmU9ZTFlYTM5OGQ4Mzk1YzRhZTRlYWIzNjEyYjdkNDhhOGQ4Mzg5NjcwOTEwOGM0N2I2OTIxMjNmMjg3MWUzNTA2OQ";

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn signed_at() -> SystemTime {
    SystemTime::from("2024-01-02T03:04:05Z".parse::<jiff::Timestamp>().unwrap())
}

/// Sets the fake's clock to `signed_at() + after`.
fn clock_at(fake: &FakeAws, after: i64) {
    let real = SystemTime::now();
    let target = signed_at() + Duration::from_secs(after.unsigned_abs());
    let offset = -(real.duration_since(target).unwrap().as_secs() as i64);
    fake.set_clock_offset(offset);
}

async fn start_fake(region: &str) -> FakeAws {
    let fake = FakeAws::start(FakeAwsOptions {
        region: region.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    fake.add_user_key("deployer", "AKIDEXAMPLE", SECRET);
    fake
}

#[tokio::test]
async fn reference_eks_token_is_accepted_within_its_validity() {
    let fake = start_fake("eu-west-1").await;
    clock_at(&fake, 30);
    let identity = fake
        .validate_eks_token(REFERENCE_TOKEN, "zenhacks-cluster")
        .unwrap();
    assert_eq!(identity.arn, "arn:aws:iam::123456789012:user/deployer");
    assert_eq!(identity.access_key_id, "AKIDEXAMPLE");
    assert_eq!(fake.count("GetCallerIdentity"), 1);
}

#[tokio::test]
async fn eks_token_for_another_cluster_or_key_or_time_is_refused() {
    let fake = start_fake("eu-west-1").await;
    clock_at(&fake, 30);
    // x-k8s-aws-id is signed: another cluster name breaks the signature.
    let err = fake
        .validate_eks_token(REFERENCE_TOKEN, "other-cluster")
        .unwrap_err();
    assert_eq!(err.code, "SignatureDoesNotMatch");
    // X-Amz-Expires=60 is enforced by default...
    clock_at(&fake, 61);
    let err = fake
        .validate_eks_token(REFERENCE_TOKEN, "zenhacks-cluster")
        .unwrap_err();
    assert_eq!(err.code, "ExpiredToken");
    // ...or the 15 minutes real STS allows, when configured so.
    fake.set_presigned_max_age(Some(EKS_TOKEN_MAX_AGE));
    assert!(
        fake.validate_eks_token(REFERENCE_TOKEN, "zenhacks-cluster")
            .is_ok()
    );
    clock_at(&fake, 15 * 60 + 1);
    let err = fake
        .validate_eks_token(REFERENCE_TOKEN, "zenhacks-cluster")
        .unwrap_err();
    assert_eq!(err.code, "InvalidToken");
    assert!(err.message.contains("15 minute"), "{err}");
    // An unknown key is the real STS error.
    let other = start_fake("eu-west-1").await;
    other.keys_clear();
    clock_at(&other, 30);
    let err = other
        .validate_eks_token(REFERENCE_TOKEN, "zenhacks-cluster")
        .unwrap_err();
    assert_eq!(err.code, "InvalidClientTokenId");
    // A fake serving another region refuses a signature scoped to eu-west-1.
    let us = start_fake("us-east-1").await;
    clock_at(&us, 30);
    let err = us
        .validate_eks_token(REFERENCE_TOKEN, "zenhacks-cluster")
        .unwrap_err();
    assert_eq!(err.code, "SignatureDoesNotMatch");
}

#[tokio::test]
async fn malformed_eks_tokens_are_refused_with_a_reason() {
    let fake = start_fake("eu-west-1").await;
    clock_at(&fake, 30);
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let cases = [
        ("Bearer x".to_owned(), "prefix"),
        ("k8s-aws-v1.!!!".to_owned(), "base64url"),
        (
            format!(
                "k8s-aws-v1.{}",
                b64("http://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity")
            ),
            "scheme",
        ),
        (
            format!(
                "k8s-aws-v1.{}",
                b64("https://evil.example.com/?Action=GetCallerIdentity")
            ),
            "hostname",
        ),
        (
            format!(
                "k8s-aws-v1.{}",
                b64("https://sts.eu-west-1.amazonaws.com/?Action=AssumeRole&Version=2011-06-15")
            ),
            "action",
        ),
        (
            format!(
                "k8s-aws-v1.{}",
                b64(
                    "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-SignedHeaders=host"
                )
            ),
            "x-k8s-aws-id",
        ),
    ];
    for (token, reason) in cases {
        let err = fake
            .validate_eks_token(&token, "zenhacks-cluster")
            .unwrap_err();
        assert_eq!(err.code, "InvalidToken", "{token}");
        assert!(err.message.contains(reason), "{reason}: {err}");
    }
}

#[tokio::test]
async fn the_validator_maps_identities_to_cluster_users() {
    let fake = start_fake("eu-west-1").await;
    clock_at(&fake, 30);
    let validator = fake.eks_token_validator("zenhacks-cluster");
    // Valid but unmapped: refused (like a missing aws-auth entry).
    assert!(validator(REFERENCE_TOKEN).is_none());
    fake.map_identity(
        "arn:aws:iam::123456789012:user/deployer",
        UserInfo::new("deployer", vec!["ml-team".into()]),
    );
    let user = validator(REFERENCE_TOKEN).unwrap();
    assert_eq!(user.name, "deployer");
    assert_eq!(
        user.groups,
        vec!["ml-team".to_owned(), "system:authenticated".to_owned()]
    );
    assert!(validator("not-an-eks-token").is_none());
    assert_eq!(
        role_of_assumed_role("arn:aws:sts::123456789012:assumed-role/dev/sess").as_deref(),
        Some("arn:aws:iam::123456789012:role/dev")
    );
}

// --- HTTP surface, with a minimal SigV4 signer ------------------------------------------

struct Signer<'a> {
    key: &'a str,
    secret: &'a str,
    token: Option<&'a str>,
    region: &'a str,
}

impl Signer<'_> {
    /// Signs in the Authorization header; returns the header lines.
    #[allow(clippy::too_many_arguments)]
    fn headers(
        &self,
        service: &str,
        method: &str,
        host: &str,
        path: &str,
        query: &str,
        body: &str,
        at: SystemTime,
    ) -> Vec<(String, String)> {
        let date = amz_date(at);
        let mut headers = vec![
            ("host".to_owned(), host.to_owned()),
            ("x-amz-date".to_owned(), date.clone()),
        ];
        if let Some(t) = self.token {
            headers.push(("x-amz-security-token".to_owned(), t.to_owned()));
        }
        headers.sort();
        let names: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let creq = format!(
            "{method}\n{path}\n{}\n{canonical_headers}\n{}\n{}",
            canonical_query(&parse_query(query), false),
            names.join(";"),
            sha256_hex(body.as_bytes())
        );
        let scope = format!("{}/{}/{service}/aws4_request", &date[..8], self.region);
        let sts = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            sha256_hex(creq.as_bytes())
        );
        let sig = hex(&hmac(
            &signing_key(self.secret, &date[..8], self.region, service),
            sts.as_bytes(),
        ));
        let mut out = headers;
        out.push((
            "authorization".to_owned(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
                self.key,
                names.join(";")
            ),
        ));
        out
    }
}

/// Sends one HTTP/1.1 request and returns (status, headers text, body).
async fn send(
    endpoint: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, String, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        request.push_str("content-type: application/x-www-form-urlencoded\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

async fn eks_get(
    fake: &FakeAws,
    signer: &Signer<'_>,
    path: &str,
    query: &str,
) -> (u16, String, String) {
    let host = fake.endpoint_url().trim_start_matches("http://").to_owned();
    let headers = signer.headers("eks", "GET", &host, path, query, "", fake.now());
    let target = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    send(fake.endpoint_url(), "GET", &target, &headers, "").await
}

async fn sts_post(fake: &FakeAws, signer: &Signer<'_>, body: &str) -> (u16, String, String) {
    let host = fake.endpoint_url().trim_start_matches("http://").to_owned();
    let headers = signer.headers("sts", "POST", &host, "/", "", body, fake.now());
    send(fake.endpoint_url(), "POST", "/", &headers, body).await
}

fn key<'a>() -> Signer<'a> {
    Signer {
        key: "AKIDEXAMPLE",
        secret: SECRET,
        token: None,
        region: "eu-west-1",
    }
}

#[tokio::test]
async fn eks_lists_clusters_in_pages_and_describes_them() {
    let fake = start_fake("eu-west-1").await;
    for i in 0..5 {
        fake.add_cluster(FakeEksCluster::new(
            format!("c{i}"),
            format!("https://10.0.0.{i}"),
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        ));
    }
    let (status, _, body) = eks_get(&fake, &key(), "/clusters", "maxResults=2").await;
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["clusters"], serde_json::json!(["c0", "c1"]));
    let mut names = Vec::new();
    let mut next = None::<String>;
    loop {
        let query = match &next {
            Some(t) => format!("maxResults=2&nextToken={}", uri_encode(t, false)),
            None => "maxResults=2".to_owned(),
        };
        let (_, _, body) = eks_get(&fake, &key(), "/clusters", &query).await;
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        names.extend(
            page["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned()),
        );
        match page["nextToken"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);

    let (status, _, body) = eks_get(&fake, &key(), "/clusters/c3", "").await;
    assert_eq!(status, 200);
    let c: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(c["cluster"]["endpoint"], "https://10.0.0.3");
    assert_eq!(c["cluster"]["status"], "ACTIVE");
    assert_eq!(
        c["cluster"]["arn"],
        "arn:aws:eks:eu-west-1:123456789012:cluster/c3"
    );
    assert!(
        c["cluster"]["certificateAuthority"]["data"]
            .as_str()
            .unwrap()
            .starts_with("LS0tLS1CRUdJTi")
    );

    let (status, head, body) = eks_get(&fake, &key(), "/clusters/missing", "").await;
    assert_eq!(status, 404);
    assert!(
        head.contains("x-amzn-errortype: resourcenotfoundexception"),
        "{head}"
    );
    assert!(
        body.contains("No cluster found for name: missing."),
        "{body}"
    );
    let (status, _, _) = eks_get(&fake, &key(), "/clusters", "maxResults=0").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn bad_keys_and_signatures_get_the_real_error_shapes() {
    let fake = start_fake("eu-west-1").await;
    let unknown = Signer {
        key: "AKIDUNKNOWN",
        ..key()
    };
    let (status, head, body) = eks_get(&fake, &unknown, "/clusters", "").await;
    assert_eq!(status, 403);
    assert!(
        head.contains("x-amzn-errortype: unrecognizedclientexception"),
        "{head}"
    );
    assert!(
        body.contains("The security token included in the request is invalid."),
        "{body}"
    );
    let wrong_secret = Signer {
        secret: "nope",
        ..key()
    };
    let (status, head, _) = eks_get(&fake, &wrong_secret, "/clusters", "").await;
    assert_eq!(status, 403);
    assert!(head.contains("invalidsignatureexception"), "{head}");
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let (status, _, xml) = sts_post(&fake, &unknown, body).await;
    assert_eq!(status, 403);
    assert!(xml.contains("<Code>InvalidClientTokenId</Code>"), "{xml}");
    let (status, _, xml) = sts_post(&fake, &wrong_secret, body).await;
    assert_eq!(status, 403);
    assert!(xml.contains("<Code>SignatureDoesNotMatch</Code>"), "{xml}");
    // A request signed 20 minutes ago is refused.
    let host = fake.endpoint_url().trim_start_matches("http://").to_owned();
    let old = key().headers(
        "sts",
        "POST",
        &host,
        "/",
        "",
        body,
        fake.now() - Duration::from_secs(1200),
    );
    let (status, _, xml) = send(fake.endpoint_url(), "POST", "/", &old, body).await;
    assert_eq!(status, 403);
    assert!(xml.contains("Signature expired"), "{xml}");
    let codes: Vec<Option<String>> = fake.calls().into_iter().map(|c| c.error_code).collect();
    assert!(codes.iter().all(Option::is_some), "{codes:?}");
}

#[tokio::test]
async fn sts_answers_identity_and_issues_temporary_keys() {
    let fake = start_fake("eu-west-1").await;
    let (status, _, xml) =
        sts_post(&fake, &key(), "Action=GetCallerIdentity&Version=2011-06-15").await;
    assert_eq!(status, 200, "{xml}");
    assert!(
        xml.contains("<Arn>arn:aws:iam::123456789012:user/deployer</Arn>"),
        "{xml}"
    );
    assert!(xml.contains("<Account>123456789012</Account>"), "{xml}");

    // AssumeRole needs an allowed role.
    let role = "arn:aws:iam::123456789012:role/eks-deployer";
    let body = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=s1&DurationSeconds=900",
        uri_encode(role, false)
    );
    let (status, _, xml) = sts_post(&fake, &key(), &body).await;
    assert_eq!(status, 403);
    assert!(xml.contains("<Code>AccessDenied</Code>"), "{xml}");
    fake.add_role(role);
    let (status, _, xml) = sts_post(&fake, &key(), &body).await;
    assert_eq!(status, 200, "{xml}");
    let field = |name: &str| {
        let start = xml.find(&format!("<{name}>")).unwrap() + name.len() + 2;
        let end = xml.find(&format!("</{name}>")).unwrap();
        xml[start..end].to_owned()
    };
    let (ak, sk, st) = (
        field("AccessKeyId"),
        field("SecretAccessKey"),
        field("SessionToken"),
    );
    assert!(ak.starts_with("ASIA"));
    assert_eq!(
        field("Arn"),
        "arn:aws:sts::123456789012:assumed-role/eks-deployer/s1"
    );
    // The temporary key works with its session token, and only with it.
    let temp = Signer {
        key: &ak,
        secret: &sk,
        token: Some(&st),
        region: "eu-west-1",
    };
    let (status, _, xml2) =
        sts_post(&fake, &temp, "Action=GetCallerIdentity&Version=2011-06-15").await;
    assert_eq!(status, 200, "{xml2}");
    assert!(xml2.contains("assumed-role/eks-deployer/s1"));
    let no_token = Signer {
        token: None,
        ..temp
    };
    let (status, _, _) = sts_post(
        &fake,
        &no_token,
        "Action=GetCallerIdentity&Version=2011-06-15",
    )
    .await;
    assert_eq!(status, 403);
    // It expires with the fake clock.
    fake.set_clock_offset(901);
    let temp = Signer {
        key: &ak,
        secret: &sk,
        token: Some(&st),
        region: "eu-west-1",
    };
    let (status, _, xml3) =
        sts_post(&fake, &temp, "Action=GetCallerIdentity&Version=2011-06-15").await;
    assert_eq!(status, 403);
    assert!(xml3.contains("<Code>ExpiredToken</Code>"), "{xml3}");
    fake.set_clock_offset(0);

    let (status, _, xml) = sts_post(
        &fake,
        &key(),
        "Action=GetSessionToken&Version=2011-06-15&DurationSeconds=100",
    )
    .await;
    assert_eq!(status, 400);
    assert!(xml.contains("ValidationError"), "{xml}");
    let (status, _, xml) = sts_post(
        &fake,
        &key(),
        "Action=GetFederationToken&Version=2011-06-15&Name=fed&Policy=%7B%7D",
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("federated-user/fed"), "{xml}");
    let recorded = fake
        .calls()
        .into_iter()
        .rfind(|c| c.action == "GetFederationToken")
        .unwrap();
    assert_eq!(
        recorded.params.get("Policy").map(String::as_str),
        Some("{}")
    );
}

#[tokio::test]
async fn presigned_get_caller_identity_over_http_honours_its_expiry() {
    let fake = start_fake("eu-west-1").await;
    let host = fake.endpoint_url().trim_start_matches("http://").to_owned();
    let at = fake.now();
    let date = amz_date(at);
    let scope = format!("{}/eu-west-1/sts/aws4_request", &date[..8]);
    let mut params = vec![
        ("Action".to_owned(), "GetCallerIdentity".to_owned()),
        ("Version".to_owned(), "2011-06-15".to_owned()),
        ("X-Amz-Algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
        (
            "X-Amz-Credential".to_owned(),
            format!("AKIDEXAMPLE/{scope}"),
        ),
        ("X-Amz-Date".to_owned(), date.clone()),
        ("X-Amz-Expires".to_owned(), "60".to_owned()),
        ("X-Amz-SignedHeaders".to_owned(), "host".to_owned()),
    ];
    let creq = format!(
        "GET\n/\n{}\nhost:{host}\n\nhost\n{}",
        canonical_query(&params, false),
        sha256_hex(b"")
    );
    let sts = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        sha256_hex(creq.as_bytes())
    );
    let sig = hex(&hmac(
        &signing_key(SECRET, &date[..8], "eu-west-1", "sts"),
        sts.as_bytes(),
    ));
    params.push(("X-Amz-Signature".to_owned(), sig));
    let query: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", uri_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&");
    let headers = vec![("host".to_owned(), host.clone())];
    let (status, _, xml) = send(
        fake.endpoint_url(),
        "GET",
        &format!("/?{query}"),
        &headers,
        "",
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("user/deployer"));
    fake.set_clock_offset(61);
    let (status, _, xml) = send(
        fake.endpoint_url(),
        "GET",
        &format!("/?{query}"),
        &headers,
        "",
    )
    .await;
    assert_eq!(status, 403);
    assert!(xml.contains("<Code>ExpiredToken</Code>"), "{xml}");
}
