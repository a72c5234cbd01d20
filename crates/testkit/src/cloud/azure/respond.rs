//! The shapes of the fake's answers: JSON responses, ARM errors, AADSTS-shaped Entra ID
//! errors, and the bearer token of a request.

use axum::body::Body;
use http::{HeaderMap, Response, StatusCode};
use jiff::Timestamp;

pub(super) fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(value.to_string()))
        .unwrap_or_default()
}

/// An ARM error: `{"error": {"code", "message"}}`.
pub(super) fn arm_error(status: u16, code: &str, message: &str) -> Response<Body> {
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

/// An Entra ID token endpoint error, AADSTS-shaped.
pub(super) fn aad_error(status: u16, error: &str, code: u32, description: &str) -> Response<Body> {
    let trace = uuid::Uuid::new_v4().to_string();
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        serde_json::json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {trace} Timestamp: {}",
                Timestamp::now()
            ),
            "error_codes": [code],
            "timestamp": Timestamp::now().to_string(),
            "trace_id": trace,
            "correlation_id": trace,
        }),
    )
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}
