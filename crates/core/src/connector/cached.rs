//! Connector clients: connections derived from a connector for one resource, which carry
//! their own expiry and are derived again when they have expired.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Mutex;

use super::expiry;
use super::{ConnectorConfig, ServiceConnector};
use crate::{ClusterConnection, Result};

/// The time source of a [`CachedConnection`]; tests pass a fake clock.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The configuration of a connector client derived from `parent` (e.g. a Kubernetes
/// token connector derived from an AWS connector): `client` with the parent's skew
/// tolerance when it has an expiry and no tolerance of its own.
pub fn derived_client_config(
    parent: &ConnectorConfig,
    mut client: ConnectorConfig,
) -> ConnectorConfig {
    if client.expires_at.is_some() && client.expires_skew_tolerance.is_none() {
        client.expires_skew_tolerance = parent.expires_skew_tolerance;
    }
    client
}

/// A connection to one resource of a connector, kept between uses and derived again
/// (with `connect`) when it has expired, counting the connector's skew tolerance.
///
/// Connections with a token source refresh their own tokens and are kept for good.
///
/// ```no_run
/// # async fn example(connector: std::sync::Arc<dyn stepstack_core::ServiceConnector>) -> stepstack_core::Result<()> {
/// use stepstack_core::connector::CachedConnection;
/// let cached = CachedConnection::new(connector, "kubernetes-cluster", Some("prod"));
/// let client = cached.client().await?; // connects on first use, again once expired
/// # let _ = client; Ok(()) }
/// ```
pub struct CachedConnection {
    connector: Arc<dyn ServiceConnector>,
    resource_type: String,
    resource_id: Option<String>,
    skew: Duration,
    clock: Clock,
    current: Mutex<Option<Current>>,
}

struct Current {
    connection: ClusterConnection,
    client: Option<kube::Client>,
}

impl CachedConnection {
    /// A cache for `connector`'s connection to `resource_type`/`resource_id`, with the
    /// connector's skew tolerance and the system clock.
    pub fn new(
        connector: Arc<dyn ServiceConnector>,
        resource_type: impl Into<String>,
        resource_id: Option<&str>,
    ) -> Self {
        let skew = expiry::skew_tolerance(connector.config());
        CachedConnection {
            connector,
            resource_type: resource_type.into(),
            resource_id: resource_id.map(str::to_owned),
            skew,
            clock: Arc::new(Timestamp::now),
            current: Mutex::new(None),
        }
    }

    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Counts a connection as expired `skew` before its expiry.
    pub fn with_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// The current connection, connecting again first when there is none or it has
    /// expired.
    pub async fn connection(&self) -> Result<ClusterConnection> {
        let mut current = self.current.lock().await;
        Ok(self
            .refresh_if_needed(&mut current)
            .await?
            .connection
            .clone())
    }

    /// A client for the current connection, built again whenever the connection is.
    pub async fn client(&self) -> Result<kube::Client> {
        let mut current = self.current.lock().await;
        let current = self.refresh_if_needed(&mut current).await?;
        if let Some(client) = &current.client {
            return Ok(client.clone());
        }
        let client = current.connection.clone().into_client()?;
        current.client = Some(client.clone());
        Ok(client)
    }

    /// Drops the current connection, so the next use connects again (e.g. after the
    /// credentials were revoked).
    pub async fn invalidate(&self) {
        *self.current.lock().await = None;
    }

    async fn refresh_if_needed<'a>(
        &self,
        slot: &'a mut Option<Current>,
    ) -> Result<&'a mut Current> {
        let now = (self.clock)();
        let fresh = slot
            .as_ref()
            .is_some_and(|c| !self.has_expired(&c.connection, now));
        if !fresh {
            if slot.is_some() {
                tracing::debug!(
                    connector = %self.connector.config().name,
                    resource_type = %self.resource_type,
                    "the connection's credentials have expired; connecting again"
                );
            }
            let connection = self
                .connector
                .connect(&self.resource_type, self.resource_id.as_deref())
                .await?;
            *slot = Some(Current {
                connection,
                client: None,
            });
        }
        slot.as_mut().ok_or_else(|| {
            crate::Error::new(
                crate::ErrorKind::Internal,
                "the cached connection vanished while it was held",
            )
        })
    }

    fn has_expired(&self, connection: &ClusterConnection, now: Timestamp) -> bool {
        connection.token_source.is_none()
            && expiry::has_expired(connection.expires_at, self.skew, now)
    }
}

impl fmt::Debug for CachedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedConnection")
            .field("connector", &self.connector.config().name)
            .field("resource_type", &self.resource_type)
            .field("resource_id", &self.resource_id)
            .field("skew", &self.skew)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::connector::{ConnectorTypeSpec, ResourcesReport};

    /// Issues connections that expire 15 minutes after the fake clock's time.
    #[derive(Debug)]
    struct Issuing {
        spec: ConnectorTypeSpec,
        config: ConnectorConfig,
        clock: Arc<AtomicI64>,
        connects: AtomicUsize,
    }

    #[async_trait]
    impl ServiceConnector for Issuing {
        fn connector_type(&self) -> &ConnectorTypeSpec {
            &self.spec
        }
        fn config(&self) -> &ConnectorConfig {
            &self.config
        }
        async fn verify(&self, _: Option<&str>, _: Option<&str>) -> Result<ResourcesReport> {
            Ok(ResourcesReport::new("eks", "aws"))
        }
        async fn connect(&self, _: &str, _: Option<&str>) -> Result<ClusterConnection> {
            self.connects.fetch_add(1, Ordering::SeqCst);
            let now = Timestamp::from_second(self.clock.load(Ordering::SeqCst)).unwrap();
            let url: http::Uri = "https://127.0.0.1:6443".parse().unwrap();
            Ok(ClusterConnection::new(kube::Config::new(url))
                .with_expires_at(Some(now + jiff::SignedDuration::from_secs(900))))
        }
        async fn configure_local_client(&self, _: &str, _: Option<&str>) -> Result<String> {
            Ok(String::new())
        }
    }

    #[tokio::test]
    async fn an_expired_connection_is_derived_again_before_use() {
        let clock = Arc::new(AtomicI64::new(2_000_000_000));
        let connector = Arc::new(Issuing {
            spec: ConnectorTypeSpec::new("AWS", "aws", "aws"),
            config: ConnectorConfig::new("eks", "aws", "iam-role"),
            clock: clock.clone(),
            connects: AtomicUsize::new(0),
        });
        let fake = clock.clone();
        let cached = CachedConnection::new(connector.clone(), "kubernetes-cluster", Some("prod"))
            .with_clock(Arc::new(move || {
                Timestamp::from_second(fake.load(Ordering::SeqCst)).unwrap()
            }));
        let first = cached.connection().await.unwrap();
        assert_eq!(connector.connects.load(Ordering::SeqCst), 1);
        // Ten minutes later the 15-minute credentials are still good (skew 300 s).
        clock.fetch_add(599, Ordering::SeqCst);
        let again = cached.connection().await.unwrap();
        assert_eq!(again.expires_at, first.expires_at);
        assert_eq!(connector.connects.load(Ordering::SeqCst), 1);
        // At expires_at - 300 s they count as expired and are derived again.
        clock.fetch_add(1, Ordering::SeqCst);
        let renewed = cached.connection().await.unwrap();
        assert_eq!(connector.connects.load(Ordering::SeqCst), 2);
        assert!(renewed.expires_at > first.expires_at);
        cached.invalidate().await;
        cached.connection().await.unwrap();
        assert_eq!(connector.connects.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn derived_clients_inherit_the_parents_skew() {
        let mut parent = ConnectorConfig::new("aws", "aws", "iam-role");
        parent.expires_skew_tolerance = Some(60);
        let mut client = ConnectorConfig::new("aws-prod", "kubernetes", "token");
        let unexpiring = derived_client_config(&parent, client.clone());
        assert_eq!(unexpiring.expires_skew_tolerance, None);
        client.expires_at = Some(Timestamp::from_second(2_000_000_000).unwrap());
        assert_eq!(
            derived_client_config(&parent, client).expires_skew_tolerance,
            Some(60)
        );
    }
}
