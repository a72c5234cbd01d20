//! Kubernetes `Status` errors returned by the emulated API server and the store.

use serde_json::{Value, json};

/// One cause inside a `Status.details.causes` list (for example an invalid field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCause {
    /// The field path the cause is about (for example `metadata.name`).
    pub field: String,
    /// A machine-readable reason such as `FieldValueInvalid` or `FieldValueRequired`.
    pub reason: String,
    /// A human-readable message.
    pub message: String,
}

impl StatusCause {
    /// A cause with the given field, reason and message.
    pub fn new(
        field: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The `details` of a [`ApiError`] (boxed to keep the error small).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDetails {
    /// `details.name`, if any.
    pub name: Option<String>,
    /// `details.group`, if any.
    pub group: Option<String>,
    /// `details.kind` (the resource plural, as the real API server reports it), if any.
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<StatusCause>,
    /// `details.retryAfterSeconds` (and the `Retry-After` header), if any.
    pub retry_after_seconds: Option<u64>,
}

/// A Kubernetes API error, rendered on the wire as a `meta/v1` `Status` object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// The HTTP status code (404, 409, 422, ...).
    pub code: u16,
    /// The `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: String,
    /// The `Status.message`.
    pub message: String,
    /// `Status.details`.
    pub details: Box<ErrorDetails>,
}

impl ApiError {
    /// A bare error with a code, reason and message.
    pub fn new(code: u16, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            details: Box::default(),
        }
    }

    /// The field causes (for 422 Invalid).
    pub fn causes(&self) -> &[StatusCause] {
        &self.details.causes
    }

    /// The `Retry-After` delay, if any.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.details.retry_after_seconds
    }

    fn with_details(mut self, kind: &str, name: &str) -> Self {
        let (group, plural) = split_group(kind);
        self.details.kind = Some(plural.to_string());
        self.details.group = group.map(str::to_string);
        if !name.is_empty() {
            self.details.name = Some(name.to_string());
        }
        self
    }

    /// 404 NotFound: `pods "x" not found`. `kind` is the resource plural, optionally
    /// qualified by group (`jobs.batch`).
    pub fn not_found(kind: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{kind} \"{name}\" not found")).with_details(kind, name)
    }

    /// 409 AlreadyExists: `pods "x" already exists`.
    pub fn already_exists(kind: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{kind} \"{name}\" already exists"),
        )
        .with_details(kind, name)
    }

    /// 409 Conflict on a stale resourceVersion, with the real API server's message.
    pub fn conflict(kind: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(kind, name)
    }

    /// 409 Conflict with a custom message (for example a namespace being terminated).
    pub fn conflict_msg(kind: &str, name: &str, message: impl Into<String>) -> Self {
        Self::new(409, "Conflict", message).with_details(kind, name)
    }

    /// 422 Invalid with field causes. `kind` is the object Kind (`Pod`, `Job`).
    pub fn invalid(kind: &str, name: &str, causes: Vec<StatusCause>) -> Self {
        let detail = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {detail}"),
        );
        let (group, k) = split_group(kind);
        e.details.kind = Some(k.to_string());
        e.details.group = group.map(str::to_string);
        e.details.name = Some(name.to_string());
        e.details.causes = causes;
        e
    }

    /// 410 Gone (a watch or list resourceVersion older than the history window).
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 403 Forbidden in the real shape: `pods "x" is forbidden: User "u" cannot get
    /// resource "pods" in API group "" in the namespace "ns"`.
    pub fn forbidden(kind: &str, name: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let full = if name.is_empty() {
            format!("{kind} is forbidden: {message}")
        } else {
            format!("{kind} \"{name}\" is forbidden: {message}")
        };
        Self::new(403, "Forbidden", full).with_details(kind, name)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 415 UnsupportedMediaType for a PATCH content type.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// 415 UnsupportedMediaType for a request body format the emulator cannot decode.
    pub fn unsupported_body_format(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
            ),
        )
    }

    /// 429 TooManyRequests with a Retry-After delay.
    pub fn too_many_requests(retry_after_seconds: u64) -> Self {
        let mut e = Self::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        e.details.retry_after_seconds = Some(retry_after_seconds);
        e
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// The standard reason for an HTTP code, used for injected faults.
    pub fn from_code(code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        Self::new(code, reason, message)
    }

    /// The `meta/v1` `Status` JSON for this error.
    pub fn to_status_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = serde_json::Map::new();
        let d = &self.details;
        if let Some(n) = &d.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &d.group {
            details.insert("group".into(), json!(g));
        }
        if let Some(k) = &d.kind {
            details.insert("kind".into(), json!(k));
        }
        if !d.causes.is_empty() {
            details.insert(
                "causes".into(),
                Value::Array(
                    d.causes
                        .iter()
                        .map(
                            |c| json!({"reason": c.reason, "message": c.message, "field": c.field}),
                        )
                        .collect(),
                ),
            );
        }
        if let Some(r) = d.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(r));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// Splits `jobs.batch` into (`Some("batch")`, `jobs`).
fn split_group(kind: &str) -> (Option<&str>, &str) {
    match kind.split_once('.') {
        Some((k, g)) => (Some(g), k),
        None => (None, kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_shape() {
        let s = ApiError::not_found("jobs.batch", "j1").to_status_json();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "jobs.batch \"j1\" not found");
        assert_eq!(s["details"]["kind"], "jobs");
        assert_eq!(s["details"]["group"], "batch");
    }

    #[test]
    fn invalid_shape() {
        let e = ApiError::invalid(
            "Pod",
            "Bad_Name",
            vec![StatusCause::new(
                "metadata.name",
                "FieldValueInvalid",
                "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain",
            )],
        );
        let s = e.to_status_json();
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
    }
}
