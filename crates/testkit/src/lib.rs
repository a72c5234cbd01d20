#![doc = include_str!("../README.md")]

pub mod accounting;
mod api;
#[cfg(feature = "cloud")]
pub mod cloud;
pub mod cluster;
pub mod error;
pub mod faults;
pub mod kubeconfig;
pub mod runtime;
pub mod selectors;
mod server;
pub mod store;
pub mod validation;

pub use accounting::{Accounting, RequestCounts, RequestKey};
pub use cluster::{Cluster, ClusterError, ClusterOptions, CredentialKind, NewUser};
pub use error::{ApiError, ErrorDetails, StatusCause};
pub use faults::{FaultAction, FaultMatch, FaultRule, Faults};
pub use kubeconfig::UserCredentials;
pub use runtime::{LogQuery, NodeConfig, Runtime, RuntimeOptions};
pub use server::ConnectionOptions;
pub use server::auth::{Rule, TokenValidator, UserInfo};
pub use server::tls::TlsError;
pub use store::{ResourceKind, Store};
