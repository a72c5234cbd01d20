//! Issue 15: every CLI loader of user input holds to one rule (bounded size, depth and
//! alias expansion) and answers a bomb with exit code 2 and the limit it hit; settings
//! errors say why; validate and run judge a file alike; environment overrides are their
//! own layer. Each command runs as its own process, so an abort shows as a code, not a
//! crashed test.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use stepstack_e2e::{Output, Stepstack};

fn args<'a>(list: impl IntoIterator<Item = &'a str>) -> Vec<OsString> {
    list.into_iter().map(OsString::from).collect()
}

fn with_file(mut list: Vec<OsString>, file: &Path) -> Vec<OsString> {
    list.push(file.as_os_str().to_owned());
    list
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_usage(out: &Output, needle: &str, case: &str) {
    assert_eq!(out.code, 2, "{case}: {out:?}");
    assert!(
        out.stderr.contains(needle),
        "{case}: stderr does not name `{needle}`:\n{}",
        out.stderr
    );
}

/// A registered kubernetes step operator `k8s` (namespace `ml`) on the active stack.
fn with_step_operator() -> Stepstack {
    let cli = Stepstack::new();
    for command in [
        vec![
            "step-operator",
            "register",
            "k8s",
            "--flavor",
            "kubernetes",
            "--kubernetes_namespace=ml",
        ],
        vec!["stack", "register", "s", "-s", "k8s", "--set"],
    ] {
        let out = cli.run(command);
        assert_eq!(out.code, 0, "{out:?}");
    }
    cli
}

fn alias_bomb() -> String {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..=8 {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text
}

/// Bombs of several shapes, each with the limit its error must name.
fn bombs() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("alias.yaml", alias_bomb(), "alias expansion limit"),
        (
            "deep-seq.yaml",
            format!("x:\n{}1\n", "- ".repeat(2_000)),
            "nesting depth limit",
        ),
        (
            "deep-flow.yaml",
            format!("x: {}1{}\n", "[{a: ".repeat(3_000), "}]".repeat(3_000)),
            "nesting depth limit",
        ),
        (
            "deep.json",
            format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)),
            "nesting depth limit",
        ),
        (
            "deep.toml",
            format!("{}a = 1\n", "a.".repeat(5_000)),
            "nesting depth limit",
        ),
        (
            "huge.yaml",
            format!("a: \"{}\"\n", "x".repeat(5 * 1024 * 1024)),
            "size limit",
        ),
    ]
}

#[test]
fn bombs_are_refused_by_every_settings_loader_with_the_limit_named() {
    let cli = with_step_operator();
    let dir = cli.home().to_owned();
    for (name, text, limit) in bombs() {
        let file = write(&dir, name, &text);
        let file_arg = file.display().to_string();
        let cases: Vec<(&str, Vec<OsString>)> = vec![
            (
                "settings validate",
                with_file(args(["settings", "validate"]), &file),
            ),
            (
                "step preview",
                args([
                    "step",
                    "preview",
                    "trainer",
                    "--settings",
                    &file_arg,
                    "--",
                    "true",
                ]),
            ),
            (
                "step run",
                args([
                    "step",
                    "run",
                    "trainer",
                    "--settings",
                    &file_arg,
                    "--",
                    "true",
                ]),
            ),
            (
                "step-operator describe --effective",
                args([
                    "step-operator",
                    "describe",
                    "k8s",
                    "--effective",
                    "--settings",
                    &file_arg,
                    "--step",
                    "trainer",
                ]),
            ),
        ];
        for (command, list) in cases {
            let out = cli.run(list);
            assert_usage(&out, limit, &format!("{command} {name}"));
            assert!(
                out.stderr.contains("cannot load settings file"),
                "{command} {name}: {}",
                out.stderr
            );
        }
        if name.ends_with(".yaml") {
            let out = cli.run(with_file(args(["stack", "import"]), &file));
            assert_usage(&out, limit, &format!("stack import {name}"));
            let at_file = format!("--pod_settings=@{file_arg}");
            let out = cli.run(args([
                "step-operator",
                "register",
                "other",
                "--flavor",
                "kubernetes",
                &at_file,
            ]));
            // `@file` values are at most 1 MiB; within that, the same rule.
            let needle = if name == "huge.yaml" {
                "size limit"
            } else {
                limit
            };
            assert_usage(&out, needle, &format!("@file {name}"));
        }
    }
}

#[test]
fn a_long_set_path_is_refused_at_the_depth_limit() {
    let cli = with_step_operator();
    for segments in [65, 5_000] {
        let path = vec!["a"; segments].join(".");
        let set = format!("{path}=1");
        let out = cli.run(args([
            "step", "preview", "trainer", "--set", &set, "--", "true",
        ]));
        assert_usage(&out, "nesting depth limit", &format!("--set {segments}"));
    }
    // The value counts too: a path of 60 keys leaves room for 4 levels.
    let set = format!("{}={}", vec!["a"; 60].join("."), "[[[[[1]]]]]");
    let out = cli.run(args([
        "step", "preview", "trainer", "--set", &set, "--", "true",
    ]));
    assert_usage(&out, "nesting depth limit", "--set deep value");
}

#[test]
fn settings_errors_say_why_with_line_and_column() {
    let cli = Stepstack::new();
    let dir = cli.home().to_owned();
    let sub = dir.join("dir.yaml");
    std::fs::create_dir(&sub).unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            PathBuf::from("/nonexistent.yaml"),
            "cannot load settings file /nonexistent.yaml: No such file or directory",
        ),
        (sub.clone(), "it is a directory, not a regular file"),
        (
            write(&dir, "syntax.yaml", "pod_count: 1\npod_settings: [a, b\n"),
            "line 2, column ",
        ),
        (
            write(&dir, "dup.yaml", "pod_count: 1\npod_count: 2\n"),
            "duplicate",
        ),
        (
            write(&dir, "dup.json", "{\"pod_count\": 1,\n \"pod_count\": 2}"),
            "line 2, column ",
        ),
        (
            write(&dir, "dup.toml", "pod_count = 1\npod_count = 2\n"),
            "duplicate key",
        ),
        (
            write(&dir, "nul.yaml", "pod_count: 1\n\0privileged: true\n"),
            "line 2, column 1: the input contains a NUL character",
        ),
        (
            write(&dir, "nan.toml", "active_deadline_seconds = nan\n"),
            "`NaN` is not a finite number",
        ),
        (
            write(&dir, "inf.toml", "active_deadline_seconds = inf\n"),
            "not a finite number",
        ),
    ];
    for (file, needle) in cases {
        let out = cli.run(with_file(args(["settings", "validate"]), &file));
        assert_usage(&out, needle, &file.display().to_string());
    }
    #[cfg(unix)]
    {
        let fifo = dir.join("fifo.yaml");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // Without the file-type check this would block forever on the open.
        let out = cli.run(with_file(args(["settings", "validate"]), &fifo));
        assert_usage(
            &out,
            "it is a FIFO (named pipe), not a regular file",
            "fifo",
        );
        let at_fifo = format!("--token=@{}", fifo.display());
        let out = cli.run(args([
            "step-operator",
            "register",
            "x",
            "--flavor",
            "kubernetes",
            &at_fifo,
        ]));
        assert_usage(&out, "FIFO", "@fifo");
    }
}

#[test]
fn validate_and_run_judge_a_run_configuration_alike() {
    let cli = with_step_operator();
    let dir = cli.home().to_owned();
    let cases = [
        (
            "bad-resources.yaml",
            "steps:\n  trainer:\n    settings:\n      resources: {gpu_count: many}\n",
            "steps.trainer.settings.resources.gpu_count",
        ),
        (
            "bad-steps.yaml",
            "steps: [trainer]\n",
            "steps: expected a map of step names",
        ),
        (
            "unknown-step-key.yaml",
            "steps:\n  trainer:\n    stepoperator: k8s\n",
            "steps.trainer.stepoperator: unknown field, did you mean step_operator?",
        ),
        (
            "step-operator-settings-as-name.yaml",
            "steps:\n  trainer:\n    step_operator: {pod_count: 2}\n",
            "steps.trainer.step_operator: expected the name of a step operator",
        ),
    ];
    for (name, text, needle) in cases {
        let file = write(&dir, name, text);
        let out = cli.run(with_file(args(["settings", "validate"]), &file));
        assert_usage(&out, needle, &format!("validate {name}"));
        let file_arg = file.display().to_string();
        let out = cli.run(args([
            "step",
            "preview",
            "trainer",
            "--settings",
            &file_arg,
            "--",
            "true",
        ]));
        assert_usage(&out, needle, &format!("preview {name}"));
    }
}

#[test]
fn qualified_step_operator_settings_apply_only_where_they_say() {
    let cli = with_step_operator();
    let out = cli.run(args([
        "step-operator",
        "register",
        "other",
        "--flavor",
        "kubernetes",
        "--kubernetes_namespace=other-ns",
    ]));
    assert_eq!(out.code, 0, "{out:?}");
    let file = write(
        cli.home(),
        "run.yaml",
        "steps:\n  trainer:\n    step_operator: other\n    settings:\n      step_operator.sagemaker:\n        instance_type: ml.p3.2xlarge\n      step_operator:k8s:\n        pod_count: 3\n      step_operator:other:\n        service_account_name: other-sa\n",
    );
    let out = cli.run(with_file(args(["settings", "validate"]), &file));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("not checked (settings for other flavors): steps.trainer.settings.step_operator.sagemaker"),
        "{}",
        out.stdout
    );
    let file_arg = file.display().to_string();
    let out = cli.run(args([
        "step",
        "preview",
        "trainer",
        "--settings",
        &file_arg,
        "--",
        "true",
    ]));
    assert_eq!(out.code, 0, "{out:?}");
    // `steps.trainer.step_operator: other` picks the component; only its block applies.
    assert!(out.stdout.contains("namespace: other-ns"), "{}", out.stdout);
    assert!(
        out.stdout.contains("serviceAccountName: other-sa"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("completions: 3"), "{}", out.stdout);
    assert!(!out.stdout.contains("instance_type"), "{}", out.stdout);
}

#[test]
fn environment_overrides_are_their_own_layer_with_or_without_a_file() {
    let cli = with_step_operator();
    let run = |value: &str| {
        let output = cli
            .command(args(["step", "preview", "trainer", "--", "true"]))
            .env("STEPSTACK_POD_COUNT", value)
            .output()
            .unwrap();
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    };
    let out = run("3");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("completions: 3"), "{}", out.stdout);
    let out = run("abc");
    assert_usage(
        &out,
        "environment STEPSTACK_POD_COUNT: pod_count: expected an integer",
        "STEPSTACK_POD_COUNT=abc",
    );
}

#[test]
fn warnings_are_printed_once_at_the_path_the_user_wrote() {
    let cli = with_step_operator();
    let file = write(
        cli.home(),
        "run.yaml",
        "steps:\n  trainer:\n    settings:\n      step_operator:\n        api_request_timeout: 2.5\n        pod_startup_timeout: 3\n",
    );
    let file_arg = file.display().to_string();
    for list in [
        args([
            "step",
            "preview",
            "trainer",
            "--settings",
            &file_arg,
            "--",
            "true",
        ]),
        args(["settings", "validate", &file_arg]),
    ] {
        let out = cli.run(list);
        assert_eq!(out.code, 0, "{out:?}");
        for field in ["api_request_timeout", "pod_startup_timeout"] {
            let lines: Vec<&str> = out.stderr.lines().filter(|l| l.contains(field)).collect();
            assert_eq!(lines.len(), 1, "{field}:\n{}", out.stderr);
            assert!(
                lines[0].contains(&format!("steps.trainer.settings.step_operator.{field}")),
                "{}",
                lines[0]
            );
        }
    }
}

#[test]
fn register_errors_put_their_context_on_the_first_line() {
    let cli = Stepstack::new();
    let out = cli.run(args([
        "step-operator",
        "register",
        "bad",
        "--flavor",
        "kubernetes",
        "--kubernetes_namespace=Not Valid",
        "--pod_cont=1",
    ]));
    assert_eq!(out.code, 2, "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines[0].ends_with("(flavor: kubernetes, step_operator: bad)"),
        "{}",
        out.stderr
    );
    assert!(
        lines
            .iter()
            .skip(1)
            .all(|l| !l.contains("step_operator: bad")),
        "{}",
        out.stderr
    );
}
