//! Stack components (step operators, …).

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use uuid::Uuid;

use crate::connectors::{self, labels_match};
use crate::crypto::Keyring;
use crate::error::{EntityKind, Result, StoreError};
use crate::util::{self, Labels};

/// A component's configuration: a JSON object, already validated by its flavor.
pub type Configuration = serde_json::Map<String, serde_json::Value>;

/// A stored stack component.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Component {
    /// Its id.
    pub id: Uuid,
    /// The component type, e.g. `step_operator`.
    pub component_type: String,
    /// The flavor, e.g. `kubernetes`.
    pub flavor: String,
    /// Its name, unique among components of its type.
    pub name: String,
    /// The validated configuration.
    pub configuration: Configuration,
    /// The linked service connector's id.
    pub connector_id: Option<Uuid>,
    /// The linked service connector's name.
    pub connector_name: Option<String>,
    /// The resource id it uses through the connector.
    pub connector_resource_id: Option<String>,
    /// Labels.
    pub labels: Labels,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// A stack component to register.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewComponent {
    /// The component type, e.g. `step_operator`.
    pub component_type: String,
    /// The flavor.
    pub flavor: String,
    /// Its name.
    pub name: String,
    /// The validated configuration.
    pub configuration: Configuration,
    /// A service connector (name or id) to link.
    pub connector: Option<String>,
    /// The resource id to use through the connector.
    pub connector_resource_id: Option<String>,
    /// Labels.
    pub labels: Labels,
}

impl NewComponent {
    /// A component of `component_type` and `flavor` named `name`, with an empty
    /// configuration.
    pub fn new(
        component_type: impl Into<String>,
        flavor: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        NewComponent {
            component_type: component_type.into(),
            flavor: flavor.into(),
            name: name.into(),
            configuration: Configuration::new(),
            connector: None,
            connector_resource_id: None,
            labels: Labels::new(),
        }
    }

    /// Sets the configuration.
    pub fn with_configuration(mut self, configuration: Configuration) -> Self {
        self.configuration = configuration;
        self
    }

    /// Links a service connector (name or id) and optionally a resource id.
    pub fn with_connector(
        mut self,
        connector: impl Into<String>,
        resource_id: Option<String>,
    ) -> Self {
        self.connector = Some(connector.into());
        self.connector_resource_id = resource_id;
        self
    }

    /// Sets the labels.
    pub fn with_labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }
}

/// Changes to a component; unset fields stay as they are. The flavor cannot change.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ComponentUpdate {
    /// A new name.
    pub name: Option<String>,
    /// A new configuration, replacing the stored one (applied before `set`).
    pub configuration: Option<Configuration>,
    /// Configuration keys to set.
    pub set: Configuration,
    /// Configuration keys to remove.
    pub remove_keys: Vec<String>,
    /// Labels to set.
    pub labels: Labels,
    /// Label keys to remove.
    pub remove_labels: Vec<String>,
}

/// Which components [`crate::Store::list_components`] returns; unset fields match all.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ComponentFilter {
    /// This component type.
    pub component_type: Option<String>,
    /// This flavor.
    pub flavor: Option<String>,
    /// Names containing this text.
    pub name_contains: Option<String>,
    /// Linked to this connector (name or id).
    pub connector: Option<String>,
    /// Labels that must be present; an empty value matches any value.
    pub labels: Labels,
}

impl ComponentFilter {
    /// A filter matching every component.
    pub fn new() -> Self {
        ComponentFilter::default()
    }

    /// Components of `component_type`.
    pub fn of_type(component_type: impl Into<String>) -> Self {
        ComponentFilter {
            component_type: Some(component_type.into()),
            ..ComponentFilter::default()
        }
    }
}

fn kind(component_type: &str) -> EntityKind {
    EntityKind::Component(component_type.to_owned())
}

fn validate_type(component_type: &str) -> Result<()> {
    let ok = !component_type.is_empty()
        && component_type
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && component_type.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "`{}` is not a component type; use a snake_case type such as `step_operator`",
            component_type.escape_debug()
        )))
    }
}

pub(crate) fn create(conn: &Connection, keys: &Keyring, new: NewComponent) -> Result<Component> {
    validate_type(&new.component_type)?;
    let kind = kind(&new.component_type);
    util::validate_entity_name(&kind, &new.name)?;
    if new.flavor.trim().is_empty() {
        return Err(StoreError::invalid(format!(
            "the {kind} `{}` has no flavor; pass --flavor",
            new.name
        )));
    }
    util::validate_labels(&new.labels)?;
    let connector_id = match &new.connector {
        Some(c) => Some(connectors::resolve(conn, c)?),
        None => {
            if new.connector_resource_id.is_some() {
                return Err(StoreError::invalid(format!(
                    "the {kind} `{}` has a resource id but no service connector; pass --connector too",
                    new.name
                )));
            }
            None
        }
    };
    let id = Uuid::new_v4().to_string();
    conn.execute(
        "INSERT INTO stack_components (id, component_type, flavor, name, configuration, connector_id,
             connector_resource_id, labels, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        params![
            id,
            new.component_type,
            new.flavor,
            new.name,
            util::to_json(&new.configuration)?,
            connector_id,
            new.connector_resource_id,
            util::to_json(&new.labels)?,
            util::now(),
        ],
    )
    .map_err(|e| util::map_unique(e, kind.clone(), &new.name))?;
    tracing::debug!(component_type = %new.component_type, component = %new.name, %id, "registered a stack component");
    let _ = keys;
    get_by_id(conn, &id)
}

const SELECT: &str =
    "SELECT c.id, c.component_type, c.flavor, c.name, c.configuration, c.connector_id,
    s.name AS connector_name, c.connector_resource_id, c.labels, c.created_at, c.updated_at
    FROM stack_components c LEFT JOIN service_connectors s ON s.id = c.connector_id";

fn from_row(row: &rusqlite::Row<'_>) -> Result<Component> {
    Ok(Component {
        id: util::parse_uuid(&util::get::<String>(row, "id")?, "stack_components.id")?,
        component_type: util::get(row, "component_type")?,
        flavor: util::get(row, "flavor")?,
        name: util::get(row, "name")?,
        configuration: util::from_json(
            &util::get::<String>(row, "configuration")?,
            "configuration",
        )?,
        connector_id: util::get::<Option<String>>(row, "connector_id")?
            .map(|id| util::parse_uuid(&id, "connector_id"))
            .transpose()?,
        connector_name: util::get(row, "connector_name")?,
        connector_resource_id: util::get(row, "connector_resource_id")?,
        labels: util::from_json(&util::get::<String>(row, "labels")?, "labels")?,
        created_at: util::parse_ts(&util::get::<String>(row, "created_at")?, "created_at")?,
        updated_at: util::parse_ts(&util::get::<String>(row, "updated_at")?, "updated_at")?,
    })
}

pub(crate) fn get_by_id(conn: &Connection, id: &str) -> Result<Component> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE c.id = ?1"))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => from_row(row),
        None => Err(StoreError::not_found(
            EntityKind::Component("component".into()),
            id,
        )),
    }
}

pub(crate) fn resolve(conn: &Connection, component_type: &str, name_or_id: &str) -> Result<String> {
    util::resolve_id(
        conn,
        "stack_components",
        Some(("component_type", component_type)),
        &kind(component_type),
        name_or_id,
    )
}

pub(crate) fn get(
    conn: &Connection,
    _keys: &Keyring,
    component_type: &str,
    name_or_id: &str,
) -> Result<Component> {
    get_by_id(conn, &resolve(conn, component_type, name_or_id)?)
}

pub(crate) fn list(
    conn: &Connection,
    _keys: &Keyring,
    filter: &ComponentFilter,
) -> Result<Vec<Component>> {
    let connector_id = match &filter.connector {
        Some(c) => match connectors::resolve(conn, c) {
            Ok(id) => Some(id),
            Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        },
        None => None,
    };
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY c.component_type, c.name"))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let c = from_row(row)?;
        let keep = filter
            .component_type
            .as_ref()
            .is_none_or(|t| &c.component_type == t)
            && filter.flavor.as_ref().is_none_or(|f| &c.flavor == f)
            && filter
                .name_contains
                .as_ref()
                .is_none_or(|n| c.name.contains(n.as_str()))
            && connector_id
                .as_ref()
                .is_none_or(|id| c.connector_id.map(|u| u.to_string()).as_ref() == Some(id))
            && labels_match(&filter.labels, &c.labels);
        if keep {
            out.push(c);
        }
    }
    Ok(out)
}

pub(crate) fn update(
    conn: &Connection,
    keys: &Keyring,
    component_type: &str,
    name_or_id: &str,
    update: ComponentUpdate,
) -> Result<Component> {
    let current = get(conn, keys, component_type, name_or_id)?;
    let kind = kind(component_type);
    let name = update.name.unwrap_or_else(|| current.name.clone());
    util::validate_new_name(&kind, &current.name, &name)?;
    let mut configuration = update
        .configuration
        .unwrap_or_else(|| current.configuration.clone());
    for key in &update.remove_keys {
        configuration.remove(key);
    }
    configuration.extend(update.set);
    let mut labels = current.labels.clone();
    for key in &update.remove_labels {
        labels.remove(key);
    }
    labels.extend(update.labels);
    util::validate_labels(&labels)?;
    conn.execute(
        "UPDATE stack_components SET name = ?2, configuration = ?3, labels = ?4, updated_at = ?5 WHERE id = ?1",
        params![
            current.id.to_string(),
            name,
            util::to_json(&configuration)?,
            util::to_json(&labels)?,
            util::now()
        ],
    )
    .map_err(|e| util::map_unique(e, kind, &name))?;
    get_by_id(conn, &current.id.to_string())
}

pub(crate) fn connect(
    conn: &Connection,
    keys: &Keyring,
    component_type: &str,
    name_or_id: &str,
    connector: &str,
    resource_id: Option<&str>,
) -> Result<Component> {
    let current = get(conn, keys, component_type, name_or_id)?;
    let connector_id = connectors::resolve(conn, connector)?;
    conn.execute(
        "UPDATE stack_components SET connector_id = ?2, connector_resource_id = ?3, updated_at = ?4 WHERE id = ?1",
        params![current.id.to_string(), connector_id, resource_id, util::now()],
    )?;
    get_by_id(conn, &current.id.to_string())
}

pub(crate) fn disconnect(
    conn: &Connection,
    keys: &Keyring,
    component_type: &str,
    name_or_id: &str,
) -> Result<Component> {
    let current = get(conn, keys, component_type, name_or_id)?;
    if current.connector_id.is_none() {
        return Err(StoreError::invalid(format!(
            "the {} `{}` is not connected to a service connector",
            kind(component_type),
            current.name
        )));
    }
    conn.execute(
        "UPDATE stack_components SET connector_id = NULL, connector_resource_id = NULL, updated_at = ?2 WHERE id = ?1",
        params![current.id.to_string(), util::now()],
    )?;
    get_by_id(conn, &current.id.to_string())
}

pub(crate) fn delete(
    conn: &Connection,
    keys: &Keyring,
    component_type: &str,
    name_or_id: &str,
) -> Result<Component> {
    let current = get(conn, keys, component_type, name_or_id)?;
    let id = current.id.to_string();
    let mut stmt = conn.prepare_cached(
        "SELECT s.name FROM stack_members m JOIN stacks s ON s.id = m.stack_id WHERE m.component_id = ?1 ORDER BY s.name",
    )?;
    let stacks = stmt
        .query_map([&id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(first) = stacks.first() {
        return Err(StoreError::InUse {
            kind: kind(component_type),
            name: current.name,
            used_by: stacks
                .iter()
                .map(|s| format!("stack `{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
            action: format!(
                "remove it from those stacks first, e.g. with `stepstack stack update {first}`"
            ),
        });
    }
    conn.execute("DELETE FROM stack_components WHERE id = ?1", [&id])?;
    tracing::debug!(component_type, component = %current.name, %id, "deleted a stack component");
    Ok(current)
}

/// The id of the component of `component_type` named or identified by `name_or_id`,
/// if it exists (for stacks).
pub(crate) fn find(
    conn: &Connection,
    component_type: &str,
    name_or_id: &str,
) -> Result<Option<(String, String)>> {
    match resolve(conn, component_type, name_or_id) {
        Ok(id) => Ok(conn
            .query_row(
                "SELECT id, name FROM stack_components WHERE id = ?1",
                [&id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
