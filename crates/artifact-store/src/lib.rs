#![doc = include_str!("../README.md")]

pub mod azure;
mod error;
pub mod gcs;
mod http;
pub mod local;
pub mod remote;
pub mod s3;

pub use azure::{AZURE_FLAVOR, AzureCredentials, AzureFlavor, AzureStoreConfig, open_azure};
pub use error::{LocalStoreError, RemoteStoreError};
pub use gcs::{GCS_FLAVOR, GcsCredentials, GcsFlavor, GcsStoreConfig, open_gcs};
pub use local::{LOCAL_FLAVOR, LocalArtifactStore, LocalFlavor, LocalStoreConfig};
pub use remote::{RemoteArtifactStore, RetrySettings};
pub use s3::{S3_FLAVOR, S3Credentials, S3Flavor, S3StoreConfig, open_s3};

use stepstack_core::{Registry, Result};

/// Registers this crate's artifact-store flavors (`local`, `s3`, `gcs`, `azure`).
pub fn register(registry: &mut Registry) -> Result<()> {
    registry.register_artifact_store(LocalFlavor)?;
    registry.register_artifact_store(S3Flavor)?;
    registry.register_artifact_store(GcsFlavor)?;
    registry.register_artifact_store(AzureFlavor)
}
