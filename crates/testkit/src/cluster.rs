//! [`Cluster`]: a running emulated Kubernetes cluster.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::accounting::{Accounting, RequestCounts};
use crate::faults::Faults;
use crate::kubeconfig::{self, UserCredentials};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::server::auth::{AuthState, Rule, TokenValidator, UserInfo};
use crate::server::tls::{Pki, TlsError};
use crate::server::{self, ConnectionOptions, ConnectionSlots, Ctx};
use crate::store::{Store, StoreOptions};

/// Errors starting or using a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Certificates or TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Binding the listener or writing a file (the I/O error is the source, printed once).
    #[error("the emulated cluster could not bind its listener or write a file")]
    Io(#[from] std::io::Error),
    /// Building a kubeconfig or client.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
}

/// Options of [`Cluster::start`].
#[derive(Clone)]
pub struct ClusterOptions {
    /// The port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// The runtime (nodes, kubelet) options.
    pub runtime: RuntimeOptions,
    /// Store tuning (watch history window).
    pub store: StoreOptions,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Accepts bearer tokens the cluster did not issue (cloud tokens).
    pub token_validator: Option<TokenValidator>,
    /// Handshake and header timeouts and the connection limit of the API server.
    pub connections: ConnectionOptions,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            port: 0,
            runtime: RuntimeOptions::default(),
            store: StoreOptions::default(),
            bookmark_interval: Duration::from_secs(5),
            token_validator: None,
            connections: ConnectionOptions::default(),
        }
    }
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("port", &self.port)
            .field("runtime", &self.runtime)
            .field("bookmark_interval", &self.bookmark_interval)
            .field("token_validator", &self.token_validator.is_some())
            .field("connections", &self.connections)
            .finish()
    }
}

/// How a new user authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A random bearer token.
    Token,
    /// A client certificate signed by the cluster CA (CN = name, O = groups).
    ClientCert,
    /// A random password for HTTP basic auth (user name = the user's name).
    Password,
}

/// A user to add with [`Cluster::add_user`].
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The user name.
    pub name: String,
    /// Groups (`system:masters` grants everything).
    pub groups: Vec<String>,
    /// What the user may do.
    pub rules: Vec<Rule>,
    /// Token or client certificate.
    pub credential: CredentialKind,
}

impl NewUser {
    /// A bearer-token user with rules.
    pub fn token(name: impl Into<String>, rules: Vec<Rule>) -> Self {
        Self {
            name: name.into(),
            groups: Vec::new(),
            rules,
            credential: CredentialKind::Token,
        }
    }

    /// A client-certificate user with rules.
    pub fn client_cert(name: impl Into<String>, rules: Vec<Rule>) -> Self {
        Self {
            name: name.into(),
            groups: Vec::new(),
            rules,
            credential: CredentialKind::ClientCert,
        }
    }

    /// A basic-auth (user name and password) user with rules.
    pub fn password(name: impl Into<String>, rules: Vec<Rule>) -> Self {
        Self {
            name: name.into(),
            groups: Vec::new(),
            rules,
            credential: CredentialKind::Password,
        }
    }

    /// Adds groups.
    pub fn with_groups(mut self, groups: &[&str]) -> Self {
        self.groups.extend(groups.iter().map(|g| g.to_string()));
        self
    }
}

/// A running emulated cluster. Dropping it stops the server and the runtime.
pub struct Cluster {
    url: String,
    store: Store,
    runtime: Arc<Runtime>,
    auth: Arc<AuthState>,
    pki: Pki,
    faults: Faults,
    accounting: Accounting,
    admin: UserCredentials,
    shutdown: CancellationToken,
    connections: ConnectionSlots,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn random_token() -> String {
    let b: [u8; 24] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Cluster {
    /// Starts a cluster: store, runtime, and the HTTPS API server on 127.0.0.1.
    pub async fn start(options: ClusterOptions) -> Result<Cluster, ClusterError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let pki = Pki::generate()?;
        let tls = pki.server_config()?;
        let listener = TcpListener::bind(("127.0.0.1", options.port)).await?;
        let addr = listener.local_addr()?;
        let url = format!("https://127.0.0.1:{}", addr.port());
        let store = Store::with_options(options.store.clone());
        let auth = Arc::new(AuthState::default());
        auth.set_validator(options.token_validator.clone());
        let admin_user = UserInfo::new(
            "admin",
            vec!["system:masters".into(), "system:authenticated".into()],
        );
        let admin_cert = pki.issue_client_cert(&admin_user.name, &admin_user.groups)?;
        auth.add_cert(admin_cert.der.clone(), admin_user.clone());
        let admin_token = random_token();
        auth.add_token(admin_token.clone(), admin_user);
        let admin = UserCredentials {
            name: "admin".into(),
            token: Some(admin_token),
            client_cert_pem: Some(admin_cert.cert_pem),
            client_key_pem: Some(admin_cert.key_pem),
            password: None,
        };
        let faults = Faults::new(auth.clone());
        let accounting = Accounting::default();
        let runtime = Runtime::start(store.clone(), options.runtime.clone());
        let shutdown = CancellationToken::new();
        let ctx = Arc::new(Ctx {
            store: store.clone(),
            runtime: runtime.clone(),
            auth: auth.clone(),
            faults: faults.clone(),
            accounting: accounting.clone(),
            server_address: format!("127.0.0.1:{}", addr.port()),
            bookmark_interval: options.bookmark_interval,
            shutdown: shutdown.clone(),
        });
        let connections = ConnectionSlots::new(&options.connections);
        let server = tokio::spawn(server::serve(
            listener,
            tls,
            ctx,
            options.connections.clone(),
            connections.clone(),
        ));
        tracing::info!(%url, "testkit cluster started");
        Ok(Cluster {
            url,
            store,
            runtime,
            auth,
            pki,
            faults,
            accounting,
            admin,
            shutdown,
            connections,
            server: Some(server),
        })
    }

    /// The API server URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many connections the API server holds open now: accepted and handshaking,
    /// or served. At most [`ConnectionOptions::max_connections`]; connections beyond
    /// it wait to be accepted and are not counted.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }

    /// The CA certificate (PEM) that signed the server and client certificates.
    pub fn ca_pem(&self) -> &str {
        self.pki.ca_pem()
    }

    /// The admin's credentials (a token and a client certificate; user `admin`, group
    /// `system:masters`).
    pub fn admin_credentials(&self) -> &UserCredentials {
        &self.admin
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        self.admin.token.as_deref().unwrap_or_default()
    }

    /// The admin kubeconfig as YAML (client-certificate auth, namespace `default`).
    pub fn kubeconfig_yaml(&self) -> String {
        let cert_only = UserCredentials {
            token: None,
            ..self.admin.clone()
        };
        kubeconfig::render(&self.url, self.ca_pem(), &cert_only, "default")
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> Result<kube::config::Kubeconfig, ClusterError> {
        kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml())
            .map_err(|e| ClusterError::Kubeconfig(e.to_string()))
    }

    /// A kubeconfig YAML for another user.
    pub fn kubeconfig_yaml_for(&self, user: &UserCredentials) -> String {
        kubeconfig::render(&self.url, self.ca_pem(), user, "default")
    }

    /// A kubeconfig for another user.
    pub fn kubeconfig_for(
        &self,
        user: &UserCredentials,
    ) -> Result<kube::config::Kubeconfig, ClusterError> {
        kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml_for(user))
            .map_err(|e| ClusterError::Kubeconfig(e.to_string()))
    }

    /// Writes the admin kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<(), ClusterError> {
        std::fs::write(path, self.kubeconfig_yaml())?;
        Ok(())
    }

    /// A kube client for a kubeconfig.
    async fn client_from(kc: kube::config::Kubeconfig) -> Result<kube::Client, ClusterError> {
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| ClusterError::Kubeconfig(e.to_string()))?;
        kube::Client::try_from(config).map_err(|e| ClusterError::Kubeconfig(e.to_string()))
    }

    /// An admin `kube::Client`.
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        Self::client_from(self.kubeconfig()?).await
    }

    /// A `kube::Client` authenticating as `user`.
    pub async fn client_for(&self, user: &UserCredentials) -> Result<kube::Client, ClusterError> {
        Self::client_from(self.kubeconfig_for(user)?).await
    }

    /// Adds a user with a token or a client certificate and a rule set.
    pub fn add_user(&self, user: NewUser) -> Result<UserCredentials, ClusterError> {
        let mut groups = user.groups.clone();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        let info = UserInfo::new(user.name.clone(), groups);
        self.auth.set_user_rules(&user.name, user.rules);
        match user.credential {
            CredentialKind::Token => {
                let token = random_token();
                self.auth.add_token(token.clone(), info);
                Ok(UserCredentials {
                    name: user.name,
                    token: Some(token),
                    client_cert_pem: None,
                    client_key_pem: None,
                    password: None,
                })
            }
            CredentialKind::ClientCert => {
                let cert = self.pki.issue_client_cert(&info.name, &user.groups)?;
                self.auth.add_cert(cert.der.clone(), info);
                Ok(UserCredentials {
                    name: user.name,
                    token: None,
                    client_cert_pem: Some(cert.cert_pem),
                    client_key_pem: Some(cert.key_pem),
                    password: None,
                })
            }
            CredentialKind::Password => {
                let password = random_token();
                self.auth
                    .add_password(user.name.clone(), password.clone(), info);
                Ok(UserCredentials {
                    name: user.name,
                    token: None,
                    client_cert_pem: None,
                    client_key_pem: None,
                    password: Some(password),
                })
            }
        }
    }

    /// Registers a fixed bearer token for a user (for example a token a test minted).
    pub fn add_token(&self, token: &str, user: UserInfo) {
        self.auth.add_token(token.to_string(), user);
    }

    /// Replaces the rules of a user (also for users from the token validator).
    pub fn set_user_rules(&self, user: &str, rules: Vec<Rule>) {
        self.auth.set_user_rules(user, rules);
    }

    /// Replaces the rules of a group.
    pub fn set_group_rules(&self, group: &str, rules: Vec<Rule>) {
        self.auth.set_group_rules(group, rules);
    }

    /// Installs (or removes) the hook that accepts foreign bearer tokens.
    pub fn set_token_validator(&self, validator: Option<TokenValidator>) {
        self.auth.set_validator(validator);
    }

    /// The object store (read and write objects directly, bypassing the API).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The runtime (scheduler, job controller, kubelet).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// A snapshot of the request counters.
    pub fn requests(&self) -> RequestCounts {
        self.accounting.snapshot()
    }

    /// The live request counters (to reset them).
    pub fn accounting(&self) -> &Accounting {
        &self.accounting
    }

    /// Stops the server and the runtime and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.runtime.shutdown();
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.runtime.shutdown();
    }
}
