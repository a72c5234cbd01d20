//! What the connector reads from the machine it runs on (the `AZURE_*` variables, the
//! implicit-auth gate, the kubeconfig path), gathered in one value so tests and embedders
//! inject it instead of changing the process environment.

use std::ffi::OsString;
use std::path::PathBuf;

use secrecy::SecretString;
use stepstack_core::connector::ImplicitAuthGate;

use crate::config::Credentials;

/// The local environment of the Azure connector. `Debug` hides the client secret.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AzureEnvironment {
    /// `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `AZURE_CLIENT_SECRET`.
    pub client_secret: Option<SecretString>,
    /// `AZURE_SUBSCRIPTION_ID`: the default subscription of the implicit method.
    pub subscription_id: Option<String>,
    /// Whether the implicit auth method may be used.
    pub implicit_auth: ImplicitAuthGate,
    /// The value of `KUBECONFIG`; `login` writes its first entry.
    pub kubeconfig: Option<OsString>,
    /// The home directory; `login` writes `~/.kube/config` when `KUBECONFIG` is unset.
    pub home: Option<PathBuf>,
}

impl AzureEnvironment {
    /// The environment of this process.
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// The environment read through `lookup`, which returns an environment variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Self {
        let text = |name: &str| {
            lookup(name)
                .and_then(|v| v.into_string().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        AzureEnvironment {
            tenant_id: text("AZURE_TENANT_ID"),
            client_id: text("AZURE_CLIENT_ID"),
            client_secret: text("AZURE_CLIENT_SECRET").map(SecretString::from),
            subscription_id: text("AZURE_SUBSCRIPTION_ID"),
            implicit_auth: ImplicitAuthGate::from_lookup(|name| text(name)),
            kubeconfig: lookup("KUBECONFIG").filter(|v| !v.is_empty()),
            home: lookup("HOME").filter(|v| !v.is_empty()).map(PathBuf::from),
        }
    }

    /// An environment with nothing in it (implicit methods disabled). Tests start here.
    pub fn empty() -> Self {
        Self::from_lookup(|_| None)
    }

    /// Enables or disables the implicit auth method.
    pub fn with_implicit_auth(mut self, enabled: bool) -> Self {
        self.implicit_auth = ImplicitAuthGate::new(enabled);
        self
    }

    /// Uses these service-principal credentials as the `AZURE_*` variables.
    pub fn with_service_principal(
        mut self,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self.client_id = Some(client_id.into());
        self.client_secret = Some(SecretString::from(client_secret.into()));
        self
    }

    /// Uses `subscription_id` as `AZURE_SUBSCRIPTION_ID`.
    pub fn with_subscription(mut self, subscription_id: impl Into<String>) -> Self {
        self.subscription_id = Some(subscription_id.into());
        self
    }

    /// Uses `value` as the `KUBECONFIG` value.
    pub fn with_kubeconfig(mut self, value: impl Into<OsString>) -> Self {
        self.kubeconfig = Some(value.into());
        self
    }

    /// The kubeconfig file `login` writes: the first `KUBECONFIG` entry, or
    /// `~/.kube/config`.
    pub fn login_kubeconfig_path(&self) -> Option<PathBuf> {
        self.kubeconfig
            .as_ref()
            .and_then(|value| std::env::split_paths(value).find(|p| !p.as_os_str().is_empty()))
            .or_else(|| self.home.as_ref().map(|h| h.join(".kube").join("config")))
    }

    /// The client-secret credentials of the `AZURE_*` variables, when all three are set.
    pub(crate) fn client_secret_credentials(&self) -> Option<Credentials> {
        Some(Credentials::ClientSecret {
            tenant_id: self.tenant_id.clone()?,
            client_id: self.client_id.clone()?,
            secret: self.client_secret.clone()?,
        })
    }
}

impl Default for AzureEnvironment {
    fn default() -> Self {
        Self::from_process()
    }
}
