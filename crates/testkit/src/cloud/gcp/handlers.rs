//! The HTTP routes: the OAuth2 token endpoint, the STS token exchange, IAM Credentials
//! `generateAccessToken`, the metadata server and the GKE clusters API, each recorded as a
//! [`GcpCall`](super::GcpCall), with Google's error shapes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use http::{HeaderMap, Response, StatusCode};

use super::state::{CLOUD_PLATFORM_SCOPE, FakeGkeCluster, GcpState, JWT_BEARER_GRANT};
use super::verify::check_assertion;

/// An error response in Google's JSON API shape.
fn api_error(status: u16, message: &str) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        _ => "INTERNAL",
    };
    json_response(
        code,
        serde_json::json!({"error": {"code": status, "message": message, "status": name}}),
    )
}

/// An error response of the OAuth2 token endpoint.
fn oauth_error(status: u16, error: &str, description: &str) -> Response<Body> {
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        serde_json::json!({"error": error, "error_description": description}),
    )
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(value.to_string()))
        .unwrap_or_default()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub(super) async fn handle(State(state): State<Arc<GcpState>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(_) => return api_error(400, "unreadable body"),
    };
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();
    if method == http::Method::POST && path == "/token" {
        return token(&state, &body);
    }
    if method == http::Method::POST && path == "/v1/token" {
        return token_exchange(&state, &body);
    }
    if path.starts_with("/computeMetadata/v1/") {
        return metadata(&state, &path, &parts.headers);
    }
    if method == http::Method::POST
        && let Some(target) = path
            .strip_prefix("/v1/projects/-/serviceAccounts/")
            .and_then(|rest| rest.strip_suffix(":generateAccessToken"))
    {
        return generate_access_token(&state, target, &parts.headers, &body);
    }
    if method == http::Method::GET && path.starts_with("/v1/projects/") {
        return clusters(&state, &path, &parts.headers);
    }
    api_error(404, &format!("no fake Google API at {method} {path}"))
}

fn token(state: &GcpState, body: &[u8]) -> Response<Body> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    match form.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER_GRANT) => match check_assertion(state, form.get("assertion")) {
            Ok(principal) => {
                let (token, _, seconds) = state.issue(&principal, None);
                state.record("jwt-bearer", Some(&principal), None);
                json_response(
                    StatusCode::OK,
                    serde_json::json!({"access_token": token, "expires_in": seconds, "token_type": "Bearer"}),
                )
            }
            Err(description) => {
                state.record("jwt-bearer", None, Some(400));
                oauth_error(400, "invalid_grant", &description)
            }
        },
        Some("refresh_token") => {
            let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
            let users = state.users.read();
            let Some(user) = users.get(get("refresh_token")) else {
                state.record("refresh_token", None, Some(400));
                return oauth_error(400, "invalid_grant", "Bad Request");
            };
            if user.client_id != get("client_id") || user.client_secret != get("client_secret") {
                state.record("refresh_token", Some(&user.email), Some(401));
                return oauth_error(401, "invalid_client", "Unauthorized");
            }
            let email = user.email.clone();
            drop(users);
            let (token, _, seconds) = state.issue(&email, None);
            state.record("refresh_token", Some(&email), None);
            json_response(
                StatusCode::OK,
                serde_json::json!({"access_token": token, "expires_in": seconds, "token_type": "Bearer", "scope": CLOUD_PLATFORM_SCOPE}),
            )
        }
        other => oauth_error(
            400,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {}", other.unwrap_or_default()),
        ),
    }
}

fn metadata(state: &GcpState, path: &str, headers: &HeaderMap) -> Response<Body> {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return Response::builder()
            .status(StatusCode::FORBIDDEN)
            .body(Body::from("Missing required header: Metadata-Flavor"))
            .unwrap_or_default();
    }
    match path {
        "/computeMetadata/v1/project/project-id" => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/text")
            .body(Body::from(state.options.read().project_id.clone()))
            .unwrap_or_default(),
        "/computeMetadata/v1/instance/service-accounts/default/token" => {
            let Some(email) = state.metadata_identity.read().clone() else {
                state.record("metadata", None, Some(404));
                return api_error(404, "no service account is attached to this instance");
            };
            let (token, _, seconds) = state.issue(&email, None);
            state.record("metadata", Some(&email), None);
            json_response(
                StatusCode::OK,
                serde_json::json!({"access_token": token, "expires_in": seconds, "token_type": "Bearer"}),
            )
        }
        _ => api_error(404, "no such metadata"),
    }
}

/// STS token exchange (workload identity federation): an external subject token for a
/// federated access token.
fn token_exchange(state: &GcpState, body: &[u8]) -> Response<Body> {
    let kind = "token-exchange";
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" {
        state.record(kind, None, Some(400));
        return oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type must be token-exchange",
        );
    }
    if get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token"
        || get("subject_token_type").is_empty()
        || !get("scope").split(' ').any(|s| s == CLOUD_PLATFORM_SCOPE)
    {
        state.record(kind, None, Some(400));
        return oauth_error(
            400,
            "invalid_request",
            "requested_token_type, subject_token_type and scope are required",
        );
    }
    let principal = state
        .federated
        .read()
        .get(&(get("audience").to_owned(), get("subject_token").to_owned()))
        .cloned();
    let Some(principal) = principal else {
        state.record(kind, None, Some(400));
        return oauth_error(
            400,
            "invalid_grant",
            "The audience or subject token is invalid.",
        );
    };
    let (token, _, seconds) = state.issue(&principal, None);
    state.record(kind, Some(&principal), None);
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": seconds,
        }),
    )
}

fn generate_access_token(
    state: &GcpState,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let kind = "generateAccessToken";
    let Some(caller) = bearer(headers).and_then(|t| state.principal_of(t)) else {
        state.record(kind, None, Some(401));
        return api_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    };
    let allowed = state
        .impersonation
        .read()
        .contains(&(caller.clone(), target.to_owned()));
    if !allowed {
        state.record(kind, Some(&caller), Some(403));
        return api_error(
            403,
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        );
    }
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let scopes: Vec<&str> = request["scope"]
        .as_array()
        .map(|s| s.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if !scopes.contains(&CLOUD_PLATFORM_SCOPE) {
        state.record(kind, Some(&caller), Some(400));
        return api_error(400, "Request contains an invalid argument: scope");
    }
    let lifetime = match request["lifetime"].as_str() {
        None => Duration::from_secs(3600),
        Some(text) => match text
            .strip_suffix('s')
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| (1..=3600).contains(s))
        {
            Some(seconds) => Duration::from_secs(seconds),
            None => {
                state.record(kind, Some(&caller), Some(400));
                return api_error(
                    400,
                    "Request contains an invalid argument: lifetime must be between 1s and 3600s",
                );
            }
        },
    };
    let (token, expires_at, _) = state.issue(target, Some(lifetime));
    state.record(kind, Some(target), None);
    json_response(
        StatusCode::OK,
        serde_json::json!({"accessToken": token, "expireTime": expires_at.to_string()}),
    )
}

fn clusters(state: &GcpState, path: &str, headers: &HeaderMap) -> Response<Body> {
    // projects/{project}/locations/{location}/clusters[/{name}]
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let (project, location, name) = match segments.as_slice() {
        ["projects", project, "locations", location, "clusters"] => (*project, *location, None),
        ["projects", project, "locations", location, "clusters", name] => {
            (*project, *location, Some(*name))
        }
        _ => return api_error(404, &format!("no fake Google API at GET {path}")),
    };
    let kind = if name.is_some() {
        "getCluster"
    } else {
        "listClusters"
    };
    let Some(caller) = bearer(headers).and_then(|t| state.principal_of(t)) else {
        state.record(kind, None, Some(401));
        return api_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    };
    if project != state.options.read().project_id {
        state.record(kind, Some(&caller), Some(403));
        return api_error(
            403,
            &format!("Permission denied on resource project {project}."),
        );
    }
    let clusters = state.clusters.read();
    let in_location = |c: &&FakeGkeCluster| location == "-" || c.location == location;
    match name {
        None => {
            let list: Vec<serde_json::Value> = clusters
                .values()
                .filter(in_location)
                .map(|c| c.to_json(project))
                .collect();
            state.record(kind, Some(&caller), None);
            if list.is_empty() {
                json_response(StatusCode::OK, serde_json::json!({}))
            } else {
                json_response(StatusCode::OK, serde_json::json!({"clusters": list}))
            }
        }
        Some(name) => match clusters.get(&(location.to_owned(), name.to_owned())) {
            Some(cluster) => {
                state.record(kind, Some(&caller), None);
                json_response(StatusCode::OK, cluster.to_json(project))
            }
            None => {
                state.record(kind, Some(&caller), Some(404));
                api_error(
                    404,
                    &format!("Not found: projects/{project}/locations/{location}/clusters/{name}."),
                )
            }
        },
    }
}
