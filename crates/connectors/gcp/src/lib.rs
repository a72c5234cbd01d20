#![doc = include_str!("../README.md")]

mod auth;
mod auto;
mod config;
mod connector;
mod environment;
mod error;
mod gke;
mod login;

pub use auth::CLOUD_PLATFORM_SCOPE;
pub use config::{
    CONNECTOR_TYPE, DEFAULT_CONTAINER_ENDPOINT, DEFAULT_IAM_CREDENTIALS_ENDPOINT,
    DEFAULT_TOKEN_ENDPOINT, Endpoints, ExternalAccountConfig, ImpersonationConfig, ImplicitConfig,
    OAuth2TokenConfig, ServiceAccountConfig, UserAccountConfig,
};
pub use connector::{
    GcpConnector, GcpConnectorFlavor, IMPERSONATION_MAX_EXPIRATION, connector_type_spec,
};
pub use environment::{ADC_FILE, DEFAULT_METADATA_HOST, GcpEnvironment};

/// Registers the `gcp` connector type, reading this process's environment.
pub fn register(registry: &mut stepstack_core::Registry) -> stepstack_core::Result<()> {
    registry.register_connector(GcpConnectorFlavor::new())
}
