//! Loading settings files (issue 15): bounded input, reasons with line and column, a run
//! configuration checked while loading, qualified step-operator keys applied only where
//! they say, environment overrides as their own layer, warnings with their paths.

use serde_json::json;
use stepstack_settings::{
    Format, Layer, LoadError, LoadedDocument, SettingsLayers, env_layers, load_file, load_str,
    parse_override, settings_warnings,
};

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[test]
fn load_errors_carry_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let err = load_file(&missing).unwrap_err();
    assert!(
        chain(&err).contains("No such file or directory"),
        "{}",
        chain(&err)
    );
    let cases = [
        ("pod_count: 1\npod_count: 2\n", Format::Yaml, "duplicate"),
        (
            "{\"pod_count\": 1, \"pod_count\": 2}",
            Format::Json,
            "duplicate key `pod_count`",
        ),
        (
            "active_deadline_seconds = nan\n",
            Format::Toml,
            "not a finite number",
        ),
        (
            "pod_count: 1\n\0privileged: true\n",
            Format::Yaml,
            "line 2, column 1: the input contains a NUL",
        ),
        ("pod_count: [1\n", Format::Yaml, "line "),
    ];
    for (text, format, needle) in cases {
        let err = load_str(text, format, "f").unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }), "{err:?}");
        let text = chain(&err);
        assert!(text.starts_with("cannot load settings file f: "), "{text}");
        assert!(text.contains(needle), "{text}");
    }
    let deep = format!("x:\n{}1\n", "- ".repeat(2_000));
    let err = load_str(&deep, Format::Yaml, "f").unwrap_err();
    assert!(
        chain(&err).contains("nesting depth limit"),
        "{}",
        chain(&err)
    );
}

#[test]
fn run_configurations_are_checked_while_loading() {
    let cases = [
        ("steps: [trainer]\n", "steps: expected a map of step names"),
        (
            "steps:\n  trainer:\n    stepoperator: k8s\n",
            "steps.trainer.stepoperator: unknown field, did you mean step_operator?",
        ),
        (
            "steps:\n  trainer:\n    step_operator: {pod_count: 2}\n",
            "steps.trainer.step_operator: expected the name of a step operator",
        ),
        (
            "steps:\n  trainer:\n    settings: [1]\n",
            "steps.trainer.settings: expected a map",
        ),
        (
            "settings:\n  step_operator: 3\n",
            "settings.step_operator: expected a map of step-operator settings",
        ),
    ];
    for (text, needle) in cases {
        let err = load_str(text, Format::Yaml, "run.yaml").unwrap_err();
        assert!(
            matches!(err, LoadError::RunConfig { .. }),
            "{text}: {err:?}"
        );
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
    // Resources are judged by validate as step run judges them.
    let doc = load_str(
        "steps:\n  trainer:\n    settings:\n      resources: {gpu_count: many}\n",
        Format::Yaml,
        "run.yaml",
    )
    .unwrap();
    let report = doc.validate("kubernetes").unwrap_err();
    assert!(
        report
            .at("steps.trainer.settings.resources.gpu_count")
            .is_some(),
        "{report}"
    );
    assert!(doc.resource_settings("trainer").is_err());
}

#[test]
fn qualified_blocks_apply_only_to_their_flavor_or_component() {
    let doc = load_str(
        "settings:\n  step_operator.sagemaker:\n    instance_type: ml.p3\nsteps:\n  trainer:\n    step_operator: gpu\n    settings:\n      step_operator:\n        pod_count: 2\n      step_operator:gpu:\n        service_account_name: gpu-sa\n      step_operator.kubernetes:\n        privileged: true\n",
        Format::Yaml,
        "run.yaml",
    )
    .unwrap();
    assert_eq!(doc.step_operator_of("trainer"), Some("gpu"));
    let checked = doc.validate("kubernetes").unwrap();
    assert_eq!(checked.objects, 3);
    assert_eq!(checked.skipped, ["settings.step_operator.sagemaker"]);
    let resolve = |component: &str| {
        doc.add_layers(
            "trainer",
            "kubernetes",
            component,
            "run.yaml",
            SettingsLayers::new(),
        )
        .resolve()
        .unwrap()
    };
    let gpu = resolve("gpu");
    assert_eq!(gpu.settings.service_account_name.as_deref(), Some("gpu-sa"));
    assert!(gpu.settings.privileged);
    assert_eq!(gpu.settings.pod_count, 2);
    assert_eq!(
        gpu.source_of("service_account_name").unwrap().origin,
        "steps.trainer.settings.step_operator:gpu"
    );
    let other = resolve("cpu");
    assert_eq!(other.settings.service_account_name, None);
    // A sagemaker block never reaches Kubernetes settings.
    let sagemaker_only = load_str(
        "settings:\n  step_operator.sagemaker:\n    instance_type: ml.p3\n",
        Format::Yaml,
        "run.yaml",
    )
    .unwrap();
    sagemaker_only
        .add_layers(
            "trainer",
            "kubernetes",
            "k8s",
            "run.yaml",
            SettingsLayers::new(),
        )
        .resolve()
        .unwrap();
}

#[test]
fn environment_overrides_are_blamed_on_their_variable() {
    let env = vec![
        ("STEPSTACK_POD_COUNT".to_string(), "abc".to_string()),
        ("STEPSTACK_HOME".to_string(), "/tmp".to_string()),
    ];
    assert_eq!(env_layers(env.clone()).len(), 1);
    let err = SettingsLayers::new()
        .with_layer(Layer::Step, "s.yaml: ", json!({"privileged": true}))
        .with_environment(env)
        .resolve()
        .unwrap_err();
    assert_eq!(
        err.issues[0].to_string(),
        "environment STEPSTACK_POD_COUNT: pod_count: expected an integer, found string \"abc\""
    );
    let effective = SettingsLayers::new()
        .with_environment(vec![("STEPSTACK_POD_COUNT".to_string(), "3".to_string())])
        .resolve()
        .unwrap();
    assert_eq!(effective.settings.pod_count, 3);
    assert_eq!(
        effective.source_of("pod_count").unwrap().layer,
        Layer::Environment
    );
}

#[test]
fn warnings_name_the_path_the_user_wrote() {
    let warnings = settings_warnings(
        &json!({"api_request_timeout": 2.5, "pod_startup_timeout": 3, "max_api_retries": 2}),
        "steps.trainer.settings.step_operator",
    );
    let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "steps.trainer.settings.step_operator.api_request_timeout",
            "steps.trainer.settings.step_operator.pod_startup_timeout"
        ]
    );
    assert!(settings_warnings(&json!({"api_request_timeout": 2}), "").is_empty());
}

#[test]
fn set_paths_and_values_are_bounded_like_files() {
    for segments in [65, 5_000, 100_000] {
        let input = format!("{}=1", vec!["a"; segments].join("."));
        let err = parse_override(&input).unwrap_err();
        assert!(
            err.to_string().contains("nesting depth limit"),
            "{segments}: {err}"
        );
        assert!(
            err.to_string().len() < 600,
            "the error repeats a huge input"
        );
    }
    let ok = format!("{}=1", vec!["a"; 64].join("."));
    parse_override(&ok).unwrap();
    let deep_value = format!("{}=[[[[[1]]]]]", vec!["a"; 60].join("."));
    assert!(
        parse_override(&deep_value)
            .unwrap_err()
            .to_string()
            .contains("nesting depth limit")
    );
    let bomb = "x=[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]]";
    let err = parse_override(bomb).unwrap_err();
    assert!(err.to_string().contains("alias expansion limit"), "{err}");
    // Text that is not YAML stays text.
    assert_eq!(
        parse_override("job_name_prefix=a: b: c").unwrap(),
        json!({"job_name_prefix": "a: b: c"})
    );
    let _ = LoadedDocument::PIPELINE_PREFIX;
}
