//! Fakes of the cloud APIs the connectors call, realistic enough for each connector to
//! run its real HTTP path against them.
//!
//! - [`aws`]: EKS (`ListClusters`, `DescribeCluster`) and STS (`GetCallerIdentity` signed or
//!   presigned, `AssumeRole`, `GetSessionToken`, `GetFederationToken`) with real SigV4
//!   verification, plus an EKS bearer-token validator for the emulated cluster.

pub mod aws;
pub mod azure;
pub mod gcp;
