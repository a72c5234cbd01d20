//! The testkit admin endpoints (`/_testkit/...`, for `system:masters` only):
//!
//! - `GET|POST|DELETE /_testkit/faults` — list, add (a [`crate::faults::FaultRule`] as
//!   JSON) or clear fault rules;
//! - `POST /_testkit/faults/drop-watches` — close every open watch now;
//! - `POST /_testkit/faults/drop-watches-after` `{"events": N}` (or `null` to turn off);
//! - `POST /_testkit/faults/expire-token` `{"token": "..."}`;
//! - `GET|DELETE /_testkit/requests` — read or reset the request counters;
//! - `POST /_testkit/compact` — drop the watch history (410 for older resourceVersions).

use http::{Method, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::faults::FaultRule;
use crate::server::Ctx;
use crate::server::respond::{self, Body};

fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// Handles an admin request.
pub(crate) fn handle(ctx: &Ctx, method: &Method, path: &str, body: &[u8]) -> Response<Body> {
    let r = (|| -> Result<Value, ApiError> {
        match (method.clone(), path) {
            (Method::GET, "faults") => {
                Ok(serde_json::to_value(ctx.faults.rules()).unwrap_or_default())
            }
            (Method::POST, "faults") => {
                let rule: FaultRule = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid fault rule: {e}")))?;
                ctx.faults.add(rule);
                Ok(json!({"ok": true}))
            }
            (Method::DELETE, "faults") => {
                ctx.faults.clear();
                Ok(json!({"ok": true}))
            }
            (Method::POST, "faults/drop-watches") => {
                ctx.faults.drop_watches_now();
                Ok(json!({"ok": true}))
            }
            (Method::POST, "faults/drop-watches-after") => {
                let v = body_json(body)?;
                ctx.faults
                    .drop_watches_after(v.get("events").and_then(Value::as_u64));
                Ok(json!({"ok": true}))
            }
            (Method::POST, "faults/expire-token") => {
                let v = body_json(body)?;
                let t = v
                    .get("token")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::bad_request("missing \"token\""))?;
                ctx.faults.expire_token(t);
                Ok(json!({"ok": true}))
            }
            (Method::GET, "requests") => {
                Ok(serde_json::to_value(ctx.accounting.snapshot()).unwrap_or_default())
            }
            (Method::DELETE, "requests") => {
                ctx.accounting.reset();
                Ok(json!({"ok": true}))
            }
            (Method::POST, "compact") => {
                ctx.store.compact();
                Ok(json!({"ok": true}))
            }
            _ => Err(ApiError::new(
                404,
                "NotFound",
                format!("no testkit endpoint {method} /_testkit/{path}"),
            )),
        }
    })();
    match r {
        Ok(v) => respond::json(200, &v),
        Err(e) => respond::error(&e),
    }
}
