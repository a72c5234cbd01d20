//! Bad input at the CLI's entry points exits with the documented code and one clear line.

use stepstack_e2e::Stepstack;

#[test]
fn unknown_command_is_a_usage_error() {
    let out = Stepstack::new().run(["bogus"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("unrecognized subcommand 'bogus'"),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_flavor_lists_the_available_ones() {
    let out = Stepstack::new().run(["step-operator", "flavor", "describe", "kubernetez"]);
    assert_eq!(out.code, 2, "{out:?}");
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: unknown step-operator flavor `kubernetez`"),
        "{first}"
    );
    assert!(
        first.contains("available flavors:") || first.contains("no step-operator flavors"),
        "{first}"
    );
}

#[test]
fn invalid_settings_file_reports_every_problem_with_its_path() {
    let cli = Stepstack::new();
    let file = cli.home().join("bad.yaml");
    std::fs::write(
        &file,
        "pod_settings:\n  tolerations:\n    - key: gpu\n      toleration_seconds: 5\n  resources:\n    limits: {memory: 4Gx}\n",
    )
    .unwrap();
    let out = cli.run([
        std::ffi::OsStr::new("settings"),
        "validate".as_ref(),
        file.as_os_str(),
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("pod_settings.tolerations[0].toleration_seconds: unknown field, did you mean tolerationSeconds?"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("pod_settings.resources.limits.memory"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_settings_file_is_a_usage_error() {
    let out = Stepstack::new().run(["settings", "validate", "/nonexistent/settings.yaml"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("/nonexistent/settings.yaml"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_exits_zero() {
    let out = Stepstack::new().run(["--help"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("Exit codes: 0 success"),
        "{}",
        out.stdout
    );
}

#[test]
fn every_built_in_connector_type_is_registered() {
    let out = Stepstack::new().run(["service-connector", "list-types", "-o", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    for connector_type in ["\"aws\"", "\"azure\"", "\"gcp\"", "\"kubernetes\""] {
        assert!(
            out.stdout.contains(connector_type),
            "{connector_type} missing: {}",
            out.stdout
        );
    }
}
