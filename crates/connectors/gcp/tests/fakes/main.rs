//! The GCP connector against the testkit's Google fakes (OAuth2 token endpoint, IAM
//! Credentials, metadata server, GKE API) and its emulated Kubernetes cluster, which
//! accepts only access tokens the fake issued.
//!
//! One test binary (modules below) keeps link time down.

mod auth_methods;
mod auto_configure;
mod clusters;
mod common;
mod end_to_end;
mod refresh;
