#![doc = include_str!("../README.md")]

pub mod artifact_store;
pub mod cluster;
pub mod connector;
mod error;
pub mod private_fs;
pub mod registry;
pub mod step;
mod step_operator;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use artifact_store::{
    ArtifactAddress, ArtifactDigest, ArtifactError, ArtifactStore, ArtifactWriter, Manifest,
};
pub use cluster::{BearerToken, ClusterConnection, TokenSource};
pub use connector::{ConnectorConfig, ServiceConnector};
pub use error::{Error, ErrorKind, Result, error_chain};
pub use registry::{
    ArtifactStoreContext, ArtifactStoreFlavor, AutoConfigureRequest, ConnectorFlavor, FlavorInfo,
    FlavorKind, Registry, StepOperatorContext, StepOperatorFlavor,
};
pub use step::{
    FailureReason, GpuVendor, LogLine, ResourceSettings, StepFailure, StepHandle, StepLaunch,
    StepOutcome, StepStatus, StepTimings,
};
pub use step_operator::{Capabilities, LogStream, StepOperator};

/// Re-exported so flavors use the same `kube` version as the contracts.
pub use kube;
/// Re-exported so flavors use the same secret types as the contracts.
pub use secrecy;
