#![doc = include_str!("../README.md")]

mod auto;
mod config;
mod connector;
mod environment;
mod error;
mod in_cluster;
mod kubeconfig;
mod login;
mod review;

pub use config::{
    CONNECTOR_TYPE, ClientCertificateConfig, InClusterConfig, KUBERNETES_CONTEXT, KubeconfigConfig,
    PasswordConfig, TokenConfig,
};
pub use connector::{KubernetesConnector, KubernetesFlavor, connector_type_spec};
pub use environment::{DEFAULT_IN_CLUSTER_SERVER, DEFAULT_SERVICE_ACCOUNT_DIR, LocalEnvironment};

/// Registers the `kubernetes` connector type, reading this process's environment.
pub fn register(registry: &mut stepstack_core::Registry) -> stepstack_core::Result<()> {
    registry.register_connector(KubernetesFlavor::new())
}
