//! Secrets never show in `Debug` output.

use secrecy::SecretString;
use stepstack_core::{BearerToken, ConnectorConfig, StepLaunch};

const SECRET: &str = "s3cr3t-v4lue-that-must-not-leak";

#[test]
fn step_launch_debug_hides_secret_environment() {
    let launch = StepLaunch::new("p", "s", "img", ["true"])
        .with_env("PLAIN", "visible")
        .with_secret_env("API_TOKEN", SecretString::from(SECRET));
    let debug = format!("{launch:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("API_TOKEN"), "{debug}");
    assert!(debug.contains("visible"), "{debug}");
}

#[test]
fn connector_config_debug_hides_secrets() {
    let config = ConnectorConfig::new("aws-eu", "aws", "secret-key")
        .with_value("region", "eu-west-1")
        .with_secret("aws_secret_access_key", SECRET);
    let debug = format!("{config:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("aws_secret_access_key"), "{debug}");
    assert!(debug.contains("[HIDDEN]"), "{debug}");
}

#[test]
fn bearer_token_debug_hides_the_value() {
    let token = BearerToken::new(SECRET, None);
    let debug = format!("{token:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("[HIDDEN]"), "{debug}");
}
