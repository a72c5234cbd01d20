//! Discovery (`/version`, `/api`, `/apis`, group versions) and the minimal OpenAPI v3
//! documents kubectl needs to know the server supports `fieldValidation` and `dryRun`.

use serde_json::{Value, json};

use crate::store::ResourceKind;

/// `/version`.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-stepstack-testkit",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group(name: &str) -> Value {
    json!({
        "name": name,
        "versions": [{"groupVersion": format!("{name}/v1"), "version": "v1"}],
        "preferredVersion": {"groupVersion": format!("{name}/v1"), "version": "v1"},
    })
}

/// `/apis`.
pub(crate) fn api_groups() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [group("batch"), group("authorization.k8s.io")],
    })
}

/// `/apis/{group}`.
pub(crate) fn api_group(name: &str) -> Value {
    let mut g = group(name);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn resource_entries(kind: ResourceKind) -> Vec<Value> {
    let verbs: &[&str] = match kind {
        ResourceKind::Node => &["get", "list", "patch", "update", "watch"],
        ResourceKind::Namespace => &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        _ => ALL_VERBS,
    };
    let mut main = json!({
        "name": kind.plural(),
        "singularName": kind.singular(),
        "namespaced": kind.namespaced(),
        "kind": kind.kind(),
        "verbs": verbs,
    });
    if !kind.short_names().is_empty() {
        main["shortNames"] = json!(kind.short_names());
    }
    if matches!(
        kind,
        ResourceKind::Pod | ResourceKind::Job | ResourceKind::Service
    ) {
        main["categories"] = json!(["all"]);
    }
    let mut out = vec![main];
    if kind.has_status() {
        out.push(json!({
            "name": format!("{}/status", kind.plural()),
            "singularName": "",
            "namespaced": kind.namespaced(),
            "kind": kind.kind(),
            "verbs": ["get", "patch", "update"],
        }));
    }
    if kind == ResourceKind::Pod {
        out.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        out.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
    }
    if kind == ResourceKind::Namespace {
        out.push(json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false, "kind": "Namespace", "verbs": ["update"]}));
    }
    out
}

/// `/api/v1` or `/apis/{group}/v1`, `None` for an unknown group version.
pub(crate) fn resource_list(group_version: &str) -> Option<Value> {
    let resources: Vec<Value> = match group_version {
        "v1" | "batch/v1" => {
            let g = group_version.strip_suffix("/v1").unwrap_or("");
            ResourceKind::ALL
                .into_iter()
                .filter(|k| k.group() == g)
                .flat_map(resource_entries)
                .collect()
        }
        "authorization.k8s.io/v1" => vec![
            json!({"name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview", "namespaced": false, "kind": "SelfSubjectAccessReview", "verbs": ["create"]}),
            json!({"name": "selfsubjectrulesreviews", "singularName": "selfsubjectrulesreview", "namespaced": false, "kind": "SelfSubjectRulesReview", "verbs": ["create"]}),
        ],
        _ => return None,
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

const OPENAPI_HASH: &str = "5354455053544143";

/// `/openapi/v3`: the index of group-version documents.
pub(crate) fn openapi_v3_index() -> Value {
    let mut paths = serde_json::Map::new();
    for (p, _) in [
        ("api/v1", ""),
        ("apis/batch/v1", "batch"),
        ("apis/authorization.k8s.io/v1", ""),
    ] {
        paths.insert(
            p.to_string(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={OPENAPI_HASH}")}),
        );
    }
    json!({"paths": paths})
}

fn op(kind: ResourceKind, action: &str, params: &[&str]) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
        .collect();
    json!({
        "operationId": format!("{action}{}", kind.kind()),
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": kind.group(), "version": "v1", "kind": kind.kind()},
    })
}

/// `/openapi/v3/{api/v1|apis/batch/v1|…}`: paths with the operations' query parameters
/// (no schemas, so kubectl falls back to its built-in types for patch computation).
pub(crate) fn openapi_v3_doc(path: &str) -> Option<Value> {
    let group = match path {
        "api/v1" => "",
        "apis/batch/v1" => "batch",
        "apis/authorization.k8s.io/v1" => "authorization.k8s.io",
        _ => return None,
    };
    let mut paths = serde_json::Map::new();
    for kind in ResourceKind::ALL.into_iter().filter(|k| k.group() == group) {
        let base = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/v1")
        };
        let coll = if kind.namespaced() {
            format!("{base}/namespaces/{{namespace}}/{}", kind.plural())
        } else {
            format!("{base}/{}", kind.plural())
        };
        let write = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
        paths.insert(
            coll.clone(),
            json!({
                "get": op(kind, "list", &["allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch"]),
                "post": op(kind, "post", &write),
                "delete": op(kind, "deletecollection", &["dryRun", "gracePeriodSeconds", "labelSelector", "fieldSelector", "propagationPolicy"]),
            }),
        );
        paths.insert(
            format!("{coll}/{{name}}"),
            json!({
                "get": op(kind, "get", &["pretty"]),
                "put": op(kind, "put", &write),
                "patch": op(kind, "patch", &["dryRun", "fieldManager", "fieldValidation", "force", "pretty"]),
                "delete": op(kind, "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
