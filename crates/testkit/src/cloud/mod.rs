//! Fakes of the cloud APIs the connectors call, realistic enough for each connector to
//! run its real HTTP path against them. Compiled with the crate feature `cloud` (off by
//! default, so the CLI's embedded local cluster carries neither the fakes nor the crates
//! only they use).
//!
//! - [`aws`]: EKS (`ListClusters`, `DescribeCluster`) and STS (`GetCallerIdentity` signed or
//!   presigned, `AssumeRole`, `GetSessionToken`, `GetFederationToken`) with real SigV4
//!   verification, plus an EKS bearer-token validator for the emulated cluster.
//! - [`gcp`]: the Google OAuth2 token endpoint (service-account JWTs verified for real,
//!   user refresh tokens), the STS token exchange, IAM Credentials `generateAccessToken`,
//!   the metadata server and the GKE clusters API, plus a validator of the tokens it issued.
//! - [`azure`]: the Entra ID token endpoint (client secret, certificate assertion verified
//!   for real, federated token), the managed-identity endpoints and Azure Resource
//!   Manager (subscriptions, AKS `managedClusters`) over HTTPS, plus a validator of AKS
//!   tokens and static admin credentials.
//! - [`gcs`]: Google Cloud Storage's XML API as `object_store`'s GCS client uses it
//!   (objects, conditional puts, multipart uploads, paged listings).
//!
//! Each fake is a folder split by job, importing downward only: `mod.rs` is its public
//! face (the `Fake*` handle, re-exporting the types), `handlers.rs` its HTTP routes,
//! `verify.rs` its request verification and `state.rs` its options, records and shared
//! state. `keys` holds the pre-generated RSA keys the Google and Azure fakes hand out.

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod gcs;
mod keys;
