//! Verification by SelfSubjectAccessReview: asks the API server, as the connector's
//! identity, whether it may do what the step operator needs (create Jobs, read pod logs)
//! in the namespace. Unlike `GET /version`, which is often readable anonymously, this
//! fails for bad credentials and says which permission is missing.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::error::{KubernetesError, KubernetesResult};

/// A permission the step operator needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Permission {
    pub(crate) verb: &'static str,
    pub(crate) group: &'static str,
    pub(crate) resource: &'static str,
    pub(crate) subresource: Option<&'static str>,
}

impl Permission {
    /// `create jobs.batch`, `get pods/log`.
    pub(crate) fn describe(&self) -> String {
        let mut resource = self.resource.to_owned();
        if !self.group.is_empty() {
            resource = format!("{resource}.{}", self.group);
        }
        if let Some(sub) = self.subresource {
            resource = format!("{resource}/{sub}");
        }
        format!("{} {resource}", self.verb)
    }
}

/// What the step operator needs in its namespace.
pub(crate) const REQUIRED: [Permission; 2] = [
    Permission {
        verb: "create",
        group: "batch",
        resource: "jobs",
        subresource: None,
    },
    Permission {
        verb: "get",
        group: "",
        resource: "pods",
        subresource: Some("log"),
    },
];

/// Checks every permission of [`REQUIRED`] in `namespace` (the reviews run
/// concurrently); all missing ones are named in one error.
pub(crate) async fn check_permissions(
    client: &kube::Client,
    namespace: &str,
    cluster: &str,
    server: &str,
) -> KubernetesResult<()> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let [jobs, logs] = REQUIRED;
    let (jobs_allowed, logs_allowed) = tokio::join!(
        is_allowed(&api, namespace, jobs),
        is_allowed(&api, namespace, logs)
    );
    let answers = [
        (
            jobs,
            jobs_allowed.map_err(|e| request_error(e, cluster, server))?,
        ),
        (
            logs,
            logs_allowed.map_err(|e| request_error(e, cluster, server))?,
        ),
    ];
    let missing: Vec<String> = answers
        .iter()
        .filter(|(_, allowed)| !allowed)
        .map(|(permission, _)| permission.describe())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(KubernetesError::MissingPermissions {
        missing: missing.join(" or "),
        namespace: namespace.to_owned(),
        cluster: cluster.to_owned(),
    })
}

/// Asks whether the identity may use `permission` in `namespace`.
async fn is_allowed(
    api: &Api<SelfSubjectAccessReview>,
    namespace: &str,
    permission: Permission,
) -> Result<bool, kube::Error> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_owned()),
                verb: Some(permission.verb.to_owned()),
                group: Some(permission.group.to_owned()),
                resource: Some(permission.resource.to_owned()),
                subresource: permission.subresource.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api.create(&PostParams::default(), &review).await?;
    let status = answer.status.unwrap_or_default();
    if !status.allowed {
        tracing::debug!(
            permission = %permission.describe(),
            namespace,
            reason = status.reason.as_deref().unwrap_or(""),
            "permission missing"
        );
    }
    Ok(status.allowed)
}

/// The connector error for a failed API request.
pub(crate) fn request_error(error: kube::Error, cluster: &str, server: &str) -> KubernetesError {
    match error {
        kube::Error::Api(status) if status.code == 401 => KubernetesError::Unauthorized {
            cluster: cluster.to_owned(),
        },
        kube::Error::Api(status) if status.code == 403 => KubernetesError::ReviewForbidden {
            cluster: cluster.to_owned(),
            message: status.message.clone(),
        },
        other => KubernetesError::Unreachable {
            cluster: cluster.to_owned(),
            server: server.to_owned(),
            reason: stepstack_core::error_chain(&other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_read_like_kubectl() {
        assert_eq!(REQUIRED[0].describe(), "create jobs.batch");
        assert_eq!(REQUIRED[1].describe(), "get pods/log");
    }
}
