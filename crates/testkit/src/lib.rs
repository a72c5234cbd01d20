#![doc = include_str!("../README.md")]

pub mod error;
pub mod runtime;
pub mod selectors;
pub mod store;
pub mod validation;

pub use error::{ApiError, StatusCause};
