//! The Kubernetes connector against the testkit's emulated cluster, over real HTTPS.
//!
//! One test binary (modules below) keeps link time down.

mod auth_methods;
mod auto_configure;
mod common;
mod expiry;
mod login;
mod verify;
