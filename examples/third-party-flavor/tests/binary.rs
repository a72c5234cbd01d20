//! The third party's own binary lists its flavor next to the built-in ones.

use std::process::Command;

#[test]
fn the_example_binary_lists_its_flavor_next_to_the_builtins() {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_stepstack-example"))
        .args(["step-operator", "flavor", "list", "-o", "json"])
        .env("STEPSTACK_HOME", home.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let flavors: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = flavors
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["kubernetes", "local-process"]);
}
