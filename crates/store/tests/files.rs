//! The home and its files: resolution, modes, migrations and reopening.

use std::path::PathBuf;

use stepstack_core::ConnectorConfig;
use stepstack_store::{
    ConnectorFilter, DATABASE_FILE, DEFAULT_STACK, HOME_ENV, KEY_FILE, StackFilter, Store,
    StoreError, home_dir,
};

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn home_resolution_order() {
    let env = |name: &str| (name == HOME_ENV).then(|| "/env/home".to_owned());
    assert_eq!(
        home_dir(Some("/flag".into()), env).unwrap(),
        PathBuf::from("/flag")
    );
    assert_eq!(home_dir(None, env).unwrap(), PathBuf::from("/env/home"));
    let unset = |_: &str| None;
    if let Some(data) = dirs::data_dir() {
        assert_eq!(home_dir(None, unset).unwrap(), data.join("stepstack"));
    }
}

#[cfg(unix)]
#[test]
fn files_are_private() {
    let base = tempfile::tempdir().unwrap();
    let home = base.path().join("nested").join("home");
    let mut store = Store::open(&home).unwrap();
    store
        .create_connector(
            ConnectorConfig::new("c", "aws", "secret-key")
                .with_secret("k", "v")
                .into(),
        )
        .unwrap();
    assert_eq!(mode(&home), 0o700);
    let db = home.join(DATABASE_FILE);
    assert_eq!(store.database_path(), db);
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&home.join(KEY_FILE)), 0o600);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&home).unwrap() {
        let path = entry.unwrap().path();
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "secrets.key",
            "stepstack.db",
            "stepstack.db-shm",
            "stepstack.db-wal"
        ]
    );
}

#[cfg(unix)]
#[test]
fn an_existing_database_with_loose_permissions_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join(DATABASE_FILE);
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    // An empty file is migrated like a new store.
    let store = Store::open(home.path()).unwrap();
    assert_eq!(mode(&db), 0o600);
    assert_eq!(store.get_stack(DEFAULT_STACK).unwrap().name, DEFAULT_STACK);
}

#[test]
fn migrations_run_once_and_reopening_keeps_data() {
    let home = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(home.path()).unwrap();
        store
            .create_connector(ConnectorConfig::new("c", "aws", "x").into())
            .unwrap();
        assert_eq!(store.list_stacks(&StackFilter::new()).unwrap().len(), 1);
    }
    for _ in 0..3 {
        let store = Store::open(home.path()).unwrap();
        // The default stack is seeded once, data survives.
        assert_eq!(store.list_stacks(&StackFilter::new()).unwrap().len(), 1);
        assert_eq!(
            store
                .list_connectors(&ConnectorFilter::new())
                .unwrap()
                .len(),
            1
        );
    }
    let conn = rusqlite::Connection::open(home.path().join(DATABASE_FILE)).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert!(version >= 1);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    // A store from a newer stepstack is refused rather than damaged.
    conn.pragma_update(None, "user_version", version + 1)
        .unwrap();
    drop(conn);
    let err = Store::open(home.path()).unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade stepstack"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_reported() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(DATABASE_FILE), vec![0x42u8; 8192]).unwrap();
    let err = Store::open(home.path()).unwrap_err();
    assert!(
        err.to_string().contains("corrupt or not a stepstack store"),
        "{err}"
    );
}

#[test]
fn a_home_that_is_a_file_is_reported() {
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("home");
    std::fs::write(&file, b"x").unwrap();
    let err = Store::open(&file).unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("is not a directory"), "{err}");
}

#[cfg(unix)]
#[test]
fn an_existing_home_open_to_others_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    for loose in [0o755, 0o750, 0o711, 0o777, 0o701] {
        let home = base.path().join(format!("home-{loose:o}"));
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(loose)).unwrap();
        drop(Store::open(&home).unwrap());
        assert_eq!(mode(&home), 0o700, "a home that was {loose:o}");
    }
}
