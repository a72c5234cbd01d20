//! Small helpers shared by the entity modules.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rusqlite::Row;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{EntityKind, Result, StoreError};

/// Labels attached to connectors, components and stacks.
pub type Labels = BTreeMap<String, String>;

/// How timestamps are stored: RFC 3339 in UTC with nanoseconds, fixed width so that
/// text order is time order.
pub(crate) fn ts_text(ts: Timestamp) -> String {
    static PRINTER: jiff::fmt::temporal::DateTimePrinter =
        jiff::fmt::temporal::DateTimePrinter::new().precision(Some(9));
    PRINTER.timestamp_to_string(&ts)
}

/// The current time as stored.
pub(crate) fn now() -> String {
    ts_text(Timestamp::now())
}

pub(crate) fn parse_ts(text: &str, column: &str) -> Result<Timestamp> {
    text.parse()
        .map_err(|_| StoreError::corrupt(format!("{column} is not a timestamp")))
}

pub(crate) fn parse_opt_ts(text: Option<String>, column: &str) -> Result<Option<Timestamp>> {
    text.map(|t| parse_ts(&t, column)).transpose()
}

pub(crate) fn parse_uuid(text: &str, column: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| StoreError::corrupt(format!("{column} is not a UUID")))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::invalid(format!("cannot serialize to JSON: {e}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(text: &str, column: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|_| StoreError::corrupt(format!("{column} is not valid JSON")))
}

pub(crate) fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, column: &str) -> Result<T> {
    Ok(row.get(column)?)
}

pub(crate) fn u64_to_sql(value: Option<u64>, field: &str) -> Result<Option<i64>> {
    value
        .map(|v| {
            i64::try_from(v).map_err(|_| StoreError::invalid(format!("{field} is too large: {v}")))
        })
        .transpose()
}

pub(crate) fn u64_from_sql(value: Option<i64>, column: &str) -> Result<Option<u64>> {
    value
        .map(|v| u64::try_from(v).map_err(|_| StoreError::corrupt(format!("{column} is negative"))))
        .transpose()
}

/// Checks an identifier that is not a user-chosen name (a step-run id): non-empty, at
/// most 255 characters, no control characters, no leading or trailing whitespace.
pub(crate) fn validate_name(kind: &EntityKind, name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.chars().count() > 255 {
        Some("is longer than 255 characters")
    } else if name.chars().any(char::is_control) {
        Some("contains control characters")
    } else if name.trim() != name {
        Some("starts or ends with whitespace")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(StoreError::invalid(format!(
            "the {kind} name `{}` {problem}; choose a name of printable characters",
            name.escape_debug()
        ))),
        None => Ok(()),
    }
}

/// The longest name of a connector, component, stack or secret, in characters (names
/// are ASCII, so also in bytes): well under the 255 bytes of a file name.
pub const MAX_NAME_LEN: usize = 128;

/// Checks the name of a connector, stack component (of any type), stack or secret:
/// 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `-`, `_` and `.`, starting with a letter
/// or digit.
///
/// Names end up in file paths, kubeconfig contexts, command lines and terminals, so the
/// rule leaves out everything that could be read as a path (`..`, `/`, `\`), an option
/// (a leading `-`), a control or format character (NUL, bidi overrides, zero-width
/// spaces) or a look-alike of another name (any non-ASCII character).
pub(crate) fn validate_entity_name(kind: &EntityKind, name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        "is empty".to_owned()
    } else if name.len() > MAX_NAME_LEN {
        format!("is longer than {MAX_NAME_LEN} characters")
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        format!("contains {}", describe_char(bad))
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        "does not start with a letter or digit".to_owned()
    } else {
        return Ok(());
    };
    Err(StoreError::invalid(format!(
        "the {kind} name `{}` {problem}; a name is 1 to {MAX_NAME_LEN} ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit",
        shown_name(name)
    )))
}

/// Checks a new name given to an existing object, if it differs from the current one:
/// objects stored before the name rule keep working until they are renamed.
pub(crate) fn validate_new_name(kind: &EntityKind, current: &str, new: &str) -> Result<()> {
    if new == current {
        return Ok(());
    }
    validate_entity_name(kind, new)
}

/// A character for an error message: printable ones as they are, others by code point.
fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_owned(),
        '/' | '\\' => format!("`{c}`, a path separator"),
        c if c.is_ascii_graphic() => format!("`{c}`"),
        c => format!("U+{:04X}", u32::from(c)),
    }
}

/// A name for an error message: escaped, and cut when it is very long.
fn shown_name(name: &str) -> String {
    const SHOWN: usize = 40;
    let escaped: String = name.chars().flat_map(char::escape_default).collect();
    if escaped.chars().count() <= SHOWN {
        return escaped;
    }
    let cut: String = escaped.chars().take(SHOWN).collect();
    format!("{cut}…")
}

/// Checks a map key (config value, secret key, label key).
pub(crate) fn validate_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.chars().any(char::is_control) || key.trim() != key {
        return Err(StoreError::invalid(format!(
            "the {what} key `{}` is invalid; keys must be non-empty printable text without surrounding whitespace",
            key.escape_debug()
        )));
    }
    Ok(())
}

pub(crate) fn validate_labels(labels: &Labels) -> Result<()> {
    labels.keys().try_for_each(|k| validate_key("label", k))
}

/// Maps a unique-constraint violation to [`StoreError::AlreadyExists`].
pub(crate) fn map_unique(err: rusqlite::Error, kind: EntityKind, name: &str) -> StoreError {
    if let rusqlite::Error::SqliteFailure(e, _) = &err
        && matches!(
            e.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    {
        return StoreError::already_exists(kind, name);
    }
    err.into()
}

/// Resolves `name_or_id` to an id: an exact name first, then a full id, then a unique
/// id prefix (at least 4 characters). `scope` adds a condition (e.g. the component
/// type) with its parameter.
pub(crate) fn resolve_id(
    conn: &rusqlite::Connection,
    table: &str,
    scope: Option<(&str, &str)>,
    kind: &EntityKind,
    name_or_id: &str,
) -> Result<String> {
    use rusqlite::OptionalExtension;
    let (extra, scope_value) = match scope {
        Some((column, value)) => (format!(" AND {column} = ?2"), Some(value)),
        None => (String::new(), None),
    };
    let params = |first: &str| -> Vec<rusqlite::types::Value> {
        let mut v = vec![rusqlite::types::Value::Text(first.to_owned())];
        if let Some(s) = scope_value {
            v.push(rusqlite::types::Value::Text(s.to_owned()));
        }
        v
    };
    let by_name: Option<String> = conn
        .query_row(
            &format!("SELECT id FROM {table} WHERE name = ?1{extra}"),
            rusqlite::params_from_iter(params(name_or_id)),
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = by_name {
        return Ok(id);
    }
    let lowered = name_or_id.to_ascii_lowercase();
    if lowered.len() >= 4 && lowered.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        let mut stmt = conn.prepare(&format!(
            "SELECT id FROM {table} WHERE substr(id, 1, length(?1)) = ?1{extra} LIMIT 2"
        ))?;
        let ids = stmt
            .query_map(rusqlite::params_from_iter(params(&lowered)), |r| {
                r.get::<_, String>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        match ids.as_slice() {
            [id] => return Ok(id.clone()),
            [_, _, ..] => {
                return Err(StoreError::invalid(format!(
                    "the id prefix `{name_or_id}` matches several {kind}s; give more characters or the name"
                )));
            }
            [] => {}
        }
    }
    Err(StoreError::not_found(kind.clone(), name_or_id))
}
