//! The resource kinds the emulator serves.

use std::fmt;

/// A resource kind served by the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// core/v1 Namespace (cluster-scoped).
    Namespace,
    /// core/v1 Node (cluster-scoped).
    Node,
    /// core/v1 Pod.
    Pod,
    /// batch/v1 Job.
    Job,
    /// core/v1 Service.
    Service,
    /// core/v1 Secret.
    Secret,
    /// core/v1 ConfigMap.
    ConfigMap,
    /// core/v1 ServiceAccount.
    ServiceAccount,
    /// core/v1 Event.
    Event,
}

impl ResourceKind {
    /// Every kind, in a stable order.
    pub const ALL: [ResourceKind; 9] = [
        ResourceKind::Namespace,
        ResourceKind::Node,
        ResourceKind::Pod,
        ResourceKind::Job,
        ResourceKind::Service,
        ResourceKind::Secret,
        ResourceKind::ConfigMap,
        ResourceKind::ServiceAccount,
        ResourceKind::Event,
    ];

    /// The object `kind` (`Pod`).
    pub fn kind(self) -> &'static str {
        match self {
            ResourceKind::Namespace => "Namespace",
            ResourceKind::Node => "Node",
            ResourceKind::Pod => "Pod",
            ResourceKind::Job => "Job",
            ResourceKind::Service => "Service",
            ResourceKind::Secret => "Secret",
            ResourceKind::ConfigMap => "ConfigMap",
            ResourceKind::ServiceAccount => "ServiceAccount",
            ResourceKind::Event => "Event",
        }
    }

    /// The resource plural used in URLs (`pods`).
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::Namespace => "namespaces",
            ResourceKind::Node => "nodes",
            ResourceKind::Pod => "pods",
            ResourceKind::Job => "jobs",
            ResourceKind::Service => "services",
            ResourceKind::Secret => "secrets",
            ResourceKind::ConfigMap => "configmaps",
            ResourceKind::ServiceAccount => "serviceaccounts",
            ResourceKind::Event => "events",
        }
    }

    /// The singular name (`pod`).
    pub fn singular(self) -> &'static str {
        match self {
            ResourceKind::Namespace => "namespace",
            ResourceKind::Node => "node",
            ResourceKind::Pod => "pod",
            ResourceKind::Job => "job",
            ResourceKind::Service => "service",
            ResourceKind::Secret => "secret",
            ResourceKind::ConfigMap => "configmap",
            ResourceKind::ServiceAccount => "serviceaccount",
            ResourceKind::Event => "event",
        }
    }

    /// kubectl short names (`po`).
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            ResourceKind::Namespace => &["ns"],
            ResourceKind::Node => &["no"],
            ResourceKind::Pod => &["po"],
            ResourceKind::Job => &[],
            ResourceKind::Service => &["svc"],
            ResourceKind::Secret => &[],
            ResourceKind::ConfigMap => &["cm"],
            ResourceKind::ServiceAccount => &["sa"],
            ResourceKind::Event => &["ev"],
        }
    }

    /// The API group (`""` for core, `batch` for Jobs).
    pub fn group(self) -> &'static str {
        match self {
            ResourceKind::Job => "batch",
            _ => "",
        }
    }

    /// The `apiVersion` (`v1`, `batch/v1`).
    pub fn api_version(self) -> &'static str {
        match self {
            ResourceKind::Job => "batch/v1",
            _ => "v1",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, ResourceKind::Namespace | ResourceKind::Node)
    }

    /// The group-qualified plural used in error messages (`pods`, `jobs.batch`).
    pub fn qualified(self) -> String {
        if self.group().is_empty() {
            self.plural().to_string()
        } else {
            format!("{}.{}", self.plural(), self.group())
        }
    }

    /// The kind served at `group`/`plural`, if any.
    pub fn from_plural(group: &str, plural: &str) -> Option<ResourceKind> {
        ResourceKind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.plural() == plural)
    }

    /// Whether the kind has a `status` subresource.
    pub fn has_status(self) -> bool {
        matches!(
            self,
            ResourceKind::Pod
                | ResourceKind::Job
                | ResourceKind::Namespace
                | ResourceKind::Node
                | ResourceKind::Service
        )
    }

    /// The field-selector fields this kind supports besides `metadata.name` and
    /// `metadata.namespace`.
    pub fn extra_selectable_fields(self) -> &'static [&'static str] {
        match self {
            ResourceKind::Pod => &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            ResourceKind::Event => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ResourceKind::Secret => &["type"],
            ResourceKind::Namespace => &["status.phase"],
            ResourceKind::Node => &["spec.unschedulable"],
            ResourceKind::Job => &["status.successful"],
            _ => &[],
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}
