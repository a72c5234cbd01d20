//! A connection to a Kubernetes cluster, and the one place that turns it into a
//! `kube::Client`.

mod refresh;
mod token;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

pub use token::{BearerToken, TokenSource};

use crate::{Error, ErrorKind, Result};

/// How long before a token's expiry it is replaced, unless set otherwise.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// What a client needs to talk to one cluster: a `kube::Config` (URL, CA, TLS options,
/// default namespace, static or exec-plugin auth) and, for short-lived credentials, a
/// token source that issues fresh bearer tokens.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClusterConnection {
    /// The client configuration. When a token source is set, its `auth_info` carries no
    /// token: every request gets one from the source.
    pub config: kube::Config,
    /// Issues bearer tokens for short-lived credentials.
    pub token_source: Option<Arc<dyn TokenSource>>,
    /// When the connection's credentials stop working, if they expire.
    pub expires_at: Option<Timestamp>,
    /// How long before a token expires it is replaced.
    pub refresh_margin: Duration,
    /// Why no client can be built although the credentials work (see
    /// [`ClusterConnection::with_client_refusal`]).
    client_refusal: Option<ClientRefusal>,
}

/// Why [`ClusterConnection::into_client`] refuses, kept as parts because [`Error`] is
/// not `Clone`.
#[derive(Debug, Clone)]
struct ClientRefusal {
    kind: ErrorKind,
    message: String,
    context: Vec<(&'static str, String)>,
}

impl ClusterConnection {
    /// A connection that uses `config` as it is.
    pub fn new(config: kube::Config) -> Self {
        ClusterConnection {
            config,
            token_source: None,
            expires_at: None,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            client_refusal: None,
        }
    }

    /// Marks the connection as unusable for API clients, with the error
    /// [`into_client`](Self::into_client) returns, while its token source stays usable:
    /// e.g. the cluster's CA certificate is unreadable, so TLS to the API server cannot
    /// be verified, but a token for kubectl (which has its own CA) can still be issued.
    pub fn with_client_refusal(mut self, error: &Error) -> Self {
        self.client_refusal = Some(ClientRefusal {
            kind: error.kind(),
            message: error.message().to_owned(),
            context: error.context().to_vec(),
        });
        self
    }

    /// Why no client can be built from this connection, if that is so.
    pub fn client_refusal(&self) -> Option<&str> {
        self.client_refusal.as_ref().map(|r| r.message.as_str())
    }

    /// Authenticates every request with a token from `source`, refreshed before it expires.
    pub fn with_token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.token_source = Some(source);
        self
    }

    /// Records when the connection's credentials expire.
    pub fn with_expires_at(mut self, expires_at: Option<Timestamp>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// Sets how long before a token expires it is replaced.
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Whether the connection's credentials have expired, counting `skew` as expired
    /// already. Connections with a token source never expire: they refresh themselves.
    pub fn has_expired(&self, skew: Duration) -> bool {
        if self.token_source.is_some() {
            return false;
        }
        let Some(expires_at) = self.expires_at else {
            return false;
        };
        let skew = jiff::SignedDuration::try_from(skew).unwrap_or(jiff::SignedDuration::MAX);
        match expires_at.checked_sub(skew) {
            Ok(deadline) => Timestamp::now() >= deadline,
            Err(_) => true,
        }
    }

    /// Builds a `kube::Client` for this connection.
    ///
    /// With a token source, the client adds a bearer token to every request, replaces it
    /// before it expires, and when the API answers 401 it fetches a fresh token and retries
    /// the request exactly once. Must be called within a Tokio runtime.
    pub fn into_client(self) -> Result<kube::Client> {
        if let Some(refusal) = self.client_refusal {
            return Err(refusal
                .context
                .into_iter()
                .fold(Error::new(refusal.kind, refusal.message), |e, (k, v)| {
                    e.with_context(k, v)
                }));
        }
        let cluster_url = self.config.cluster_url.to_string();
        let builder = kube::client::ClientBuilder::try_from(self.config).map_err(|e| {
            Error::new(
                ErrorKind::InvalidSettings,
                "could not build a Kubernetes client from the connection; check the server URL and certificates",
            )
            .with_context("server", cluster_url)
            .with_source(e)
        })?;
        let Some(source) = self.token_source else {
            return Ok(builder.build());
        };
        let cache = Arc::new(refresh::TokenCache::new(source, self.refresh_margin));
        Ok(builder
            .with_layer(&tower::buffer::BufferLayer::new(1024))
            .with_layer(&refresh::RefreshingAuthLayer::new(cache))
            .build())
    }
}

impl fmt::Debug for ClusterConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // kube::Config's Debug redacts its secrets; the token source is described by type.
        f.debug_struct("ClusterConnection")
            .field("cluster_url", &self.config.cluster_url)
            .field("default_namespace", &self.config.default_namespace)
            .field("token_source", &self.token_source)
            .field("expires_at", &self.expires_at)
            .field("refresh_margin", &self.refresh_margin)
            .field("client_refusal", &self.client_refusal())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_builds_no_client_and_says_why() {
        let config = kube::Config::new("https://10.0.0.1:443".parse().unwrap());
        let connection = ClusterConnection::new(config).with_client_refusal(
            &Error::new(ErrorKind::Unavailable, "the cluster's CA is unreadable")
                .with_context("cluster", "prod"),
        );
        assert_eq!(
            connection.client_refusal(),
            Some("the cluster's CA is unreadable")
        );
        let Err(err) = connection.clone().into_client() else {
            panic!("a client was built");
        };
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert_eq!(err.message(), "the cluster's CA is unreadable");
        assert_eq!(err.context_value("cluster"), Some("prod"));
    }
}
