//! Secrets: CRUD, encryption at rest, key from the environment or the key file, and
//! clear errors for a wrong or missing key.

use std::collections::BTreeMap;
use std::path::Path;

use stepstack_core::secrecy::{ExposeSecret, SecretString};
use stepstack_core::{ConnectorConfig, ErrorKind};
use stepstack_store::{
    ConnectorUpdate, KEY_FILE, SECRETS_KEY_ENV, SecretUpdate, Store, StoreError, StoreOptions,
    generate_secrets_key,
};

const PASSWORD: &str = "correct-horse-battery-staple-0xC0FFEE";
const CONNECTOR_SECRET: &str = "aws-secret-AKIA-9f8e7d6c5b4a";

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), SecretString::from(v.to_string())))
        .collect()
}

/// Every byte of every file in `home` (database, WAL, SHM, key file).
fn all_file_bytes(home: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(home).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.extend(std::fs::read(path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn secret_crud() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    let created = store
        .create_secret("db", values(&[("user", "admin"), ("password", PASSWORD)]))
        .unwrap();
    assert_eq!(created.keys, ["password", "user"]);
    assert!(matches!(
        store.create_secret("db", BTreeMap::new()),
        Err(StoreError::AlreadyExists { .. })
    ));

    let secret = store.get_secret("db").unwrap();
    assert_eq!(secret.values["password"].expose_secret(), PASSWORD);
    assert!(!format!("{secret:?}").contains(PASSWORD));

    let mut update = SecretUpdate::default();
    update.name = Some("database".into());
    update.values = values(&[("password", "new-one")]);
    update.remove_keys.push("user".into());
    let updated = store.update_secret("db", update).unwrap();
    assert_eq!(updated.name, "database");
    assert_eq!(updated.keys, ["password"]);
    assert_eq!(
        store.get_secret("database").unwrap().values["password"].expose_secret(),
        "new-one"
    );

    store.create_secret("other", values(&[("a", "b")])).unwrap();
    let names: Vec<_> = store
        .list_secrets(None)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["database", "other"]);
    assert_eq!(store.list_secrets(Some("data")).unwrap().len(), 1);

    store.delete_secret("database").unwrap();
    assert!(matches!(
        store.get_secret("database"),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn secrets_are_encrypted_at_rest() {
    let home = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(home.path()).unwrap();
        store
            .create_secret("db", values(&[("password", PASSWORD)]))
            .unwrap();
        store
            .create_connector(
                ConnectorConfig::new("aws-eu", "aws", "secret-key")
                    .with_value("region", "eu-west-1")
                    .with_secret("aws_secret_access_key", CONNECTOR_SECRET)
                    .into(),
            )
            .unwrap();
        // While open (data still in the WAL) …
        let bytes = all_file_bytes(home.path());
        assert!(
            contains(&bytes, "eu-west-1"),
            "the check must see plain values"
        );
        assert!(!contains(&bytes, PASSWORD));
        assert!(!contains(&bytes, CONNECTOR_SECRET));
    }
    // … and after closing (checkpointed into the database file).
    let bytes = all_file_bytes(home.path());
    assert!(!contains(&bytes, PASSWORD));
    assert!(!contains(&bytes, CONNECTOR_SECRET));
    // Reopened, the values decrypt with the key file.
    let store = Store::open(home.path()).unwrap();
    assert_eq!(
        store.get_secret("db").unwrap().values["password"].expose_secret(),
        PASSWORD
    );
    assert_eq!(
        store.connector_secrets("aws-eu").unwrap()["aws_secret_access_key"].expose_secret(),
        CONNECTOR_SECRET
    );
}

#[test]
fn key_from_the_environment_and_wrong_keys() {
    let home = tempfile::tempdir().unwrap();
    let key = generate_secrets_key().unwrap();
    let env_key = key.expose_secret().to_owned();
    let env = move |name: &str| (name == SECRETS_KEY_ENV).then(|| env_key.clone());
    {
        let mut store = Store::open_with(home.path(), StoreOptions::from_env(&env)).unwrap();
        store
            .create_secret("db", values(&[("password", PASSWORD)]))
            .unwrap();
        store
            .create_connector(
                ConnectorConfig::new("kube", "kubernetes", "token")
                    .with_secret("token", CONNECTOR_SECRET)
                    .into(),
            )
            .unwrap();
    }
    // With the key in the environment, no key file is written.
    assert!(!home.path().join(KEY_FILE).exists());
    let store = Store::open_with(home.path(), StoreOptions::from_env(&env)).unwrap();
    assert_eq!(
        store.get_secret("db").unwrap().values["password"].expose_secret(),
        PASSWORD
    );

    // Another key: a clear Crypto error that names the key source, never the value.
    let other = Store::open_with(
        home.path(),
        StoreOptions::new().secrets_key(generate_secrets_key().unwrap()),
    )
    .unwrap();
    let err = other.get_secret("db").unwrap_err();
    assert!(matches!(err, StoreError::Crypto { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("is not the key this store's secrets were encrypted with"),
        "{message}"
    );
    assert!(message.contains(SECRETS_KEY_ENV), "{message}");
    assert!(!message.contains(PASSWORD));
    assert_eq!(
        stepstack_core::Error::from(err).kind(),
        ErrorKind::Unauthenticated
    );
    // Listing needs no key.
    assert_eq!(other.list_secrets(None).unwrap().len(), 1);
    // Neither does an update that leaves the secrets alone; writing a secret does.
    let mut other = other;
    let mut update = ConnectorUpdate::new();
    update.labels.insert("env".into(), "dev".into());
    other.update_connector("kube", update).unwrap();
    let mut update = ConnectorUpdate::new();
    update
        .secrets
        .insert("token".into(), SecretString::from("x"));
    let err = other.update_connector("kube", update).unwrap_err();
    assert!(matches!(err, StoreError::Crypto { .. }), "{err:?}");
    let store = Store::open_with(home.path(), StoreOptions::from_env(&env)).unwrap();
    assert_eq!(
        store.connector_secrets("kube").unwrap()["token"].expose_secret(),
        CONNECTOR_SECRET
    );

    // No key in the environment and no key file: not silently replaced.
    let mut no_key = Store::open(home.path()).unwrap();
    let err = no_key.get_secret("db").unwrap_err();
    assert!(err.to_string().contains("is missing"), "{err}");
    let err = no_key
        .create_secret("new", values(&[("k", "v")]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Crypto { .. }));
    assert_eq!(
        no_key.list_secrets(None).unwrap().len(),
        1,
        "the failed create changed nothing"
    );

    // A malformed key is refused when opening.
    let err = Store::open_with(
        home.path(),
        StoreOptions::new().secrets_key(SecretString::from("short")),
    )
    .unwrap_err();
    assert!(err.to_string().contains(SECRETS_KEY_ENV), "{err}");
}

#[test]
fn a_replaced_key_file_is_detected() {
    let home = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(home.path()).unwrap();
        store
            .create_secret("db", values(&[("password", PASSWORD)]))
            .unwrap();
    }
    let key_file = home.path().join(KEY_FILE);
    std::fs::write(
        &key_file,
        format!("{}\n", generate_secrets_key().unwrap().expose_secret()),
    )
    .unwrap();
    let store = Store::open(home.path()).unwrap();
    let err = store.get_secret("db").unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&key_file.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("restore the original secrets.key"),
        "{message}"
    );
}
