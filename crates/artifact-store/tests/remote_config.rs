//! The remote flavors' configurations: what `validate_config` accepts and how it
//! normalises it, the rules it enforces over many generated inputs, and that no secret
//! ends up in a `Debug` rendering or an error.

use stepstack_artifact_store::{AzureFlavor, GcsFlavor, S3Flavor, open_azure, open_gcs, open_s3};
use stepstack_artifact_store::{AzureStoreConfig, GcsStoreConfig, S3StoreConfig};
use stepstack_core::registry::{ArtifactStoreContext, ArtifactStoreFlavor};
use stepstack_core::{ErrorKind, error_chain};

const SECRET: &str = "SECRET-do-not-print-3f9a";

fn s3() -> serde_json::Value {
    serde_json::json!({
        "bucket": "ml-artifacts",
        "region": "eu-west-1",
        "credentials": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": SECRET, "session_token": SECRET}
    })
}

fn gcs() -> serde_json::Value {
    serde_json::json!({"bucket": "ml_artifacts", "credentials": {"bearer_token": SECRET}})
}

fn azure() -> serde_json::Value {
    serde_json::json!({
        "account": "mlstore",
        "container": "artifacts",
        "credentials": {"account_key": "c2VjcmV0LWtleQ=="}
    })
}

fn flavors() -> Vec<(
    Box<dyn ArtifactStoreFlavor>,
    serde_json::Value,
    &'static str,
)> {
    vec![
        (Box::new(S3Flavor), s3(), "bucket"),
        (Box::new(GcsFlavor), gcs(), "bucket"),
        (Box::new(AzureFlavor), azure(), "container"),
    ]
}

fn refused(flavor: &dyn ArtifactStoreFlavor, config: &serde_json::Value) -> String {
    match flavor.validate_config(config) {
        Ok(ok) => panic!("{} accepted {config}: {ok}", flavor.name()),
        Err(err) => {
            assert_eq!(err.kind(), ErrorKind::InvalidSettings, "{err}");
            let chain = error_chain(&err);
            assert!(!chain.contains(SECRET), "{chain}");
            chain
        }
    }
}

#[test]
fn valid_configs_are_normalised_with_defaults() {
    let mut config = s3();
    config["prefix"] = "".into();
    config["endpoint_url"] = "https://minio.example.com:9000/".into();
    let out = S3Flavor.validate_config(&config).unwrap();
    assert!(out.get("prefix").is_none(), "{out}");
    assert_eq!(out["endpoint_url"], "https://minio.example.com:9000");
    assert_eq!(out["allow_http"], false);
    assert_eq!(out["retry"]["max_retries"], 10);
    // Normalising is idempotent: the output validates to itself.
    assert_eq!(S3Flavor.validate_config(&out).unwrap(), out);
    for (flavor, config, _) in flavors() {
        let out = flavor.validate_config(&config).unwrap();
        assert_eq!(
            flavor.validate_config(&out).unwrap(),
            out,
            "{}",
            flavor.name()
        );
        // Building makes no request: a valid configuration always builds.
        let store = flavor
            .build(&out, ArtifactStoreContext::new("artifacts"))
            .unwrap();
        assert_eq!(store.flavor(), flavor.name());
    }
}

#[test]
fn unknown_missing_and_mistyped_settings_are_refused() {
    for (flavor, config, _) in flavors() {
        let mut typo = config.clone();
        typo["regoin"] = "x".into();
        let text = refused(flavor.as_ref(), &typo);
        assert!(text.contains("regoin"), "{text}");
        let mut nested = config.clone();
        nested["credentials"]["token"] = SECRET.into();
        refused(flavor.as_ref(), &nested);
        let mut missing = config.clone();
        missing.as_object_mut().unwrap().remove("credentials");
        refused(flavor.as_ref(), &missing);
        for (key, value) in [
            ("allow_http", serde_json::json!("yes")),
            ("retry", serde_json::json!({"max_retries": 101})),
            ("retry", serde_json::json!({"retry_timeout_secs": 0})),
            ("retry", serde_json::json!({"retries": 3})),
        ] {
            let mut bad = config.clone();
            bad[key] = value;
            refused(flavor.as_ref(), &bad);
        }
    }
}

#[test]
fn bucket_and_container_names_follow_the_cloud_rules() {
    for (flavor, config, field) in flavors() {
        let max = 63;
        for len in 0..=70 {
            let mut c = config.clone();
            c[field] = "a".repeat(len).into();
            let ok = flavor.validate_config(&c).is_ok();
            assert_eq!(
                ok,
                (3..=max).contains(&len),
                "{} {field} of {len}",
                flavor.name()
            );
        }
        let allowed: &[char] = match flavor.name() {
            "s3" => &['-', '.'],
            "gcs" => &['-', '_', '.'],
            _ => &['-'],
        };
        for byte in 0x20u8..0x7f {
            let c = byte as char;
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                continue;
            }
            let mut inner = config.clone();
            inner[field] = format!("ab{c}cd").into();
            assert_eq!(
                flavor.validate_config(&inner).is_ok(),
                allowed.contains(&c),
                "{} {field} with {c:?}",
                flavor.name()
            );
            // Never at either end.
            for name in [format!("{c}abcd"), format!("abcd{c}")] {
                let mut edge = config.clone();
                edge[field] = name.into();
                refused(flavor.as_ref(), &edge);
            }
        }
    }
}

#[test]
fn prefixes_are_plain_relative_key_paths() {
    let good = ["team", "team/artifacts", "a.b/c-d/e_f", "x/..y/z."];
    let bad = [
        "/team", "team/", "a//b", "./a", "a/./b", "a/..", "../a", ".", "..", "a\\b", "a\nb",
    ];
    for (flavor, config, _) in flavors() {
        for prefix in good {
            let mut c = config.clone();
            c["prefix"] = prefix.into();
            let out = flavor.validate_config(&c).unwrap();
            assert_eq!(out["prefix"], prefix);
        }
        for prefix in bad {
            let mut c = config.clone();
            c["prefix"] = prefix.into();
            refused(flavor.as_ref(), &c);
        }
        let mut long = config.clone();
        long["prefix"] = "a/".repeat(300).trim_end_matches('/').into();
        refused(flavor.as_ref(), &long);
    }
}

#[test]
fn endpoints_need_https_unless_http_is_allowed_for_an_emulator() {
    for (flavor, config, _) in flavors() {
        let with = |endpoint: &str, allow_http: bool| {
            let mut c = config.clone();
            c["endpoint_url"] = endpoint.into();
            c["allow_http"] = allow_http.into();
            c
        };
        assert!(
            flavor
                .validate_config(&with("https://h:1/p", false))
                .is_ok()
        );
        assert!(
            flavor
                .validate_config(&with("http://127.0.0.1:9000", true))
                .is_ok()
        );
        let text = refused(flavor.as_ref(), &with("http://127.0.0.1:9000", false));
        assert!(text.contains("allow_http"), "{text}");
        for bad in [
            "ftp://h",
            "not a url",
            "https://user:pw@h",
            "https://h/?sig=x",
            "https://h/#x",
            "file:///tmp",
        ] {
            refused(flavor.as_ref(), &with(bad, true));
        }
        // allow_http alone would reach the cloud itself over plain http.
        let mut c = config.clone();
        c["allow_http"] = true.into();
        refused(flavor.as_ref(), &c);
    }
}

#[test]
fn credentials_are_checked_per_cloud() {
    let mut bad = s3();
    bad["credentials"]["access_key_id"] = "AKIA EXAMPLE".into();
    refused(&S3Flavor, &bad);
    for field in ["secret_access_key", "session_token"] {
        let mut empty = s3();
        empty["credentials"][field] = "".into();
        refused(&S3Flavor, &empty);
    }
    for token in ["", "two words", "line\nbreak"] {
        let mut c = gcs();
        c["credentials"]["bearer_token"] = token.into();
        refused(&GcsFlavor, &c);
    }
    // Azure: exactly one of the three.
    let kinds = ["account_key", "sas_token", "bearer_token"];
    for mask in 0u8..8 {
        let mut credentials = serde_json::Map::new();
        for (i, kind) in kinds.iter().enumerate() {
            if mask & (1 << i) != 0 {
                credentials.insert((*kind).into(), SECRET.into());
            }
        }
        let mut c = azure();
        c["credentials"] = credentials.into();
        let ok = AzureFlavor.validate_config(&c).is_ok();
        assert_eq!(ok, mask.count_ones() == 1, "mask {mask:03b}");
        if !ok {
            refused(&AzureFlavor, &c);
        }
    }
    for account in ["ab", "UPPER", "with-dash", &"a".repeat(25)] {
        let mut c = azure();
        c["account"] = account.into();
        refused(&AzureFlavor, &c);
    }
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let s3 = S3StoreConfig::from_json(&s3()).unwrap();
    let gcs = GcsStoreConfig::from_json(&gcs()).unwrap();
    let mut az = azure();
    az["credentials"] = serde_json::json!({"sas_token": format!("?sv=2022&sig={SECRET}")});
    let az = AzureStoreConfig::from_json(&az).unwrap();
    for text in [
        format!("{s3:?}"),
        format!("{gcs:?}"),
        format!("{az:?}"),
        format!("{:?}", open_s3(&s3).unwrap()),
        format!("{:?}", open_gcs(&gcs).unwrap()),
        format!("{:?}", open_azure(&az).unwrap()),
    ] {
        assert!(!text.contains(SECRET), "{text}");
    }
    // An invalid setting next to a secret: the error names the setting only.
    let mut bad = self::s3();
    bad["region"] = "Not A Region".into();
    let text = refused(&S3Flavor, &bad);
    assert!(text.contains("region"), "{text}");
}
