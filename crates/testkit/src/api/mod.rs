//! The Kubernetes API surface: discovery, verbs, patches, schema checks, reviews and the
//! testkit admin endpoints.

pub(crate) mod admin;
pub(crate) mod discovery;
pub(crate) mod patch;
pub(crate) mod protobuf;
pub(crate) mod review;
pub(crate) mod schema;
pub(crate) mod table;
pub(crate) mod verbs;

use crate::server::auth::UserInfo;
use crate::server::router::ResourceRoute;
use crate::server::{BodyBytes, Query};

/// One authenticated, authorized resource request.
pub(crate) struct Req {
    pub(crate) route: ResourceRoute,
    pub(crate) query: Query,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: BodyBytes,
    #[allow(dead_code)]
    pub(crate) user: UserInfo,
}

impl Req {
    pub(crate) fn q(&self, key: &str) -> Option<&str> {
        self.query
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub(crate) fn ns(&self) -> Option<&str> {
        self.route.namespace.as_deref()
    }

    pub(crate) fn wants_table(&self) -> bool {
        self.headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=Table"))
    }

    pub(crate) fn dry_run(&self) -> Result<bool, crate::error::ApiError> {
        match self.q("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(crate::error::ApiError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            ))),
        }
    }
}
