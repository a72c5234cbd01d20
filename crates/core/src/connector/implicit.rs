//! The gate on implicit auth methods: methods that use the ambient credentials of the
//! machine doing the authentication (environment variables, local files such as a
//! kubeconfig with an exec plugin, metadata servers, local commands). They are disabled
//! unless `STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS` is set to a true value, because on a
//! shared server they would hand out the server's own identity.

use super::AuthMethodSpec;
use super::validation::ConnectorScope;
use crate::{Error, ErrorKind, Result};

/// The environment variable that enables implicit auth methods.
pub const IMPLICIT_AUTH_ENV: &str = "STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS";

/// Whether implicit auth methods may be used in this process.
///
/// Read it from the process environment with [`ImplicitAuthGate::from_env`], or from any
/// lookup function with [`ImplicitAuthGate::from_lookup`] (tests pass a closure instead of
/// changing the environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImplicitAuthGate {
    enabled: bool,
}

impl ImplicitAuthGate {
    /// A gate that allows implicit methods when `enabled`.
    pub const fn new(enabled: bool) -> Self {
        ImplicitAuthGate { enabled }
    }

    /// A gate read from this process's environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// A gate read through `lookup`, which returns the value of an environment variable.
    /// `1`, `true`, `yes`, `y` and `on` (any case) enable implicit methods.
    pub fn from_lookup(lookup: impl FnOnce(&str) -> Option<String>) -> Self {
        let enabled = lookup(IMPLICIT_AUTH_ENV).is_some_and(|value| is_truthy(&value));
        ImplicitAuthGate { enabled }
    }

    /// Whether implicit methods are allowed.
    pub fn is_enabled(self) -> bool {
        self.enabled
    }

    /// Refuses `method` for connector `connector` when the method is implicit and the
    /// gate is closed; the error says how to open it.
    pub fn check(self, connector: &str, method: &AuthMethodSpec) -> Result<()> {
        if !method.implicit || self.enabled {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "auth method `{}` of connector `{connector}` uses the local machine's own credentials (implicit authentication), which is disabled for security reasons; to enable it, set {IMPLICIT_AUTH_ENV}=true in the environment of the process that authenticates",
                method.auth_method
            ),
        )
        .with_context("connector", connector.to_owned())
        .with_context("auth_method", method.auth_method.clone()))
    }

    /// [`check`](Self::check) for the auth method and name of a connector's `scope`: the
    /// gate every use of a connector's credentials (connect, login, verify) passes first.
    pub fn check_scope(self, scope: &ConnectorScope) -> Result<()> {
        self.check(scope.name(), scope.auth_method())
    }
}

fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "y" | "on"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(implicit: bool) -> AuthMethodSpec {
        let m = AuthMethodSpec::new(
            "Kubeconfig",
            "kubeconfig",
            "local",
            serde_json::json!({"type": "object"}),
        );
        if implicit { m.implicit() } else { m }
    }

    #[test]
    fn implicit_methods_are_refused_unless_enabled() {
        let closed = ImplicitAuthGate::from_lookup(|_| None);
        assert!(!closed.is_enabled());
        let err = closed.check("local", &method(true)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(
            err.message()
                .contains("set STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS=true"),
            "{err}"
        );
        assert!(closed.check("local", &method(false)).is_ok());
        for value in ["1", "true", "TRUE", " yes ", "on", "y"] {
            let gate = ImplicitAuthGate::from_lookup(|name| {
                (name == IMPLICIT_AUTH_ENV).then(|| value.to_owned())
            });
            assert!(gate.is_enabled(), "{value:?}");
            assert!(gate.check("local", &method(true)).is_ok());
        }
        for value in ["", "0", "false", "no", "off", "maybe"] {
            assert!(
                !ImplicitAuthGate::from_lookup(|_| Some(value.to_owned())).is_enabled(),
                "{value:?}"
            );
        }
    }
}
