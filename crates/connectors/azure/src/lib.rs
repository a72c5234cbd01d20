#![doc = include_str!("../README.md")]

mod aks;
mod ambient;
mod auth;
mod auto;
mod certificate;
mod config;
mod connector;
mod environment;
mod error;
mod login;

pub use ambient::DEFAULT_IMDS_ENDPOINT;
pub use auth::{AKS_SERVER_APP_ID, AKS_SERVER_APP_SCOPE};
pub use config::{
    ARM_API_VERSION, AccessTokenConfig, AzureCommonConfig, CONNECTOR_TYPE, DEFAULT_AUTHORITY_HOST,
    DEFAULT_MANAGEMENT_ENDPOINT, DEFAULT_MANAGEMENT_SCOPE, ImplicitConfig, ServicePrincipalConfig,
};
pub use connector::{AzureConnector, AzureConnectorFlavor, connector_type_spec};
pub use environment::AzureEnvironment;

/// Registers the `azure` connector type, reading this process's environment.
pub fn register(registry: &mut stepstack_core::Registry) -> stepstack_core::Result<()> {
    registry.register_connector(AzureConnectorFlavor::new())
}
