//! The schema and its migrations: an ordered list of steps, the applied count kept in
//! `PRAGMA user_version`, applied in one IMMEDIATE transaction so that concurrent
//! openers apply each step exactly once.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{Result, StoreError};
use crate::util::now;

/// One migration step.
enum Step {
    /// Plain SQL.
    Sql(&'static str),
    /// Code, for data that SQL cannot produce (e.g. UUIDs).
    Code(fn(&Transaction<'_>) -> Result<()>),
}

/// The migrations, in order. Never edit or reorder a released step; append new ones.
const MIGRATIONS: &[Step] = &[Step::Sql(V1), Step::Code(seed_default_stack)];

/// The schema version a fully migrated store has.
pub(crate) const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// The name of the stack every new store starts with, active globally.
pub const DEFAULT_STACK: &str = "default";

const V1: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE service_connectors (
    id                     TEXT PRIMARY KEY,
    name                   TEXT NOT NULL UNIQUE,
    connector_type         TEXT NOT NULL,
    auth_method            TEXT NOT NULL,
    resource_types         TEXT NOT NULL,  -- JSON array of strings
    resource_id            TEXT,
    config                 TEXT NOT NULL,  -- JSON object of non-secret values
    expires_at             TEXT,           -- RFC 3339
    expires_skew_tolerance INTEGER,
    expiration_seconds     INTEGER,
    labels                 TEXT NOT NULL,  -- JSON object of strings
    description            TEXT NOT NULL,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
) STRICT;

CREATE TABLE connector_secrets (
    connector_id TEXT NOT NULL REFERENCES service_connectors (id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    value        BLOB NOT NULL,            -- encrypted
    PRIMARY KEY (connector_id, key)
) STRICT;

CREATE TABLE stack_components (
    id                    TEXT PRIMARY KEY,
    component_type        TEXT NOT NULL,
    flavor                TEXT NOT NULL,
    name                  TEXT NOT NULL,
    configuration         TEXT NOT NULL,   -- JSON object
    connector_id          TEXT REFERENCES service_connectors (id) ON DELETE RESTRICT,
    connector_resource_id TEXT,
    labels                TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    UNIQUE (component_type, name)
) STRICT;
CREATE INDEX stack_components_connector ON stack_components (connector_id);

CREATE TABLE stacks (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    labels      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE stack_members (
    stack_id       TEXT NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
    component_type TEXT NOT NULL,
    component_id   TEXT NOT NULL REFERENCES stack_components (id) ON DELETE RESTRICT,
    PRIMARY KEY (stack_id, component_type)
) STRICT;
CREATE INDEX stack_members_component ON stack_members (component_id);

-- The active stack: scope '' is global, any other scope is a project root path.
CREATE TABLE active_stacks (
    scope      TEXT PRIMARY KEY,
    stack_id   TEXT NOT NULL REFERENCES stacks (id) ON DELETE RESTRICT,
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX active_stacks_stack ON active_stacks (stack_id);

CREATE TABLE secrets (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE secret_values (
    secret_id TEXT NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    value     BLOB NOT NULL,               -- encrypted
    PRIMARY KEY (secret_id, key)
) STRICT;

CREATE TABLE step_runs (
    id          TEXT PRIMARY KEY,          -- the step-run id
    step_name   TEXT NOT NULL,
    pipeline    TEXT NOT NULL,
    component   TEXT NOT NULL,             -- step operator name
    handle      TEXT,                      -- JSON StepHandle
    status      TEXT NOT NULL,             -- pending | running | succeeded | failed
    status_json TEXT NOT NULL,             -- JSON StepStatus
    log_path    TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    finished_at TEXT
) STRICT;
CREATE INDEX step_runs_created ON step_runs (created_at);
"#;

fn seed_default_stack(tx: &Transaction<'_>) -> Result<()> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = now();
    tx.execute(
        "INSERT INTO stacks (id, name, description, labels, created_at, updated_at)
         VALUES (?1, ?2, '', '{}', ?3, ?3)",
        rusqlite::params![id, DEFAULT_STACK, now],
    )?;
    tx.execute(
        "INSERT INTO active_stacks (scope, stack_id, updated_at) VALUES ('', ?1, ?2)",
        rusqlite::params![id, now],
    )?;
    Ok(())
}

fn user_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Brings the schema up to date. Cheap (one read) when it already is.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let version = user_version(conn)?;
    check_not_newer(version)?;
    if version == LATEST_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have migrated while we waited for the write lock.
    let version = user_version(&tx)?;
    check_not_newer(version)?;
    for (index, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tracing::debug!(version = index + 1, "applying store migration");
        match step {
            Step::Sql(sql) => tx.execute_batch(sql)?,
            Step::Code(f) => f(&tx)?,
        }
    }
    tx.pragma_update(None, "user_version", LATEST_VERSION)?;
    tx.commit()?;
    tracing::info!(
        from = version,
        to = LATEST_VERSION,
        "migrated the store schema"
    );
    Ok(())
}

fn check_not_newer(version: i64) -> Result<()> {
    if !(0..=LATEST_VERSION).contains(&version) {
        return Err(StoreError::Database {
            message: format!(
                "the store's schema version {version} is newer than this stepstack supports ({LATEST_VERSION}); upgrade stepstack"
            ),
            source: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_an_empty_database_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(user_version(&conn).unwrap(), LATEST_VERSION);
        migrate(&mut conn).unwrap();
        let stacks: i64 = conn
            .query_row("SELECT count(*) FROM stacks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stacks, 1);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(err.to_string().contains("upgrade stepstack"), "{err}");
    }
}
