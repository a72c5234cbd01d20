//! The committed JSON Schemas under `schemas/` equal the generated ones.
//!
//! `cargo xtask codegen` writes them; `cargo test -p stepstack-settings --test schemas
//! -- --ignored` rewrites them too.

use std::path::PathBuf;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

#[test]
fn committed_schemas_are_up_to_date() {
    for (file, schema) in stepstack_settings::schemas() {
        let path = schemas_dir().join(file);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask codegen`", path.display()));
        assert!(
            committed == stepstack_settings::schema::render_schema(&schema),
            "{} is stale; run `cargo xtask codegen`",
            path.display()
        );
    }
}
