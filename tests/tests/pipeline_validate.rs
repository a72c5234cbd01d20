//! `stepstack pipeline validate FILE`: exit 0 and the run order for a valid pipeline,
//! exit 2 with every problem (path and did-you-mean) for an invalid one.

use std::path::PathBuf;

use stepstack_e2e::{Output, Stepstack};

fn validate(cli: &Stepstack, name: &str, contents: &str) -> Output {
    let file: PathBuf = cli.home().join(name);
    std::fs::write(&file, contents).unwrap();
    cli.run([
        std::ffi::OsStr::new("pipeline"),
        "validate".as_ref(),
        file.as_os_str(),
    ])
}

const VALID: &str = r#"
name: training
settings:
  step_operator:
    pod_settings: {node_selectors: {pool: cpu}}
steps:
  load:
    command: [python, load.py, "{{outputs.data}}"]
    outputs: [data]
  train:
    step_operator: k8s
    inputs: {data: load.data}
    outputs: [model]
    command: [python, train.py, "{{inputs.data}}", "{{outputs.model}}"]
    enable_cache: false
    experiment_tracker: mlflow
  evaluate:
    inputs: {model: train.model}
    command: [python, eval.py, "{{inputs.model}}"]
"#;

#[test]
fn a_valid_pipeline_exits_0_with_its_order_and_warnings() {
    let cli = Stepstack::new();
    // `train` names the step operator `k8s`, which is not registered yet.
    let out = validate(&cli, "p.yaml", VALID);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("steps.train.step_operator: no step operator `k8s`: none is registered"),
        "{}",
        out.stderr
    );
    let offline = cli.run([
        std::ffi::OsStr::new("pipeline"),
        "validate".as_ref(),
        "--no-store".as_ref(),
        cli.home().join("p.yaml").as_os_str(),
    ]);
    assert_eq!(offline.code, 0, "{offline:?}");
    let registered = cli.run(["step-operator", "register", "k8s", "--flavor", "kubernetes"]);
    assert_eq!(registered.code, 0, "{registered:?}");
    let out = validate(&cli, "p.yaml", VALID);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("valid pipeline `training` (3 steps: load, train, evaluate)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("steps.train.experiment_tracker: a ZenML run-configuration key"),
        "{}",
        out.stderr
    );
    let json = cli.run([
        std::ffi::OsStr::new("pipeline"),
        "validate".as_ref(),
        cli.home().join("p.yaml").as_os_str(),
        "-o".as_ref(),
        "json".as_ref(),
    ]);
    assert_eq!(json.code, 0, "{json:?}");
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        value["order"],
        serde_json::json!(["load", "train", "evaluate"])
    );
}

#[test]
fn every_kind_of_problem_exits_2_and_all_are_reported_at_once() {
    let cli = Stepstack::new();
    let out = validate(
        &cli,
        "bad.yaml",
        r#"
name: p
steps:
  a:
    command: [x, "{{inputs.dat}}"]
    inputs: {data: c.out}
    outputs: [o, o]
  b:
    comand: [x]
    command: [x]
    after: [zz]
  c:
    command: [x]
    inputs: {i: a.o}
    outputs: [out]
  "Bad Name":
    command: [x]
  d:
    command: [x]
    after: [d]
    settings:
      step_operator:
        pod_settings: {tolerations: [{key: gpu, toleration_seconds: 5}]}
"#,
    );
    assert_eq!(out.code, 2, "{out:?}");
    for expected in [
        "steps.a.command[1]: placeholder names the undeclared input `dat`, did you mean `data`?",
        "steps.a.outputs[1]: output `o` is declared twice (first at steps.a.outputs[0])",
        "steps.b.comand: unknown field, did you mean command?",
        "steps.b.after[0]: no step `zz`",
        "steps[\"Bad Name\"]: step name `Bad Name` cannot become a Kubernetes label value",
        "steps.d.after[0]: a step cannot wait for itself (cycle: d -> d)",
        "steps.a: the steps wait for each other in a cycle: a -> c -> a",
        "steps.d.settings.step_operator.pod_settings.tolerations[0].toleration_seconds: unknown field, did you mean tolerationSeconds?",
    ] {
        assert!(
            out.stderr.contains(expected),
            "missing {expected:?} in:\n{}",
            out.stderr
        );
    }
    assert!(
        out.stderr.contains("the pipeline has 8 problems"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_unregistered_step_operator_is_named_with_the_registered_ones() {
    let cli = Stepstack::new();
    for name in ["k8s", "gpu-cluster"] {
        let out = cli.run(["step-operator", "register", name, "--flavor", "kubernetes"]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let out = validate(
        &cli,
        "p.yaml",
        "name: p\nsteps:\n  a: {command: [x], step_operator: k9s}\n  b: {command: [x], step_operator: k8s}\n",
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "steps.a.step_operator: no step operator `k9s` is registered; did you mean `k8s`? registered: gpu-cluster, k8s"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn unreadable_files_exit_2_with_the_cause() {
    let cli = Stepstack::new();
    let out = validate(&cli, "broken.yaml", "name: p\nsteps: [unclosed\n");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("cannot load pipeline file"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("line "),
        "the cause has its location: {}",
        out.stderr
    );
    let missing = cli.run(["pipeline", "validate", "/nonexistent/pipeline.yaml"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    let unknown = validate(&cli, "p.ini", VALID);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown.stderr.contains("unknown format"),
        "{}",
        unknown.stderr
    );
}
