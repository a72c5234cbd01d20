//! Service connectors.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use rusqlite::{Connection, params};
use secrecy::SecretString;
use serde::Serialize;
use stepstack_core::ConnectorConfig;
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::error::{EntityKind, Result, StoreError};
use crate::sealed::SealedValues;
use crate::util::{self, Labels};

/// A connector's secret configuration values.
const SECRETS: SealedValues = SealedValues {
    table: "connector_secrets",
    owner_column: "connector_id",
    aad_prefix: "connector",
};

fn load_secrets(
    conn: &Connection,
    keys: &Keyring,
    connector: &Connector,
) -> Result<BTreeMap<String, SecretString>> {
    SECRETS.load(conn, keys, &connector.id.to_string(), |key| {
        format!("secret `{key}` of service connector `{}`", connector.name)
    })
}

/// A stored service connector, without its secret values (see
/// [`crate::Store::connector_secrets`] and [`crate::Store::connector_config`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Connector {
    /// Its id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// The connector type, e.g. `aws`.
    pub connector_type: String,
    /// The auth method, e.g. `secret-key`.
    pub auth_method: String,
    /// The resource types it may reach (several or none: multi-type).
    pub resource_types: Vec<String>,
    /// The one resource it is scoped to, if any.
    pub resource_id: Option<String>,
    /// Non-secret configuration values.
    pub values: BTreeMap<String, serde_json::Value>,
    /// The keys of its secret values.
    pub secret_keys: Vec<String>,
    /// When the stored credentials expire.
    pub expires_at: Option<Timestamp>,
    /// Seconds before `expires_at` at which they count as expired.
    pub expires_skew_tolerance: Option<u64>,
    /// The lifetime of the temporary credentials it issues.
    pub expiration_seconds: Option<u64>,
    /// Labels.
    pub labels: Labels,
    /// A description.
    pub description: String,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

impl Connector {
    /// The connector as a [`ConnectorConfig`], with `secrets` (from
    /// [`crate::Store::connector_secrets`]) as its secret values.
    pub fn to_config(&self, secrets: BTreeMap<String, SecretString>) -> ConnectorConfig {
        let mut config = ConnectorConfig::new(&self.name, &self.connector_type, &self.auth_method);
        config.resource_types = self.resource_types.clone();
        config.resource_id = self.resource_id.clone();
        config.values = self.values.clone();
        config.secrets = secrets;
        config.expires_at = self.expires_at;
        config.expires_skew_tolerance = self.expires_skew_tolerance;
        config.expiration_seconds = self.expiration_seconds;
        config
    }
}

/// A service connector to register.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewConnector {
    /// Name, type, auth method, scope, values and secrets.
    pub config: ConnectorConfig,
    /// Labels.
    pub labels: Labels,
    /// A description.
    pub description: String,
}

impl NewConnector {
    /// A connector registered from `config`.
    pub fn from_config(config: ConnectorConfig) -> Self {
        NewConnector {
            config,
            labels: Labels::new(),
            description: String::new(),
        }
    }

    /// Sets the labels.
    pub fn with_labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
}

impl From<ConnectorConfig> for NewConnector {
    fn from(config: ConnectorConfig) -> Self {
        NewConnector::from_config(config)
    }
}

/// Changes to a service connector. Unset fields stay as they are; `values` and
/// `secrets` are merged into the stored ones (setting a key as a value removes a secret
/// of that key and vice versa) unless `replace_config` drops the stored ones first.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ConnectorUpdate {
    /// A new name.
    pub name: Option<String>,
    /// The connector type, only to check that it is unchanged (types cannot change).
    pub connector_type: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// A new auth method.
    pub auth_method: Option<String>,
    /// New resource types.
    pub resource_types: Option<Vec<String>>,
    /// A new resource id (`Some(None)` clears it).
    pub resource_id: Option<Option<String>>,
    /// Drop all stored values and secrets before applying `values` and `secrets`.
    pub replace_config: bool,
    /// Values to set.
    pub values: BTreeMap<String, serde_json::Value>,
    /// Secrets to set.
    pub secrets: BTreeMap<String, SecretString>,
    /// Value or secret keys to remove.
    pub remove_keys: Vec<String>,
    /// A new expiry (`Some(None)` clears it).
    pub expires_at: Option<Option<Timestamp>>,
    /// A new skew tolerance (`Some(None)` clears it).
    pub expires_skew_tolerance: Option<Option<u64>>,
    /// A new expiration (`Some(None)` clears it).
    pub expiration_seconds: Option<Option<u64>>,
    /// Labels to set.
    pub labels: Labels,
    /// Label keys to remove.
    pub remove_labels: Vec<String>,
}

impl std::fmt::Debug for ConnectorUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorUpdate")
            .field("name", &self.name)
            .field("connector_type", &self.connector_type)
            .field("description", &self.description)
            .field("auth_method", &self.auth_method)
            .field("resource_types", &self.resource_types)
            .field("resource_id", &self.resource_id)
            .field("replace_config", &self.replace_config)
            .field("values", &self.values)
            .field(
                "secrets",
                &self
                    .secrets
                    .keys()
                    .map(|k| (k, "[HIDDEN]"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("remove_keys", &self.remove_keys)
            .field("expires_at", &self.expires_at)
            .field("expires_skew_tolerance", &self.expires_skew_tolerance)
            .field("expiration_seconds", &self.expiration_seconds)
            .field("labels", &self.labels)
            .field("remove_labels", &self.remove_labels)
            .finish()
    }
}

impl ConnectorUpdate {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        ConnectorUpdate::default()
    }

    /// An update that makes the connector exactly `config` (name, auth method, scope,
    /// values, secrets, expiry), keeping its id, labels and description. Use it after
    /// merging and verifying a configuration from [`crate::Store::connector_config`].
    pub fn replace_with(config: ConnectorConfig) -> Self {
        ConnectorUpdate {
            name: Some(config.name),
            connector_type: Some(config.connector_type),
            auth_method: Some(config.auth_method),
            resource_types: Some(config.resource_types),
            resource_id: Some(config.resource_id),
            replace_config: true,
            values: config.values,
            secrets: config.secrets,
            expires_at: Some(config.expires_at),
            expires_skew_tolerance: Some(config.expires_skew_tolerance),
            expiration_seconds: Some(config.expiration_seconds),
            ..ConnectorUpdate::default()
        }
    }
}

/// Which connectors [`crate::Store::list_connectors`] returns; unset fields match all.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectorFilter {
    /// Names containing this text.
    pub name_contains: Option<String>,
    /// This connector type.
    pub connector_type: Option<String>,
    /// This auth method.
    pub auth_method: Option<String>,
    /// Connectors that may reach this resource type (multi-type connectors with no
    /// listed types match any).
    pub resource_type: Option<String>,
    /// This resource id.
    pub resource_id: Option<String>,
    /// Labels that must be present; an empty value matches any value of that key.
    pub labels: Labels,
}

impl ConnectorFilter {
    /// A filter matching every connector.
    pub fn new() -> Self {
        ConnectorFilter::default()
    }

    fn matches(&self, c: &Connector) -> bool {
        self.name_contains
            .as_ref()
            .is_none_or(|n| c.name.contains(n.as_str()))
            && self
                .connector_type
                .as_ref()
                .is_none_or(|t| &c.connector_type == t)
            && self
                .auth_method
                .as_ref()
                .is_none_or(|m| &c.auth_method == m)
            && self
                .resource_type
                .as_ref()
                .is_none_or(|t| c.resource_types.is_empty() || c.resource_types.contains(t))
            && self
                .resource_id
                .as_ref()
                .is_none_or(|r| c.resource_id.as_ref() == Some(r))
            && labels_match(&self.labels, &c.labels)
    }
}

pub(crate) fn labels_match(wanted: &Labels, have: &Labels) -> bool {
    wanted
        .iter()
        .all(|(k, v)| have.get(k).is_some_and(|hv| v.is_empty() || hv == v))
}

const KIND: EntityKind = EntityKind::Connector;

/// The validated, stored form of a connector's fields.
struct Fields {
    name: String,
    connector_type: String,
    auth_method: String,
    resource_types: Vec<String>,
    resource_id: Option<String>,
    values: BTreeMap<String, serde_json::Value>,
    secret_keys: BTreeSet<String>,
    expires_at: Option<Timestamp>,
    expires_skew_tolerance: Option<u64>,
    expiration_seconds: Option<u64>,
    labels: Labels,
    description: String,
}

impl Fields {
    /// Checks the fields; `current_name` is the stored name on an update (an unchanged
    /// name is not checked again).
    fn validate(&mut self, current_name: Option<&str>) -> Result<()> {
        match current_name {
            Some(current) => util::validate_new_name(&KIND, current, &self.name)?,
            None => util::validate_entity_name(&KIND, &self.name)?,
        }
        for (what, value) in [
            ("connector type", &self.connector_type),
            ("auth method", &self.auth_method),
        ] {
            if value.trim().is_empty() {
                return Err(StoreError::invalid(format!(
                    "the {what} of service connector `{}` is empty; see `stepstack service-connector list-types`",
                    self.name
                )));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        self.resource_types.retain(|t| seen.insert(t.clone()));
        if self.resource_types.iter().any(|t| t.trim().is_empty()) {
            return Err(StoreError::invalid(format!(
                "service connector `{}` lists an empty resource type; see `stepstack service-connector list-types`",
                self.name
            )));
        }
        if self.resource_id.as_deref().is_some_and(|r| r.is_empty()) {
            self.resource_id = None;
        }
        for key in self.values.keys() {
            util::validate_key("configuration", key)?;
        }
        for key in &self.secret_keys {
            util::validate_key("secret", key)?;
            if self.values.contains_key(key) {
                return Err(StoreError::invalid(format!(
                    "`{key}` of service connector `{}` is given both as a secret and as a plain value; give it once",
                    self.name
                )));
            }
        }
        util::validate_labels(&self.labels)
    }
}

pub(crate) fn create(conn: &Connection, keys: &Keyring, new: NewConnector) -> Result<Connector> {
    let NewConnector {
        config,
        labels,
        description,
    } = new;
    let mut fields = Fields {
        name: config.name,
        connector_type: config.connector_type,
        auth_method: config.auth_method,
        resource_types: config.resource_types,
        resource_id: config.resource_id,
        values: config.values,
        secret_keys: config.secrets.keys().cloned().collect(),
        expires_at: config.expires_at,
        expires_skew_tolerance: config.expires_skew_tolerance,
        expiration_seconds: config.expiration_seconds,
        labels,
        description,
    };
    fields.validate(None)?;
    let id = Uuid::new_v4().to_string();
    let now = util::now();
    conn.execute(
        "INSERT INTO service_connectors (id, name, connector_type, auth_method, resource_types, resource_id,
             config, expires_at, expires_skew_tolerance, expiration_seconds, labels, description, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
        params![
            id,
            fields.name,
            fields.connector_type,
            fields.auth_method,
            util::to_json(&fields.resource_types)?,
            fields.resource_id,
            util::to_json(&fields.values)?,
            fields.expires_at.map(util::ts_text),
            util::u64_to_sql(fields.expires_skew_tolerance, "expires_skew_tolerance")?,
            util::u64_to_sql(fields.expiration_seconds, "expiration_seconds")?,
            util::to_json(&fields.labels)?,
            fields.description,
            now,
        ],
    )
    .map_err(|e| util::map_unique(e, KIND, &fields.name))?;
    SECRETS.write(conn, keys, &id, &config.secrets)?;
    tracing::debug!(connector = %fields.name, %id, "registered a service connector");
    get_by_id(conn, &id)
}

const COLUMNS: &str =
    "id, name, connector_type, auth_method, resource_types, resource_id, config, expires_at,
    expires_skew_tolerance, expiration_seconds, labels, description, created_at, updated_at";

fn from_row(row: &rusqlite::Row<'_>, secret_keys: Vec<String>) -> Result<Connector> {
    Ok(Connector {
        id: util::parse_uuid(&util::get::<String>(row, "id")?, "service_connectors.id")?,
        name: util::get(row, "name")?,
        connector_type: util::get(row, "connector_type")?,
        auth_method: util::get(row, "auth_method")?,
        resource_types: util::from_json(
            &util::get::<String>(row, "resource_types")?,
            "resource_types",
        )?,
        resource_id: util::get(row, "resource_id")?,
        values: util::from_json(&util::get::<String>(row, "config")?, "config")?,
        secret_keys,
        expires_at: util::parse_opt_ts(util::get(row, "expires_at")?, "expires_at")?,
        expires_skew_tolerance: util::u64_from_sql(
            util::get(row, "expires_skew_tolerance")?,
            "expires_skew_tolerance",
        )?,
        expiration_seconds: util::u64_from_sql(
            util::get(row, "expiration_seconds")?,
            "expiration_seconds",
        )?,
        labels: util::from_json(&util::get::<String>(row, "labels")?, "labels")?,
        description: util::get(row, "description")?,
        created_at: util::parse_ts(&util::get::<String>(row, "created_at")?, "created_at")?,
        updated_at: util::parse_ts(&util::get::<String>(row, "updated_at")?, "updated_at")?,
    })
}

fn secret_keys(conn: &Connection, id: &str) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT key FROM connector_secrets WHERE connector_id = ?1 ORDER BY key")?;
    let keys = stmt
        .query_map([id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(keys)
}

pub(crate) fn get_by_id(conn: &Connection, id: &str) -> Result<Connector> {
    let keys = secret_keys(conn, id)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM service_connectors WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => from_row(row, keys),
        None => Err(StoreError::not_found(KIND, id)),
    }
}

pub(crate) fn resolve(conn: &Connection, name_or_id: &str) -> Result<String> {
    util::resolve_id(conn, "service_connectors", None, &KIND, name_or_id)
}

pub(crate) fn get(conn: &Connection, _keys: &Keyring, name_or_id: &str) -> Result<Connector> {
    get_by_id(conn, &resolve(conn, name_or_id)?)
}

pub(crate) fn list(
    conn: &Connection,
    _keys: &Keyring,
    filter: &ConnectorFilter,
) -> Result<Vec<Connector>> {
    let mut all_keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    {
        let mut stmt =
            conn.prepare_cached("SELECT connector_id, key FROM connector_secrets ORDER BY key")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            all_keys.entry(row.get(0)?).or_default().push(row.get(1)?);
        }
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM service_connectors ORDER BY name"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id: String = row.get("id")?;
        let connector = from_row(row, all_keys.remove(&id).unwrap_or_default())?;
        if filter.matches(&connector) {
            out.push(connector);
        }
    }
    Ok(out)
}

pub(crate) fn secrets(
    conn: &Connection,
    keys: &Keyring,
    name_or_id: &str,
) -> Result<BTreeMap<String, SecretString>> {
    let connector = get(conn, keys, name_or_id)?;
    load_secrets(conn, keys, &connector)
}

pub(crate) fn config(
    conn: &Connection,
    keys: &Keyring,
    name_or_id: &str,
) -> Result<ConnectorConfig> {
    let connector = get(conn, keys, name_or_id)?;
    let secrets = load_secrets(conn, keys, &connector)?;
    Ok(connector.to_config(secrets))
}

pub(crate) fn update(
    conn: &Connection,
    keys: &Keyring,
    name_or_id: &str,
    update: ConnectorUpdate,
) -> Result<Connector> {
    let current = get(conn, keys, name_or_id)?;
    let id = current.id.to_string();
    if let Some(t) = &update.connector_type
        && t != &current.connector_type
    {
        return Err(StoreError::invalid(format!(
            "service connector `{}` is of type `{}` and cannot become `{t}`; register a new connector instead",
            current.name, current.connector_type
        )));
    }
    // Secret values are only written, never decrypted here: an update that does not
    // touch secrets works without the secrets key.
    let mut secret_keys: BTreeSet<String> = if update.replace_config {
        BTreeSet::new()
    } else {
        current.secret_keys.iter().cloned().collect()
    };
    let mut new_secrets = BTreeMap::new();
    let mut values = if update.replace_config {
        BTreeMap::new()
    } else {
        current.values.clone()
    };
    for key in &update.remove_keys {
        values.remove(key);
        secret_keys.remove(key);
    }
    for (key, value) in update.values {
        secret_keys.remove(&key);
        values.insert(key, value);
    }
    for (key, value) in update.secrets {
        values.remove(&key);
        secret_keys.insert(key.clone());
        new_secrets.insert(key, value);
    }
    let mut labels = current.labels.clone();
    for key in &update.remove_labels {
        labels.remove(key);
    }
    labels.extend(update.labels);
    let mut fields = Fields {
        name: update.name.unwrap_or_else(|| current.name.clone()),
        connector_type: current.connector_type.clone(),
        auth_method: update
            .auth_method
            .unwrap_or_else(|| current.auth_method.clone()),
        resource_types: update
            .resource_types
            .unwrap_or_else(|| current.resource_types.clone()),
        resource_id: update
            .resource_id
            .unwrap_or_else(|| current.resource_id.clone()),
        values,
        secret_keys,
        expires_at: update.expires_at.unwrap_or(current.expires_at),
        expires_skew_tolerance: update
            .expires_skew_tolerance
            .unwrap_or(current.expires_skew_tolerance),
        expiration_seconds: update
            .expiration_seconds
            .unwrap_or(current.expiration_seconds),
        labels,
        description: update
            .description
            .unwrap_or_else(|| current.description.clone()),
    };
    fields.validate(Some(&current.name))?;
    conn.execute(
        "UPDATE service_connectors SET name = ?2, auth_method = ?3, resource_types = ?4, resource_id = ?5, config = ?6,
             expires_at = ?7, expires_skew_tolerance = ?8, expiration_seconds = ?9, labels = ?10, description = ?11,
             updated_at = ?12
         WHERE id = ?1",
        params![
            id,
            fields.name,
            fields.auth_method,
            util::to_json(&fields.resource_types)?,
            fields.resource_id,
            util::to_json(&fields.values)?,
            fields.expires_at.map(util::ts_text),
            util::u64_to_sql(fields.expires_skew_tolerance, "expires_skew_tolerance")?,
            util::u64_to_sql(fields.expiration_seconds, "expiration_seconds")?,
            util::to_json(&fields.labels)?,
            fields.description,
            util::now(),
        ],
    )
    .map_err(|e| util::map_unique(e, KIND, &fields.name))?;
    for key in &current.secret_keys {
        if !fields.secret_keys.contains(key) {
            conn.execute(
                "DELETE FROM connector_secrets WHERE connector_id = ?1 AND key = ?2",
                params![id, key],
            )?;
        }
    }
    SECRETS.write(conn, keys, &id, &new_secrets)?;
    tracing::debug!(connector = %fields.name, %id, "updated a service connector");
    get_by_id(conn, &id)
}

pub(crate) fn delete(conn: &Connection, keys: &Keyring, name_or_id: &str) -> Result<Connector> {
    let current = get(conn, keys, name_or_id)?;
    let id = current.id.to_string();
    let mut stmt = conn.prepare_cached(
        "SELECT component_type, name FROM stack_components WHERE connector_id = ?1 ORDER BY 1, 2",
    )?;
    let users = stmt
        .query_map([&id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((first_type, first_name)) = users.first() {
        let used_by = users
            .iter()
            .map(|(t, n)| format!("{} `{n}`", t.replace('_', " ")))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(StoreError::InUse {
            kind: KIND,
            name: current.name,
            used_by,
            action: format!(
                "disconnect them first, e.g. `stepstack {} disconnect {first_name}`",
                first_type.replace('_', "-")
            ),
        });
    }
    conn.execute("DELETE FROM service_connectors WHERE id = ?1", [&id])?;
    tracing::debug!(connector = %current.name, %id, "deleted a service connector");
    Ok(current)
}
