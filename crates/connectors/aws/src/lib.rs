#![doc = include_str!("../README.md")]

mod auto;
mod config;
mod connector;
mod credentials;
mod eks;
mod environment;
mod error;
mod login;
mod token;

pub use config::{
    FederationTokenConfig, IamRoleConfig, ImplicitConfig, SecretKeyConfig, StsTokenConfig,
};
pub use connector::{AwsConnector, AwsConnectorFlavor, connector_type_spec};
pub use eks::{Partition, sts_host};
pub use environment::AwsEnvironment;
pub use token::{
    EKS_TOKEN_LIFETIME, EKS_TOKEN_PREFIX, EksTokenError, PRESIGNED_URL_EXPIRES, eks_token,
};

/// Re-exported so callers of [`eks_token`] use the same credentials type.
pub use aws_credential_types::Credentials;

/// The connector type id.
pub const CONNECTOR_TYPE: &str = "aws";

/// The resource type of the AWS account and region the credentials reach.
pub const AWS_GENERIC: &str = "aws-generic";

/// Registers the `aws` connector type.
pub fn register(registry: &mut stepstack_core::Registry) -> stepstack_core::Result<()> {
    registry.register_connector(AwsConnectorFlavor::new())
}
