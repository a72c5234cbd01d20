//! The shared `verify` loop: check the credentials per resource type and report each
//! type's resources or error, instead of failing the whole call on the first problem.

use async_trait::async_trait;
use jiff::Timestamp;

use super::validation::{ConnectorScope, ResourceIds, ResourceRequest};
use super::{ResourceTypeResources, ResourcesReport};
use crate::{Error, ErrorKind, Result};

/// The connector-specific part of `verify`.
#[async_trait]
pub trait ResourceVerifier: Send + Sync {
    /// Checks the credentials and lists the ids of the resources they reach.
    ///
    /// `resource_type` `None` asks for a global check of the credentials (done first for
    /// multi-type connectors); the returned ids are then ignored. `resource_id`, when
    /// given, is canonical, and the check is for that one resource.
    ///
    /// Errors of kind `Unauthenticated` or `PermissionDenied` are authorization failures;
    /// `InvalidSettings` means the configuration is incomplete or invalid and fails the
    /// whole `verify`; `Unavailable` and `Timeout` mean something could not be reached
    /// (the message says what); any other kind is reported as an unexpected error.
    async fn verify_resource(
        &self,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> Result<Vec<String>>;
}

/// Runs `verify` for a connector (ZenML's `ServiceConnector.verify`).
///
/// Checks `resource_type` (or every type the connector serves), passing `resource_id`
/// only when exactly one type is checked. Expired credentials or a failed global check of
/// a multi-type connector set the report's global error and stop. A failure for one type
/// becomes that type's entry error. `Err` is returned only for invalid arguments (an
/// unserved resource type, a resource id outside the scope) or an invalid configuration.
pub async fn verify_resources(
    scope: &ConnectorScope,
    ids: &dyn ResourceIds,
    verifier: &dyn ResourceVerifier,
    resource_type: Option<&str>,
    resource_id: Option<&str>,
    now: Timestamp,
) -> Result<ResourcesReport> {
    let name = scope.name().to_owned();
    let types: Vec<_> = match resource_type {
        Some(requested) => vec![scope.served_resource_type(requested)?.clone()],
        None => scope.resource_types().to_vec(),
    };
    let mut report = ResourcesReport::new(name.clone(), scope.spec().connector_type.clone());
    report.resources = types
        .iter()
        .map(|t| ResourceTypeResources {
            resource_type: t.resource_type.clone(),
            resource_ids: None,
            error: None,
        })
        .collect();
    if let Err(e) = scope.check_not_expired(now) {
        report.error = Some(e.message().to_owned());
        return Ok(report);
    }
    if types.len() > 1
        && let Err(e) = verifier.verify_resource(None, None).await
    {
        let message = describe_failure(&name, e)?;
        report.error = Some(message);
        return Ok(report);
    }
    let single = types.len() == 1;
    for (entry, spec) in report.resources.iter_mut().zip(&types) {
        let requested_id = if single { resource_id } else { None };
        let resolved = scope.resolve(
            ids,
            ResourceRequest::any(Some(&spec.resource_type), requested_id),
        )?;
        let result = verifier
            .verify_resource(Some(&spec.resource_type), resolved.resource_id.as_deref())
            .await;
        match result {
            Ok(found) => {
                if let Some(requested) = resolved.resource_id {
                    if !found.is_empty() && !found.contains(&requested) {
                        tracing::warn!(
                            connector = %name,
                            resource_type = %spec.resource_type,
                            requested = %requested,
                            found = ?found,
                            "the connector verified a resource but listed other ids; this is probably a bug in the connector"
                        );
                    }
                    entry.resource_ids = Some(vec![requested]);
                } else if found.is_empty() {
                    entry.error = Some(format!(
                        "connector `{name}` did not list any {} resources; its credentials may be invalid or may not be allowed to list them",
                        spec.name
                    ));
                } else {
                    entry.resource_ids = Some(found);
                }
            }
            Err(e) => entry.error = Some(describe_failure(&name, e)?),
        }
    }
    Ok(report)
}

/// A resource a check did not find counts as one the credentials cannot reach (ZenML:
/// "not found or not accessible"): a `NotFound` error becomes `PermissionDenied` with the
/// same message and context fields; other errors stay as they are.
pub fn not_found_as_denied(error: Error) -> Error {
    if error.kind() != ErrorKind::NotFound {
        return error;
    }
    let denied = Error::new(ErrorKind::PermissionDenied, error.message().to_owned());
    error
        .context()
        .iter()
        .fold(denied, |e, (key, value)| e.with_context(key, value.clone()))
}

/// The message of a failed check, or the error itself when the configuration is invalid.
fn describe_failure(connector: &str, e: Error) -> Result<String> {
    match e.kind() {
        ErrorKind::InvalidSettings => Err(Error::new(
            ErrorKind::InvalidSettings,
            format!(
                "the configuration of connector `{connector}` is incomplete or invalid: {}",
                e.message()
            ),
        )
        .with_context("connector", connector.to_owned())
        .with_source(e)),
        ErrorKind::Unauthenticated | ErrorKind::PermissionDenied => Ok(format!(
            "connector `{connector}` authorization failure: {}",
            e.message()
        )),
        // An endpoint that is down or refuses connections is an everyday answer, not a
        // surprise: name the connector; the message says what it could not reach.
        ErrorKind::Unavailable | ErrorKind::Timeout => {
            tracing::debug!(connector, error = %e, "the connector could not reach its endpoint");
            Ok(format!("connector `{connector}`: {}", e.message()))
        }
        _ => {
            tracing::warn!(connector, error = %e, "verifying the connector failed unexpectedly");
            Ok(format!(
                "an unexpected error occurred while verifying connector `{connector}`: {}",
                e.message()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::connector::validation::PlainResourceIds;
    use crate::connector::{AuthMethodSpec, ConnectorConfig, ConnectorTypeSpec, ResourceTypeSpec};

    fn spec() -> ConnectorTypeSpec {
        let schema = serde_json::json!({"type": "object"});
        ConnectorTypeSpec::new("Cloud", "cloud", "a cloud")
            .with_auth_method(AuthMethodSpec::new("Key", "secret-key", "a key", schema))
            .with_resource_type(ResourceTypeSpec::new(
                "bucket",
                "bucket",
                "buckets",
                ["secret-key"],
                true,
            ))
            .with_resource_type(ResourceTypeSpec::new(
                "Kubernetes cluster",
                "kubernetes-cluster",
                "clusters",
                ["secret-key"],
                true,
            ))
    }

    /// A scripted answer: for a resource type (`None` = the global check), ids or an error kind.
    type Answer = (Option<&'static str>, Result<Vec<String>, ErrorKind>);

    /// Answers per resource type and records the calls.
    struct Scripted {
        answers: Vec<Answer>,
        calls: Mutex<Vec<(Option<String>, Option<String>)>>,
    }

    impl Scripted {
        fn new(answers: Vec<Answer>) -> Self {
            Scripted {
                answers,
                calls: Mutex::new(Vec::new()),
            }
        }
        fn calls(&self) -> Vec<(Option<String>, Option<String>)> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl ResourceVerifier for Scripted {
        async fn verify_resource(
            &self,
            resource_type: Option<&str>,
            resource_id: Option<&str>,
        ) -> Result<Vec<String>> {
            self.calls.lock().unwrap().push((
                resource_type.map(str::to_owned),
                resource_id.map(str::to_owned),
            ));
            let answer = self
                .answers
                .iter()
                .find(|(t, _)| *t == resource_type)
                .map(|(_, a)| a.clone())
                .unwrap_or(Ok(Vec::new()));
            answer.map_err(|kind| Error::new(kind, format!("{kind} for {resource_type:?}")))
        }
    }

    fn scope(config: ConnectorConfig) -> ConnectorScope {
        ConnectorScope::new(&spec(), config, &PlainResourceIds).unwrap()
    }

    fn now() -> Timestamp {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn multi_type_runs_a_global_check_then_each_type_with_per_type_errors() {
        let scope = scope(ConnectorConfig::new("multi", "cloud", "secret-key"));
        let verifier = Scripted::new(vec![
            (None, Ok(vec![])),
            (Some("bucket"), Ok(vec!["b1".into(), "b2".into()])),
            (Some("kubernetes-cluster"), Err(ErrorKind::PermissionDenied)),
        ]);
        let report = verify_resources(
            &scope,
            &PlainResourceIds,
            &verifier,
            None,
            Some("ignored"),
            now(),
        )
        .await
        .unwrap();
        assert_eq!(report.error, None);
        assert_eq!(
            report.entry("bucket").unwrap().resource_ids,
            Some(vec!["b1".into(), "b2".into()])
        );
        let clusters = report.entry("kubernetes-cluster").unwrap();
        assert_eq!(clusters.resource_ids, None);
        assert_eq!(
            clusters.error.as_deref(),
            Some(
                "connector `multi` authorization failure: permission denied for Some(\"kubernetes-cluster\")"
            )
        );
        // The id is passed only when exactly one type is checked.
        assert_eq!(
            verifier.calls(),
            vec![
                (None, None),
                (Some("bucket".into()), None),
                (Some("kubernetes-cluster".into()), None)
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_global_check_stops_the_loop() {
        let scope = scope(ConnectorConfig::new("multi", "cloud", "secret-key"));
        let verifier = Scripted::new(vec![(None, Err(ErrorKind::Unauthenticated))]);
        let report = verify_resources(&scope, &PlainResourceIds, &verifier, None, None, now())
            .await
            .unwrap();
        assert_eq!(
            report.error.as_deref(),
            Some("connector `multi` authorization failure: unauthenticated for None")
        );
        assert_eq!(report.resources.len(), 2);
        assert_eq!(verifier.calls().len(), 1);
    }

    #[tokio::test]
    async fn one_type_with_an_id_reports_that_id_and_empty_lists_are_errors() {
        let scope = scope(ConnectorConfig::new("multi", "cloud", "secret-key"));
        let verifier = Scripted::new(vec![(Some("bucket"), Ok(vec!["b1".into()]))]);
        let report = verify_resources(
            &scope,
            &PlainResourceIds,
            &verifier,
            Some("bucket"),
            Some(" b1 "),
            now(),
        )
        .await
        .unwrap();
        assert_eq!(report.resources.len(), 1);
        assert_eq!(
            report.entry("bucket").unwrap().resource_ids,
            Some(vec!["b1".into()])
        );
        assert_eq!(
            verifier.calls(),
            vec![(Some("bucket".into()), Some("b1".into()))]
        );

        let report = verify_resources(
            &scope,
            &PlainResourceIds,
            &verifier,
            Some("kubernetes-cluster"),
            None,
            now(),
        )
        .await
        .unwrap();
        assert_eq!(
            report.entry("kubernetes-cluster").unwrap().error.as_deref(),
            Some(
                "connector `multi` did not list any Kubernetes cluster resources; its credentials may be invalid or may not be allowed to list them"
            )
        );
    }

    #[tokio::test]
    async fn invalid_configuration_and_unserved_types_fail_the_call() {
        let scope = scope(ConnectorConfig::new("multi", "cloud", "secret-key"));
        let verifier = Scripted::new(vec![
            (None, Ok(vec![])),
            (Some("bucket"), Err(ErrorKind::InvalidSettings)),
        ]);
        let err = verify_resources(&scope, &PlainResourceIds, &verifier, None, None, now())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
        assert!(
            err.message()
                .starts_with("the configuration of connector `multi` is incomplete or invalid")
        );
        let err = verify_resources(
            &scope,
            &PlainResourceIds,
            &verifier,
            Some("s3"),
            None,
            now(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSettings);
    }

    #[tokio::test]
    async fn expired_credentials_set_the_global_error_without_calling_the_connector() {
        let mut config = ConnectorConfig::new("old", "cloud", "secret-key");
        config.expires_at = Some("2029-12-31T23:59:00Z".parse().unwrap());
        let scope = scope(config);
        let verifier = Scripted::new(vec![]);
        let report = verify_resources(&scope, &PlainResourceIds, &verifier, None, None, now())
            .await
            .unwrap();
        assert!(
            report.error.as_deref().unwrap().contains("have expired"),
            "{report:?}"
        );
        assert!(verifier.calls().is_empty());
    }

    #[tokio::test]
    async fn unexpected_errors_keep_their_message() {
        let scope =
            scope(ConnectorConfig::new("c", "cloud", "secret-key").with_resource_types(["bucket"]));
        let verifier = Scripted::new(vec![(Some("bucket"), Err(ErrorKind::Internal))]);
        let report = verify_resources(&scope, &PlainResourceIds, &verifier, None, None, now())
            .await
            .unwrap();
        assert_eq!(
            report.entry("bucket").unwrap().error.as_deref(),
            Some(
                "an unexpected error occurred while verifying connector `c`: internal for Some(\"bucket\")"
            )
        );
        // A single-type connector skips the global check.
        assert_eq!(verifier.calls(), vec![(Some("bucket".into()), None)]);
    }

    #[tokio::test]
    async fn unreachable_endpoints_are_named_not_called_unexpected() {
        for kind in [ErrorKind::Unavailable, ErrorKind::Timeout] {
            let scope = scope(
                ConnectorConfig::new("c", "cloud", "secret-key").with_resource_types(["bucket"]),
            );
            let verifier = Scripted::new(vec![(Some("bucket"), Err(kind))]);
            let report = verify_resources(&scope, &PlainResourceIds, &verifier, None, None, now())
                .await
                .unwrap();
            assert_eq!(
                report.entry("bucket").unwrap().error.as_deref(),
                Some(format!("connector `c`: {kind} for Some(\"bucket\")").as_str())
            );
        }
    }

    #[test]
    fn not_found_becomes_denied_with_its_message_and_context() {
        let missing = Error::new(ErrorKind::NotFound, "no cluster `c`")
            .with_context("connector", "gke")
            .with_context("project", "p");
        let denied = not_found_as_denied(missing);
        assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
        assert_eq!(
            denied.to_string(),
            "no cluster `c` (connector: gke, project: p)"
        );
        let down = not_found_as_denied(Error::new(ErrorKind::Unavailable, "down"));
        assert_eq!(down.kind(), ErrorKind::Unavailable);
    }
}
