//! SelfSubjectAccessReview and SelfSubjectRulesReview, answered from the user's rules.

use http::Response;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::server::Ctx;
use crate::server::auth::{Attributes, UserInfo};
use crate::server::respond::{self, Body};

/// Handles `POST /apis/authorization.k8s.io/v1/{selfsubjectaccessreviews|selfsubjectrulesreviews}`.
pub(crate) fn handle(
    ctx: &Ctx,
    user: &UserInfo,
    which: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let protobuf = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("protobuf"));
    let parsed = if protobuf {
        crate::api::protobuf::decode_review(which, body)
    } else {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
    };
    let mut review = match parsed {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return respond::error(&ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        Err(e) => return respond::error(&e),
    };
    if which == "selfsubjectrulesreviews" {
        let rules = ctx.auth.rules_for(user);
        let ns = review
            .pointer("/spec/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let resource_rules: Vec<Value> = if user.is_master() {
            vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})]
        } else {
            rules
                .iter()
                .filter(|r| r.namespaces.iter().any(|n| n == "*" || *n == ns))
                .map(|r| json!({"verbs": r.verbs, "apiGroups": ["*"], "resources": r.resources}))
                .collect()
        };
        review["status"] = json!({"resourceRules": resource_rules, "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/version", "/openapi/*", "/healthz", "/livez", "/readyz"]}], "incomplete": false});
        review["apiVersion"] = json!("authorization.k8s.io/v1");
        review["kind"] = json!("SelfSubjectRulesReview");
        return respond::json(201, &review);
    }
    let allowed = if let Some(ra) = review.pointer("/spec/resourceAttributes").cloned() {
        let g = |k: &str| {
            ra.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let verb = g("verb").unwrap_or_default();
        let group = g("group").unwrap_or_default();
        let resource = g("resource").unwrap_or_default();
        let sub = g("subresource");
        let ns = g("namespace");
        let name = g("name");
        let attrs = Attributes {
            verb: &verb,
            group: &group,
            resource: &resource,
            subresource: sub.as_deref(),
            namespace: ns.as_deref(),
            name: name.as_deref(),
        };
        ctx.auth.authorize(user, &attrs)
    } else {
        // Non-resource URLs: discovery is open to every authenticated user.
        true
    };
    let mut status = json!({"allowed": allowed});
    if allowed {
        status["reason"] = json!("allowed by the testkit rule set");
    }
    review["status"] = status;
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    if !review.get("metadata").is_some_and(Value::is_object) {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    respond::json(201, &review)
}
