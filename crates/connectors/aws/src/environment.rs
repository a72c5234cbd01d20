//! What the process environment gives the `aws` connector: the `AWS_*` variables and the
//! home directory (for `~/.aws/config`, `~/.aws/credentials` and the kubeconfig login
//! writes), read once so tests can pass their own.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the local AWS configuration comes from: environment variables and the home
/// directory (for `~/.aws/config` and `~/.aws/credentials`). Tests build one by hand
/// instead of changing the process environment.
#[derive(Clone, Default)]
pub struct AwsEnvironment {
    vars: BTreeMap<String, String>,
    home: Option<PathBuf>,
    process: bool,
}

impl std::fmt::Debug for AwsEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsEnvironment")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("home", &self.home)
            .field("process", &self.process)
            .finish()
    }
}

impl AwsEnvironment {
    /// The `AWS_*` variables and home directory of this process.
    pub fn from_process() -> Self {
        AwsEnvironment {
            vars: std::env::vars()
                .filter(|(k, _)| k.starts_with("AWS_") || k == "KUBECONFIG")
                .collect(),
            home: std::env::var_os("HOME").map(PathBuf::from),
            process: true,
        }
    }

    /// An environment with the given variables and no home directory.
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        AwsEnvironment {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            home: None,
            process: false,
        }
    }

    /// Uses `home` for `~/.aws/…`.
    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }

    /// Whether this is the process's own environment (the SDK then reads it itself).
    pub(crate) fn is_process(&self) -> bool {
        self.process
    }

    /// The shared config file.
    pub(crate) fn config_file(&self) -> Option<PathBuf> {
        self.file("AWS_CONFIG_FILE", "config")
    }

    /// The shared credentials file.
    pub(crate) fn credentials_file(&self) -> Option<PathBuf> {
        self.file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
    }

    /// The kubeconfig that `login` updates: the first file of `KUBECONFIG`, else
    /// `~/.kube/config`.
    pub(crate) fn kubeconfig_path(&self) -> Option<PathBuf> {
        stepstack_core::connector::kubeconfig::login_path(
            self.var("KUBECONFIG").map(std::ffi::OsStr::new),
            self.home.as_deref(),
        )
    }

    /// The profile named by `AWS_PROFILE`.
    pub(crate) fn profile(&self) -> Option<&str> {
        self.var("AWS_PROFILE")
    }

    /// The access key in `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`.
    pub(crate) fn keys(&self) -> Option<(String, String, Option<String>)> {
        Some((
            self.var("AWS_ACCESS_KEY_ID")?.to_owned(),
            self.var("AWS_SECRET_ACCESS_KEY")?.to_owned(),
            self.var("AWS_SESSION_TOKEN").map(str::to_owned),
        ))
    }

    /// The value of variable `name`, unless unset or empty.
    pub(crate) fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The file variable `var` names, else `~/.aws/<default>`.
    pub(crate) fn file(&self, var: &str, default: &str) -> Option<PathBuf> {
        match self.var(var) {
            Some(path) => Some(PathBuf::from(path)),
            None => self.home.as_ref().map(|h| h.join(".aws").join(default)),
        }
    }
}
