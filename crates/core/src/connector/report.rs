//! What `verify` returns: the resources a connector reaches, per resource type.

use serde::{Deserialize, Serialize};

/// What a connector reaches, per resource type, as returned by `verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourcesReport {
    /// The connector's name.
    pub connector_name: String,
    /// The connector's type id.
    pub connector_type: String,
    /// One entry per resource type checked.
    pub resources: Vec<ResourceTypeResources>,
    /// A failure that stopped every check (e.g. the credentials expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ResourcesReport {
    /// An empty report for a connector.
    pub fn new(connector_name: impl Into<String>, connector_type: impl Into<String>) -> Self {
        ResourcesReport {
            connector_name: connector_name.into(),
            connector_type: connector_type.into(),
            resources: Vec::new(),
            error: None,
        }
    }

    /// Adds a resource type's result.
    pub fn with_resources(mut self, entry: ResourceTypeResources) -> Self {
        self.resources.push(entry);
        self
    }

    /// Sets the global error.
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// The entry for `resource_type`.
    pub fn entry(&self, resource_type: &str) -> Option<&ResourceTypeResources> {
        self.resources
            .iter()
            .find(|r| r.resource_type == resource_type)
    }

    /// Whether nothing failed.
    pub fn is_ok(&self) -> bool {
        self.error.is_none() && self.resources.iter().all(|r| r.error.is_none())
    }
}

/// The resources of one type a connector reaches, or why they could not be listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceTypeResources {
    /// The resource type id.
    pub resource_type: String,
    /// The resource ids reached (`None` when listing failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_ids: Option<Vec<String>>,
    /// Why this resource type could not be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ResourceTypeResources {
    /// A successful listing.
    pub fn found(resource_type: impl Into<String>, resource_ids: Vec<String>) -> Self {
        ResourceTypeResources {
            resource_type: resource_type.into(),
            resource_ids: Some(resource_ids),
            error: None,
        }
    }

    /// A failed listing.
    pub fn failed(resource_type: impl Into<String>, error: impl Into<String>) -> Self {
        ResourceTypeResources {
            resource_type: resource_type.into(),
            resource_ids: None,
            error: Some(error.into()),
        }
    }
}
