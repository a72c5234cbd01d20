//! Secrets that a crashed submit left behind.
//!
//! A step's secret environment lives in a Secret created just before its Job; the Job
//! becomes the Secret's owner right after the Job exists, so Kubernetes deletes the
//! Secret with the Job. A process that dies between the two leaves a Secret with
//! credentials and no owner. The first time an operator creates a Secret in a namespace,
//! it deletes in the background the managed Secrets there that still have no owner long
//! after they were created.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::List;
use k8s_openapi::api::core::v1::Secret;

use crate::api::{Api, ApiError, Call, CallPolicy, encode};
use crate::labels::MANAGED_SELECTOR;
use crate::state::Inner;

/// A managed Secret still without an owner this long after its creation is an orphan
/// (a submit that lives sets the owner within a second).
const ORPHAN_AFTER: SignedDuration = SignedDuration::from_mins(10);

/// Starts the sweep of `namespace` unless this operator has swept it already.
pub(crate) fn sweep_namespace_once(inner: &Inner, api: &Api, namespace: &str, calls: CallPolicy) {
    if !inner.swept_namespaces.lock().insert(namespace.to_owned()) {
        return;
    }
    let (api, namespace) = (api.clone(), namespace.to_owned());
    tokio::spawn(async move {
        let cutoff = Timestamp::now() - ORPHAN_AFTER;
        match delete_orphans(&api, &namespace, cutoff, calls).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(
                namespace = %namespace,
                deleted,
                "deleted Secrets left without a Job by an interrupted submit"
            ),
            Err(error) => tracing::warn!(
                namespace = %namespace,
                error = %stepstack_core::error_chain(&error),
                "could not look for Secrets left by interrupted submits; they stay until deleted by hand"
            ),
        }
    });
}

/// Deletes the managed Secrets of `namespace` that have no owner and were created
/// before `cutoff`; returns how many.
pub(crate) async fn delete_orphans(
    api: &Api,
    namespace: &str,
    cutoff: Timestamp,
    calls: CallPolicy,
) -> Result<usize, ApiError> {
    let list = Call::get(
        format!("list Secrets in {namespace}"),
        format!(
            "/api/v1/namespaces/{namespace}/secrets?labelSelector={}",
            encode(MANAGED_SELECTOR)
        ),
    );
    let secrets: List<Secret> = api.json(&list, calls).await?;
    let mut deleted = 0;
    for secret in secrets.items.iter().filter(|s| is_orphan(s, cutoff)) {
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        // Only the Secret that was judged: not one recreated under the same name since.
        let options = serde_json::json!({
            "preconditions": {"uid": secret.metadata.uid.as_deref().unwrap_or_default()}
        });
        let delete = Call::delete(
            format!("delete orphaned Secret {namespace}/{name}"),
            format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
            &options,
        );
        match api.bytes(&delete, calls).await {
            Ok(_) => deleted += 1,
            // Gone or replaced meanwhile: nothing to do.
            Err(err) if matches!(err.code(), Some(404 | 409)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(deleted)
}

fn is_orphan(secret: &Secret, cutoff: Timestamp) -> bool {
    let owned = secret
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|owners| !owners.is_empty());
    let created = secret.metadata.creation_timestamp.as_ref().map(|t| t.0);
    !owned && created.is_some_and(|created| created < cutoff)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    use super::*;

    fn secret(created: Timestamp, owned: bool) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.creation_timestamp = Some(Time(created));
        if owned {
            secret.metadata.owner_references = Some(vec![OwnerReference {
                kind: "Job".into(),
                ..Default::default()
            }]);
        }
        secret
    }

    #[test]
    fn only_old_secrets_without_owners_are_orphans() {
        let now = Timestamp::now();
        let cutoff = now - ORPHAN_AFTER;
        let old = now - SignedDuration::from_hours(1);
        assert!(is_orphan(&secret(old, false), cutoff));
        assert!(!is_orphan(&secret(old, true), cutoff));
        assert!(!is_orphan(&secret(now, false), cutoff));
        assert!(
            !is_orphan(&Secret::default(), cutoff),
            "no creation time: keep"
        );
    }
}
