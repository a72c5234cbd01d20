//! The Azure connector against the testkit's Entra ID and ARM fakes and its emulated
//! Kubernetes cluster, which accepts only Entra ID tokens the fake issued for the AKS
//! server application (and static admin tokens of clusters with local accounts).
//!
//! One test binary (modules below) keeps link time down.

mod ambient;
mod auth_methods;
mod clusters;
mod common;
mod end_to_end;
mod step;
