//! `cargo xtask codegen [--check]`: files generated from code and committed, so editors
//! and third-party validators can use them. In check mode a stale file is an error.

use std::path::Path;

use anyhow::{Context, bail};
use xshell::Shell;

pub(crate) fn run(sh: &Shell, check: bool) -> anyhow::Result<()> {
    let dir = sh.current_dir().join("schemas");
    let mut stale = Vec::new();
    let schemas = stepstack_settings::schemas()
        .into_iter()
        .chain(stepstack_pipeline::schemas());
    for (file, schema) in schemas {
        let contents = stepstack_settings::schema::render_schema(&schema);
        if ensure_file_contents(&dir.join(file), &contents, check)? {
            stale.push(file);
        }
    }
    if !stale.is_empty() {
        bail!(
            "generated files are stale: {}; run `cargo xtask codegen` and commit the result",
            stale.join(", ")
        );
    }
    Ok(())
}

/// Writes `contents` to `path` unless it is already there; returns whether the file was
/// stale in check mode (and leaves it untouched then).
fn ensure_file_contents(path: &Path, contents: &str, check: bool) -> anyhow::Result<bool> {
    let current = std::fs::read_to_string(path).ok();
    if current.as_deref().map(normalize_newlines) == Some(normalize_newlines(contents)) {
        return Ok(false);
    }
    if check {
        return Ok(true);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    #[allow(clippy::print_stderr)]
    {
        eprintln!("updated {}", path.display());
    }
    Ok(false)
}

fn normalize_newlines(s: &str) -> String {
    s.replace("\r\n", "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codegen_is_idempotent() {
        let dir = std::env::temp_dir().join(format!("xtask-codegen-{}", std::process::id()));
        let path = dir.join("schema.json");
        assert!(!ensure_file_contents(&path, "{}\n", false).unwrap());
        assert!(
            !ensure_file_contents(&path, "{}\n", true).unwrap(),
            "fresh file is not stale"
        );
        assert!(
            ensure_file_contents(&path, "{\"a\":1}\n", true).unwrap(),
            "changed contents are stale"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{}\n",
            "check mode never writes"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
