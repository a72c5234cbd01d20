//! Stacks, the active stack and initialised projects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use uuid::Uuid;

use crate::components;
use crate::crypto::Keyring;
use crate::error::{EntityKind, Result, StoreError};
use crate::util::{self, Labels};

/// A stored stack: at most one component per component type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Stack {
    /// Its id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// A description.
    pub description: String,
    /// Labels.
    pub labels: Labels,
    /// Its components by component type.
    pub components: BTreeMap<String, StackMember>,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// A component in a stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StackMember {
    /// The component's id.
    pub id: Uuid,
    /// The component's name.
    pub name: String,
    /// The component's flavor.
    pub flavor: String,
}

/// A stack to register.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewStack {
    /// Its name.
    pub name: String,
    /// A description.
    pub description: String,
    /// Labels.
    pub labels: Labels,
    /// Components by type: component type → component name or id.
    pub components: BTreeMap<String, String>,
}

impl NewStack {
    /// An empty stack named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        NewStack {
            name: name.into(),
            ..NewStack::default()
        }
    }

    /// Adds the component `name_or_id` of `component_type`.
    pub fn with_component(
        mut self,
        component_type: impl Into<String>,
        name_or_id: impl Into<String>,
    ) -> Self {
        self.components
            .insert(component_type.into(), name_or_id.into());
        self
    }
}

/// Changes to a stack; unset fields stay as they are.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StackUpdate {
    /// A new name.
    pub name: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// Labels to set.
    pub labels: Labels,
    /// Label keys to remove.
    pub remove_labels: Vec<String>,
    /// Components to set (replacing any of the same type): type → name or id.
    pub components: BTreeMap<String, String>,
    /// Component types to remove.
    pub remove_components: Vec<String>,
}

/// Which stacks [`crate::Store::list_stacks`] returns; unset fields match all.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StackFilter {
    /// Names containing this text.
    pub name_contains: Option<String>,
    /// Stacks holding the component with this id.
    pub component_id: Option<Uuid>,
    /// Labels that must be present; an empty value matches any value.
    pub labels: Labels,
}

impl StackFilter {
    /// A filter matching every stack.
    pub fn new() -> Self {
        StackFilter::default()
    }
}

/// Where [`crate::Store::set_active_stack`] sets the active stack.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActiveScope {
    /// For every directory that is not in an initialised project.
    Global,
    /// For the project initialised at this root (see [`crate::Store::init_project`]).
    Project(PathBuf),
}

/// Where the active stack came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActiveStackSource {
    /// The global setting.
    Global,
    /// The initialised project at `root` (the CLI shows "(repository)").
    Repository {
        /// The project root.
        root: PathBuf,
    },
}

impl ActiveStackSource {
    /// Whether it came from a project (shown as "(repository)").
    pub fn is_repository(&self) -> bool {
        matches!(self, ActiveStackSource::Repository { .. })
    }
}

/// The active stack and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ActiveStack {
    /// The stack.
    pub stack: Stack,
    /// Where the choice came from.
    pub source: ActiveStackSource,
}

/// A directory initialised with `stepstack init`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Project {
    /// The project root (canonical).
    pub root: PathBuf,
    /// The name of its active stack.
    pub active_stack: String,
    /// When its active stack was last set.
    pub updated_at: Timestamp,
}

const KIND: EntityKind = EntityKind::Stack;
const GLOBAL_SCOPE: &str = "";

fn set_members(
    conn: &Connection,
    stack_id: &str,
    components: &BTreeMap<String, String>,
) -> Result<()> {
    for (component_type, name_or_id) in components {
        let (component_id, _) =
            components::find(conn, component_type, name_or_id)?.ok_or_else(|| {
                StoreError::not_found(
                    EntityKind::Component(component_type.clone()),
                    name_or_id.clone(),
                )
            })?;
        conn.execute(
            "INSERT INTO stack_members (stack_id, component_type, component_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (stack_id, component_type) DO UPDATE SET component_id = excluded.component_id",
            params![stack_id, component_type, component_id],
        )?;
    }
    Ok(())
}

pub(crate) fn create(conn: &Connection, _keys: &Keyring, new: NewStack) -> Result<Stack> {
    util::validate_entity_name(&KIND, &new.name)?;
    util::validate_labels(&new.labels)?;
    let id = Uuid::new_v4().to_string();
    conn.execute(
        "INSERT INTO stacks (id, name, description, labels, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![id, new.name, new.description, util::to_json(&new.labels)?, util::now()],
    )
    .map_err(|e| util::map_unique(e, KIND, &new.name))?;
    set_members(conn, &id, &new.components)?;
    tracing::debug!(stack = %new.name, %id, "registered a stack");
    get_by_id(conn, &id)
}

fn get_by_id(conn: &Connection, id: &str) -> Result<Stack> {
    let row = conn
        .query_row(
            "SELECT id, name, description, labels, created_at, updated_at FROM stacks WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            },
        )
        .optional()?;
    let Some((id, name, description, labels, created_at, updated_at)) = row else {
        return Err(StoreError::not_found(KIND, id));
    };
    let mut stmt = conn.prepare_cached(
        "SELECT m.component_type, c.id, c.name, c.flavor FROM stack_members m
         JOIN stack_components c ON c.id = m.component_id WHERE m.stack_id = ?1",
    )?;
    let mut rows = stmt.query([&id])?;
    let mut components = BTreeMap::new();
    while let Some(r) = rows.next()? {
        components.insert(
            r.get::<_, String>(0)?,
            StackMember {
                id: util::parse_uuid(&r.get::<_, String>(1)?, "stack_components.id")?,
                name: r.get(2)?,
                flavor: r.get(3)?,
            },
        );
    }
    Ok(Stack {
        id: util::parse_uuid(&id, "stacks.id")?,
        name,
        description,
        labels: util::from_json(&labels, "labels")?,
        components,
        created_at: util::parse_ts(&created_at, "created_at")?,
        updated_at: util::parse_ts(&updated_at, "updated_at")?,
    })
}

fn resolve(conn: &Connection, name_or_id: &str) -> Result<String> {
    util::resolve_id(conn, "stacks", None, &KIND, name_or_id)
}

pub(crate) fn get(conn: &Connection, _keys: &Keyring, name_or_id: &str) -> Result<Stack> {
    get_by_id(conn, &resolve(conn, name_or_id)?)
}

pub(crate) fn list(conn: &Connection, _keys: &Keyring, filter: &StackFilter) -> Result<Vec<Stack>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM stacks ORDER BY name")?;
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for id in ids {
        let stack = get_by_id(conn, &id)?;
        let keep = filter
            .name_contains
            .as_ref()
            .is_none_or(|n| stack.name.contains(n.as_str()))
            && filter
                .component_id
                .is_none_or(|c| stack.components.values().any(|m| m.id == c))
            && crate::connectors::labels_match(&filter.labels, &stack.labels);
        if keep {
            out.push(stack);
        }
    }
    Ok(out)
}

pub(crate) fn update(
    conn: &Connection,
    _keys: &Keyring,
    name_or_id: &str,
    update: StackUpdate,
) -> Result<Stack> {
    let current = get_by_id(conn, &resolve(conn, name_or_id)?)?;
    let id = current.id.to_string();
    let name = update.name.unwrap_or_else(|| current.name.clone());
    util::validate_new_name(&KIND, &current.name, &name)?;
    let mut labels = current.labels.clone();
    for key in &update.remove_labels {
        labels.remove(key);
    }
    labels.extend(update.labels);
    util::validate_labels(&labels)?;
    conn.execute(
        "UPDATE stacks SET name = ?2, description = ?3, labels = ?4, updated_at = ?5 WHERE id = ?1",
        params![
            id,
            name,
            update
                .description
                .unwrap_or_else(|| current.description.clone()),
            util::to_json(&labels)?,
            util::now()
        ],
    )
    .map_err(|e| util::map_unique(e, KIND, &name))?;
    for component_type in &update.remove_components {
        if !current.components.contains_key(component_type)
            && !update.components.contains_key(component_type)
        {
            return Err(StoreError::invalid(format!(
                "stack `{}` has no {} to remove",
                current.name,
                component_type.replace('_', " ")
            )));
        }
        conn.execute(
            "DELETE FROM stack_members WHERE stack_id = ?1 AND component_type = ?2",
            params![id, component_type],
        )?;
    }
    set_members(conn, &id, &update.components)?;
    tracing::debug!(stack = %name, %id, "updated a stack");
    get_by_id(conn, &id)
}

fn scopes_using(conn: &Connection, stack_id: &str) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT scope FROM active_stacks WHERE stack_id = ?1 ORDER BY scope")?;
    let scopes = stmt
        .query_map([stack_id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(scopes)
}

pub(crate) fn delete(conn: &Connection, _keys: &Keyring, name_or_id: &str) -> Result<Stack> {
    let current = get_by_id(conn, &resolve(conn, name_or_id)?)?;
    let id = current.id.to_string();
    let scopes = scopes_using(conn, &id)?;
    if !scopes.is_empty() {
        let used_by = scopes
            .iter()
            .map(|s| {
                if s == GLOBAL_SCOPE {
                    "the global active-stack setting".to_owned()
                } else {
                    format!("project {s}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(StoreError::InUse {
            kind: KIND,
            name: current.name,
            used_by,
            action: "activate another stack there first with `stepstack stack set OTHER`"
                .to_owned(),
        });
    }
    conn.execute("DELETE FROM stacks WHERE id = ?1", [&id])?;
    tracing::debug!(stack = %current.name, %id, "deleted a stack");
    Ok(current)
}

fn path_text(path: &Path) -> Result<String> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        StoreError::invalid(format!(
            "the project path {} is not valid UTF-8; use a directory with a UTF-8 path",
            path.display()
        ))
    })
}

/// The canonical form of an existing project root.
fn canonical_root(root: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(root)
        .map_err(|e| StoreError::io("cannot use the project directory", root, e))
}

pub(crate) fn set_active(
    conn: &Connection,
    keys: &Keyring,
    name_or_id: &str,
    scope: &ActiveScope,
) -> Result<ActiveStack> {
    let stack = get(conn, keys, name_or_id)?;
    let (scope_text, source) = match scope {
        ActiveScope::Global => (GLOBAL_SCOPE.to_owned(), ActiveStackSource::Global),
        ActiveScope::Project(root) => {
            let root = canonical_root(root)?;
            let text = path_text(&root)?;
            let known: Option<String> = conn
                .query_row(
                    "SELECT scope FROM active_stacks WHERE scope = ?1",
                    [&text],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_none() {
                return Err(StoreError::invalid(format!(
                    "{} is not an initialised project; run `stepstack init` there first",
                    root.display()
                )));
            }
            (text, ActiveStackSource::Repository { root })
        }
    };
    conn.execute(
        "INSERT INTO active_stacks (scope, stack_id, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (scope) DO UPDATE SET stack_id = excluded.stack_id, updated_at = excluded.updated_at",
        params![scope_text, stack.id.to_string(), util::now()],
    )?;
    tracing::debug!(stack = %stack.name, scope = %scope_text, "set the active stack");
    Ok(ActiveStack { stack, source })
}

fn projects(conn: &Connection) -> Result<Vec<Project>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.scope, s.name, a.updated_at FROM active_stacks a JOIN stacks s ON s.id = a.stack_id
         WHERE a.scope <> '' ORDER BY a.scope",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(root, active_stack, updated_at)| {
            Ok(Project {
                root: PathBuf::from(root),
                active_stack,
                updated_at: util::parse_ts(&updated_at, "active_stacks.updated_at")?,
            })
        })
        .collect()
}

pub(crate) fn list_projects(conn: &Connection, _keys: &Keyring) -> Result<Vec<Project>> {
    projects(conn)
}

pub(crate) fn find_project(
    conn: &Connection,
    _keys: &Keyring,
    cwd: &Path,
) -> Result<Option<Project>> {
    // Paths are stored canonical; compare with the canonical cwd when it exists.
    let cwd = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    Ok(projects(conn)?
        .into_iter()
        .filter(|p| cwd.starts_with(&p.root))
        .max_by_key(|p| p.root.components().count()))
}

pub(crate) fn active(conn: &Connection, keys: &Keyring, cwd: &Path) -> Result<ActiveStack> {
    if let Some(project) = find_project(conn, keys, cwd)? {
        let stack_id: String = conn.query_row(
            "SELECT stack_id FROM active_stacks WHERE scope = ?1",
            [path_text(&project.root)?],
            |r| r.get(0),
        )?;
        return Ok(ActiveStack {
            stack: get_by_id(conn, &stack_id)?,
            source: ActiveStackSource::Repository { root: project.root },
        });
    }
    let stack_id: Option<String> = conn
        .query_row(
            "SELECT stack_id FROM active_stacks WHERE scope = ''",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match stack_id {
        Some(id) => Ok(ActiveStack {
            stack: get_by_id(conn, &id)?,
            source: ActiveStackSource::Global,
        }),
        None => Err(StoreError::invalid(
            "no stack is active; activate one with `stepstack stack set NAME`",
        )),
    }
}

pub(crate) fn init_project(conn: &Connection, _keys: &Keyring, root: &Path) -> Result<Project> {
    let root = canonical_root(root)?;
    if !root.is_dir() {
        return Err(StoreError::invalid(format!(
            "{} is not a directory; run `stepstack init` in a project directory",
            root.display()
        )));
    }
    let text = path_text(&root)?;
    let stack_id: String = conn
        .query_row("SELECT stack_id FROM active_stacks WHERE scope = ''", [], |r| r.get(0))
        .optional()?
        .ok_or_else(|| {
            StoreError::invalid(
                "no global stack is active to start the project with; activate one with `stepstack stack set NAME`",
            )
        })?;
    let now = util::now();
    conn.execute(
        "INSERT INTO active_stacks (scope, stack_id, updated_at) VALUES (?1, ?2, ?3)",
        params![text, stack_id, now],
    )
    .map_err(|e| util::map_unique(e, EntityKind::Project, &text))?;
    tracing::debug!(root = %text, "initialised a project");
    Ok(Project {
        root,
        active_stack: get_by_id(conn, &stack_id)?.name,
        updated_at: util::parse_ts(&now, "updated_at")?,
    })
}

pub(crate) fn remove_project(conn: &Connection, _keys: &Keyring, root: &Path) -> Result<Project> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let text = path_text(&root)?;
    let project = projects(conn)?
        .into_iter()
        .find(|p| p.root == root)
        .ok_or_else(|| StoreError::not_found(EntityKind::Project, text.clone()))?;
    conn.execute("DELETE FROM active_stacks WHERE scope = ?1", [&text])?;
    Ok(project)
}
