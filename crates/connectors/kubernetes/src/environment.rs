//! What the connector reads from the machine it runs on, gathered in one value so tests
//! (and embedders) can inject it instead of changing the process environment.

use std::ffi::OsString;
use std::path::PathBuf;

use stepstack_core::connector::ImplicitAuthGate;

/// Where a pod finds its service account's token, CA and namespace.
pub const DEFAULT_SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The API server a pod reaches when `KUBERNETES_SERVICE_HOST` is not set.
pub const DEFAULT_IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";

/// The local environment of the Kubernetes connector: the `KUBECONFIG` value, the home
/// directory, the in-cluster service-account directory and server, and whether implicit
/// auth methods are enabled.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LocalEnvironment {
    /// The value of `KUBECONFIG`: a list of paths, merged first-wins.
    pub kubeconfig: Option<OsString>,
    /// The home directory; `~/.kube/config` is used when `KUBECONFIG` is unset.
    pub home: Option<PathBuf>,
    /// Where the `in-cluster` method reads `token`, `ca.crt` and `namespace`.
    pub service_account_dir: PathBuf,
    /// The API server the `in-cluster` method uses unless configured otherwise.
    pub in_cluster_server: String,
    /// Whether implicit auth methods (`kubeconfig`, `in-cluster`) may be used.
    pub implicit_auth: ImplicitAuthGate,
}

impl LocalEnvironment {
    /// The environment of this process: `KUBECONFIG`, `HOME`, `KUBERNETES_SERVICE_HOST`
    /// and `_PORT`, and `STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS`.
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// The environment read through `lookup`, which returns an environment variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Self {
        let text = |name: &str| {
            lookup(name)
                .and_then(|v| v.into_string().ok())
                .filter(|v| !v.is_empty())
        };
        let in_cluster_server = match (
            text("KUBERNETES_SERVICE_HOST"),
            text("KUBERNETES_SERVICE_PORT"),
        ) {
            (Some(host), port) => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                match port {
                    Some(port) => format!("https://{host}:{port}"),
                    None => format!("https://{host}"),
                }
            }
            (None, _) => DEFAULT_IN_CLUSTER_SERVER.to_owned(),
        };
        LocalEnvironment {
            kubeconfig: lookup("KUBECONFIG"),
            home: lookup("HOME").filter(|h| !h.is_empty()).map(PathBuf::from),
            service_account_dir: PathBuf::from(DEFAULT_SERVICE_ACCOUNT_DIR),
            in_cluster_server,
            implicit_auth: ImplicitAuthGate::from_lookup(|name| text(name)),
        }
    }

    /// An environment with nothing in it: no kubeconfig, no home, implicit methods
    /// disabled. Tests start from here.
    pub fn empty() -> Self {
        Self::from_lookup(|_| None)
    }

    /// Uses `value` as the `KUBECONFIG` value.
    pub fn with_kubeconfig(mut self, value: impl Into<OsString>) -> Self {
        self.kubeconfig = Some(value.into());
        self
    }

    /// Uses `home` as the home directory.
    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }

    /// Reads the in-cluster service account from `dir`.
    pub fn with_service_account_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.service_account_dir = dir.into();
        self
    }

    /// Uses `server` as the in-cluster API server.
    pub fn with_in_cluster_server(mut self, server: impl Into<String>) -> Self {
        self.in_cluster_server = server.into();
        self
    }

    /// Enables or disables implicit auth methods.
    pub fn with_implicit_auth(mut self, enabled: bool) -> Self {
        self.implicit_auth = ImplicitAuthGate::new(enabled);
        self
    }

    /// The kubeconfig files to read, in merge order: the `KUBECONFIG` entries, or
    /// `~/.kube/config`.
    pub fn kubeconfig_paths(&self) -> Vec<PathBuf> {
        let from_env: Vec<PathBuf> = self
            .kubeconfig
            .as_ref()
            .map(|value| {
                std::env::split_paths(value)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if !from_env.is_empty() {
            return from_env;
        }
        self.home
            .as_ref()
            .map(|home| vec![home.join(".kube").join("config")])
            .unwrap_or_default()
    }

    /// The kubeconfig file `login` writes: the first `KUBECONFIG` entry, or
    /// `~/.kube/config`.
    pub fn login_kubeconfig_path(&self) -> Option<PathBuf> {
        self.kubeconfig_paths().into_iter().next()
    }
}

impl Default for LocalEnvironment {
    fn default() -> Self {
        Self::from_process()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_kubeconfig_then_home() {
        let env = LocalEnvironment::empty().with_home("/home/u");
        assert_eq!(
            env.kubeconfig_paths(),
            [PathBuf::from("/home/u/.kube/config")]
        );
        let env = env.with_kubeconfig(std::env::join_paths(["/a", "", "/b"]).unwrap());
        assert_eq!(
            env.kubeconfig_paths(),
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(env.login_kubeconfig_path(), Some(PathBuf::from("/a")));
        assert_eq!(LocalEnvironment::empty().login_kubeconfig_path(), None);
    }

    #[test]
    fn in_cluster_server_comes_from_the_service_variables() {
        let env = LocalEnvironment::from_lookup(|name| match name {
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".into()),
            "KUBERNETES_SERVICE_PORT" => Some("443".into()),
            "STEPSTACK_ENABLE_IMPLICIT_AUTH_METHODS" => Some("true".into()),
            _ => None,
        });
        assert_eq!(env.in_cluster_server, "https://10.96.0.1:443");
        assert!(env.implicit_auth.is_enabled());
        let env = LocalEnvironment::from_lookup(|name| {
            (name == "KUBERNETES_SERVICE_HOST").then(|| "fd00::1".into())
        });
        assert_eq!(env.in_cluster_server, "https://[fd00::1]");
        assert_eq!(
            LocalEnvironment::empty().in_cluster_server,
            DEFAULT_IN_CLUSTER_SERVER
        );
    }
}
