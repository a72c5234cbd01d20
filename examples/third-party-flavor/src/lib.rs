#![doc = include_str!("../README.md")]

mod flavor;
mod operator;

pub use flavor::{LocalProcessConfig, LocalProcessFlavor};
pub use operator::LocalProcessOperator;

use stepstack_core::{Registry, Result};

/// Adds the `local-process` step-operator flavor to `registry`.
pub fn register(registry: &mut Registry) -> Result<()> {
    registry.register_step_operator(LocalProcessFlavor)
}
