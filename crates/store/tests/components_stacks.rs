//! Stack components, stacks, and the active stack (global vs per project).

use serde_json::json;
use stepstack_core::ConnectorConfig;
use stepstack_store::{
    ActiveScope, ActiveStackSource, ComponentFilter, ComponentUpdate, DEFAULT_STACK, EntityKind,
    NewComponent, NewStack, StackFilter, StackUpdate, Store, StoreError,
};

fn config(value: serde_json::Value) -> stepstack_store::Configuration {
    value.as_object().cloned().unwrap()
}

#[test]
fn component_crud_and_connect() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    store
        .create_connector(ConnectorConfig::new("kube", "kubernetes", "token").into())
        .unwrap();
    let k8s = store
        .create_component(
            NewComponent::new("step_operator", "kubernetes", "k8s")
                .with_configuration(config(json!({"kubernetes_namespace": "ml"}))),
        )
        .unwrap();
    assert_eq!(k8s.component_type, "step_operator");
    assert_eq!(k8s.configuration["kubernetes_namespace"], "ml");
    assert_eq!(k8s.connector_id, None);

    // Same name, other type: allowed. Same name, same type: refused.
    store
        .create_component(NewComponent::new("orchestrator", "local", "k8s"))
        .unwrap();
    let err = store
        .create_component(NewComponent::new("step_operator", "kubernetes", "k8s"))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { kind: EntityKind::Component(t), .. } if t == "step_operator"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "a step operator named `k8s` already exists; choose another name or update or delete the existing one"
    );
    let err = store
        .create_component(NewComponent::new("Step Operator", "kubernetes", "x"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }));
    // Linking a missing connector fails and creates nothing.
    let err = store
        .create_component(
            NewComponent::new("step_operator", "kubernetes", "k9").with_connector("nope", None),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::NotFound {
            kind: EntityKind::Connector,
            ..
        }
    ));
    assert!(matches!(
        store.get_component("step_operator", "k9"),
        Err(StoreError::NotFound { .. })
    ));

    let connected = store
        .connect_component("step_operator", "k8s", "kube", Some("my-cluster"))
        .unwrap();
    assert_eq!(connected.connector_name.as_deref(), Some("kube"));
    assert_eq!(
        connected.connector_resource_id.as_deref(),
        Some("my-cluster")
    );
    let mut filter = ComponentFilter::new();
    filter.connector = Some("kube".into());
    assert_eq!(store.list_components(&filter).unwrap().len(), 1);
    let disconnected = store.disconnect_component("step_operator", "k8s").unwrap();
    assert_eq!(disconnected.connector_id, None);
    assert_eq!(disconnected.connector_resource_id, None);

    let mut update = ComponentUpdate::default();
    update
        .set
        .insert("kubernetes_context".into(), json!("kind"));
    update.remove_keys.push("kubernetes_namespace".into());
    update.labels.insert("gpu".into(), "yes".into());
    let updated = store
        .update_component("step_operator", "k8s", update)
        .unwrap();
    assert_eq!(
        updated.configuration,
        config(json!({"kubernetes_context": "kind"}))
    );
    assert_eq!(updated.labels["gpu"], "yes");

    let names: Vec<_> = store
        .list_components(&ComponentFilter::of_type("step_operator"))
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["k8s"]);
    assert_eq!(
        store
            .list_components(&ComponentFilter::new())
            .unwrap()
            .len(),
        2
    );

    store.delete_component("step_operator", "k8s").unwrap();
    let err = store.get_component("step_operator", "k8s").unwrap_err();
    assert_eq!(
        err.to_string(),
        "step operator `k8s` not found; see `stepstack step-operator list` for the registered ones"
    );
}

#[test]
fn stacks_hold_one_component_per_type_and_protect_them() {
    let home = tempfile::tempdir().unwrap();
    let mut store = Store::open(home.path()).unwrap();
    store
        .create_component(NewComponent::new("step_operator", "kubernetes", "k8s"))
        .unwrap();
    store
        .create_component(NewComponent::new("step_operator", "local", "local"))
        .unwrap();
    store
        .create_component(NewComponent::new("orchestrator", "local", "default"))
        .unwrap();

    // The seed's `stack update -s k8s` on the active (default) stack.
    let mut update = StackUpdate::default();
    update
        .components
        .insert("step_operator".into(), "k8s".into());
    let stack = store.update_stack(DEFAULT_STACK, update).unwrap();
    assert_eq!(stack.components["step_operator"].name, "k8s");
    assert_eq!(stack.components["step_operator"].flavor, "kubernetes");

    // Setting another step operator replaces it (one per type).
    let mut update = StackUpdate::default();
    update
        .components
        .insert("step_operator".into(), "local".into());
    update
        .components
        .insert("orchestrator".into(), "default".into());
    let stack = store.update_stack(DEFAULT_STACK, update).unwrap();
    assert_eq!(stack.components.len(), 2);
    assert_eq!(stack.components["step_operator"].name, "local");

    let gpu = store
        .create_stack(NewStack::new("gpu").with_component("step_operator", "k8s"))
        .unwrap();
    assert_eq!(gpu.components["step_operator"].name, "k8s");
    assert!(matches!(
        store.create_stack(NewStack::new("gpu")),
        Err(StoreError::AlreadyExists {
            kind: EntityKind::Stack,
            ..
        })
    ));
    // A component of the wrong type is not found, and nothing is created.
    let err = store
        .create_stack(NewStack::new("bad").with_component("orchestrator", "k8s"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                kind: EntityKind::Component(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(store.get_stack("bad").is_err());

    let mut filter = StackFilter::new();
    filter.component_id = Some(gpu.components["step_operator"].id);
    let names: Vec<_> = store
        .list_stacks(&filter)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["gpu"]);
    assert_eq!(store.list_stacks(&StackFilter::new()).unwrap().len(), 2);

    let err = store.delete_component("step_operator", "k8s").unwrap_err();
    assert_eq!(
        err.to_string(),
        "step operator `k8s` is in use by stack `gpu`; remove it from those stacks first, e.g. with `stepstack stack update gpu`"
    );

    let mut update = StackUpdate::default();
    update.remove_components.push("step_operator".into());
    let gpu = store.update_stack("gpu", update).unwrap();
    assert!(gpu.components.is_empty());
    store.delete_component("step_operator", "k8s").unwrap();
    store.delete_stack("gpu").unwrap();
    assert!(matches!(
        store.get_stack("gpu"),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn active_stack_is_global_or_per_project() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("project");
    let nested = project.join("src").join("deep");
    std::fs::create_dir_all(&nested).unwrap();
    let outside = work.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    // A sibling whose name starts with the project's is not inside it.
    let sibling = work.path().join("project-two");
    std::fs::create_dir_all(&sibling).unwrap();

    let mut store = Store::open(home.path()).unwrap();
    store.create_stack(NewStack::new("gpu")).unwrap();
    store.create_stack(NewStack::new("cpu")).unwrap();

    let active = store.active_stack(&nested).unwrap();
    assert_eq!(active.stack.name, DEFAULT_STACK);
    assert_eq!(active.source, ActiveStackSource::Global);

    // A project starts with the global active stack, then diverges.
    let p = store.init_project(&project).unwrap();
    assert_eq!(p.active_stack, DEFAULT_STACK);
    assert!(matches!(
        store.init_project(&project),
        Err(StoreError::AlreadyExists {
            kind: EntityKind::Project,
            ..
        })
    ));
    store
        .set_active_stack("gpu", &ActiveScope::Project(project.clone()))
        .unwrap();
    store.set_active_stack("cpu", &ActiveScope::Global).unwrap();

    let active = store.active_stack(&nested).unwrap();
    assert_eq!(active.stack.name, "gpu");
    assert!(active.source.is_repository());
    let root = std::fs::canonicalize(&project).unwrap();
    assert_eq!(
        active.source,
        ActiveStackSource::Repository { root: root.clone() }
    );
    assert_eq!(store.find_project(&nested).unwrap().unwrap().root, root);

    let active = store.active_stack(&outside).unwrap();
    assert_eq!(active.stack.name, "cpu");
    assert!(!active.source.is_repository());
    assert_eq!(
        store.active_stack(&sibling).unwrap().source,
        ActiveStackSource::Global
    );

    // Setting a project's stack needs `init` first.
    let err = store
        .set_active_stack("gpu", &ActiveScope::Project(outside.clone()))
        .unwrap_err();
    assert!(
        err.to_string().contains("run `stepstack init` there first"),
        "{err}"
    );

    // Active stacks cannot be deleted.
    let err = store.delete_stack("gpu").unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
    assert!(err.to_string().contains("stepstack stack set"), "{err}");
    let err = store.delete_stack("cpu").unwrap_err();
    assert!(
        err.to_string().contains("global active-stack setting"),
        "{err}"
    );

    assert_eq!(store.list_projects().unwrap().len(), 1);
    store.remove_project(&project).unwrap();
    assert_eq!(store.active_stack(&nested).unwrap().stack.name, "cpu");
    store.delete_stack("gpu").unwrap();

    // Another process (another Store) sees the same choices.
    let other = Store::open(home.path()).unwrap();
    assert_eq!(other.active_stack(&nested).unwrap().stack.name, "cpu");
}
