//! The Azure Resource Manager API: the visible subscriptions and AKS `managedClusters`
//! (list, get, and the user and admin credential kubeconfigs), for ARM-scoped tokens.

use axum::body::Body;
use base64::Engine as _;
use http::{HeaderMap, Response, StatusCode};

use super::respond::{arm_error, bearer, json_response};
use super::state::{AKS_SERVER_APP_ID, ARM_SCOPE, AzureState, random_hex};

/// `GET /subscriptions`: the visible subscriptions, for an ARM token.
pub(super) fn subscriptions(
    state: &AzureState,
    query: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    if !query.contains("api-version=") {
        return arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let Some(principal) = bearer(headers).and_then(|t| state.principal_of(t, ARM_SCOPE)) else {
        state.record("listSubscriptions", None, Some(401));
        return arm_error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid or has expired, or was not issued for https://management.azure.com.",
        );
    };
    let tenant = state.options.read().tenant_id.clone();
    let value: Vec<serde_json::Value> = state
        .subscriptions
        .read()
        .iter()
        .map(|(id, name)| {
            serde_json::json!({
                "id": format!("/subscriptions/{id}"),
                "authorizationSource": "RoleBased",
                "subscriptionId": id,
                "tenantId": tenant,
                "displayName": name,
                "state": "Enabled",
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
            })
        })
        .collect();
    state.record("listSubscriptions", Some(&principal), None);
    json_response(
        StatusCode::OK,
        serde_json::json!({"count": {"type": "Total", "value": value.len()}, "value": value}),
    )
}

pub(super) fn arm(
    state: &AzureState,
    method: &http::Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let kind = match (method.as_str(), segments.len()) {
        ("GET", 5) | ("GET", 7) => "listClusters",
        ("GET", 8) => "getCluster",
        ("POST", 9) => segments[8],
        _ => "unknown",
    };
    let Some(principal) = bearer(headers).and_then(|t| state.principal_of(t, ARM_SCOPE)) else {
        state.record(kind, None, Some(401));
        return arm_error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid or has expired, or was not issued for https://management.azure.com.",
        );
    };
    let principal = Some(principal.as_str());
    let subscription = state.options.read().subscription_id.clone();
    if segments.get(1) != Some(&subscription.as_str()) {
        state.record(kind, principal, Some(404));
        return arm_error(
            404,
            "SubscriptionNotFound",
            &format!(
                "The subscription '{}' could not be found.",
                segments.get(1).unwrap_or(&"")
            ),
        );
    }
    let provider_at = |i: usize| {
        segments
            .get(i)
            .is_some_and(|s| s.eq_ignore_ascii_case("providers"))
            && segments
                .get(i + 1)
                .is_some_and(|s| s.eq_ignore_ascii_case("Microsoft.ContainerService"))
            && segments
                .get(i + 2)
                .is_some_and(|s| s.eq_ignore_ascii_case("managedClusters"))
    };
    let group = if segments.len() >= 7
        && segments[2].eq_ignore_ascii_case("resourceGroups")
        && provider_at(4)
    {
        Some(segments[3].to_lowercase())
    } else if segments.len() == 5 && provider_at(2) {
        None
    } else {
        state.record(kind, principal, Some(404));
        return arm_error(
            404,
            "InvalidResourceType",
            &format!("The resource type could not be found at {path}."),
        );
    };
    let clusters = state.clusters.read();
    if let Some(group) = &group
        && !clusters.keys().any(|(g, _)| g == group)
    {
        drop(clusters);
        state.record(kind, principal, Some(404));
        return arm_error(
            404,
            "ResourceGroupNotFound",
            &format!("Resource group '{}' could not be found.", segments[3]),
        );
    }
    if kind == "listClusters" {
        let value: Vec<serde_json::Value> = clusters
            .iter()
            .filter(|((g, _), _)| group.as_ref().is_none_or(|want| want == g))
            .map(|(_, c)| c.to_json(&subscription))
            .collect();
        drop(clusters);
        state.record(kind, principal, None);
        return json_response(StatusCode::OK, serde_json::json!({"value": value}));
    }
    let (Some(group), Some(name)) = (group, segments.get(7)) else {
        drop(clusters);
        state.record(kind, principal, Some(404));
        return arm_error(404, "NotFound", "unknown path");
    };
    let Some(cluster) = clusters.get(&(group, (*name).to_owned())).cloned() else {
        drop(clusters);
        state.record(kind, principal, Some(404));
        return arm_error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource 'Microsoft.ContainerService/managedClusters/{name}' under resource group '{}' was not found.",
                segments[3]
            ),
        );
    };
    drop(clusters);
    match kind {
        "getCluster" => {
            state.record(kind, principal, None);
            json_response(StatusCode::OK, cluster.to_json(&subscription))
        }
        "listClusterUserCredential" => {
            let user = format!("clusterUser_{}_{}", cluster.resource_group, cluster.name);
            let exec = serde_json::json!({"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "kubelogin",
                "args": ["get-token", "--login", "devicecode", "--server-id", AKS_SERVER_APP_ID,
                         "--environment", "AzurePublicCloud"],
                "env": null,
                "provideClusterInfo": false,
                "interactiveMode": "IfAvailable",
            }});
            state.record(kind, principal, None);
            credential_results("clusterUser", &cluster.kubeconfig(&user, exec))
        }
        "listClusterAdminCredential" => {
            if cluster.disable_local_accounts {
                state.record(kind, principal, Some(403));
                return arm_error(
                    403,
                    "BadRequest",
                    "Getting static credential is not allowed because this cluster is set to disable local accounts.",
                );
            }
            let token = random_hex(32);
            state
                .admin_tokens
                .write()
                .insert(token.clone(), cluster.name.clone());
            let user = format!("clusterAdmin_{}_{}", cluster.resource_group, cluster.name);
            state.record(kind, principal, None);
            credential_results(
                "clusterAdmin",
                &cluster.kubeconfig(&user, serde_json::json!({"token": token})),
            )
        }
        other => {
            state.record(other, principal, Some(404));
            arm_error(
                404,
                "InvalidResourceType",
                &format!("no action `{other}` on managedClusters"),
            )
        }
    }
}

fn credential_results(name: &str, kubeconfig: &str) -> Response<Body> {
    let value = base64::engine::general_purpose::STANDARD.encode(kubeconfig.as_bytes());
    json_response(
        StatusCode::OK,
        serde_json::json!({"kubeconfigs": [{"name": name, "value": value}]}),
    )
}
