//! Maps request paths and methods to routes and Kubernetes verbs.

use std::collections::HashMap;

use http::Method;

use crate::error::ApiError;
use crate::store::ResourceKind;

/// A resource request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceRoute {
    pub(crate) kind: ResourceKind,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
    pub(crate) verb: &'static str,
}

impl ResourceRoute {
    /// `pods` or `pods/log`.
    pub(crate) fn resource_label(&self) -> String {
        match &self.subresource {
            Some(s) => format!("{}/{s}", self.kind.plural()),
            None => self.kind.plural().to_string(),
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A discovery, OpenAPI or health path (served to any authenticated user).
    NonResource(String),
    /// A resource verb.
    Resource(ResourceRoute),
    /// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` (or rules reviews).
    SelfSubjectReview(&'static str),
    /// `/_testkit/...` admin endpoints.
    Admin(String),
    /// Nothing here.
    NotFound,
}

/// Parses the query string (last value wins for repeated keys).
pub(crate) fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

fn truthy(q: &HashMap<String, String>, key: &str) -> bool {
    matches!(q.get(key).map(String::as_str), Some("true" | "1"))
}

/// Routes a request.
pub(crate) fn route(
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if segs.first() == Some(&"_testkit") {
        return Ok(Route::Admin(segs[1..].join("/")));
    }
    let (group, rest): (&str, &[&str]) = match segs.as_slice() {
        [] => return Ok(Route::NonResource("/".into())),
        ["api"]
        | ["apis"]
        | ["version"]
        | ["healthz", ..]
        | ["livez", ..]
        | ["readyz", ..]
        | ["openapi", ..] => {
            return Ok(Route::NonResource(path.to_string()));
        }
        ["api", "v1"]
        | ["apis", "batch"]
        | ["apis", "batch", "v1"]
        | ["apis", "authorization.k8s.io"]
        | ["apis", "authorization.k8s.io", "v1"] => {
            return Ok(Route::NonResource(path.to_string()));
        }
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", "batch", "v1", rest @ ..] => ("batch", rest),
        ["apis", "authorization.k8s.io", "v1", r] => {
            return Ok(match *r {
                "selfsubjectaccessreviews" if method == Method::POST => {
                    Route::SelfSubjectReview("selfsubjectaccessreviews")
                }
                "selfsubjectrulesreviews" if method == Method::POST => {
                    Route::SelfSubjectReview("selfsubjectrulesreviews")
                }
                _ => Route::NotFound,
            });
        }
        _ => return Ok(Route::NotFound),
    };
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, "status" | "finalize"] if group.is_empty() => {
            let sub = rest[2];
            (None, "namespaces", Some(*ns), Some(sub))
        }
        ["namespaces", ns, plural, tail @ ..] => match tail {
            [] => (Some(*ns), *plural, None, None),
            [name] => (Some(*ns), *plural, Some(*name), None),
            [name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
            _ => return Ok(Route::NotFound),
        },
        [plural] => (None, *plural, None, None),
        [plural, name] => (None, *plural, Some(*name), None),
        [plural, name, sub] => (None, *plural, Some(*name), Some(*sub)),
        _ => return Ok(Route::NotFound),
    };
    let Some(kind) = ResourceKind::from_plural(group, plural) else {
        return Ok(Route::NotFound);
    };
    if namespace.is_some() && !kind.namespaced() {
        return Ok(Route::NotFound);
    }
    match sub {
        None => {}
        Some("status") if kind.has_status() => {}
        Some("log" | "eviction") if kind == ResourceKind::Pod => {}
        Some("finalize") if kind == ResourceKind::Namespace => {}
        Some(_) => return Ok(Route::NotFound),
    }
    let verb = match (method.clone(), name.is_some()) {
        (Method::GET, true) if sub.is_none() && truthy(query, "watch") => "watch",
        (Method::GET, true) => "get",
        (Method::GET, false) if truthy(query, "watch") => "watch",
        (Method::GET, false) => "list",
        (Method::POST, false) => "create",
        (Method::POST, true) if sub == Some("eviction") => "create",
        (Method::PUT, true) => "update",
        (Method::PATCH, true) => "patch",
        (Method::DELETE, true) => "delete",
        (Method::DELETE, false) => "deletecollection",
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            )));
        }
    };
    if (sub == Some("log") && verb != "get") || (sub == Some("eviction") && verb != "create") {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    Ok(Route::Resource(ResourceRoute {
        kind,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
        verb,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let q = HashMap::new();
        let r = route(&Method::GET, "/api/v1/namespaces/default/pods/p/log", &q).unwrap();
        let Route::Resource(r) = r else { panic!() };
        assert_eq!(r.kind, ResourceKind::Pod);
        assert_eq!(r.subresource.as_deref(), Some("log"));
        let Route::Resource(r) = route(&Method::GET, "/api/v1/namespaces/default", &q).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (r.kind, r.name.as_deref(), r.verb),
            (ResourceKind::Namespace, Some("default"), "get")
        );
        let Route::Resource(r) =
            route(&Method::DELETE, "/apis/batch/v1/namespaces/x/jobs", &q).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.verb, "deletecollection");
        assert_eq!(
            route(&Method::GET, "/api/v1/foos", &q).unwrap(),
            Route::NotFound
        );
    }
}
