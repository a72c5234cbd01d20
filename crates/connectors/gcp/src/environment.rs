//! What the connector reads from the machine it runs on (application default credentials,
//! the metadata server, the implicit-auth gate), gathered in one value so tests and
//! embedders inject it instead of changing the process environment.

use std::ffi::OsString;
use std::path::PathBuf;

use stepstack_core::connector::ImplicitAuthGate;

/// The metadata server's host when `GCE_METADATA_HOST` is not set.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";

/// The file gcloud writes application default credentials to, under its config directory.
pub const ADC_FILE: &str = "application_default_credentials.json";

/// The local environment of the GCP connector.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GcpEnvironment {
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a credentials file to use first.
    pub application_credentials: Option<PathBuf>,
    /// gcloud's configuration directory (`CLOUDSDK_CONFIG`, else `~/.config/gcloud`),
    /// where `gcloud auth application-default login` writes [`ADC_FILE`].
    pub gcloud_config_dir: Option<PathBuf>,
    /// The metadata server (`GCE_METADATA_HOST`, else [`DEFAULT_METADATA_HOST`]), as
    /// `HOST[:PORT]`, reached over plain HTTP.
    pub metadata_host: String,
    /// The default project (`GOOGLE_CLOUD_PROJECT`, else `CLOUDSDK_CORE_PROJECT`).
    pub project: Option<String>,
    /// Whether implicit auth methods (`implicit`, `external-account`) may be used.
    pub implicit_auth: ImplicitAuthGate,
    /// The value of `KUBECONFIG`; `login` writes its first entry.
    pub kubeconfig: Option<OsString>,
    /// The home directory; `login` writes `~/.kube/config` when `KUBECONFIG` is unset.
    pub home: Option<PathBuf>,
}

impl GcpEnvironment {
    /// The environment of this process.
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// The environment read through `lookup`, which returns an environment variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Self {
        let text = |name: &str| {
            lookup(name)
                .and_then(|v| v.into_string().ok())
                .filter(|v| !v.trim().is_empty())
        };
        let gcloud_config_dir = lookup("CLOUDSDK_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                lookup("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|home| PathBuf::from(home).join(".config").join("gcloud"))
            });
        GcpEnvironment {
            application_credentials: lookup("GOOGLE_APPLICATION_CREDENTIALS")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            gcloud_config_dir,
            metadata_host: text("GCE_METADATA_HOST")
                .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned()),
            project: text("GOOGLE_CLOUD_PROJECT").or_else(|| text("CLOUDSDK_CORE_PROJECT")),
            implicit_auth: ImplicitAuthGate::from_lookup(|name| text(name)),
            kubeconfig: lookup("KUBECONFIG").filter(|v| !v.is_empty()),
            home: lookup("HOME").filter(|v| !v.is_empty()).map(PathBuf::from),
        }
    }

    /// An environment with nothing in it: no credentials files, no project, implicit
    /// methods disabled, the default metadata host. Tests start from here.
    pub fn empty() -> Self {
        Self::from_lookup(|_| None)
    }

    /// Uses `path` as `GOOGLE_APPLICATION_CREDENTIALS`.
    pub fn with_application_credentials(mut self, path: impl Into<PathBuf>) -> Self {
        self.application_credentials = Some(path.into());
        self
    }

    /// Uses `dir` as gcloud's configuration directory.
    pub fn with_gcloud_config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.gcloud_config_dir = Some(dir.into());
        self
    }

    /// Uses `host` (`HOST[:PORT]`) as the metadata server.
    pub fn with_metadata_host(mut self, host: impl Into<String>) -> Self {
        self.metadata_host = host.into();
        self
    }

    /// Uses `project` as the default project.
    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Enables or disables implicit auth methods.
    pub fn with_implicit_auth(mut self, enabled: bool) -> Self {
        self.implicit_auth = ImplicitAuthGate::new(enabled);
        self
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

    /// The kubeconfig file `login` writes: the first `KUBECONFIG` entry, or
    /// `~/.kube/config`.
    pub fn login_kubeconfig_path(&self) -> Option<PathBuf> {
        stepstack_core::connector::kubeconfig::login_path(
            self.kubeconfig.as_deref(),
            self.home.as_deref(),
        )
    }

    /// The credentials files to look at, in order: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// then gcloud's application default credentials.
    pub fn adc_candidates(&self) -> Vec<PathBuf> {
        self.application_credentials
            .iter()
            .cloned()
            .chain(self.gcloud_config_dir.iter().map(|d| d.join(ADC_FILE)))
            .collect()
    }

    /// The application default credentials file to use: `GOOGLE_APPLICATION_CREDENTIALS`
    /// when set (even if missing, so the error names it), else gcloud's file if it exists.
    pub fn adc_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.application_credentials {
            return Some(path.clone());
        }
        self.gcloud_config_dir
            .as_ref()
            .map(|d| d.join(ADC_FILE))
            .filter(|p| p.is_file())
    }
}

impl Default for GcpEnvironment {
    fn default() -> Self {
        Self::from_process()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_read_through_the_lookup() {
        let env = GcpEnvironment::from_lookup(|name| match name {
            "HOME" => Some("/home/u".into()),
            "GCE_METADATA_HOST" => Some("127.0.0.1:8080".into()),
            "CLOUDSDK_CORE_PROJECT" => Some("p1".into()),
            _ => None,
        });
        assert_eq!(
            env.gcloud_config_dir,
            Some(PathBuf::from("/home/u/.config/gcloud"))
        );
        assert_eq!(env.metadata_host, "127.0.0.1:8080");
        assert_eq!(env.project.as_deref(), Some("p1"));
        assert!(!env.implicit_auth.is_enabled());
        let empty = GcpEnvironment::empty();
        assert_eq!(empty.metadata_host, DEFAULT_METADATA_HOST);
        assert!(empty.adc_candidates().is_empty());
    }
}
