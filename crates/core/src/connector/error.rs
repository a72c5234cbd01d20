//! How a connector crate's own error becomes the core error: each connector crate keeps
//! one `thiserror` enum (`<Cloud>Error` in its `error.rs`, with a `<Cloud>Result<T>`
//! alias) and converts it at the trait boundary through [`ConnectorError::into_core`],
//! which names the connector. Generic connector plumbing (token sources, say) maps errors
//! through this trait without knowing the crate.

use crate::Error;

/// A connector crate's own error type.
pub trait ConnectorError: std::error::Error + Send + Sync + 'static {
    /// The core error, naming connector `connector` (and whatever the error itself
    /// knows, such as the cluster); the message never repeats a cause that is attached
    /// as the source.
    fn into_core(self, connector: &str) -> Error;
}
