//! What the connector reads from the machine it runs on (the `AZURE_*` variables, the
//! implicit-auth gate, the kubeconfig path), gathered in one value so tests and embedders
//! inject it instead of changing the process environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use stepstack_core::connector::ImplicitAuthGate;

use crate::error::{AzureError, AzureResult};

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
    /// `AZURE_CLIENT_CERTIFICATE_PATH`: a PEM with the certificate and private key of the
    /// `AZURE_CLIENT_ID` application, used when there is no client secret.
    pub client_certificate_path: Option<PathBuf>,
    /// `AZURE_CLIENT_CERTIFICATE_PASSWORD`.
    pub client_certificate_password: Option<SecretString>,
    /// `AZURE_FEDERATED_TOKEN_FILE`: a federated token (AKS workload identity) for the
    /// `AZURE_CLIENT_ID` application, read again for every grant.
    pub federated_token_file: Option<PathBuf>,
    /// `IDENTITY_ENDPOINT`: the managed-identity endpoint of App Service, Functions and
    /// Container Apps.
    pub identity_endpoint: Option<String>,
    /// `IDENTITY_HEADER`: the secret sent to `IDENTITY_ENDPOINT` as `X-IDENTITY-HEADER`.
    pub identity_header: Option<SecretString>,
    /// The Azure CLI program (`az`, found on `PATH`) of the implicit method and of
    /// `auto_configure`.
    pub azure_cli: PathBuf,
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
            client_certificate_path: text("AZURE_CLIENT_CERTIFICATE_PATH").map(PathBuf::from),
            client_certificate_password: text("AZURE_CLIENT_CERTIFICATE_PASSWORD")
                .map(SecretString::from),
            federated_token_file: text("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            identity_endpoint: text("IDENTITY_ENDPOINT"),
            identity_header: text("IDENTITY_HEADER").map(SecretString::from),
            azure_cli: PathBuf::from("az"),
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

    /// Uses `tenant_id` and `client_id` as `AZURE_TENANT_ID` and `AZURE_CLIENT_ID`.
    pub fn with_application(
        mut self,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self.client_id = Some(client_id.into());
        self
    }

    /// Uses `path` as `AZURE_CLIENT_CERTIFICATE_PATH` (for the application of
    /// [`AzureEnvironment::with_application`]).
    pub fn with_client_certificate_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_certificate_path = Some(path.into());
        self
    }

    /// Uses `path` as `AZURE_FEDERATED_TOKEN_FILE` (for the application of
    /// [`AzureEnvironment::with_application`]), as AKS workload identity sets it.
    pub fn with_federated_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.federated_token_file = Some(path.into());
        self
    }

    /// Uses `endpoint` and `header` as `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`.
    pub fn with_identity_endpoint(
        mut self,
        endpoint: impl Into<String>,
        header: impl Into<String>,
    ) -> Self {
        self.identity_endpoint = Some(endpoint.into());
        self.identity_header = Some(SecretString::from(header.into()));
        self
    }

    /// Runs `program` as the Azure CLI.
    pub fn with_azure_cli(mut self, program: impl Into<PathBuf>) -> Self {
        self.azure_cli = program.into();
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
        stepstack_core::connector::kubeconfig::login_path(
            self.kubeconfig.as_deref(),
            self.home.as_deref(),
        )
    }

    /// The tenant, client and certificate file of the `AZURE_*` variables, when all three
    /// are set.
    pub(crate) fn client_certificate_file(&self) -> Option<(String, String, PathBuf)> {
        Some((
            self.tenant_id.clone()?,
            self.client_id.clone()?,
            self.client_certificate_path.clone()?,
        ))
    }
}

/// The contents of file `path`, which environment variable `variable` names.
pub(crate) async fn read_variable_file(variable: &'static str, path: &Path) -> AzureResult<String> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|source| AzureError::ReadFile {
            what: variable,
            path: path.to_owned(),
            source,
        })
}

impl Default for AzureEnvironment {
    fn default() -> Self {
        Self::from_process()
    }
}
