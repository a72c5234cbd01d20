//! Flavors and the explicit registry that holds them.
//!
//! A flavor is a kind of stack component (a step operator, a service connector type)
//! with a name, a configuration schema and a constructor from validated configuration.
//! The registry is a plain value: each crate exposes `register(&mut Registry)`, and a
//! third party adds its own flavors next to the built-ins before handing the registry to
//! `stepstack_cli::main_with`. There is no global state and no link-time registration.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::artifact_store::TransferOptions;
use crate::connector::{ConnectorConfig, ConnectorTypeSpec, ServiceConnector};
use crate::{ArtifactStore, ClusterConnection, Error, ErrorKind, Result, StepOperator};

/// The kinds of flavors the registry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FlavorKind {
    /// A step operator flavor.
    StepOperator,
    /// A service connector type.
    ServiceConnector,
    /// An artifact-store flavor.
    ArtifactStore,
}

impl FlavorKind {
    /// The kind as written in commands and messages: `step-operator`, `service-connector`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlavorKind::StepOperator => "step-operator",
            FlavorKind::ServiceConnector => "service-connector",
            FlavorKind::ArtifactStore => "artifact-store",
        }
    }
}

impl fmt::Display for FlavorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a step operator gets when it is built.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StepOperatorContext {
    /// The component's name, e.g. `k8s`.
    pub component_name: String,
    /// The connection to the cluster from the linked service connector, if one is linked.
    pub connection: Option<ClusterConnection>,
    /// A directory where the operator may keep state (logs of finished steps, …).
    pub state_dir: Option<PathBuf>,
}

impl StepOperatorContext {
    /// A context for the component `component_name`.
    pub fn new(component_name: impl Into<String>) -> Self {
        StepOperatorContext {
            component_name: component_name.into(),
            ..Default::default()
        }
    }

    /// Uses `connection` to reach the cluster.
    pub fn with_connection(mut self, connection: ClusterConnection) -> Self {
        self.connection = Some(connection);
        self
    }

    /// Keeps operator state under `dir`.
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }
}

/// A step-operator flavor: validates its configuration and builds operators from it.
pub trait StepOperatorFlavor: Send + Sync + 'static {
    /// The flavor name, e.g. `kubernetes`.
    fn name(&self) -> &str;

    /// One line saying what the flavor runs steps on.
    fn description(&self) -> &str;

    /// JSON Schema of the component configuration.
    fn config_schema(&self) -> serde_json::Value;

    /// JSON Schema of the per-step settings.
    fn settings_schema(&self) -> serde_json::Value;

    /// The resource type a linked service connector must provide, if the flavor can use one.
    fn connector_resource_type(&self) -> Option<&str> {
        None
    }

    /// Checks a component configuration strictly and returns it normalised; every
    /// mistake is reported at once, each with its path.
    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value>;

    /// Builds an operator from a configuration that `validate_config` accepted.
    fn build(
        &self,
        config: &serde_json::Value,
        context: StepOperatorContext,
    ) -> Result<Arc<dyn StepOperator>>;
}

/// What an artifact store gets when it is built.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ArtifactStoreContext {
    /// The component's name, e.g. `artifacts`.
    pub component_name: String,
    /// Part size and concurrency to use instead of the flavor's defaults.
    pub transfer: Option<TransferOptions>,
}

impl ArtifactStoreContext {
    /// A context for the component `component_name`.
    pub fn new(component_name: impl Into<String>) -> Self {
        ArtifactStoreContext {
            component_name: component_name.into(),
            ..Default::default()
        }
    }

    /// Uses `transfer` for part size and concurrency.
    pub fn with_transfer(mut self, transfer: TransferOptions) -> Self {
        self.transfer = Some(transfer);
        self
    }
}

/// An artifact-store flavor: validates its configuration and builds stores from it.
pub trait ArtifactStoreFlavor: Send + Sync + 'static {
    /// The flavor name, e.g. `local`.
    fn name(&self) -> &str;

    /// One line saying where the flavor keeps artifacts.
    fn description(&self) -> &str;

    /// JSON Schema of the component configuration.
    fn config_schema(&self) -> serde_json::Value;

    /// The resource type a linked service connector must provide, if the flavor can use one.
    fn connector_resource_type(&self) -> Option<&str> {
        None
    }

    /// Checks a component configuration strictly and returns it normalised.
    fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value>;

    /// Builds a store from a configuration that `validate_config` accepted.
    fn build(
        &self,
        config: &serde_json::Value,
        context: ArtifactStoreContext,
    ) -> Result<Arc<dyn ArtifactStore>>;
}

/// What the user asked an auto-configuration for.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AutoConfigureRequest {
    /// The new connector's name.
    pub name: String,
    /// The auth method to use; the flavor picks one when `None`.
    pub auth_method: Option<String>,
    /// The resource type to scope the connector to.
    pub resource_type: Option<String>,
    /// The resource to scope the connector to.
    pub resource_id: Option<String>,
    /// Flavor-specific hints, e.g. `kubernetes_context`.
    pub values: BTreeMap<String, String>,
}

impl AutoConfigureRequest {
    /// A request for a connector named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        AutoConfigureRequest {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// A service-connector type: describes itself, builds connectors, and configures new
/// ones from the local environment.
#[async_trait]
pub trait ConnectorFlavor: Send + Sync + 'static {
    /// The type's description (auth methods, resource types, …); its `connector_type`
    /// is the flavor name.
    fn connector_type(&self) -> &ConnectorTypeSpec;

    /// Builds a connector from its configuration, rejecting unknown auth methods,
    /// resource types and invalid values.
    fn build(&self, config: ConnectorConfig) -> Result<Arc<dyn ServiceConnector>>;

    /// Creates a connector configuration from the local environment (kubeconfig, cloud
    /// CLI profiles, environment variables).
    async fn auto_configure(&self, request: AutoConfigureRequest) -> Result<ConnectorConfig> {
        let _ = request;
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the `{}` connector type cannot configure itself from the local environment; pass its configuration explicitly",
                self.connector_type().connector_type
            ),
        ))
    }
}

/// A registered flavor, as listed by `stepstack … flavor list` and `cargo xtask codegen`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FlavorInfo {
    /// The flavor's kind.
    pub kind: FlavorKind,
    /// Its name.
    pub name: String,
    /// One line about it.
    pub description: String,
    /// JSON Schema of its configuration (for connector types: one schema per auth method,
    /// keyed by method id).
    pub config_schema: serde_json::Value,
}

/// The flavors a program knows, by kind and name.
#[derive(Default, Clone)]
pub struct Registry {
    step_operators: BTreeMap<String, Arc<dyn StepOperatorFlavor>>,
    connectors: BTreeMap<String, Arc<dyn ConnectorFlavor>>,
    artifact_stores: BTreeMap<String, Arc<dyn ArtifactStoreFlavor>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a step-operator flavor; a second flavor with the same name is an error.
    pub fn register_step_operator(&mut self, flavor: impl StepOperatorFlavor) -> Result<()> {
        let name = flavor.name().to_owned();
        insert_unique(
            &mut self.step_operators,
            FlavorKind::StepOperator,
            name,
            Arc::new(flavor),
        )
    }

    /// Adds a service-connector type; a second type with the same id is an error.
    pub fn register_connector(&mut self, flavor: impl ConnectorFlavor) -> Result<()> {
        let name = flavor.connector_type().connector_type.clone();
        insert_unique(
            &mut self.connectors,
            FlavorKind::ServiceConnector,
            name,
            Arc::new(flavor),
        )
    }

    /// Adds an artifact-store flavor; a second flavor with the same name is an error.
    pub fn register_artifact_store(&mut self, flavor: impl ArtifactStoreFlavor) -> Result<()> {
        let name = flavor.name().to_owned();
        insert_unique(
            &mut self.artifact_stores,
            FlavorKind::ArtifactStore,
            name,
            Arc::new(flavor),
        )
    }

    /// The artifact-store flavor named `name`; the error lists the available ones.
    pub fn artifact_store(&self, name: &str) -> Result<Arc<dyn ArtifactStoreFlavor>> {
        lookup(&self.artifact_stores, FlavorKind::ArtifactStore, name)
    }

    /// The artifact-store flavors, by name.
    pub fn artifact_stores(&self) -> impl Iterator<Item = &Arc<dyn ArtifactStoreFlavor>> {
        self.artifact_stores.values()
    }

    /// The step-operator flavor named `name`; the error lists the available ones.
    pub fn step_operator(&self, name: &str) -> Result<Arc<dyn StepOperatorFlavor>> {
        lookup(&self.step_operators, FlavorKind::StepOperator, name)
    }

    /// The service-connector type `connector_type`; the error lists the available ones.
    pub fn connector(&self, connector_type: &str) -> Result<Arc<dyn ConnectorFlavor>> {
        lookup(
            &self.connectors,
            FlavorKind::ServiceConnector,
            connector_type,
        )
    }

    /// The step-operator flavors, by name.
    pub fn step_operators(&self) -> impl Iterator<Item = &Arc<dyn StepOperatorFlavor>> {
        self.step_operators.values()
    }

    /// The service-connector types, by id.
    pub fn connectors(&self) -> impl Iterator<Item = &Arc<dyn ConnectorFlavor>> {
        self.connectors.values()
    }

    /// Every flavor with its schema: step operators, then connector types, then artifact
    /// stores, each kind by name.
    pub fn flavors(&self) -> Vec<FlavorInfo> {
        let step_operators = self.step_operators.values().map(|f| FlavorInfo {
            kind: FlavorKind::StepOperator,
            name: f.name().to_owned(),
            description: f.description().to_owned(),
            config_schema: f.config_schema(),
        });
        let connectors = self.connectors.values().map(|f| {
            let spec = f.connector_type();
            let schemas = spec
                .auth_methods
                .iter()
                .map(|m| (m.auth_method.clone(), m.config_schema.clone()))
                .collect::<serde_json::Map<_, _>>();
            FlavorInfo {
                kind: FlavorKind::ServiceConnector,
                name: spec.connector_type.clone(),
                description: spec.description.clone(),
                config_schema: serde_json::Value::Object(schemas),
            }
        });
        let artifact_stores = self.artifact_stores.values().map(|f| FlavorInfo {
            kind: FlavorKind::ArtifactStore,
            name: f.name().to_owned(),
            description: f.description().to_owned(),
            config_schema: f.config_schema(),
        });
        step_operators
            .chain(connectors)
            .chain(artifact_stores)
            .collect()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field(
                "step_operators",
                &self.step_operators.keys().collect::<Vec<_>>(),
            )
            .field("connectors", &self.connectors.keys().collect::<Vec<_>>())
            .field(
                "artifact_stores",
                &self.artifact_stores.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn insert_unique<T: ?Sized>(
    map: &mut BTreeMap<String, Arc<T>>,
    kind: FlavorKind,
    name: String,
    flavor: Arc<T>,
) -> Result<()> {
    if map.contains_key(&name) {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("a {kind} flavor named `{name}` is already registered; give the new flavor a different name"),
        )
        .with_context("flavor", name));
    }
    map.insert(name, flavor);
    Ok(())
}

fn lookup<T: ?Sized>(
    map: &BTreeMap<String, Arc<T>>,
    kind: FlavorKind,
    name: &str,
) -> Result<Arc<T>> {
    map.get(name).cloned().ok_or_else(|| {
        let message = if map.is_empty() {
            format!("unknown {kind} flavor `{name}`; no {kind} flavors are registered")
        } else {
            let available = map
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            format!("unknown {kind} flavor `{name}`; available flavors: {available}")
        };
        Error::new(ErrorKind::NotFound, message).with_context("flavor", name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::{AuthMethodSpec, ResourcesReport};

    struct Dummy(&'static str);

    impl StepOperatorFlavor for Dummy {
        fn name(&self) -> &str {
            self.0
        }
        fn description(&self) -> &str {
            "dummy"
        }
        fn config_schema(&self) -> serde_json::Value {
            serde_json::json!({"type": "object"})
        }
        fn settings_schema(&self) -> serde_json::Value {
            serde_json::json!({"type": "object"})
        }
        fn validate_config(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
            Ok(config.clone())
        }
        fn build(
            &self,
            _: &serde_json::Value,
            _: StepOperatorContext,
        ) -> Result<Arc<dyn StepOperator>> {
            Err(Error::new(ErrorKind::Unsupported, "dummy"))
        }
    }

    struct DummyConnector(ConnectorTypeSpec);

    #[derive(Debug)]
    struct NeverBuilt;

    #[async_trait]
    impl ServiceConnector for NeverBuilt {
        fn connector_type(&self) -> &ConnectorTypeSpec {
            unreachable!("never built in these tests")
        }
        fn config(&self) -> &ConnectorConfig {
            unreachable!("never built in these tests")
        }
        async fn verify(&self, _: Option<&str>, _: Option<&str>) -> Result<ResourcesReport> {
            unreachable!("never built in these tests")
        }
        async fn connect(&self, _: &str, _: Option<&str>) -> Result<ClusterConnection> {
            unreachable!("never built in these tests")
        }
        async fn configure_local_client(&self, _: &str, _: Option<&str>) -> Result<String> {
            unreachable!("never built in these tests")
        }
    }

    impl ConnectorFlavor for DummyConnector {
        fn connector_type(&self) -> &ConnectorTypeSpec {
            &self.0
        }
        fn build(&self, _: ConnectorConfig) -> Result<Arc<dyn ServiceConnector>> {
            Ok(Arc::new(NeverBuilt))
        }
    }

    fn connector_flavor(id: &str) -> DummyConnector {
        DummyConnector(
            ConnectorTypeSpec::new("Dummy", id, "a dummy connector").with_auth_method(AuthMethodSpec::new(
                "Token",
                "token",
                "a token",
                serde_json::json!({"type": "object", "properties": {"token": {"type": "string"}}}),
            )),
        )
    }

    #[test]
    fn duplicate_names_are_refused_per_kind() {
        let mut registry = Registry::new();
        registry
            .register_step_operator(Dummy("kubernetes"))
            .unwrap();
        let err = registry
            .register_step_operator(Dummy("kubernetes"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(
            err.to_string(),
            "a step-operator flavor named `kubernetes` is already registered; give the new flavor a different name (flavor: kubernetes)"
        );
        // The same name is fine for another kind.
        registry
            .register_connector(connector_flavor("kubernetes"))
            .unwrap();
        let err = registry
            .register_connector(connector_flavor("kubernetes"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
    }

    #[test]
    fn unknown_flavor_lists_the_available_ones() {
        let mut registry = Registry::new();
        registry
            .register_step_operator(Dummy("local-process"))
            .unwrap();
        registry
            .register_step_operator(Dummy("kubernetes"))
            .unwrap();
        let err = registry.step_operator("kubernetez").err().unwrap();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(
            err.message(),
            "unknown step-operator flavor `kubernetez`; available flavors: kubernetes, local-process"
        );
        let err = registry.connector("aws").err().unwrap();
        assert_eq!(
            err.message(),
            "unknown service-connector flavor `aws`; no service-connector flavors are registered"
        );
        assert_eq!(
            registry.step_operator("kubernetes").unwrap().name(),
            "kubernetes"
        );
    }

    #[test]
    fn flavors_iterate_with_their_schemas() {
        let mut registry = Registry::new();
        registry.register_step_operator(Dummy("b")).unwrap();
        registry.register_step_operator(Dummy("a")).unwrap();
        registry
            .register_connector(connector_flavor("kube"))
            .unwrap();
        let flavors = registry.flavors();
        let names: Vec<_> = flavors.iter().map(|f| (f.kind, f.name.as_str())).collect();
        assert_eq!(
            names,
            [
                (FlavorKind::StepOperator, "a"),
                (FlavorKind::StepOperator, "b"),
                (FlavorKind::ServiceConnector, "kube")
            ]
        );
        assert_eq!(
            flavors[2].config_schema["token"]["properties"]["token"]["type"],
            "string"
        );
    }
}
