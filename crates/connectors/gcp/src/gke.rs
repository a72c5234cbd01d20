//! The GKE side: cluster ids (`name` or `location/name`), the clusters API's shape, and
//! which API server endpoint a client uses.

use base64::Engine as _;
use serde::Deserialize;
use stepstack_core::connector::{ResourceIds, qualified_ids, split_qualified};
use stepstack_core::{Error, ErrorKind};

use crate::error::{GcpError, GcpResult};

/// A cluster as `projects.locations.clusters` returns it (the fields the connector uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GkeCluster {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) location: String,
    #[serde(default)]
    pub(crate) endpoint: String,
    #[serde(default)]
    pub(crate) master_auth: Option<MasterAuth>,
    #[serde(default)]
    pub(crate) control_plane_endpoints_config: Option<ControlPlaneEndpointsConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MasterAuth {
    #[serde(default)]
    pub(crate) cluster_ca_certificate: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ControlPlaneEndpointsConfig {
    #[serde(default)]
    pub(crate) dns_endpoint_config: Option<DnsEndpointConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DnsEndpointConfig {
    #[serde(default)]
    pub(crate) endpoint: Option<String>,
    #[serde(default)]
    pub(crate) allow_external_traffic: Option<bool>,
}

/// The list response; Google omits `clusters` when there are none.
#[derive(Debug, Deserialize)]
pub(crate) struct ListClustersResponse {
    #[serde(default)]
    pub(crate) clusters: Vec<GkeCluster>,
}

/// Where a client reaches a cluster's API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiEndpoint {
    /// The DNS endpoint, verified against the system roots.
    Dns { url: String },
    /// The IP endpoint, verified against the cluster CA (PEM).
    Ip { url: String, ca_pem: String },
}

impl ApiEndpoint {
    pub(crate) fn url(&self) -> &str {
        match self {
            ApiEndpoint::Dns { url } | ApiEndpoint::Ip { url, .. } => url,
        }
    }
}

/// ZenML's choice: the DNS endpoint only when it allows external traffic (its certificate
/// is publicly trusted, so no CA), otherwise the IP endpoint with the cluster CA.
pub(crate) fn choose_endpoint(cluster: &GkeCluster) -> GcpResult<ApiEndpoint> {
    let dns = cluster
        .control_plane_endpoints_config
        .as_ref()
        .and_then(|c| c.dns_endpoint_config.as_ref())
        .filter(|d| d.allow_external_traffic == Some(true))
        .and_then(|d| d.endpoint.as_deref())
        .map(str::trim)
        .filter(|e| !e.is_empty());
    if let Some(host) = dns {
        return Ok(ApiEndpoint::Dns {
            url: format!("https://{}", host.trim_start_matches("https://")),
        });
    }
    let ip = cluster.endpoint.trim();
    if ip.is_empty() {
        return Err(GcpError::NoEndpoint {
            cluster: cluster.name.clone(),
            location: cluster.location.clone(),
        });
    }
    let bad_ca = |reason: &str| GcpError::BadCa {
        cluster: cluster.name.clone(),
        reason: reason.to_owned(),
    };
    let ca_b64 = cluster
        .master_auth
        .as_ref()
        .and_then(|m| m.cluster_ca_certificate.as_deref())
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| bad_ca("the cluster has no `masterAuth.clusterCaCertificate`"))?;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca_b64.trim())
        .map_err(|_| bad_ca("it is not base64"))?;
    let ca_pem = String::from_utf8(ca).map_err(|_| bad_ca("it is not PEM text"))?;
    Ok(ApiEndpoint::Ip {
        url: format!("https://{}", ip.trim_start_matches("https://")),
        ca_pem,
    })
}

/// A cluster id: a bare name, or `location/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterRef {
    pub(crate) location: Option<String>,
    pub(crate) name: String,
}

impl ClusterRef {
    pub(crate) fn parse(id: &str) -> GcpResult<ClusterRef> {
        let id = id.trim();
        let invalid = || GcpError::InvalidResourceId { id: id.to_owned() };
        let (location, name) = split_qualified(id);
        if !is_cluster_name(name) {
            return Err(invalid());
        }
        if let Some(location) = location
            && !is_location(location)
        {
            return Err(invalid());
        }
        Ok(ClusterRef {
            location: location.map(str::to_owned),
            name: name.to_owned(),
        })
    }
}

/// ZenML's rule for GKE cluster names: `^[a-z0-9]+[a-z0-9_-]*$`.
fn is_cluster_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A zone or region: `us-central1`, `europe-west1-b`.
fn is_location(location: &str) -> bool {
    !location.is_empty()
        && location
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The ids `verify` lists: the bare name of a cluster whose name is unique in the
/// project, `location/name` for each cluster whose name is not.
pub(crate) fn listing_ids(clusters: &[GkeCluster]) -> Vec<String> {
    qualified_ids(
        clusters
            .iter()
            .map(|c| (c.location.as_str(), c.name.as_str())),
    )
}

/// Resource ids of the `kubernetes-cluster` type: `name` or `location/name`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GkeIds;

impl ResourceIds for GkeIds {
    fn canonical_resource_id(
        &self,
        _resource_type: &str,
        resource_id: &str,
    ) -> stepstack_core::Result<String> {
        ClusterRef::parse(resource_id)
            .map(|r| match r.location {
                Some(location) => format!("{location}/{}", r.name),
                None => r.name,
            })
            .map_err(|e| Error::new(ErrorKind::InvalidSettings, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(dns: Option<(&str, bool)>) -> GkeCluster {
        serde_json::from_value(serde_json::json!({
            "name": "prod",
            "location": "us-central1",
            "endpoint": "34.1.2.3",
            "masterAuth": {"clusterCaCertificate": base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")},
            "controlPlaneEndpointsConfig": dns.map(|(endpoint, allow)| serde_json::json!({
                "dnsEndpointConfig": {"endpoint": endpoint, "allowExternalTraffic": allow}
            })),
        }))
        .unwrap()
    }

    #[test]
    fn the_dns_endpoint_is_used_only_when_it_allows_external_traffic() {
        let dns = "gke-abc.us-central1.gke.goog";
        assert_eq!(
            choose_endpoint(&cluster(Some((dns, true)))).unwrap(),
            ApiEndpoint::Dns {
                url: format!("https://{dns}")
            }
        );
        for c in [
            cluster(Some((dns, false))),
            cluster(None),
            cluster(Some(("", true))),
        ] {
            let endpoint = choose_endpoint(&c).unwrap();
            assert_eq!(endpoint.url(), "https://34.1.2.3");
            let ApiEndpoint::Ip { ca_pem, .. } = endpoint else {
                panic!("IP endpoint expected")
            };
            assert_eq!(
                stepstack_cloud_http::pem_certificates(&ca_pem).unwrap(),
                vec![vec![0u8, 0, 0]]
            );
        }
        let mut none = cluster(None);
        none.endpoint.clear();
        let err = choose_endpoint(&none).unwrap_err().to_string();
        assert!(err.contains("exposes no Kubernetes API endpoint"), "{err}");
    }

    #[test]
    fn ids_are_names_or_location_slash_name() {
        assert_eq!(
            ClusterRef::parse(" us-central1/prod ").unwrap(),
            ClusterRef {
                location: Some("us-central1".into()),
                name: "prod".into()
            }
        );
        assert_eq!(ClusterRef::parse("prod").unwrap().location, None);
        for bad in ["", "Prod", "a/b/c", "/prod", "-x", "us central/prod"] {
            assert!(ClusterRef::parse(bad).is_err(), "{bad:?}");
        }
        let mut a = cluster(None);
        let mut b = cluster(None);
        b.location = "europe-west1".into();
        let mut c = cluster(None);
        c.name = "dev".into();
        a.location = "us-central1".into();
        assert_eq!(
            listing_ids(&[a, b, c]),
            ["dev", "europe-west1/prod", "us-central1/prod"]
        );
    }
}
