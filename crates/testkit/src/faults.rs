//! Fault injection: error statuses, 429s, latency, connection resets, dropped watches
//! and expired tokens, through [`Faults`] or the admin endpoint `/_testkit/faults`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::server::auth::AuthState;

/// Which requests a fault applies to. `None` fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultMatch {
    /// Verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`).
    pub verb: Option<String>,
    /// Resource plural, optionally with a subresource (`pods`, `pods/log`).
    pub resource: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
}

impl FaultMatch {
    /// Matches every request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Matches a verb on a resource (`("list", "pods")`).
    pub fn verb_resource(verb: &str, resource: &str) -> Self {
        Self {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
            ..Self::default()
        }
    }

    /// Restricts the match to a verb.
    pub fn verb(mut self, verb: &str) -> Self {
        self.verb = Some(verb.into());
        self
    }

    /// Restricts the match to a resource.
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Restricts the match to a namespace.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// Restricts the match to an object name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    pub(crate) fn matches(&self, r: &RequestInfo<'_>) -> bool {
        self.verb.as_deref().is_none_or(|v| v == r.verb)
            && self.resource.as_deref().is_none_or(|v| v == r.resource)
            && self
                .namespace
                .as_deref()
                .is_none_or(|v| Some(v) == r.namespace)
            && self.name.as_deref().is_none_or(|v| Some(v) == r.name)
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum FaultAction {
    /// Answer with this HTTP status and a Status body.
    Status {
        /// HTTP code (500, 503, 409…).
        code: u16,
        /// The Status message.
        #[serde(default)]
        message: Option<String>,
    },
    /// Answer 429 TooManyRequests with `Retry-After`.
    TooManyRequests {
        /// Seconds for `Retry-After`.
        retry_after_seconds: u64,
    },
    /// Delay the request, then serve it normally.
    Latency {
        /// Milliseconds to wait.
        millis: u64,
    },
    /// Close the connection without answering.
    ResetConnection,
}

/// A fault rule: an action for the next `times` matching requests (`None` = until cleared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// Which requests.
    #[serde(default, rename = "match")]
    pub matcher: FaultMatch,
    /// What to do.
    pub action: FaultAction,
    /// How many matching requests to affect; `None` means every one until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

/// What the server should do with a request after consulting the faults.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultDecision {
    pub(crate) latency: Option<Duration>,
    pub(crate) error: Option<ApiError>,
    pub(crate) reset: bool,
}

/// The request properties faults match on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestInfo<'a> {
    pub(crate) verb: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) name: Option<&'a str>,
}

#[derive(Default)]
struct State {
    rules: Vec<FaultRule>,
    drop_watches_after: Option<u64>,
}

/// The fault-injection handle of a cluster. Cheap to clone.
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<State>>,
    drop_now: tokio::sync::watch::Sender<u64>,
    auth: Arc<AuthState>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

impl Faults {
    pub(crate) fn new(auth: Arc<AuthState>) -> Self {
        Self {
            state: Arc::default(),
            drop_now: tokio::sync::watch::channel(0).0,
            auth,
        }
    }

    /// Adds a rule.
    pub fn add(&self, rule: FaultRule) {
        self.state.lock().rules.push(rule);
    }

    /// The next `times` requests matching `m` get HTTP `code` with a Status body.
    pub fn fail_next(&self, times: u32, m: FaultMatch, code: u16) {
        self.add(FaultRule {
            matcher: m,
            action: FaultAction::Status {
                code,
                message: None,
            },
            times: Some(times),
        });
    }

    /// The next `times` requests matching `m` get 429 with `Retry-After: retry_after_seconds`.
    pub fn throttle_next(&self, times: u32, m: FaultMatch, retry_after_seconds: u64) {
        self.add(FaultRule {
            matcher: m,
            action: FaultAction::TooManyRequests {
                retry_after_seconds,
            },
            times: Some(times),
        });
    }

    /// Requests matching `m` are delayed by `latency` (the next `times`, or all with `None`).
    pub fn add_latency(&self, m: FaultMatch, latency: Duration, times: Option<u32>) {
        self.add(FaultRule {
            matcher: m,
            action: FaultAction::Latency {
                millis: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            },
            times,
        });
    }

    /// The next `times` requests matching `m` have their connection closed unanswered.
    pub fn reset_connections_next(&self, times: u32, m: FaultMatch) {
        self.add(FaultRule {
            matcher: m,
            action: FaultAction::ResetConnection,
            times: Some(times),
        });
    }

    /// Every watch (open now or opened later) is closed after delivering `events` more
    /// events; `None` turns this off.
    pub fn drop_watches_after(&self, events: Option<u64>) {
        self.state.lock().drop_watches_after = events;
        self.drop_now.send_modify(|_| {});
    }

    /// Closes every open watch stream now.
    pub fn drop_watches_now(&self) {
        self.drop_now.send_modify(|g| *g += 1);
    }

    /// Makes a bearer token invalid from now on (401 Unauthorized).
    pub fn expire_token(&self, token: &str) {
        self.auth.revoke_token(token);
    }

    /// Removes all rules and the watch-drop setting.
    pub fn clear(&self) {
        let mut s = self.state.lock();
        s.rules.clear();
        s.drop_watches_after = None;
    }

    /// The current rules.
    pub fn rules(&self) -> Vec<FaultRule> {
        self.state.lock().rules.clone()
    }

    pub(crate) fn drop_after(&self) -> Option<u64> {
        self.state.lock().drop_watches_after
    }

    pub(crate) fn drop_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.drop_now.subscribe()
    }

    /// Consumes matching rules for one request.
    pub(crate) fn decide(&self, r: &RequestInfo<'_>) -> FaultDecision {
        let mut d = FaultDecision::default();
        let mut s = self.state.lock();
        for rule in s.rules.iter_mut() {
            if rule.times == Some(0) || !rule.matcher.matches(r) {
                continue;
            }
            match &rule.action {
                FaultAction::Latency { millis } => {
                    d.latency =
                        Some(d.latency.unwrap_or_default() + Duration::from_millis(*millis));
                }
                FaultAction::Status { code, message } => {
                    if d.error.is_some() || d.reset {
                        continue;
                    }
                    d.error = Some(ApiError::from_code(
                        *code,
                        message
                            .clone()
                            .unwrap_or_else(|| format!("injected fault: HTTP {code}")),
                    ));
                }
                FaultAction::TooManyRequests {
                    retry_after_seconds,
                } => {
                    if d.error.is_some() || d.reset {
                        continue;
                    }
                    d.error = Some(ApiError::too_many_requests(*retry_after_seconds));
                }
                FaultAction::ResetConnection => {
                    if d.error.is_some() || d.reset {
                        continue;
                    }
                    d.reset = true;
                }
            }
            if let Some(t) = rule.times.as_mut() {
                *t -= 1;
            }
        }
        s.rules.retain(|r| r.times != Some(0));
        d
    }
}
