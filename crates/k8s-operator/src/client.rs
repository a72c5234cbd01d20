//! Which cluster the operator talks to, in ZenML's order: the in-cluster service
//! account, then the linked service connector's connection, then a kubeconfig context.
//! The client is built on first use (inside the async runtime) and then shared.

use stepstack_core::{ClusterConnection, Error, ErrorKind, Result};
use tokio::sync::OnceCell;

use crate::api::Api;

/// Where the client comes from.
#[derive(Clone)]
pub(crate) enum ClientSource {
    /// The pod's service account (`incluster: true`).
    InCluster,
    /// The connection of the linked service connector.
    Connection(Box<ClusterConnection>),
    /// A kubeconfig context (the current one when `None`).
    Kubeconfig(Option<String>),
    /// A ready client (tests, embedding).
    Client(kube::Client, String),
}

impl std::fmt::Debug for ClientSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSource::InCluster => f.write_str("InCluster"),
            ClientSource::Connection(c) => f.debug_tuple("Connection").field(c).finish(),
            ClientSource::Kubeconfig(c) => f.debug_tuple("Kubeconfig").field(c).finish(),
            ClientSource::Client(_, url) => f.debug_tuple("Client").field(url).finish(),
        }
    }
}

impl ClientSource {
    /// The source for the component configuration and the build context, in order:
    /// in-cluster, linked connector, kubeconfig context.
    pub(crate) fn choose(
        incluster: bool,
        connection: Option<ClusterConnection>,
        context: Option<String>,
    ) -> Self {
        if incluster {
            ClientSource::InCluster
        } else if let Some(connection) = connection {
            ClientSource::Connection(Box::new(connection))
        } else {
            ClientSource::Kubeconfig(context)
        }
    }
}

/// A lazily built client and the URL of its cluster.
#[derive(Debug)]
pub(crate) struct Clients {
    source: ClientSource,
    built: OnceCell<(Api, String)>,
}

impl Clients {
    pub(crate) fn new(source: ClientSource) -> Self {
        Clients {
            source,
            built: OnceCell::new(),
        }
    }

    /// The API client and the cluster URL, building the client on first use.
    pub(crate) async fn get(&self) -> Result<&(Api, String)> {
        self.built.get_or_try_init(|| build(&self.source)).await
    }
}

async fn build(source: &ClientSource) -> Result<(Api, String)> {
    match source {
        ClientSource::Client(client, url) => Ok((Api::new(client.clone()), url.clone())),
        ClientSource::Connection(connection) => {
            let url = connection.config.cluster_url.to_string();
            let client = connection.as_ref().clone().into_client()?;
            Ok((Api::new(client), url))
        }
        ClientSource::InCluster => {
            let config = kube::Config::incluster().map_err(|e| {
                Error::new(
                    ErrorKind::InvalidSettings,
                    "`incluster` is set but no in-cluster service account was found; run inside a pod or unset `incluster`",
                )
                .with_source(e)
            })?;
            from_config(config)
        }
        ClientSource::Kubeconfig(context) => {
            let options = kube::config::KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            let config = kube::Config::from_kubeconfig(&options).await.map_err(|e| {
                let what = match context {
                    Some(c) => format!("kubeconfig context `{c}`"),
                    None => "the current kubeconfig context".to_owned(),
                };
                Error::new(
                    ErrorKind::InvalidSettings,
                    format!(
                        "could not load {what}; link a service connector (`stepstack step-operator connect`) or set `kubernetes_context`"
                    ),
                )
                .with_source(e)
            })?;
            from_config(config)
        }
    }
}

fn from_config(config: kube::Config) -> Result<(Api, String)> {
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| {
        Error::new(
            ErrorKind::InvalidSettings,
            "could not build a Kubernetes client; check the server URL and certificates",
        )
        .with_context("server", url.clone())
        .with_source(e)
    })?;
    Ok((Api::new(client), url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> ClusterConnection {
        ClusterConnection::new(kube::Config::new(
            "https://cluster.example:6443".parse().unwrap(),
        ))
    }

    #[test]
    fn clients_are_chosen_in_zenml_order() {
        assert!(matches!(
            ClientSource::choose(true, Some(connection()), Some("ctx".into())),
            ClientSource::InCluster
        ));
        assert!(matches!(
            ClientSource::choose(false, Some(connection()), Some("ctx".into())),
            ClientSource::Connection(_)
        ));
        match ClientSource::choose(false, None, Some("ctx".into())) {
            ClientSource::Kubeconfig(Some(c)) => assert_eq!(c, "ctx"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_connection_builds_a_client_for_its_cluster() {
        let clients = Clients::new(ClientSource::Connection(Box::new(connection())));
        let (_, url) = clients.get().await.unwrap();
        assert_eq!(url, "https://cluster.example:6443/");
    }
}
