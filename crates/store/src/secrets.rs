//! Secrets: named maps of values, each encrypted at rest.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rusqlite::{Connection, params};
use secrecy::SecretString;
use serde::Serialize;
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::error::{EntityKind, Result, StoreError};
use crate::sealed::SealedValues;
use crate::util;

/// A secret's values.
const VALUES: SealedValues = SealedValues {
    table: "secret_values",
    owner_column: "secret_id",
    aad_prefix: "secret",
};

/// A secret with its decrypted values. `Debug` shows the keys only.
#[derive(Clone)]
#[non_exhaustive]
pub struct Secret {
    /// Its id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// The values.
    pub values: BTreeMap<String, SecretString>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("id", &self.id)
            .field("name", &self.name)
            .field(
                "values",
                &self
                    .values
                    .keys()
                    .map(|k| (k, "[HIDDEN]"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// A secret's name and keys, without values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SecretSummary {
    /// Its id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// The keys of its values.
    pub keys: Vec<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// Changes to a secret; unset fields stay as they are.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct SecretUpdate {
    /// A new name.
    pub name: Option<String>,
    /// Drop all stored values before applying `values`.
    pub replace: bool,
    /// Values to set.
    pub values: BTreeMap<String, SecretString>,
    /// Keys to remove.
    pub remove_keys: Vec<String>,
}

impl std::fmt::Debug for SecretUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretUpdate")
            .field("name", &self.name)
            .field("replace", &self.replace)
            .field(
                "values",
                &self
                    .values
                    .keys()
                    .map(|k| (k, "[HIDDEN]"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("remove_keys", &self.remove_keys)
            .finish()
    }
}

const KIND: EntityKind = EntityKind::Secret;

fn write_values(
    conn: &Connection,
    keys: &Keyring,
    id: &str,
    values: &BTreeMap<String, SecretString>,
) -> Result<()> {
    for key in values.keys() {
        util::validate_key("secret", key)?;
    }
    VALUES.write(conn, keys, id, values)
}

pub(crate) fn create(
    conn: &Connection,
    keys: &Keyring,
    name: &str,
    values: BTreeMap<String, SecretString>,
) -> Result<SecretSummary> {
    util::validate_entity_name(&KIND, name)?;
    let id = Uuid::new_v4().to_string();
    conn.execute(
        "INSERT INTO secrets (id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
        params![id, name, util::now()],
    )
    .map_err(|e| util::map_unique(e, KIND, name))?;
    write_values(conn, keys, &id, &values)?;
    tracing::debug!(secret = %name, %id, "created a secret");
    summary(conn, &id)
}

fn summary(conn: &Connection, id: &str) -> Result<SecretSummary> {
    let mut stmt =
        conn.prepare_cached("SELECT id, name, created_at, updated_at FROM secrets WHERE id = ?1")?;
    let mut rows = stmt.query([id])?;
    let Some(row) = rows.next()? else {
        return Err(StoreError::not_found(KIND, id));
    };
    let mut keys_stmt =
        conn.prepare_cached("SELECT key FROM secret_values WHERE secret_id = ?1 ORDER BY key")?;
    let keys = keys_stmt
        .query_map([id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(SecretSummary {
        id: util::parse_uuid(&util::get::<String>(row, "id")?, "secrets.id")?,
        name: util::get(row, "name")?,
        keys,
        created_at: util::parse_ts(&util::get::<String>(row, "created_at")?, "created_at")?,
        updated_at: util::parse_ts(&util::get::<String>(row, "updated_at")?, "updated_at")?,
    })
}

fn resolve(conn: &Connection, name_or_id: &str) -> Result<String> {
    util::resolve_id(conn, "secrets", None, &KIND, name_or_id)
}

pub(crate) fn get(conn: &Connection, keys: &Keyring, name_or_id: &str) -> Result<Secret> {
    let id = resolve(conn, name_or_id)?;
    let s = summary(conn, &id)?;
    let values = VALUES.load(conn, keys, &id, |key| {
        format!("value `{key}` of secret `{}`", s.name)
    })?;
    Ok(Secret {
        id: s.id,
        name: s.name,
        values,
        created_at: s.created_at,
        updated_at: s.updated_at,
    })
}

pub(crate) fn list(
    conn: &Connection,
    _keys: &Keyring,
    name_contains: Option<&str>,
) -> Result<Vec<SecretSummary>> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM secrets ORDER BY name")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .filter(|(_, name)| name_contains.is_none_or(|n| name.contains(n)))
        .map(|(id, _)| summary(conn, &id))
        .collect()
}

pub(crate) fn update(
    conn: &Connection,
    keys: &Keyring,
    name_or_id: &str,
    update: SecretUpdate,
) -> Result<SecretSummary> {
    let id = resolve(conn, name_or_id)?;
    let current = summary(conn, &id)?;
    let name = update.name.unwrap_or_else(|| current.name.clone());
    util::validate_new_name(&KIND, &current.name, &name)?;
    conn.execute(
        "UPDATE secrets SET name = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, name, util::now()],
    )
    .map_err(|e| util::map_unique(e, KIND, &name))?;
    if update.replace {
        conn.execute("DELETE FROM secret_values WHERE secret_id = ?1", [&id])?;
    }
    for key in &update.remove_keys {
        conn.execute(
            "DELETE FROM secret_values WHERE secret_id = ?1 AND key = ?2",
            params![id, key],
        )?;
    }
    write_values(conn, keys, &id, &update.values)?;
    tracing::debug!(secret = %name, %id, "updated a secret");
    summary(conn, &id)
}

pub(crate) fn delete(
    conn: &Connection,
    _keys: &Keyring,
    name_or_id: &str,
) -> Result<SecretSummary> {
    let id = resolve(conn, name_or_id)?;
    let current = summary(conn, &id)?;
    conn.execute("DELETE FROM secrets WHERE id = ?1", [&id])?;
    tracing::debug!(secret = %current.name, %id, "deleted a secret");
    Ok(current)
}
