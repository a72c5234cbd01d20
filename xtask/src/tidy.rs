//! `cargo xtask tidy`: repository rules as checks, so they hold without anyone
//! remembering them.

use std::path::{Path, PathBuf};

use anyhow::bail;
use xshell::Shell;

mod layers;

/// Crates whose top-level modules must form layers (no import cycles). Every crate
/// should; the list grows as each is untangled.
const LAYERED_CRATES: &[&str] = &[
    "crates/k8s-operator",
    "crates/connectors/kubernetes",
    "crates/connectors/aws",
    "crates/connectors/gcp",
    "crates/connectors/azure",
    "crates/cloud-http",
    "crates/pipeline",
];

pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    let root = sh.current_dir();
    let mut problems = Vec::new();
    for manifest in crate_manifests(&root)? {
        check_crate(&root, &manifest, &mut problems)?;
    }
    for file in rust_files(&root)? {
        check_rust_file(&root, &file, &mut problems)?;
    }
    let report_only = std::env::var_os("TIDY_ALL_LAYERS").is_some();
    for manifest in crate_manifests(&root)? {
        let dir = manifest.parent().unwrap_or(&root);
        let rel = dir.strip_prefix(&root).unwrap_or(dir).display().to_string();
        if !report_only && !LAYERED_CRATES.contains(&rel.as_str()) {
            continue;
        }
        let src = dir.join("src");
        let files = rust_files(&src)?
            .into_iter()
            .map(|f| std::fs::read_to_string(&f).map(|text| (f, text)))
            .collect::<Result<Vec<_>, _>>()?;
        for cycle in layers::module_cycles(&src, &files) {
            problems.push(format!(
                "{rel}: modules import each other in a circle ({cycle}); move what they share into a lower module"
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    for problem in &problems {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("tidy: {problem}");
        }
    }
    bail!("{} repository rule(s) broken", problems.len())
}

/// Every member's `Cargo.toml` (the root manifest excluded).
fn crate_manifests(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let workspace = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let members = workspace
        .split("members = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_default();
    Ok(members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|m| root.join(m).join("Cargo.toml"))
        .collect())
}

fn check_crate(root: &Path, manifest: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let dir = manifest.parent().unwrap_or(root);
    let rel = dir.strip_prefix(root).unwrap_or(dir).display().to_string();
    let text = std::fs::read_to_string(manifest)?;
    if !text.contains("[lints]\nworkspace = true") {
        problems.push(format!("{rel}/Cargo.toml: add `[lints] workspace = true`"));
    }
    if !text.contains("edition.workspace = true") {
        problems.push(format!(
            "{rel}/Cargo.toml: inherit the edition with `edition.workspace = true`"
        ));
    }
    if rel != "crates/cli"
        && text
            .lines()
            .any(|l| l.contains("k8s-openapi") && l.contains("\"v1_"))
    {
        problems.push(format!(
            "{rel}/Cargo.toml: only crates/cli picks a k8s-openapi version feature; libraries use K8S_OPENAPI_ENABLED_VERSION"
        ));
    }
    let lib = dir.join("src/lib.rs");
    if lib.exists() {
        if !dir.join("README.md").exists() {
            problems.push(format!(
                "{rel}: add a README.md; it is the crate documentation"
            ));
        }
        let lib_text = std::fs::read_to_string(&lib)?;
        if !lib_text.starts_with("#![doc = include_str!(\"../README.md\")]") {
            problems.push(format!(
                "{rel}/src/lib.rs: start with `#![doc = include_str!(\"../README.md\")]` so the README is the crate docs"
            ));
        }
    }
    Ok(())
}

fn check_rust_file(root: &Path, file: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let rel = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let text = std::fs::read_to_string(file)?;
    // Spelled in two pieces so this file does not trip its own rule.
    let forbidden = [
        concat!("env::", "set_var("),
        concat!("env::", "remove_var("),
    ];
    for pattern in forbidden {
        if text.contains(pattern) {
            problems.push(format!(
                "{rel}: `{pattern}…)` races with parallel tests; inject the environment instead"
            ));
        }
    }
    if text.contains(concat!("unsafe", " {")) {
        problems.push(format!("{rel}: `unsafe` is forbidden"));
    }
    if !opens_with_module_doc(&text) {
        problems.push(format!(
            "{rel}: open the module with a `//!` doc saying what it is for"
        ));
    }
    Ok(())
}

/// Whether a file opens with its module documentation: `//!` lines, or, for a crate
/// root, `#![doc = include_str!("../README.md")]` (the README is the crate doc).
fn opens_with_module_doc(text: &str) -> bool {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    first.starts_with("//!") || first.starts_with("#![doc")
}

fn rust_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
