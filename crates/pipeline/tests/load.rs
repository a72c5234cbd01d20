//! Loading pipeline files: the three formats, the bounded-input rule, today's run
//! configurations, the builder's equivalence and the committed JSON Schema.

use serde_json::{Value, json};
use stepstack_input::{Limit, Limits};
use stepstack_pipeline::{Format, LoadError, Loader, Pipeline, Step, load_file, load_str};

const RUN_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../settings/tests/fixtures/run-config.yaml"
);

const YAML: &str = r#"
name: training
steps:
  load:
    command: [python, load.py, "{{outputs.data}}"]
    outputs: [data]
  train:
    command: [python, train.py]
    args: ["{{inputs.data}}", "{{outputs.model}}"]
    step_operator: k8s
    image: train:1
    inputs: {data: load.data}
    outputs: [model]
    environment: {EPOCHS: 3}
    retry: {max_retries: 2, delay: 5, backoff: 2}
    cache: false
  report:
    command: [sh, -c, "echo {{run.id}}"]
    after: [train]
"#;

fn built() -> Pipeline {
    Pipeline::builder("training")
        .step(
            "load",
            Step::new(["python", "load.py", "{{outputs.data}}"]).output("data"),
        )
        .step(
            "train",
            Step::new(["python", "train.py"])
                .args(["{{inputs.data}}", "{{outputs.model}}"])
                .step_operator("k8s")
                .image("train:1")
                .input("data", "load", "data")
                .output("model")
                .env("EPOCHS", "3")
                .retry(stepstack_pipeline::Retry {
                    max_retries: 2,
                    delay: 5,
                    backoff: 2,
                })
                .cache(false),
        )
        .step(
            "report",
            Step::new(["sh", "-c", "echo {{run.id}}"]).after("train"),
        )
        .build()
        .unwrap()
}

#[test]
fn the_builder_and_the_three_formats_make_the_same_model() {
    let from_yaml = load_str(YAML, Format::Yaml, "p.yaml").unwrap();
    assert!(from_yaml.warnings.is_empty(), "{:?}", from_yaml.warnings);
    assert_eq!(from_yaml.pipeline, built());
    let value: Value = stepstack_input::parse(YAML, Format::Yaml, &Limits::DEFAULT).unwrap();
    let json_text = value.to_string();
    let toml_text = toml_of(&value);
    assert_eq!(
        load_str(&json_text, Format::Json, "p.json")
            .unwrap()
            .pipeline,
        built()
    );
    assert_eq!(
        load_str(&toml_text, Format::Toml, "p.toml")
            .unwrap()
            .pipeline,
        built()
    );
}

/// A small TOML writer for the test document (strings, numbers, booleans, lists, maps).
fn toml_of(value: &Value) -> String {
    fn inline(v: &Value) -> String {
        match v {
            Value::Object(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{k:?} = {}", inline(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", ")),
            other => other.to_string(),
        }
    }
    let map = value.as_object().unwrap();
    let mut out = format!("name = {}\n", map["name"]);
    for (step, body) in map["steps"].as_object().unwrap() {
        out.push_str(&format!("[steps.{step}]\n"));
        for (k, v) in body.as_object().unwrap() {
            out.push_str(&format!("{k} = {}\n", inline(v)));
        }
    }
    out
}

#[test]
fn files_load_by_extension_and_are_named_after_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nightly.yml");
    std::fs::write(&path, "steps:\n  a: {command: [x]}\n").unwrap();
    assert_eq!(load_file(&path).unwrap().pipeline.name(), "nightly");
    assert!(matches!(
        load_file(dir.path().join("p.ini")),
        Err(LoadError::UnknownFormat { .. })
    ));
    assert!(matches!(
        load_file(dir.path().join("missing.yaml")),
        Err(LoadError::Read { .. })
    ));
    // A string has no file name to fall back on.
    let err = load_str("steps:\n  a: {command: [x]}\n", Format::Yaml, "inline").unwrap_err();
    assert_eq!(
        err.report().unwrap().at("name").unwrap().message,
        "missing: the pipeline's name"
    );
}

#[test]
fn loading_is_bounded_in_size_depth_and_alias_expansion() {
    // Rule, over growing inputs: each bound is hit exactly when the input passes it.
    for extra in [0usize, 1, 1000] {
        let padding = "x".repeat(Limits::DEFAULT.max_bytes + extra);
        let text = format!("name: p\nsteps:\n  a: {{command: [\"{padding}\"]}}\n");
        let err = load_str(&text, Format::Yaml, "big.yaml").unwrap_err();
        let LoadError::Read { source, .. } = err else {
            panic!("{err}")
        };
        assert!(
            matches!(source.limit(), Some(Limit::Size { .. })),
            "{source}"
        );
    }
    for depth in [Limits::DEFAULT.max_depth + 1, Limits::DEFAULT.max_depth * 4] {
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        for (text, format) in [
            (format!("name: p\nsteps: {nested}\n"), Format::Yaml),
            (
                format!("{{\"name\": \"p\", \"steps\": {nested}}}"),
                Format::Json,
            ),
            (format!("name = \"p\"\nsteps = {nested}\n"), Format::Toml),
        ] {
            let err = load_str(&text, format, "deep").unwrap_err();
            let LoadError::Read { source, .. } = err else {
                panic!("{format}: {err}")
            };
            assert!(
                matches!(source.limit(), Some(Limit::Depth { .. })),
                "{format}: {source}"
            );
        }
    }
    // A billion-laughs document: small text, aliases that expand past the value bound.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..=8 {
        let prev = (b'a' + level - 1) as char;
        let this = (b'a' + level) as char;
        bomb.push_str(&format!(
            "{this}: &{this} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        ));
    }
    bomb.push_str("name: p\nsteps:\n  s: {command: [x], environment: {X: 1}}\n");
    let err = load_str(&bomb, Format::Yaml, "bomb.yaml").unwrap_err();
    let LoadError::Read { source, .. } = err else {
        panic!("{err}")
    };
    assert!(
        matches!(
            source.limit(),
            Some(Limit::AliasExpansion { .. } | Limit::Values { .. })
        ),
        "{source}"
    );
}

/// Today's run configuration with a command added to each step.
fn run_config_with_commands() -> Value {
    let text = std::fs::read_to_string(RUN_CONFIG).unwrap();
    let mut value = stepstack_input::parse(&text, Format::Yaml, &Limits::DEFAULT).unwrap();
    for (name, step) in value["steps"].as_object_mut().unwrap() {
        step.as_object_mut()
            .unwrap()
            .insert("command".into(), json!(["python", format!("{name}.py")]));
    }
    value
        .as_object_mut()
        .unwrap()
        .insert("name".into(), json!("seed"));
    value
}

#[test]
fn a_run_configuration_with_commands_is_a_pipeline_with_the_same_settings() {
    let loaded = Loader::new()
        .settings_flavor("kubernetes")
        .load_value(&run_config_with_commands(), "run-config.yaml")
        .unwrap();
    let pipeline = loaded.pipeline;
    // The settings layers are exactly those `step run --settings run-config.yaml` uses.
    let document = stepstack_settings::load_file(RUN_CONFIG).unwrap();
    assert_eq!(pipeline.settings_document(), &document);
    for step in ["trainer", "evaluator"] {
        assert_eq!(
            pipeline.resource_settings(step).unwrap(),
            document.resource_settings(step).unwrap()
        );
        let layers = |l| pipeline.settings_layers(step, "kubernetes", "k8s", "p", l);
        // (The fixture's evaluator breaks a request/limit rule once layered: both
        // must say so alike.)
        let ours = layers(stepstack_settings::SettingsLayers::new())
            .resolve()
            .map(|e| e.value);
        let theirs = document
            .add_layers(
                step,
                "kubernetes",
                "k8s",
                "p",
                stepstack_settings::SettingsLayers::new(),
            )
            .resolve()
            .map(|e| e.value);
        assert_eq!(ours, theirs);
    }
    assert_eq!(
        pipeline
            .resource_settings("trainer")
            .unwrap()
            .memory
            .as_deref(),
        Some("4GB")
    );
}

#[test]
fn a_run_configuration_without_commands_only_lacks_the_commands() {
    let text = std::fs::read_to_string(RUN_CONFIG).unwrap();
    let err = Loader::new()
        .settings_flavor("kubernetes")
        .load_str(
            &format!("name: seed\n{text}"),
            Format::Yaml,
            "run-config.yaml",
        )
        .unwrap_err();
    let paths: Vec<&str> = err
        .report()
        .unwrap()
        .issues
        .iter()
        .map(|i| i.path.as_str())
        .collect();
    assert_eq!(paths, ["steps.evaluator.command", "steps.trainer.command"]);
}

#[test]
fn settings_problems_join_the_pipeline_problems() {
    let mut value = run_config_with_commands();
    value["steps"]["trainer"]["settings"]["step_operator"]["pod_settings"]["tolerations"][0]["toleration_seconds"] =
        json!(5);
    value["steps"]["evaluator"]["inputs"] = json!({"model": "trainer.model"});
    let err = Loader::new()
        .settings_flavor("kubernetes")
        .load_value(&value, "p")
        .unwrap_err();
    let found: Vec<String> = err
        .report()
        .unwrap()
        .issues
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        found.contains(&"steps.evaluator.inputs.model: step `trainer` has no output `model`; `trainer` declares no outputs".to_string()),
        "{found:#?}"
    );
    assert!(
        found.contains(&"steps.trainer.settings.step_operator.pod_settings.tolerations[0].toleration_seconds: unknown field, did you mean tolerationSeconds?".to_string()),
        "{found:#?}"
    );
}

#[test]
fn the_committed_schema_accepts_valid_files_and_refuses_unknown_keys() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/");
    let read = |f: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}{f}")).unwrap()).unwrap()
    };
    let settings = read("kubernetes-step-operator-settings.json");
    let registry = jsonschema::Registry::new()
        .add(
            "file:///schemas/kubernetes-step-operator-settings.json",
            settings,
        )
        .unwrap()
        .prepare()
        .unwrap();
    let validator = jsonschema::options()
        .with_base_uri("file:///schemas/pipeline.json")
        .with_registry(&registry)
        .build(&read("pipeline.json"))
        .unwrap();
    let good = stepstack_input::parse(YAML, Format::Yaml, &Limits::DEFAULT).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&good)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(validator.is_valid(&run_config_with_commands()));
    let mut bad = good.clone();
    bad["steps"]["train"]["comand"] = json!(["x"]);
    assert!(!validator.is_valid(&bad));
    let mut bad_settings = run_config_with_commands();
    bad_settings["steps"]["trainer"]["settings"]["step_operator"]["pod_cont"] = json!(1);
    assert!(
        !validator.is_valid(&bad_settings),
        "settings are checked through the $ref"
    );
}
