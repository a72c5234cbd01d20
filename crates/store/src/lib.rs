#![doc = include_str!("../README.md")]

mod components;
mod connectors;
mod crypto;
mod error;
mod home;
mod schema;
mod sealed;
mod secrets;
mod stacks;
mod step_runs;
mod util;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use secrecy::SecretString;

pub use components::{Component, ComponentFilter, ComponentUpdate, Configuration, NewComponent};
pub use connectors::{Connector, ConnectorFilter, ConnectorUpdate, NewConnector};
pub use crypto::{KEY_FILE, SECRETS_KEY_ENV, generate_secrets_key};
pub use error::{EntityKind, Result, StoreError};
pub use home::{DATABASE_FILE, HOME_ENV, home_dir};
pub use schema::DEFAULT_STACK;
pub use secrets::{Secret, SecretSummary, SecretUpdate};
pub use stacks::{
    ActiveScope, ActiveStack, ActiveStackSource, NewStack, Project, Stack, StackFilter,
    StackMember, StackUpdate,
};
pub use step_runs::{NewStepRun, StepRun, StepRunFilter, StepRunUpdate};
pub use util::{Labels, MAX_NAME_LEN};

use crate::crypto::Keyring;

/// How long a statement waits for another process's write lock before failing with a
/// transient [`StoreError::Database`].
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`Store::open_with`].
#[derive(Clone)]
pub struct StoreOptions {
    secrets_key: Option<SecretString>,
    busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            secrets_key: None,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field(
                "secrets_key",
                &self.secrets_key.as_ref().map(|_| "[HIDDEN]"),
            )
            .field("busy_timeout", &self.busy_timeout)
            .finish()
    }
}

impl StoreOptions {
    /// Default options: the key file in the home, a 30 s busy timeout.
    pub fn new() -> Self {
        StoreOptions::default()
    }

    /// Options read from the environment through `env`: the secrets key from
    /// `STEPSTACK_SECRETS_KEY` when set and not empty.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Self {
        StoreOptions {
            secrets_key: env(SECRETS_KEY_ENV)
                .filter(|v| !v.trim().is_empty())
                .map(SecretString::from),
            ..StoreOptions::default()
        }
    }

    /// Uses `key` (base64 of 32 bytes) instead of the key file.
    pub fn secrets_key(mut self, key: SecretString) -> Self {
        self.secrets_key = Some(key);
        self
    }

    /// How long to wait for other processes' locks.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

/// The stepstack store: one SQLite database in the stepstack home.
///
/// Every write runs in its own IMMEDIATE transaction (or in the one
/// [`Store::write`] opens), so a failed operation changes nothing, and many processes
/// can read and write at once: the database is in WAL mode and waits for other
/// writers instead of failing.
pub struct Store {
    conn: Connection,
    home: PathBuf,
    database: PathBuf,
    keys: Keyring,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("database", &self.database)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating and migrating as needed) the store in `home`, using the key file
    /// there for secrets.
    pub fn open(home: &Path) -> Result<Store> {
        Store::open_with(home, StoreOptions::default())
    }

    /// Opens the store in `home` with `options`.
    pub fn open_with(home: &Path, options: StoreOptions) -> Result<Store> {
        home::ensure_home(home)?;
        let database = home.join(DATABASE_FILE);
        // Created 0600 before SQLite opens it; SQLite gives the WAL and shared-memory
        // files the database file's permissions.
        home::ensure_private_file(&database)?;
        let keys = Keyring::new(home, options.secrets_key.as_ref())?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&database, flags)?;
        conn.busy_timeout(options.busy_timeout)?;
        let deadline = Instant::now() + options.busy_timeout;
        let mode: String = retry_busy(deadline, || {
            Ok(conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?)
        })?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                mode,
                "the store could not switch to WAL mode; concurrent use will be slower"
            );
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        // FULL: a registered connector survives a power cut, at one fsync per write.
        conn.pragma_update(None, "synchronous", "FULL")?;
        retry_busy(deadline, || schema::migrate(&mut conn))?;
        for suffix in ["-wal", "-shm"] {
            let mut path = database.clone().into_os_string();
            path.push(suffix);
            let path = PathBuf::from(path);
            if path.exists() {
                home::set_mode(&path, 0o600)?;
            }
        }
        tracing::debug!(database = %database.display(), "opened the store");
        Ok(Store {
            conn,
            home: home.to_path_buf(),
            database,
            keys,
        })
    }

    /// The stepstack home this store lives in.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The database file.
    pub fn database_path(&self) -> &Path {
        &self.database
    }

    /// Runs `f` in one write transaction: if it returns `Err`, nothing it did is kept.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use stepstack_store::{NewComponent, NewStack, Store, StackUpdate};
    ///
    /// let mut store = Store::open(dir.path())?;
    /// store.write(|tx| {
    ///     tx.create_component(NewComponent::new("step_operator", "kubernetes", "k8s"))?;
    ///     let mut update = StackUpdate::default();
    ///     update.components.insert("step_operator".into(), "k8s".into());
    ///     tx.update_stack("default", update)
    /// })?;
    /// assert_eq!(store.get_stack("default")?.components["step_operator"].name, "k8s");
    /// # Ok::<(), stepstack_store::StoreError>(())
    /// ```
    pub fn write<T>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let handle = Tx {
            tx,
            keys: &self.keys,
        };
        let value = f(&handle)?;
        handle.tx.commit()?;
        Ok(value)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection, &Keyring) -> Result<T>) -> Result<T> {
        // A deferred transaction gives multi-statement reads one consistent snapshot.
        let tx = self.conn.unchecked_transaction()?;
        let value = f(&tx, &self.keys)?;
        tx.commit()?;
        Ok(value)
    }
}

/// Retries `f` while SQLite reports the database as busy, until `deadline`. The busy
/// timeout covers most waits; this covers the few places SQLite does not call the busy
/// handler (switching to WAL, first-time schema creation races).
fn retry_busy<T>(deadline: Instant, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(StoreError::Database {
                source: Some(e), ..
            }) if error::is_busy(&e) && Instant::now() < deadline => {
                tracing::debug!("store busy, retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// A write transaction opened by [`Store::write`]; it has the same methods as
/// [`Store`].
pub struct Tx<'s> {
    tx: rusqlite::Transaction<'s>,
    keys: &'s Keyring,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

/// Generates the [`Store`] and [`Tx`] methods from the entity modules' functions,
/// which all take `(conn, keys, args…)`.
macro_rules! api {
    ($(
        $(#[$meta:meta])*
        $mode:ident fn $name:ident($($arg:ident : $ty:ty),*) -> $ret:ty = $func:path;
    )*) => {
        impl Store {
            $( api!(@store $mode $(#[$meta])* fn $name($($arg: $ty),*) -> $ret = $func); )*
        }
        impl Tx<'_> {
            $(
                $(#[$meta])*
                pub fn $name(&self $(, $arg: $ty)*) -> Result<$ret> {
                    $func(&self.tx, self.keys $(, $arg)*)
                }
            )*
        }
    };
    (@store read $(#[$meta:meta])* fn $name:ident($($arg:ident : $ty:ty),*) -> $ret:ty = $func:path) => {
        $(#[$meta])*
        pub fn $name(&self $(, $arg: $ty)*) -> Result<$ret> {
            self.read(|conn, keys| $func(conn, keys $(, $arg)*))
        }
    };
    (@store write $(#[$meta:meta])* fn $name:ident($($arg:ident : $ty:ty),*) -> $ret:ty = $func:path) => {
        $(#[$meta])*
        pub fn $name(&mut self $(, $arg: $ty)*) -> Result<$ret> {
            self.write(|tx| tx.$name($($arg),*))
        }
    };
}

api! {
    // ---- service connectors ----
    /// Registers a service connector; its secrets are encrypted. Fails with
    /// [`StoreError::AlreadyExists`] if the name is taken.
    write fn create_connector(new: NewConnector) -> Connector = connectors::create;
    /// A service connector by name, id or unique id prefix (without secret values).
    read fn get_connector(name_or_id: &str) -> Connector = connectors::get;
    /// The service connectors matching `filter`, sorted by name.
    read fn list_connectors(filter: &ConnectorFilter) -> Vec<Connector> = connectors::list;
    /// A connector's decrypted secret values.
    read fn connector_secrets(name_or_id: &str) -> std::collections::BTreeMap<String, SecretString> = connectors::secrets;
    /// A connector as the [`stepstack_core::ConnectorConfig`] its flavor builds from,
    /// secrets decrypted.
    read fn connector_config(name_or_id: &str) -> stepstack_core::ConnectorConfig = connectors::config;
    /// Changes a service connector (its type cannot change).
    write fn update_connector(name_or_id: &str, update: ConnectorUpdate) -> Connector = connectors::update;
    /// Deletes a service connector; refused with [`StoreError::InUse`] while a stack
    /// component is linked to it.
    write fn delete_connector(name_or_id: &str) -> Connector = connectors::delete;

    // ---- stack components ----
    /// Registers a stack component (and links its connector, if given).
    write fn create_component(new: NewComponent) -> Component = components::create;
    /// A component of `component_type` by name, id or unique id prefix.
    read fn get_component(component_type: &str, name_or_id: &str) -> Component = components::get;
    /// The components matching `filter`, sorted by type and name.
    read fn list_components(filter: &ComponentFilter) -> Vec<Component> = components::list;
    /// Changes a component's name, configuration or labels (its flavor cannot change).
    write fn update_component(component_type: &str, name_or_id: &str, update: ComponentUpdate) -> Component = components::update;
    /// Links a component to a service connector and resource id.
    write fn connect_component(component_type: &str, name_or_id: &str, connector: &str, resource_id: Option<&str>) -> Component = components::connect;
    /// Removes a component's link to its service connector.
    write fn disconnect_component(component_type: &str, name_or_id: &str) -> Component = components::disconnect;
    /// Deletes a component; refused with [`StoreError::InUse`] while a stack holds it.
    write fn delete_component(component_type: &str, name_or_id: &str) -> Component = components::delete;

    // ---- stacks ----
    /// Registers a stack.
    write fn create_stack(new: NewStack) -> Stack = stacks::create;
    /// A stack by name, id or unique id prefix.
    read fn get_stack(name_or_id: &str) -> Stack = stacks::get;
    /// The stacks matching `filter`, sorted by name.
    read fn list_stacks(filter: &StackFilter) -> Vec<Stack> = stacks::list;
    /// Changes a stack: name, description, labels, components (one per type).
    write fn update_stack(name_or_id: &str, update: StackUpdate) -> Stack = stacks::update;
    /// Deletes a stack; refused with [`StoreError::InUse`] while it is active globally
    /// or in a project.
    write fn delete_stack(name_or_id: &str) -> Stack = stacks::delete;
    /// Makes a stack the active one, globally or for an initialised project.
    write fn set_active_stack(name_or_id: &str, scope: &ActiveScope) -> ActiveStack = stacks::set_active;
    /// The active stack for a command run in `cwd`: the one of the nearest initialised
    /// project at or above `cwd`, else the global one.
    read fn active_stack(cwd: &Path) -> ActiveStack = stacks::active;
    /// Initialises `root` as a project (like `stepstack init`), with the current global
    /// active stack as its active stack.
    write fn init_project(root: &Path) -> Project = stacks::init_project;
    /// The nearest initialised project at or above `cwd`, if any.
    read fn find_project(cwd: &Path) -> Option<Project> = stacks::find_project;
    /// The initialised projects, sorted by root.
    read fn list_projects() -> Vec<Project> = stacks::list_projects;
    /// Forgets an initialised project (its stacks stay).
    write fn remove_project(root: &Path) -> Project = stacks::remove_project;

    // ---- secrets ----
    /// Stores a secret; each value is encrypted with its own nonce.
    write fn create_secret(name: &str, values: std::collections::BTreeMap<String, SecretString>) -> SecretSummary = secrets::create;
    /// A secret with its decrypted values.
    read fn get_secret(name_or_id: &str) -> Secret = secrets::get;
    /// The secrets (names and keys only, nothing decrypted) whose name contains
    /// `name_contains`, sorted by name.
    read fn list_secrets(name_contains: Option<&str>) -> Vec<SecretSummary> = secrets::list;
    /// Renames a secret or sets and removes values.
    write fn update_secret(name_or_id: &str, update: SecretUpdate) -> SecretSummary = secrets::update;
    /// Deletes a secret.
    write fn delete_secret(name_or_id: &str) -> SecretSummary = secrets::delete;

    // ---- step runs ----
    /// Records a step run.
    write fn create_step_run(new: NewStepRun) -> StepRun = step_runs::create;
    /// A step run by id or unique id prefix.
    read fn get_step_run(id: &str) -> StepRun = step_runs::get;
    /// The step runs matching `filter`, newest first.
    read fn list_step_runs(filter: &StepRunFilter) -> Vec<StepRun> = step_runs::list;
    /// Updates a step run's handle, status or log path; a finished status sets
    /// `finished_at`.
    write fn update_step_run(id: &str, update: StepRunUpdate) -> StepRun = step_runs::update;
    /// Deletes a step-run record.
    write fn delete_step_run(id: &str) -> StepRun = step_runs::delete;
}
