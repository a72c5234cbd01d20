//! The EKS token for fixed credentials, region, cluster and time equals the value an
//! independent implementation computes (`tests/data/eks_token.py`: SigV4 from the
//! specification with the Python standard library, its signatures cross-checked against
//! botocore's presigner), and decodes to the URL `aws eks get-token` produces.

use std::time::SystemTime;

use base64::Engine as _;
use stepstack_connector_aws::{Credentials, EKS_TOKEN_PREFIX, eks_token, sts_host};

/// The cases of `eks_token.py`, in the same order.
struct Case {
    name: &'static str,
    access_key: &'static str,
    secret_key: &'static str,
    session_token: Option<&'static str>,
    region: &'static str,
    host: &'static str,
    cluster: &'static str,
    time: &'static str,
}

const CASES: [Case; 4] = [
    Case {
        name: "long-lived-eu-west-1",
        access_key: "AKIDEXAMPLE",
        secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
        region: "eu-west-1",
        host: "sts.eu-west-1.amazonaws.com",
        cluster: "zenhacks-cluster",
        time: "2024-01-02T03:04:05Z",
    },
    Case {
        name: "session-token-us-east-1",
        access_key: "ASIAEXAMPLE0000000001",
        secret_key: "c2VjcmV0/with+chars=",
        session_token: Some("FwoGZXIvYXdzEXAMPLE//token+with/slashes=="),
        region: "us-east-1",
        host: "sts.us-east-1.amazonaws.com",
        cluster: "prod_cluster-1",
        time: "2025-06-30T23:59:59Z",
    },
    Case {
        name: "china-cn-north-1",
        access_key: "AKIDEXAMPLE",
        secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
        region: "cn-north-1",
        host: "sts.cn-north-1.amazonaws.com.cn",
        cluster: "beijing",
        time: "2024-01-02T03:04:05Z",
    },
    Case {
        name: "govcloud-us-gov-west-1",
        access_key: "AKIDEXAMPLE",
        secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
        region: "us-gov-west-1",
        host: "sts.us-gov-west-1.amazonaws.com",
        cluster: "gov",
        time: "2024-01-02T03:04:05Z",
    },
];

fn expected() -> Vec<(String, String)> {
    include_str!("data/eks_token_expected.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, token) = l.split_once(' ').expect("`<case> <token>` lines");
            (name.to_owned(), token.to_owned())
        })
        .collect()
}

fn token_for(case: &Case) -> String {
    let credentials = Credentials::new(
        case.access_key,
        case.secret_key,
        case.session_token.map(str::to_owned),
        None,
        "test",
    );
    let time = SystemTime::from(case.time.parse::<jiff::Timestamp>().unwrap());
    eks_token(&credentials, case.region, case.cluster, time).unwrap()
}

fn decode(token: &str) -> String {
    let encoded = token
        .strip_prefix(EKS_TOKEN_PREFIX)
        .expect("k8s-aws-v1. prefix");
    assert!(!encoded.contains('='), "the token must not be padded");
    assert!(
        !encoded.contains('+') && !encoded.contains('/'),
        "the token must be base64url"
    );
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn tokens_equal_the_independent_reference() {
    let expected = expected();
    assert_eq!(expected.len(), CASES.len());
    for (case, (name, token)) in CASES.iter().zip(&expected) {
        assert_eq!(case.name, name);
        assert_eq!(&token_for(case), token, "case {name}");
    }
}

#[test]
fn tokens_decode_to_a_presigned_get_caller_identity() {
    for case in &CASES {
        let url = url::Url::parse(&decode(&token_for(case))).unwrap();
        assert_eq!(url.scheme(), "https");
        assert_eq!(url.host_str(), Some(case.host), "{}", case.name);
        assert_eq!(sts_host(case.region), case.host);
        assert_eq!(url.path(), "/");
        let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Action"), Some("GetCallerIdentity"));
        assert_eq!(get("Version"), Some("2011-06-15"));
        assert_eq!(get("X-Amz-Expires"), Some("60"));
        assert_eq!(get("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        let signed: Vec<&str> = get("X-Amz-SignedHeaders").unwrap().split(';').collect();
        assert!(signed.contains(&"x-k8s-aws-id"), "{signed:?}");
        assert!(signed.contains(&"host"), "{signed:?}");
        let credential = get("X-Amz-Credential").unwrap();
        assert!(
            credential.ends_with(&format!("/{}/sts/aws4_request", case.region)),
            "{credential}"
        );
        assert_eq!(get("X-Amz-Security-Token"), case.session_token);
        assert_eq!(get("X-Amz-Signature").map(str::len), Some(64));
        // The cluster name itself is a signed header, not part of the URL.
        assert_eq!(get("x-k8s-aws-id"), None);
    }
}

#[test]
fn the_signature_covers_the_cluster_name_and_the_time() {
    let case = &CASES[0];
    let base = token_for(case);
    let other_cluster = Case {
        cluster: "other",
        ..CASES[0]
    };
    assert_ne!(token_for(&other_cluster), base);
    let later = Case {
        time: "2024-01-02T03:04:06Z",
        ..CASES[0]
    };
    assert_ne!(token_for(&later), base);
}
