#![doc = include_str!("../README.md")]

mod error;
pub mod local;

pub use error::LocalStoreError;
pub use local::{LOCAL_FLAVOR, LocalArtifactStore, LocalFlavor, LocalStoreConfig};

use stepstack_core::{Registry, Result};

/// Registers this crate's artifact-store flavors (`local`).
pub fn register(registry: &mut Registry) -> Result<()> {
    registry.register_artifact_store(LocalFlavor)
}
