//! Hostile names through the binary: `step-operator register` and `stack import` refuse
//! every one with exit 2, store nothing, and write nothing outside the home.

mod common;

use common::Cli;

fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "",
        ".",
        "..",
        "../x",
        "../../x",
        "/abs",
        "/abs/path",
        "a/b",
        "a\\b",
        "..\\x",
        "a\0b",
        "-x",
        "--help",
        ".hidden",
        " a",
        "a b",
        "a\nb",
        "~/x",
        "a\u{202e}b",
        "a\u{200b}b",
        "\u{feff}a",
        "a\u{ff0f}b",
        "a\u{2215}b",
        "\u{ff0e}\u{ff0e}",
        "k\u{430}s",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    names.push("x".repeat(129));
    names.push("x".repeat(5000));
    names
}

#[test]
fn hostile_names_are_refused_by_register_and_stack_import() {
    let cli = Cli::new();
    let files = tempfile::tempdir().unwrap();
    // Absolute paths that would land next to the home if a name became a path.
    let mut names = hostile_names();
    names.push(format!("{}/escaped", cli.base().display()));
    names.push(format!("../../{}", cli.base().join("escaped").display()));
    let mut registered = 0;
    for (i, name) in names.iter().enumerate() {
        // On the command line (argv cannot hold NUL; a leading `-` is an option there).
        if !name.contains('\0') && !name.starts_with('-') {
            let out = cli.run([
                "step-operator",
                "register",
                name.as_str(),
                "--flavor",
                "kubernetes",
                "--kubernetes_namespace=ml",
            ]);
            assert_eq!(out.code, 2, "register {name:?}: {out:?}");
            assert!(
                out.stderr.contains("ASCII letters, digits"),
                "register {name:?}: {}",
                out.stderr
            );
            registered += 1;
        }
        // In an exported stack, as the component's name and as the stack's.
        for (stack, component) in [
            (format!("s{i}"), name.clone()),
            (name.clone(), format!("c{i}")),
        ] {
            let file = files.path().join(format!("stack-{i}.yaml"));
            let text = format!(
                "stack: {}\ncomponents:\n  step_operator:\n    name: {}\n    flavor: kubernetes\n    configuration:\n      kubernetes_namespace: ml\n",
                serde_json::to_string(&stack).unwrap(),
                serde_json::to_string(&component).unwrap()
            );
            std::fs::write(&file, text).unwrap();
            let out = cli.run(["stack".as_ref(), "import".as_ref(), file.as_os_str()]);
            assert_eq!(out.code, 2, "import {stack:?}/{component:?}: {out:?}");
            assert!(
                out.stderr.contains("ASCII letters, digits"),
                "import {stack:?}/{component:?}: {}",
                out.stderr
            );
        }
    }
    assert!(registered > 20);
    // Nothing was stored: no step operator, only the default stack.
    let out = cli.ok(["step-operator", "list"]);
    assert!(
        out.stdout.contains("No step operators registered"),
        "{}",
        out.stdout
    );
    let stacks = cli.ok(["stack", "list", "-o", "json"]);
    let stacks: serde_json::Value = serde_json::from_str(&stacks.stdout).unwrap();
    assert_eq!(stacks.as_array().unwrap().len(), 1, "{stacks}");
    // And nothing was written next to the home.
    let beside: Vec<_> = std::fs::read_dir(cli.base())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["home"]);
    assert!(!cli.home().join("step-operators").exists());
}
