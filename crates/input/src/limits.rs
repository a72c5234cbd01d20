//! The limits every loader of user input applies, and how a breach is named.

use std::fmt;

/// Bounds on one piece of user input. [`Limits::DEFAULT`] is the one rule every loader
/// uses (settings files, run configurations, stack imports, `@file` arguments, `--set`
/// values, the emulator's YAML request bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The most bytes of text.
    pub max_bytes: usize,
    /// The deepest nesting of maps and lists (the top-level map is level 1).
    pub max_depth: usize,
    /// The most values (maps, lists and scalars) after YAML aliases are expanded; this
    /// is also the bound on alias expansion.
    pub max_values: usize,
}

impl Limits {
    /// The rule: 4 MiB, 64 levels, 100,000 values. Real settings files, run
    /// configurations and stack exports are far below each (a deep Kubernetes affinity
    /// in a run configuration nests about 15 levels).
    pub const DEFAULT: Limits = Limits {
        max_bytes: 4 * 1024 * 1024,
        max_depth: 64,
        max_values: 100_000,
    };

    /// The default limits with another size bound (e.g. 1 MiB for `@file` values).
    pub const fn with_max_bytes(self, max_bytes: usize) -> Limits {
        Limits { max_bytes, ..self }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// The size limit.
    Size {
        /// Bytes allowed.
        max: usize,
    },
    /// The nesting depth limit.
    Depth {
        /// Levels allowed.
        max: usize,
    },
    /// The value count limit.
    Values {
        /// Values allowed.
        max: usize,
    },
    /// The alias expansion limit (YAML aliases that expand to too many values).
    AliasExpansion {
        /// Values allowed after expansion.
        max: usize,
    },
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Size { max } => write!(f, "exceeds the size limit of {max} bytes"),
            Limit::Depth { max } => {
                write!(f, "exceeds the nesting depth limit of {max} levels")
            }
            Limit::Values { max } => write!(f, "exceeds the value count limit of {max} values"),
            Limit::AliasExpansion { max } => write!(
                f,
                "exceeds the alias expansion limit of {max} values (its YAML aliases expand too far)"
            ),
        }
    }
}
