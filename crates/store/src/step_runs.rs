//! Step-run records: what `step logs`, `step status` and reattaching need.

use std::path::PathBuf;

use jiff::Timestamp;
use rusqlite::{Connection, params};
use serde::Serialize;
use stepstack_core::{FailureReason, StepHandle, StepStatus};

use crate::crypto::Keyring;
use crate::error::{EntityKind, Result, StoreError};
use crate::util;

/// A recorded step run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StepRun {
    /// The step-run id.
    pub id: String,
    /// The step's name.
    pub step_name: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The step operator (component name) it runs on.
    pub component: String,
    /// The handle to reattach to it, once submitted.
    pub handle: Option<StepHandle>,
    /// Its last known status.
    pub status: StepStatus,
    /// The status' short name: `pending`, `running`, `succeeded`, `failed`, or
    /// `cancelled` (a failure whose reason is the cancellation).
    pub status_text: String,
    /// Where its logs are kept locally, if anywhere.
    pub log_path: Option<PathBuf>,
    /// When it was recorded.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
}

/// A step run to record.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewStepRun {
    /// The step-run id (e.g. `StepLaunch::step_run_id`).
    pub id: String,
    /// The step's name.
    pub step_name: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The step operator it runs on.
    pub component: String,
    /// The handle, if already submitted.
    pub handle: Option<StepHandle>,
    /// The initial status (pending by default).
    pub status: StepStatus,
    /// Where its logs are kept locally.
    pub log_path: Option<PathBuf>,
}

impl NewStepRun {
    /// A pending step run.
    pub fn new(
        id: impl Into<String>,
        pipeline: impl Into<String>,
        step_name: impl Into<String>,
        component: impl Into<String>,
    ) -> Self {
        NewStepRun {
            id: id.into(),
            step_name: step_name.into(),
            pipeline: pipeline.into(),
            component: component.into(),
            handle: None,
            status: StepStatus::Pending { message: None },
            log_path: None,
        }
    }

    /// A step run recorded from its handle, right after submission.
    pub fn from_handle(handle: StepHandle, component: impl Into<String>) -> Self {
        let mut new = NewStepRun::new(
            handle.step_run_id.clone(),
            handle.pipeline_name.clone(),
            handle.step_name.clone(),
            component,
        );
        new.handle = Some(handle);
        new
    }

    /// Sets the log path.
    pub fn with_log_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_path = Some(path.into());
        self
    }

    /// Sets the initial status.
    pub fn with_status(mut self, status: StepStatus) -> Self {
        self.status = status;
        self
    }
}

/// Changes to a step run; unset fields stay as they are.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StepRunUpdate {
    /// The handle.
    pub handle: Option<StepHandle>,
    /// The new status; a finished one sets `finished_at`. A finished status is final:
    /// an unfinished one (a late `pending` from a process that did not see the end, e.g.
    /// a submitter racing a `step cancel`) leaves it as it is.
    pub status: Option<StepStatus>,
    /// The log path.
    pub log_path: Option<PathBuf>,
}

impl StepRunUpdate {
    /// An update setting the status.
    pub fn status(status: StepStatus) -> Self {
        StepRunUpdate {
            status: Some(status),
            ..StepRunUpdate::default()
        }
    }
}

/// Which step runs [`crate::Store::list_step_runs`] returns; unset fields match all.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StepRunFilter {
    /// This pipeline.
    pub pipeline: Option<String>,
    /// This step name.
    pub step_name: Option<String>,
    /// This step operator.
    pub component: Option<String>,
    /// This status (`pending`, `running`, `succeeded`, `failed`, `cancelled`).
    pub status: Option<String>,
    /// Only runs that have not finished.
    pub unfinished: bool,
    /// At most this many (newest first).
    pub limit: Option<usize>,
}

impl StepRunFilter {
    /// A filter matching every step run.
    pub fn new() -> Self {
        StepRunFilter::default()
    }
}

const KIND: EntityKind = EntityKind::StepRun;

fn status_text(status: &StepStatus) -> Result<String> {
    // A cancelled step did not fail: lists and filters name it for what it is.
    if let StepStatus::Failed(failure) = status
        && failure.reason == FailureReason::Cancelled
    {
        return Ok("cancelled".to_owned());
    }
    let value = serde_json::to_value(status)
        .map_err(|e| StoreError::invalid(format!("cannot store the status: {e}")))?;
    Ok(value
        .get("state")
        .and_then(|s| s.as_str())
        .unwrap_or("unknown")
        .to_owned())
}

fn path_text(path: &std::path::Path) -> Result<String> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        StoreError::invalid(format!(
            "the log path {} is not valid UTF-8",
            path.display()
        ))
    })
}

pub(crate) fn create(conn: &Connection, _keys: &Keyring, new: NewStepRun) -> Result<StepRun> {
    if new.id.trim().is_empty() {
        return Err(StoreError::invalid("a step run needs a non-empty id"));
    }
    util::validate_name(&KIND, &new.id)?;
    let finished = new.status.is_finished();
    let now = util::now();
    conn.execute(
        "INSERT INTO step_runs (id, step_name, pipeline, component, handle, status, status_json, log_path,
             created_at, updated_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
        params![
            new.id,
            new.step_name,
            new.pipeline,
            new.component,
            new.handle.as_ref().map(util::to_json).transpose()?,
            status_text(&new.status)?,
            util::to_json(&new.status)?,
            new.log_path.as_deref().map(path_text).transpose()?,
            now,
            finished.then(|| now.clone()),
        ],
    )
    .map_err(|e| util::map_unique(e, KIND, &new.id))?;
    get_exact(conn, &new.id)
}

fn from_row(row: &rusqlite::Row<'_>) -> Result<StepRun> {
    let handle: Option<String> = util::get(row, "handle")?;
    Ok(StepRun {
        id: util::get(row, "id")?,
        step_name: util::get(row, "step_name")?,
        pipeline: util::get(row, "pipeline")?,
        component: util::get(row, "component")?,
        handle: handle
            .map(|h| util::from_json(&h, "step_runs.handle"))
            .transpose()?,
        status: util::from_json(
            &util::get::<String>(row, "status_json")?,
            "step_runs.status_json",
        )?,
        status_text: util::get(row, "status")?,
        log_path: util::get::<Option<String>>(row, "log_path")?.map(PathBuf::from),
        created_at: util::parse_ts(&util::get::<String>(row, "created_at")?, "created_at")?,
        updated_at: util::parse_ts(&util::get::<String>(row, "updated_at")?, "updated_at")?,
        finished_at: util::parse_opt_ts(util::get(row, "finished_at")?, "finished_at")?,
    })
}

const SELECT: &str =
    "SELECT id, step_name, pipeline, component, handle, status, status_json, log_path,
    created_at, updated_at, finished_at FROM step_runs";

fn get_exact(conn: &Connection, id: &str) -> Result<StepRun> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => from_row(row),
        None => Err(StoreError::not_found(KIND, id)),
    }
}

fn resolve(conn: &Connection, id: &str) -> Result<String> {
    let mut stmt = conn.prepare_cached("SELECT id FROM step_runs WHERE id = ?1")?;
    if stmt.exists([id])? {
        return Ok(id.to_owned());
    }
    if id.len() >= 4 {
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM step_runs WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2",
        )?;
        let ids = stmt
            .query_map([id], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        match ids.as_slice() {
            [one] => return Ok(one.clone()),
            [_, _, ..] => {
                return Err(StoreError::invalid(format!(
                    "the id prefix `{id}` matches several step runs; give more characters"
                )));
            }
            [] => {}
        }
    }
    Err(StoreError::not_found(KIND, id))
}

pub(crate) fn get(conn: &Connection, _keys: &Keyring, id: &str) -> Result<StepRun> {
    get_exact(conn, &resolve(conn, id)?)
}

pub(crate) fn list(
    conn: &Connection,
    _keys: &Keyring,
    filter: &StepRunFilter,
) -> Result<Vec<StepRun>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 IS NULL OR step_name = ?2)
           AND (?3 IS NULL OR component = ?3) AND (?4 IS NULL OR status = ?4)
           AND (?5 = 0 OR finished_at IS NULL)
         ORDER BY created_at DESC, id LIMIT ?6"
    ))?;
    let limit = filter
        .limit
        .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let mut rows = stmt.query(params![
        filter.pipeline,
        filter.step_name,
        filter.component,
        filter.status,
        filter.unfinished,
        limit
    ])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

pub(crate) fn update(
    conn: &Connection,
    keys: &Keyring,
    id: &str,
    update: StepRunUpdate,
) -> Result<StepRun> {
    let current = get(conn, keys, id)?;
    let handle = update.handle.or(current.handle);
    let status = match update.status {
        Some(new) if new.is_finished() || !current.status.is_finished() => new,
        // The end of a step run is final; the caller sees it in the returned record.
        _ => current.status,
    };
    let log_path = update.log_path.or(current.log_path);
    let now = util::now();
    let finished_at = match (status.is_finished(), current.finished_at) {
        (true, Some(at)) => Some(util::ts_text(at)),
        (true, None) => Some(now.clone()),
        (false, _) => None,
    };
    conn.execute(
        "UPDATE step_runs SET handle = ?2, status = ?3, status_json = ?4, log_path = ?5, updated_at = ?6,
             finished_at = ?7
         WHERE id = ?1",
        params![
            current.id,
            handle.as_ref().map(util::to_json).transpose()?,
            status_text(&status)?,
            util::to_json(&status)?,
            log_path.as_deref().map(path_text).transpose()?,
            now,
            finished_at,
        ],
    )?;
    get_exact(conn, &current.id)
}

pub(crate) fn delete(conn: &Connection, keys: &Keyring, id: &str) -> Result<StepRun> {
    let current = get(conn, keys, id)?;
    conn.execute("DELETE FROM step_runs WHERE id = ?1", [&current.id])?;
    Ok(current)
}
