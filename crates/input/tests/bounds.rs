//! The one input rule, over generated inputs of many shapes: every bomb is refused with
//! the limit it hit, nothing aborts (each case runs on a thread with a small stack),
//! and inputs just inside the limits still parse.

use std::path::Path;

use stepstack_input::{Format, InputError, Limit, Limits, load_file, parse};

const LIMITS: Limits = Limits::DEFAULT;

/// Runs `f` on a thread with the 2 MiB stack Rust gives spawned threads (and tokio its
/// workers), so unbounded recursion would abort the test.
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .expect("the parse must not panic or overflow")
}

fn parse_small_stack(text: String, format: Format) -> Result<serde_json::Value, InputError> {
    small_stack(move || parse(&text, format, &LIMITS))
}

fn assert_limit(case: &str, result: Result<serde_json::Value, InputError>, limit: Limit) {
    match result {
        Err(e) => {
            assert_eq!(e.limit(), Some(limit), "{case}: {e}");
            let text = e.to_string();
            let name = match limit {
                Limit::Size { .. } => "size limit",
                Limit::Depth { .. } => "nesting depth limit",
                Limit::Values { .. } => "value count limit",
                Limit::AliasExpansion { .. } => "alias expansion limit",
                _ => unreachable!(),
            };
            assert!(
                text.contains(name),
                "{case}: `{text}` does not name the {name}"
            );
        }
        Ok(_) => panic!("{case}: accepted"),
    }
}

const DEPTH: Limit = Limit::Depth { max: 64 };

/// YAML "billion laughs": `levels` anchors, each a list of `fan` aliases of the last.
fn alias_bomb_lists(levels: usize, fan: usize) -> String {
    let mut text = String::from("a0: &a0 [lol, lol]\n");
    for i in 1..=levels {
        let refs = vec![format!("*a{}", i - 1); fan].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text
}

/// The same with maps of aliases in block style.
fn alias_bomb_maps(levels: usize, fan: usize) -> String {
    let mut text = String::from("a0: &a0\n  k: lol\n");
    for i in 1..=levels {
        text.push_str(&format!("a{i}: &a{i}\n"));
        for k in 0..fan {
            text.push_str(&format!("  k{k}: *a{}\n", i - 1));
        }
    }
    text
}

#[test]
fn alias_bombs_of_every_shape_stop_at_the_alias_expansion_limit() {
    for (levels, fan) in [(9, 9), (5, 12), (3, 50), (2, 400), (17, 2)] {
        for (shape, text) in [
            ("lists", alias_bomb_lists(levels, fan)),
            ("maps", alias_bomb_maps(levels, fan)),
        ] {
            let case = format!("{shape} {levels}x{fan} ({} bytes)", text.len());
            let result = parse_small_stack(text, Format::Yaml);
            let err = result.as_ref().err().and_then(InputError::limit);
            assert!(
                matches!(
                    err,
                    Some(Limit::AliasExpansion { .. } | Limit::Values { .. })
                ),
                "{case}: {result:?}"
            );
        }
    }
    // The issue's 377-byte file: nine levels of nine aliases.
    let text = alias_bomb_lists(9, 9);
    assert!(text.len() < 600);
    assert_limit(
        "9x9",
        parse_small_stack(text, Format::Yaml),
        Limit::AliasExpansion { max: 100_000 },
    );
    // A few aliases are fine.
    let value = parse(&alias_bomb_lists(2, 3), Format::Yaml, &LIMITS).unwrap();
    assert_eq!(value["a2"][0][0], serde_json::json!(["lol", "lol"]));
}

fn deep_block_sequence(depth: usize) -> String {
    format!("x:\n{}1\n", "- ".repeat(depth))
}

fn deep_block_map(depth: usize) -> String {
    let mut text = String::new();
    for i in 0..depth {
        text.push_str(&"  ".repeat(i));
        text.push_str("a:\n");
    }
    text.push_str(&"  ".repeat(depth));
    text.push_str("b: 1\n");
    text
}

fn deep_flow(depth: usize, open: &str, close: &str) -> String {
    format!("x: {}1{}\n", open.repeat(depth), close.repeat(depth))
}

#[test]
fn deep_yaml_of_every_shape_stops_at_the_depth_limit() {
    for depth in [64, 65, 100, 2_000, 100_000] {
        let mut cases = vec![
            ("block sequence", deep_block_sequence(depth)),
            ("flow sequence", deep_flow(depth, "[", "]")),
            ("flow map", deep_flow(depth, "{a: ", "}")),
            ("flow mixed", deep_flow(depth, "[{a: ", "}]")),
        ];
        if depth <= 2_000 {
            cases.push(("block map", deep_block_map(depth)));
        }
        for (shape, text) in cases {
            let case = format!("{shape} at depth {depth}");
            let result = parse_small_stack(text, Format::Yaml);
            assert_limit(&case, result, DEPTH);
        }
    }
    // Just inside: the root map plus 63 levels.
    parse(&deep_block_sequence(63), Format::Yaml, &LIMITS).unwrap();
    parse(&deep_flow(31, "[{a: ", "}]"), Format::Yaml, &LIMITS).unwrap();
}

#[test]
fn deep_json_and_toml_stop_at_the_depth_limit() {
    for depth in [65, 129, 2_000, 1_000_000] {
        let cases = [
            (
                "json arrays",
                Format::Json,
                format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
            ),
            (
                "json objects",
                Format::Json,
                format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)),
            ),
            (
                "toml dotted key",
                Format::Toml,
                format!("{}a = 1\n", "a.".repeat(depth)),
            ),
            (
                "toml header",
                Format::Toml,
                format!("[{}a]\nb = 1\n", "a.".repeat(depth)),
            ),
            (
                "toml array of tables",
                Format::Toml,
                format!("[[{}a]]\nb = 1\n", "a.".repeat(depth)),
            ),
            (
                "toml arrays",
                Format::Toml,
                format!("a = {}1{}\n", "[".repeat(depth), "]".repeat(depth)),
            ),
            (
                "toml inline tables",
                Format::Toml,
                format!("a = {}1{}\n", "{a = ".repeat(depth), "}".repeat(depth)),
            ),
            (
                "toml inline dotted keys",
                Format::Toml,
                format!("a = {{{}b = 1}}\n", "a.".repeat(depth)),
            ),
        ];
        for (shape, format, text) in cases {
            if text.len() > LIMITS.max_bytes {
                continue;
            }
            let case = format!("{shape} at depth {depth}");
            assert_limit(&case, parse_small_stack(text, format), DEPTH);
        }
    }
    parse(
        &format!("{}{}", "[".repeat(64), "]".repeat(64)),
        Format::Json,
        &LIMITS,
    )
    .unwrap();
    parse(
        &format!("{}a = 1\n", "a.".repeat(62)),
        Format::Toml,
        &LIMITS,
    )
    .unwrap();
}

#[test]
fn huge_inputs_stop_at_the_size_limit_and_many_values_at_the_value_limit() {
    let big = LIMITS.max_bytes + 1;
    for (format, text) in [
        (Format::Yaml, format!("a: \"{}\"\n", "x".repeat(big))),
        (Format::Json, format!("{{\"a\": \"{}\"}}", "x".repeat(big))),
        (Format::Toml, format!("a = \"{}\"\n", "x".repeat(big))),
    ] {
        assert_limit(
            &format!("{format} huge"),
            parse_small_stack(text, format),
            Limit::Size {
                max: LIMITS.max_bytes,
            },
        );
    }
    let values = Limit::Values { max: 100_000 };
    let many = vec!["0"; 150_000].join(",");
    assert_limit(
        "json many",
        parse_small_stack(format!("[{many}]"), Format::Json),
        values,
    );
    assert_limit(
        "toml many",
        parse_small_stack(format!("a = [{many}]\n"), Format::Toml),
        values,
    );
    assert_limit(
        "yaml many",
        parse_small_stack(format!("a: [{many}]\n"), Format::Yaml),
        values,
    );
}

#[test]
fn files_are_bounded_by_the_same_rule() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "bomb.yaml",
            alias_bomb_lists(9, 9),
            Limit::AliasExpansion { max: 100_000 },
        ),
        ("deep.yaml", deep_block_sequence(2_000), DEPTH),
        (
            "deep.json",
            format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)),
            DEPTH,
        ),
        ("deep.toml", format!("{}a = 1\n", "a.".repeat(5_000)), DEPTH),
        (
            "huge.yaml",
            "#".repeat(LIMITS.max_bytes + 10),
            Limit::Size {
                max: LIMITS.max_bytes,
            },
        ),
    ];
    for (name, text, limit) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let result = small_stack(move || load_file(&path, &LIMITS).map(Option::unwrap_or_default));
        assert_limit(name, result, limit);
    }
}

#[test]
fn every_format_refuses_duplicates_non_finite_numbers_and_nul() {
    for (format, text) in [
        (Format::Json, r#"{"pod_count": 1, "pod_count": 2}"#),
        (Format::Yaml, "pod_count: 1\npod_count: 2\n"),
        (Format::Toml, "pod_count = 1\npod_count = 2\n"),
    ] {
        let err = parse(text, format, &LIMITS).unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{format}: {err}");
        assert!(err.to_string().contains("line "), "{format}: {err}");
    }
    for text in ["a = nan\n", "a = inf\n", "a = -inf\n", "a = [1, nan]\n"] {
        let err = parse(text, Format::Toml, &LIMITS).unwrap_err();
        assert!(
            err.to_string().contains("not a finite number"),
            "{text}: {err}"
        );
    }
    for format in [Format::Yaml, Format::Json, Format::Toml] {
        let err = parse("{}\0 garbage", format, &LIMITS).unwrap_err();
        assert!(matches!(err, InputError::Nul { .. }), "{format}: {err}");
        assert!(err.to_string().starts_with("line 1, column 3:"), "{err}");
    }
}

#[test]
fn yaml_keeps_the_1_2_core_schema_and_toml_datetimes_become_text() {
    let value = parse("a: yes\nb: on\nc: true\nd: 0755\n", Format::Yaml, &LIMITS).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"a": "yes", "b": "on", "c": true, "d": "0755"})
    );
    let value = parse("at = 2026-01-02T03:04:05Z\n", Format::Toml, &LIMITS).unwrap();
    assert_eq!(value["at"], "2026-01-02T03:04:05Z");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    for (format, text, line) in [
        (Format::Yaml, "a: 1\nb: [1, 2\n", 2),
        (Format::Json, "{\n  \"a\": 1,\n}", 3),
        (Format::Toml, "a = 1\nb = \n", 2),
    ] {
        let err = parse(text, format, &LIMITS).unwrap_err();
        let InputError::Syntax { location, .. } = &err else {
            panic!("{format}: {err}");
        };
        assert_eq!(location.map(|l| l.line), Some(line), "{format}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("line {line}, column ")),
            "{err}"
        );
    }
}

#[cfg(unix)]
#[test]
fn directories_and_fifos_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_file(&dir.path().join("missing.yaml"), &LIMITS).unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
    let sub = dir.path().join("sub.yaml");
    std::fs::create_dir(&sub).unwrap();
    let err = load_file(&sub, &LIMITS).unwrap_err();
    assert_eq!(err.to_string(), "it is a directory, not a regular file");
    let fifo = dir.path().join("fifo.yaml");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    // Reading a FIFO with no writer would block forever; it must be refused instead.
    let err = load_file(Path::new(&fifo), &LIMITS).unwrap_err();
    assert_eq!(
        err.to_string(),
        "it is a FIFO (named pipe), not a regular file"
    );
}
