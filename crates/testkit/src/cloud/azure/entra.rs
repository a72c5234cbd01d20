//! The Microsoft Entra ID endpoints: the token endpoint's client-credentials grant (client
//! secret, certificate assertion or federated token) and the managed-identity endpoints
//! (instance metadata service and App Service).

use std::collections::HashMap;

use axum::body::Body;
use http::{HeaderMap, Response, StatusCode};
use jiff::Timestamp;

use super::respond::{aad_error, json_response};
use super::state::{AKS_SCOPE, AKS_SERVER_APP_ID, ARM_SCOPE, AzureState, CLIENT_ASSERTION_TYPE};
use super::verify::{AssertionError, verify_assertion};

pub(super) fn token(state: &AzureState, tenant: &str, body: &[u8]) -> Response<Body> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let client_id = get("client_id").to_owned();
    let fail = |status, error, code, description: &str| {
        state.record("token", Some(&client_id), Some(status));
        aad_error(status, error, code, description)
    };
    if tenant != state.options.read().tenant_id {
        return fail(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    if get("grant_type") != "client_credentials" {
        return fail(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let principals = state.principals.read();
    let Some(principal) = principals.get(&client_id) else {
        drop(principals);
        return fail(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    };
    let checked = if let Some(assertion) = form.get("client_assertion") {
        if get("client_assertion_type") != CLIENT_ASSERTION_TYPE {
            Err((
                400,
                "invalid_request",
                AssertionError::new(
                    50027,
                    format!("client_assertion_type must be {CLIENT_ASSERTION_TYPE}."),
                ),
            ))
        } else if let Some(expires_at) = principal.federated_tokens.get(assertion) {
            if *expires_at <= Timestamp::now() {
                Err((
                    400,
                    "invalid_client",
                    AssertionError::new(
                        700024,
                        "Client assertion is not within its valid time range.".to_owned(),
                    ),
                ))
            } else {
                Ok(())
            }
        } else {
            verify_assertion(
                principal,
                &client_id,
                &state.token_endpoint(tenant),
                assertion,
                Timestamp::now().as_second(),
            )
            .map_err(|e| (401, "invalid_client", e))
        }
    } else {
        match (&principal.secret, form.get("client_secret")) {
            (_, None) => Err((
                401,
                "invalid_client",
                AssertionError::new(
                    7000216,
                    "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.".to_owned(),
                ),
            )),
            (Some(secret), Some(given)) if secret == given => Ok(()),
            _ => Err((
                401,
                "invalid_client",
                AssertionError::new(
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.".to_owned(),
                ),
            )),
        }
    };
    drop(principals);
    if let Err((status, error, e)) = checked {
        return fail(status, error, e.code, &e.description);
    }
    let scope = get("scope");
    if scope != ARM_SCOPE && scope != AKS_SCOPE {
        return fail(
            400,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }
    let (token, _, seconds) = state.issue(&client_id, scope);
    state.record("token", Some(&client_id), None);
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": seconds,
            "ext_expires_in": seconds,
            "access_token": token,
        }),
    )
}

/// The managed-identity endpoints: IMDS (`Metadata: true`) and App Service
/// (`X-IDENTITY-HEADER`), `?api-version=…&resource=…[&client_id=…]`.
pub(super) fn managed_identity(
    state: &AzureState,
    path: &str,
    query: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let fail = |status: u16, description: &str| {
        state.record("managedIdentity", None, Some(status));
        json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            serde_json::json!({"error": "invalid_request", "error_description": description}),
        )
    };
    let app_service = path == "/msi/token";
    if app_service {
        if header("x-identity-header") != Some(state.identity_header.as_str()) {
            return fail(401, "The X-IDENTITY-HEADER header is missing or wrong.");
        }
    } else if header("metadata") != Some("true") {
        return fail(400, "Required metadata header not specified");
    }
    if !params.contains_key("api-version") {
        return fail(400, "Required query variable 'api-version' is missing");
    }
    let resource = params
        .get("resource")
        .map(String::as_str)
        .unwrap_or_default();
    let scope = match resource.trim_end_matches('/') {
        "https://management.azure.com" => ARM_SCOPE,
        AKS_SERVER_APP_ID => AKS_SCOPE,
        _ => {
            return fail(
                400,
                &format!(
                    "AADSTS500011: The resource principal named {resource} was not found in the tenant."
                ),
            );
        }
    };
    let identity = state.managed_identity.read().clone();
    let Some(principal) =
        identity.filter(|p| params.get("client_id").is_none_or(|wanted| wanted == p))
    else {
        return fail(400, "Identity not found");
    };
    let (token, expires_at, seconds) = state.issue(&principal, scope);
    state.record("managedIdentity", Some(&principal), None);
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "access_token": token,
            "client_id": principal,
            "expires_in": seconds.to_string(),
            "expires_on": expires_at.as_second().to_string(),
            "ext_expires_in": seconds.to_string(),
            "not_before": Timestamp::now().as_second().to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}
