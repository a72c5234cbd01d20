//! What the real binary prints for the errors users met with sentences said twice
//! (`step logs no-such-id`, `stack update -s k8z`, a refused connection, the in-cluster
//! and kubeconfig errors): one line after `error: `, no clause twice. The unit tests in
//! `src/error_catalog.rs` cover every error type; these check the printing path itself.

mod common;

use common::{Cli, Output};

/// The first clause (split on `: ` and `; `) said twice in `line`.
fn repeated_clause(line: &str) -> Option<&str> {
    let clauses: Vec<&str> = line
        .split(": ")
        .flat_map(|part| part.split("; "))
        .map(str::trim)
        .filter(|clause| !clause.is_empty())
        .collect();
    clauses
        .iter()
        .enumerate()
        .find(|(i, clause)| clauses[..*i].contains(clause))
        .map(|(_, clause)| *clause)
}

/// Asserts that `out` failed with `code` and one `error: ` line without a repeat.
fn assert_said_once(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.code, code, "{out:?}");
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{out:?}");
    let line = errors[0];
    assert!(line.contains(needle), "`{needle}` not in: {line}");
    assert_eq!(repeated_clause(line), None, "a clause twice in: {line}");
}

/// A local port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn the_checker_finds_a_repeat() {
    let line = "error: step operator `k8z` not found; see `stepstack step-operator list` for the registered ones (component: k8z): step operator `k8z` not found; see `stepstack step-operator list` for the registered ones";
    assert_eq!(repeated_clause(line), Some("step operator `k8z` not found"));
    assert_eq!(repeated_clause("error: a: b; c"), None);
}

#[test]
fn store_lookups_say_what_is_missing_once() {
    let cli = Cli::new();
    let out = cli.run(["step", "logs", "no-such-id"]);
    assert_said_once(&out, 2, "no-such-id");
    let out = cli.run(["stack", "update", "-s", "k8z"]);
    assert_said_once(&out, 2, "step operator `k8z` not found");
    let out = cli.run(["stack", "describe", "nope"]);
    assert_said_once(&out, 2, "stack `nope` not found");
}

#[test]
fn a_refused_connection_is_said_once() {
    let cli = Cli::new();
    let server = format!("https://127.0.0.1:{}", closed_port());
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
    let out = cli.run(["service-connector", "verify", "gone"]);
    assert_said_once(&out, 3, "could not reach the API server");
}

#[test]
fn the_connectors_in_cluster_error_is_said_once() {
    let cli = Cli::new().env("STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS", "true");
    cli.ok([
        "service-connector",
        "register",
        "pod",
        "--type",
        "kubernetes",
        "--auth-method",
        "in-cluster",
        "--no-verify",
    ]);
    let out = cli.run(["service-connector", "verify", "pod"]);
    assert_said_once(&out, out.code, "in-cluster service-account");
    assert_ne!(out.code, 0, "{out:?}");
}

#[test]
fn the_in_cluster_and_kubeconfig_errors_are_said_once() {
    let cli = Cli::new().env("KUBECONFIG", "/nonexistent/kubeconfig");
    for (name, option, needle) in [
        ("inpod", "--incluster=true", "in-cluster"),
        (
            "ctx",
            "--kubernetes_context=no-such-context",
            "kubeconfig context `no-such-context`",
        ),
    ] {
        cli.ok([
            "step-operator",
            "register",
            name,
            "--flavor",
            "kubernetes",
            "--kubernetes_namespace=ml",
            option,
        ]);
        cli.ok(["stack", "register", name, "-s", name, "--set"]);
        let out = cli.run(["step", "run", "trainer", "--", "true"]);
        assert_said_once(&out, 2, needle);
    }
}
