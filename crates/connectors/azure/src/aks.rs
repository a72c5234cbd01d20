//! The AKS side: cluster ids (`name` or `resource-group/name`), the ARM
//! `managedClusters` shapes, and the kubeconfigs of `listCluster*Credential`.

use base64::Engine as _;
use serde::Deserialize;
use stepstack_core::connector::{ResourceIds, qualified_ids, split_qualified};
use stepstack_core::{Error, ErrorKind};

use crate::error::{AzureError, AzureResult};

/// A managed cluster as ARM returns it (the fields the connector uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManagedCluster {
    #[serde(default)]
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) location: String,
    #[serde(default)]
    pub(crate) properties: ClusterProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterProperties {
    #[serde(default)]
    pub(crate) disable_local_accounts: Option<bool>,
}

impl ManagedCluster {
    /// The resource group, from the resource id (`…/resourceGroups/{rg}/…`, any case).
    pub(crate) fn resource_group(&self) -> String {
        let mut parts = self.id.split('/');
        while let Some(part) = parts.next() {
            if part.eq_ignore_ascii_case("resourceGroups") {
                return parts.next().unwrap_or_default().to_owned();
            }
        }
        String::new()
    }
}

/// A list response page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterList {
    #[serde(default)]
    pub(crate) value: Vec<ManagedCluster>,
    #[serde(default)]
    pub(crate) next_link: Option<String>,
}

/// The `listCluster*Credential` response.
#[derive(Debug, Deserialize)]
pub(crate) struct CredentialResults {
    #[serde(default)]
    pub(crate) kubeconfigs: Vec<CredentialResult>,
}

#[derive(Deserialize)]
pub(crate) struct CredentialResult {
    #[serde(default)]
    pub(crate) value: String,
}

impl std::fmt::Debug for CredentialResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialResult { value: [HIDDEN] }")
    }
}

/// The kubeconfig of a credential response, decoded (its first entry).
pub(crate) fn decode_kubeconfig(
    results: CredentialResults,
    cluster: &str,
    which: &'static str,
) -> AzureResult<kube::config::Kubeconfig> {
    let bad = |reason: String| AzureError::BadKubeconfig {
        cluster: cluster.to_owned(),
        which,
        reason,
    };
    let first = results
        .kubeconfigs
        .into_iter()
        .next()
        .ok_or_else(|| bad("the response holds no kubeconfig".to_owned()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(first.value.trim())
        .map_err(|_| bad("`kubeconfigs[0].value` is not base64".to_owned()))?;
    let text = String::from_utf8(bytes).map_err(|_| bad("it is not UTF-8 text".to_owned()))?;
    // kube's error could quote the document (which may hold an admin token): not shown.
    kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|_| bad("it is not a valid kubeconfig YAML document".to_owned()))
}

/// The server URL and CA (PEM) of a kubeconfig's current (else first) cluster.
pub(crate) fn server_and_ca(
    kubeconfig: &kube::config::Kubeconfig,
    cluster: &str,
) -> AzureResult<(String, Option<String>)> {
    let bad = |reason: &str| AzureError::BadKubeconfig {
        cluster: cluster.to_owned(),
        which: "user",
        reason: reason.to_owned(),
    };
    let current_cluster = kubeconfig
        .current_context
        .as_ref()
        .and_then(|name| kubeconfig.contexts.iter().find(|c| &c.name == name))
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let named = current_cluster
        .and_then(|name| kubeconfig.clusters.iter().find(|c| c.name == name))
        .or_else(|| kubeconfig.clusters.first())
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| bad("it names no cluster"))?;
    let server = named
        .server
        .clone()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| bad("its cluster has no `server`"))?;
    let ca = match &named.certificate_authority_data {
        Some(data) => {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|_| bad("`certificate-authority-data` is not base64"))?;
            Some(String::from_utf8(pem).map_err(|_| bad("the CA is not PEM text"))?)
        }
        None => None,
    };
    Ok((server, ca))
}

/// A cluster id: a bare name, or `resource-group/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterRef {
    pub(crate) resource_group: Option<String>,
    pub(crate) name: String,
}

impl ClusterRef {
    pub(crate) fn parse(id: &str) -> AzureResult<ClusterRef> {
        let id = id.trim();
        let invalid = || AzureError::InvalidResourceId { id: id.to_owned() };
        let (group, name) = split_qualified(id);
        if !is_cluster_name(name) {
            return Err(invalid());
        }
        if let Some(group) = group
            && !is_resource_group(group)
        {
            return Err(invalid());
        }
        Ok(ClusterRef {
            resource_group: group.map(str::to_owned),
            name: name.to_owned(),
        })
    }
}

/// AKS cluster names: 1-63 letters, digits, `-` and `_`, starting and ending with a letter
/// or digit.
fn is_cluster_name(name: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    (1..=63).contains(&name.len())
        && alnum(name.chars().next())
        && alnum(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Resource group names: 1-90 letters, digits, `-`, `_`, `.`, `(`, `)`, not ending in `.`.
pub(crate) fn is_resource_group(group: &str) -> bool {
    (1..=90).contains(&group.len())
        && !group.ends_with('.')
        && group
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
}

/// The ids `verify` lists: the bare name of a cluster whose name is unique, and
/// `resource-group/name` for each cluster whose name is not.
pub(crate) fn listing_ids(clusters: &[ManagedCluster]) -> Vec<String> {
    let groups: Vec<String> = clusters
        .iter()
        .map(ManagedCluster::resource_group)
        .collect();
    qualified_ids(
        groups
            .iter()
            .zip(clusters)
            .map(|(group, c)| (group.as_str(), c.name.as_str())),
    )
}

/// Resource ids of the `kubernetes-cluster` type: `name` or `resource-group/name`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AksIds;

impl ResourceIds for AksIds {
    fn canonical_resource_id(
        &self,
        _resource_type: &str,
        resource_id: &str,
    ) -> stepstack_core::Result<String> {
        ClusterRef::parse(resource_id)
            .map(|r| match r.resource_group {
                Some(group) => format!("{group}/{}", r.name),
                None => r.name,
            })
            .map_err(|e| Error::new(ErrorKind::InvalidSettings, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(group: &str, name: &str) -> ManagedCluster {
        serde_json::from_value(serde_json::json!({
            "id": format!("/subscriptions/s/resourcegroups/{group}/providers/Microsoft.ContainerService/managedClusters/{name}"),
            "name": name,
        }))
        .unwrap()
    }

    #[test]
    fn ids_are_names_or_group_slash_name() {
        assert_eq!(
            ClusterRef::parse(" rg-1/prod ").unwrap(),
            ClusterRef {
                resource_group: Some("rg-1".into()),
                name: "prod".into()
            }
        );
        assert_eq!(ClusterRef::parse("prod").unwrap().resource_group, None);
        for bad in ["", "a/b/c", "/prod", "-x", "rg./prod", "x-", "rg/pr od"] {
            assert!(ClusterRef::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(cluster("My-RG", "prod").resource_group(), "My-RG");
        assert_eq!(
            listing_ids(&[
                cluster("a", "prod"),
                cluster("b", "prod"),
                cluster("a", "dev")
            ]),
            ["a/prod", "b/prod", "dev"]
        );
    }
}
