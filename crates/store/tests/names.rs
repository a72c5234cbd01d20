//! The one name rule for connectors, stack components of every type, stacks and secrets,
//! checked over a generated set of hostile names: every one is refused, with a message
//! that names the rule, and nothing is stored.

use std::collections::BTreeMap;

use stepstack_core::ConnectorConfig;
use stepstack_store::{
    ComponentFilter, ComponentUpdate, ConnectorFilter, ConnectorUpdate, MAX_NAME_LEN, NewComponent,
    NewStack, SecretUpdate, StackFilter, StackUpdate, Store, StoreError,
};

/// Component types the CLI and pipelines use (the store accepts any snake_case type).
const COMPONENT_TYPES: [&str; 5] = [
    "step_operator",
    "orchestrator",
    "artifact_store",
    "container_registry",
    "image_builder",
];

/// Names that are paths, options, invisible or look-alike characters, or too long.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "",
        ".",
        "..",
        "...",
        "../x",
        "../../x",
        "./x",
        "x/..",
        "/abs",
        "/abs/path",
        "a/b",
        "a\\b",
        "..\\x",
        "\\\\server\\share",
        "a\0b",
        "\0",
        "-x",
        "--help",
        "-",
        "_x",
        ".hidden",
        " a",
        "a ",
        "a b",
        "a\nb",
        "a\tb",
        "a\rb",
        "a\u{7f}b",
        "~",
        "~/x",
        "$HOME",
        "a:b",
        "a*b",
        "a\"b",
        "a'b",
        "a;b",
        "a|b",
        // Unicode tricks: bidi overrides, zero-width characters, a BOM, look-alikes of
        // `/`, `.` and ASCII letters, combining marks.
        "a\u{202e}b",
        "a\u{2066}b",
        "a\u{200b}b",
        "a\u{200d}b",
        "\u{feff}a",
        "a\u{ff0f}b",
        "a\u{2215}b",
        "a\u{2044}b",
        "\u{2024}\u{2024}",
        "\u{ff0e}\u{ff0e}",
        "\u{ff41}",
        "k8s\u{301}",
        "k\u{430}s",
        "é",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // Too long, in ASCII and in multi-byte characters.
    names.push("x".repeat(MAX_NAME_LEN + 1));
    names.push("x".repeat(10_000));
    names.push("é".repeat(MAX_NAME_LEN / 2 + 1));
    // Generated: a valid stem with one bad character or bad start at every position.
    let bad_chars = [
        '/', '\\', '\0', ' ', '\u{202e}', '\u{ff0f}', '\u{2215}', '\n',
    ];
    let stem = "k8s.gpu-1_a";
    for bad in bad_chars {
        for at in 0..=stem.len() {
            let mut name = stem.to_owned();
            name.insert(at, bad);
            names.push(name);
        }
    }
    for start in ['.', '-', '_'] {
        names.push(format!("{start}{stem}"));
        names.push(format!("{start}{start}"));
    }
    // Generated: path-shaped combinations.
    for prefix in ["", ".", "..", "a", "/"] {
        for sep in ["/", "\\", "/./", "/../"] {
            for suffix in ["", "x", "..", "etc/passwd"] {
                names.push(format!("{prefix}{sep}{suffix}"));
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

fn is_refused(result: Result<impl std::fmt::Debug, StoreError>, name: &str) {
    match result {
        Err(StoreError::Invalid { message }) => {
            assert!(
                message.contains("ASCII letters, digits"),
                "the message for {name:?} names the rule: {message}"
            );
            assert!(
                message.chars().count() < 400,
                "the message for a {}-character name stays short: {message}",
                name.chars().count()
            );
            assert!(
                !message.contains('\0') && !message.contains('\u{202e}'),
                "the message for {name:?} shows no raw control characters: {message:?}"
            );
        }
        other => panic!("{name:?} was not refused: {other:?}"),
    }
}

#[test]
fn hostile_names_are_refused_for_every_kind_of_object() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    let names = hostile_names();
    assert!(names.len() > 150, "{} names", names.len());
    for name in &names {
        for component_type in COMPONENT_TYPES {
            is_refused(
                store.create_component(NewComponent::new(component_type, "local", name.clone())),
                name,
            );
        }
        is_refused(
            store.create_connector(ConnectorConfig::new(name.clone(), "aws", "secret-key").into()),
            name,
        );
        is_refused(store.create_stack(NewStack::new(name.clone())), name);
        is_refused(
            store.create_secret(
                name,
                BTreeMap::from([("k".to_owned(), "v".to_owned().into())]),
            ),
            name,
        );
    }
    assert!(
        store
            .list_components(&ComponentFilter::new())
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_connectors(&ConnectorFilter::new())
            .unwrap()
            .is_empty()
    );
    // Only the default stack.
    assert_eq!(store.list_stacks(&StackFilter::default()).unwrap().len(), 1);
    assert!(store.list_secrets(None).unwrap().is_empty());
}

#[test]
fn hostile_renames_are_refused_and_change_nothing() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    for component_type in COMPONENT_TYPES {
        store
            .create_component(NewComponent::new(component_type, "local", "ok"))
            .unwrap();
    }
    store
        .create_connector(ConnectorConfig::new("ok", "aws", "secret-key").into())
        .unwrap();
    store.create_stack(NewStack::new("ok")).unwrap();
    store
        .create_secret(
            "ok",
            BTreeMap::from([("k".to_owned(), "v".to_owned().into())]),
        )
        .unwrap();
    for name in &hostile_names() {
        for component_type in COMPONENT_TYPES {
            let mut update = ComponentUpdate::default();
            update.name = Some(name.clone());
            is_refused(store.update_component(component_type, "ok", update), name);
        }
        let mut update = ConnectorUpdate::default();
        update.name = Some(name.clone());
        is_refused(store.update_connector("ok", update), name);
        let mut update = StackUpdate::default();
        update.name = Some(name.clone());
        is_refused(store.update_stack("ok", update), name);
        let mut update = SecretUpdate::default();
        update.name = Some(name.clone());
        is_refused(store.update_secret("ok", update), name);
    }
    for component_type in COMPONENT_TYPES {
        assert_eq!(
            store.get_component(component_type, "ok").unwrap().name,
            "ok"
        );
    }
    assert_eq!(store.get_connector("ok").unwrap().name, "ok");
    assert_eq!(store.get_stack("ok").unwrap().name, "ok");
    assert_eq!(store.get_secret("ok").unwrap().name, "ok");
}

#[test]
fn ordinary_names_are_accepted() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    let longest = "x".repeat(MAX_NAME_LEN);
    for name in [
        "k8s",
        "K8S",
        "aws-eu",
        "gpu_1",
        "v1.2.3",
        "a..b",
        "0",
        longest.as_str(),
    ] {
        for component_type in COMPONENT_TYPES {
            store
                .create_component(NewComponent::new(component_type, "local", name))
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        store
            .create_connector(ConnectorConfig::new(name, "aws", "secret-key").into())
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        store
            .create_stack(NewStack::new(name))
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
    }
}

#[test]
fn the_message_says_what_is_wrong() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    let mut message = |name: &str| {
        store
            .create_component(NewComponent::new("step_operator", "kubernetes", name))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        message("../../x"),
        "the step operator name `../../x` contains `/`, a path separator; a name is 1 to 128 ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit"
    );
    assert!(message("-x").contains("does not start with a letter or digit"));
    assert!(message("a\u{202e}b").contains("U+202E"));
    assert!(message("a\0b").contains("U+0000"));
    assert!(message(&"y".repeat(500)).contains("is longer than 128 characters"));
}
