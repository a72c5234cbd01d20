//! Service connectors: CRUD, name conflicts, `ConnectorConfig` round trips, in-use
//! deletion, and failed operations leaving the store unchanged.

use std::collections::BTreeMap;

use jiff::Timestamp;
use stepstack_core::secrecy::{ExposeSecret, SecretString};
use stepstack_core::{ConnectorConfig, ErrorKind};
use stepstack_store::{
    ConnectorFilter, ConnectorUpdate, EntityKind, NewComponent, NewConnector, Store, StoreError,
};

fn aws(name: &str) -> ConnectorConfig {
    let mut config = ConnectorConfig::new(name, "aws", "secret-key")
        .with_resource_types(["kubernetes-cluster", "s3-bucket"])
        .with_resource_id("zenhacks-cluster")
        .with_value("region", "eu-west-1")
        .with_value("aws_access_key_id", "AKIAEXAMPLE")
        .with_secret("aws_secret_access_key", "wJalrXUtnFEMI-top-secret");
    config.expires_at = Some("2030-01-02T03:04:05Z".parse::<Timestamp>().unwrap());
    config.expires_skew_tolerance = Some(60);
    config.expiration_seconds = Some(3600);
    config
}

#[test]
fn connector_config_round_trips() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    let labels = BTreeMap::from([("team".to_owned(), "ml".to_owned())]);
    let created = store
        .create_connector(
            NewConnector::from_config(aws("aws-eu"))
                .with_labels(labels.clone())
                .with_description("EU"),
        )
        .unwrap();
    assert_eq!(created.name, "aws-eu");
    assert_eq!(created.secret_keys, ["aws_secret_access_key"]);
    assert_eq!(created.labels, labels);
    assert_eq!(created.description, "EU");
    assert!(!created.values.contains_key("aws_secret_access_key"));

    let back = store.connector_config("aws-eu").unwrap();
    let original = aws("aws-eu");
    assert_eq!(back.name, original.name);
    assert_eq!(back.connector_type, original.connector_type);
    assert_eq!(back.auth_method, original.auth_method);
    assert_eq!(back.resource_types, original.resource_types);
    assert_eq!(back.resource_id, original.resource_id);
    assert_eq!(back.values, original.values);
    assert_eq!(back.expires_at, original.expires_at);
    assert_eq!(back.expires_skew_tolerance, Some(60));
    assert_eq!(back.expiration_seconds, Some(3600));
    assert_eq!(
        back.secret("aws_secret_access_key")
            .unwrap()
            .expose_secret(),
        "wJalrXUtnFEMI-top-secret"
    );

    // By id and by unique id prefix too.
    let by_id = store.get_connector(&created.id.to_string()).unwrap();
    assert_eq!(by_id, created);
    let prefix = &created.id.to_string()[..8];
    assert_eq!(store.get_connector(prefix).unwrap().id, created.id);

    // Secrets never show in Debug.
    let debug = format!(
        "{:?} {:?} {:?}",
        created,
        back,
        store.connector_secrets("aws-eu").unwrap()
    );
    assert!(!debug.contains("top-secret"), "{debug}");
}

#[test]
fn names_are_unique_and_lookups_say_what_is_missing() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    store.create_connector(aws("aws-eu").into()).unwrap();
    let err = store.create_connector(aws("aws-eu").into()).unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { kind: EntityKind::Connector, name } if name == "aws-eu"),
        "{err:?}"
    );
    assert!(!err.to_string().contains("top-secret"));
    assert_eq!(stepstack_core::Error::from(err).kind(), ErrorKind::Conflict);
    // The failed create left no second row and no stray secrets behind.
    assert_eq!(
        store
            .list_connectors(&ConnectorFilter::new())
            .unwrap()
            .len(),
        1
    );

    let err = store.get_connector("nope").unwrap_err();
    assert_eq!(
        err.to_string(),
        "service connector `nope` not found; see `stepstack service-connector list` for the registered ones"
    );
    let err = store
        .create_connector(ConnectorConfig::new(" bad", "aws", "x").into())
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    let err = store
        .create_connector(
            ConnectorConfig::new("dup-key", "aws", "x")
                .with_value("k", "v")
                .with_secret("k", "s")
                .into(),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("both as a secret and as a plain value"),
        "{err}"
    );
}

#[test]
fn list_filters() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    store.create_connector(aws("b-aws").into()).unwrap();
    store
        .create_connector(
            NewConnector::from_config(
                ConnectorConfig::new("a-kube", "kubernetes", "token")
                    .with_resource_types(["kubernetes-cluster"]),
            )
            .with_labels(BTreeMap::from([("env".to_owned(), "dev".to_owned())])),
        )
        .unwrap();
    store
        .create_connector(ConnectorConfig::new("c-multi", "gcp", "service-account").into())
        .unwrap();

    let names = |f: &ConnectorFilter| -> Vec<String> {
        store
            .list_connectors(f)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect()
    };
    assert_eq!(
        names(&ConnectorFilter::new()),
        ["a-kube", "b-aws", "c-multi"]
    );
    let mut f = ConnectorFilter::new();
    f.connector_type = Some("aws".into());
    assert_eq!(names(&f), ["b-aws"]);
    let mut f = ConnectorFilter::new();
    f.resource_type = Some("s3-bucket".into());
    // c-multi lists no types, so it may reach any.
    assert_eq!(names(&f), ["b-aws", "c-multi"]);
    let mut f = ConnectorFilter::new();
    f.labels.insert("env".into(), String::new());
    assert_eq!(names(&f), ["a-kube"]);
    let mut f = ConnectorFilter::new();
    f.resource_id = Some("zenhacks-cluster".into());
    assert_eq!(names(&f), ["b-aws"]);
}

#[test]
fn update_merges_replaces_renames_and_keeps_the_type() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    let created = store.create_connector(aws("aws-eu").into()).unwrap();

    let mut update = ConnectorUpdate::new();
    update.values.insert("region".into(), "eu-central-1".into());
    update
        .secrets
        .insert("aws_session_token".into(), SecretString::from("tok"));
    update.remove_keys.push("aws_access_key_id".into());
    update.resource_id = Some(None);
    update.expiration_seconds = Some(Some(900));
    update.labels.insert("env".into(), "prod".into());
    let updated = store.update_connector("aws-eu", update).unwrap();
    assert_eq!(updated.id, created.id);
    assert_eq!(updated.values.get("region").unwrap(), "eu-central-1");
    assert!(!updated.values.contains_key("aws_access_key_id"));
    assert_eq!(
        updated.secret_keys,
        ["aws_secret_access_key", "aws_session_token"]
    );
    assert_eq!(updated.resource_id, None);
    assert_eq!(updated.expiration_seconds, Some(900));
    assert_eq!(updated.labels.get("env").map(String::as_str), Some("prod"));
    assert!(updated.updated_at >= created.updated_at);
    let secrets = store.connector_secrets("aws-eu").unwrap();
    assert_eq!(
        secrets["aws_secret_access_key"].expose_secret(),
        "wJalrXUtnFEMI-top-secret"
    );

    // A value replacing a secret of the same key.
    let mut update = ConnectorUpdate::new();
    update
        .values
        .insert("aws_session_token".into(), "plain".into());
    let updated = store.update_connector("aws-eu", update).unwrap();
    assert_eq!(updated.secret_keys, ["aws_secret_access_key"]);

    // Full replacement from a config, including a rename.
    let replacement =
        ConnectorConfig::new("aws-eu-2", "aws", "sts-token").with_secret("token", "t2");
    let updated = store
        .update_connector("aws-eu", ConnectorUpdate::replace_with(replacement))
        .unwrap();
    assert_eq!(updated.name, "aws-eu-2");
    assert_eq!(updated.auth_method, "sts-token");
    assert!(updated.values.is_empty());
    assert_eq!(updated.secret_keys, ["token"]);
    assert_eq!(updated.expires_at, None);
    assert_eq!(updated.labels.get("env").map(String::as_str), Some("prod"));
    assert!(matches!(
        store.get_connector("aws-eu"),
        Err(StoreError::NotFound { .. })
    ));

    // The type cannot change.
    let err = store
        .update_connector(
            "aws-eu-2",
            ConnectorUpdate::replace_with(ConnectorConfig::new("x", "gcp", "y")),
        )
        .unwrap_err();
    assert!(err.to_string().contains("cannot become `gcp`"), "{err}");
    assert_eq!(store.get_connector("aws-eu-2").unwrap(), updated);
}

#[test]
fn a_failed_update_changes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    store.create_connector(aws("one").into()).unwrap();
    let two = store.create_connector(aws("two").into()).unwrap();
    // Rename onto an existing name, together with value and secret changes.
    let mut update = ConnectorUpdate::new();
    update.name = Some("one".into());
    update.values.insert("region".into(), "us-east-1".into());
    update.secrets.insert(
        "aws_secret_access_key".into(),
        SecretString::from("changed"),
    );
    let err = store.update_connector("two", update).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(store.get_connector("two").unwrap(), two);
    assert_eq!(
        store.connector_secrets("two").unwrap()["aws_secret_access_key"].expose_secret(),
        "wJalrXUtnFEMI-top-secret"
    );

    // A batch that fails halfway keeps none of its writes.
    let err = store
        .write(|tx| {
            tx.create_connector(aws("three").into())?;
            tx.delete_connector("one")?;
            tx.get_connector("does-not-exist")
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
    let names: Vec<_> = store
        .list_connectors(&ConnectorFilter::new())
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["one", "two"]);
}

#[test]
fn deleting_a_linked_connector_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    store.create_connector(aws("aws-eu").into()).unwrap();
    store
        .create_component(
            NewComponent::new("step_operator", "kubernetes", "k8s")
                .with_connector("aws-eu", Some("zenhacks-cluster".into())),
        )
        .unwrap();
    let err = store.delete_connector("aws-eu").unwrap_err();
    assert_eq!(
        err.to_string(),
        "service connector `aws-eu` is in use by step operator `k8s`; disconnect them first, e.g. `stepstack step-operator disconnect k8s`"
    );
    assert_eq!(stepstack_core::Error::from(err).kind(), ErrorKind::Conflict);
    store.disconnect_component("step_operator", "k8s").unwrap();
    let deleted = store.delete_connector("aws-eu").unwrap();
    assert_eq!(deleted.name, "aws-eu");
    assert!(
        store
            .list_connectors(&ConnectorFilter::new())
            .unwrap()
            .is_empty()
    );
}
