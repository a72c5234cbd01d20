//! One instance of every error the CLI can print, rendered the way the CLI prints it,
//! checked for sentences said twice.
//!
//! The rule of `stepstack_core::error` is that a message never repeats its cause: the
//! CLI prints an error and its causes on one line, so a message that also holds its
//! source's text (`{source}` in a `Display`, or a conversion that copies the text and
//! attaches the original) shows the user the same clause twice. Two checks, because the
//! printer forgives exact repeats that a third-party error makes:
//! - the line the user sees has no clause (split on `: ` and `; `) twice;
//! - no error of ours says in its own message what its source says.

use std::error::Error as StdError;

use serde_json::json;
use stepstack_core::{
    ClusterConnection, Error, ErrorKind, StepLaunch, StepOperator, StepOperatorContext,
};
use stepstack_k8s_operator::KubernetesStepOperator;
use stepstack_settings::KubernetesStepOperatorConfig;
use stepstack_store::{EntityKind, StoreError};
use stepstack_testkit::{Cluster, ClusterOptions, FaultMatch, ResourceKind};

use crate::exit::{CliError, Exit, render};

/// The clauses of a rendered line, in order.
fn clauses(line: &str) -> Vec<&str> {
    line.split(": ")
        .flat_map(|part| part.split("; "))
        .map(str::trim)
        .filter(|clause| !clause.is_empty())
        .collect()
}

/// The first clause said twice in `line`.
fn repeated_clause(line: &str) -> Option<&str> {
    let clauses = clauses(line);
    clauses
        .iter()
        .enumerate()
        .find(|(i, clause)| clauses[..*i].contains(clause))
        .map(|(_, clause)| *clause)
}

/// Whether `error` is one of the workspace's own error types (whose messages must not
/// hold their source's text; third-party errors are judged by the printed line only).
fn is_ours(error: &(dyn StdError + 'static)) -> bool {
    error.is::<Error>()
        || error.is::<StoreError>()
        || error.is::<stepstack_settings::load::LoadError>()
        || error.is::<stepstack_settings::ManifestError>()
        || error.is::<stepstack_pipeline::LoadError>()
        || error.is::<stepstack_input::InputError>()
        || error.is::<stepstack_testkit::ClusterError>()
        || error.is::<stepstack_testkit::TlsError>()
}

/// Every problem of `error` as the CLI prints it, each naming the case.
fn problems(case: &str, error: &CliError) -> Vec<String> {
    let line = render(&error.error);
    let mut out = Vec::new();
    if let Some(clause) = repeated_clause(&line) {
        out.push(format!("{case}: `{clause}` twice in: {line}"));
    }
    let mut link: Option<&(dyn StdError + 'static)> = Some(error.error.as_ref());
    while let Some(current) = link {
        let source = current.source();
        if let Some(source) = source
            && is_ours(current)
            && current.to_string().contains(&source.to_string())
        {
            out.push(format!(
                "{case}: the message `{current}` repeats its source `{source}`"
            ));
        }
        link = source;
    }
    out
}

/// Asserts that no case has a problem, listing them all.
fn assert_said_once(cases: Vec<(String, CliError)>) {
    assert!(!cases.is_empty());
    let all: Vec<String> = cases
        .iter()
        .flat_map(|(case, error)| problems(case, error))
        .collect();
    assert!(all.is_empty(), "{}", all.join("\n"));
}

fn io(kind: std::io::ErrorKind) -> std::io::Error {
    std::io::Error::from(kind)
}

fn store_errors() -> Vec<(String, CliError)> {
    let errors = vec![
        StoreError::NotFound {
            kind: EntityKind::StepRun,
            name: "no-such-id".into(),
        },
        StoreError::NotFound {
            kind: EntityKind::Component("step_operator".into()),
            name: "k8z".into(),
        },
        StoreError::AlreadyExists {
            kind: EntityKind::Stack,
            name: "gpu".into(),
        },
        StoreError::InUse {
            kind: EntityKind::Connector,
            name: "aws-eu".into(),
            used_by: "step operator `k8s`".into(),
            action: "disconnect them first".into(),
        },
        StoreError::Invalid {
            message: "names are 1 to 64 letters".into(),
        },
        StoreError::Crypto {
            message: "the secrets key is wrong".into(),
        },
        StoreError::Database {
            message: "the store holds invalid data (a handle)".into(),
            source: None,
        },
        StoreError::Io {
            action: "could not create the stepstack home".into(),
            path: "/nope/home".into(),
            source: io(std::io::ErrorKind::PermissionDenied),
        },
        corrupt_database(),
        home_is_a_file(),
    ];
    errors
        .into_iter()
        .map(|e| (format!("store {e:?}"), CliError::from(Error::from(e))))
        .collect()
}

/// A real SQLite failure: the database file is not a database.
fn corrupt_database() -> StoreError {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("stepstack.db"), vec![b'x'; 4096]).unwrap();
    stepstack_store::Store::open(home.path())
        .map(|_| ())
        .expect_err("a file of x is not a database")
}

/// A real I/O failure: the home is a file.
fn home_is_a_file() -> StoreError {
    let base = tempfile::tempdir().unwrap();
    let home = base.path().join("home");
    std::fs::write(&home, b"").unwrap();
    stepstack_store::Store::open(&home)
        .map(|_| ())
        .expect_err("a file is not a home")
}

fn input_and_settings_errors() -> Vec<(String, CliError)> {
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(String, CliError)> = Vec::new();
    let file = |name: &str, text: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let settings_files = [
        file("syntax.yaml", b"a: [1, 2\n"),
        file("deep.json", "[".repeat(200).as_bytes()),
        file("nul.yaml", b"a: \0\n"),
        file("latin1.yaml", b"a: \xff\n"),
        file("list.yaml", b"- 1\n"),
        file("steps.yaml", b"steps:\n  trainer:\n    bogus: 1\n"),
        file("settings.txt", b"a: 1\n"),
        dir.path().join("missing.yaml"),
        dir.path().to_owned(),
    ];
    for path in &settings_files {
        if let Err(e) = stepstack_settings::load_file(path) {
            cases.push((
                format!("settings {}", path.display()),
                CliError::new(Exit::Usage, e),
            ));
        }
        if let Err(e) = stepstack_pipeline::load_file(path) {
            cases.push((
                format!("pipeline {}", path.display()),
                CliError::new(Exit::Usage, e),
            ));
        }
    }
    for input in ["no-equals", "=1", "a..b=1"] {
        let err = stepstack_settings::parse_override(input).unwrap_err();
        cases.push((format!("override {input}"), CliError::usage(err)));
    }
    let report = stepstack_settings::SettingsLayers::new()
        .with_override("pod_settings.tolerations=7")
        .unwrap()
        .with_override("resources.memory=lots")
        .unwrap()
        .resolve()
        .err();
    if let Some(report) = report {
        cases.push(("validation report".into(), CliError::usage(report)));
    }
    assert!(cases.len() > 12, "{}", cases.len());
    cases
}

fn core_errors() -> Vec<(String, CliError)> {
    let kinds = [
        ErrorKind::InvalidSettings,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::Cancelled,
        ErrorKind::Unsupported,
        ErrorKind::Internal,
    ];
    let mut cases: Vec<(String, CliError)> = kinds
        .into_iter()
        .map(|kind| {
            let err = Error::new(kind, format!("the operation failed ({kind})"))
                .with_context("step", "trainer")
                .with_source(io(std::io::ErrorKind::ConnectionReset));
            (format!("core {kind}"), CliError::from(err))
        })
        .collect();
    cases.push((
        "usage".into(),
        CliError::usage("`--output` takes table, json or yaml"),
    ));
    cases.push((
        "testkit io".into(),
        CliError::new(
            Exit::Internal,
            stepstack_testkit::ClusterError::from(io(std::io::ErrorKind::AddrInUse)),
        ),
    ));
    cases
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn launch() -> StepLaunch {
    StepLaunch::new("p", "trainer", "busybox:1.36", ["true"]).with_settings(json!({
        "retry": {"max_retries": 0, "delay_seconds": 0},
        "infrastructure_retry": {"max_retries": 0, "delay_seconds": 0},
    }))
}

fn operator(
    config: KubernetesStepOperatorConfig,
    connection: Option<ClusterConnection>,
) -> KubernetesStepOperator {
    let mut context = StepOperatorContext::new("k8s");
    if let Some(connection) = connection {
        context = context.with_connection(connection);
    }
    KubernetesStepOperator::new(config, context)
}

fn config(namespace: &str) -> KubernetesStepOperatorConfig {
    let mut config = KubernetesStepOperatorConfig {
        kubernetes_namespace: namespace.into(),
        ..Default::default()
    };
    // One attempt per call: a 500 or a refused connection is reported, not retried.
    config.settings.max_api_retries = 0;
    config
}

async fn operator_errors() -> Vec<(String, CliError)> {
    let mut cases = Vec::new();
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    cluster
        .store()
        .create(
            ResourceKind::Namespace,
            None,
            json!({"metadata": {"name": "ml"}}),
        )
        .unwrap();
    let kube = kube::Config::from_custom_kubeconfig(
        cluster.kubeconfig().unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let on_cluster = operator(config("ml"), Some(ClusterConnection::new(kube.clone())));
    for code in [400, 403, 404, 409, 422, 500] {
        cluster
            .faults()
            .fail_next(1, FaultMatch::verb_resource("create", "jobs"), code);
        match on_cluster.submit(launch()).await {
            Err(e) => cases.push((format!("create Job answered {code}"), CliError::from(e))),
            Ok(handle) => {
                let _ = on_cluster.cancel(&handle).await;
            }
        }
        cluster.faults().clear();
    }
    let missing_namespace = operator(config("nope"), Some(ClusterConnection::new(kube.clone())));
    if let Err(e) = missing_namespace.submit(launch()).await {
        cases.push(("namespace missing".into(), CliError::from(e)));
    }
    let mut refused = kube.clone();
    refused.cluster_url = format!("https://127.0.0.1:{}", closed_port())
        .parse()
        .unwrap();
    let refused = operator(config("ml"), Some(ClusterConnection::new(refused)));
    let err = refused.submit(launch()).await.unwrap_err();
    cases.push(("connection refused".into(), CliError::from(err)));
    let in_cluster = operator(
        KubernetesStepOperatorConfig {
            incluster: true,
            ..config("ml")
        },
        None,
    );
    if let Err(e) = in_cluster.submit(launch()).await {
        cases.push(("in-cluster".into(), CliError::from(e)));
    }
    let context = operator(
        KubernetesStepOperatorConfig {
            kubernetes_context: Some("no-such-context".into()),
            ..config("ml")
        },
        None,
    );
    let err = context.submit(launch()).await.unwrap_err();
    cases.push(("kubeconfig context".into(), CliError::from(err)));
    cases.extend(connector_errors().await);
    cases
}

/// What the Kubernetes connector says when implicit authentication is off (in-cluster)
/// and for a kubeconfig configuration with an unknown field.
async fn connector_errors() -> Vec<(String, CliError)> {
    let registry = crate::builtin_registry().unwrap();
    let flavor = registry.connector("kubernetes").unwrap();
    let mut cases = Vec::new();
    let configs = [
        stepstack_core::connector::ConnectorConfig::new("pod", "kubernetes", "in-cluster"),
        stepstack_core::connector::ConnectorConfig::new("file", "kubernetes", "kubeconfig")
            .with_value("kubeconfig_path", "/somewhere/kubeconfig"),
    ];
    for config in configs {
        let case = format!("connector {}", config.auth_method);
        let err = match flavor.build(config) {
            Err(e) => e,
            Ok(connector) => match connector
                .connect(stepstack_core::connector::KUBERNETES_CLUSTER, None)
                .await
            {
                Err(e) => e,
                Ok(_) => continue,
            },
        };
        cases.push((case, CliError::from(err)));
    }
    cases
}

#[test]
fn the_checks_catch_a_repeated_cause() {
    // What `From<StoreError>` used to do: copy the text and attach the original.
    let store = StoreError::NotFound {
        kind: EntityKind::Stack,
        name: "k8z".into(),
    };
    let copied = Error::new(ErrorKind::NotFound, store.to_string())
        .with_context("stack", "k8z")
        .with_source(store);
    let found = problems("copy", &CliError::from(copied));
    assert_eq!(found.len(), 1, "{found:?}");
    // `{source}` in a message, under an error of ours.
    let wrapped = Error::new(
        ErrorKind::Unavailable,
        "could not reach the cluster: connection refused",
    )
    .with_source(io(std::io::ErrorKind::ConnectionRefused));
    let found = problems("wrapped", &CliError::from(wrapped));
    assert_eq!(found.len(), 1, "{found:?}");
    // A sentence said once is fine.
    let once = Error::new(ErrorKind::Unavailable, "could not reach the cluster")
        .with_source(io(std::io::ErrorKind::ConnectionRefused));
    assert!(problems("once", &CliError::from(once)).is_empty());
}

#[test]
fn no_error_the_cli_prints_says_a_clause_twice() {
    let mut cases = store_errors();
    cases.extend(input_and_settings_errors());
    cases.extend(core_errors());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    cases.extend(runtime.block_on(operator_errors()));
    assert_said_once(cases);
}
