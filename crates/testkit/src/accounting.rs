//! Request accounting: how many requests each user made, by verb and resource.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

/// The key requests are counted under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RequestKey {
    /// The authenticated user (`system:anonymous` when authentication failed).
    pub user: String,
    /// The verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`; non-resource requests use the HTTP method in lowercase).
    pub verb: String,
    /// The resource (`pods`, `pods/log`, `jobs`), or the path for non-resource requests
    /// (`/api`, `/version`).
    pub resource: String,
}

/// A snapshot of the request counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    /// Requests by (user, verb, resource).
    #[serde(serialize_with = "ser_map")]
    pub by_key: BTreeMap<RequestKey, u64>,
    /// Watch streams opened so far.
    pub watches_opened: u64,
    /// Watch streams open right now.
    pub watches_open: u64,
}

fn ser_map<S: serde::Serializer>(m: &BTreeMap<RequestKey, u64>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(m.len()))?;
    for (k, v) in m {
        seq.serialize_element(&serde_json::json!({"user": k.user, "verb": k.verb, "resource": k.resource, "count": v}))?;
    }
    seq.end()
}

impl RequestCounts {
    /// Requests with this verb on this resource, by any user.
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.by_key
            .iter()
            .filter(|(k, _)| k.verb == verb && k.resource == resource)
            .map(|(_, v)| v)
            .sum()
    }

    /// Requests by this user with this verb on this resource.
    pub fn count_for(&self, user: &str, verb: &str, resource: &str) -> u64 {
        self.by_key
            .iter()
            .filter(|(k, _)| k.user == user && k.verb == verb && k.resource == resource)
            .map(|(_, v)| v)
            .sum()
    }

    /// All requests by this user.
    pub fn user_total(&self, user: &str) -> u64 {
        self.by_key
            .iter()
            .filter(|(k, _)| k.user == user)
            .map(|(_, v)| v)
            .sum()
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.by_key.values().sum()
    }

    /// The counts that grew since `earlier` (for "how many calls did this operation make").
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        let by_key = self
            .by_key
            .iter()
            .filter_map(|(k, v)| {
                let d = v - earlier.by_key.get(k).copied().unwrap_or(0).min(*v);
                (d > 0).then(|| (k.clone(), d))
            })
            .collect();
        RequestCounts {
            by_key,
            watches_opened: self.watches_opened.saturating_sub(earlier.watches_opened),
            watches_open: self.watches_open,
        }
    }
}

/// The live counters of a cluster. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Accounting {
    counts: Arc<Mutex<BTreeMap<RequestKey, u64>>>,
    watches_opened: Arc<AtomicU64>,
    watches_open: Arc<AtomicU64>,
}

/// Decrements the open-watch gauge when dropped.
#[derive(Debug)]
pub(crate) struct WatchGuard(Arc<AtomicU64>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Accounting {
    pub(crate) fn record(&self, user: &str, verb: &str, resource: &str) {
        let key = RequestKey {
            user: user.to_string(),
            verb: verb.to_string(),
            resource: resource.to_string(),
        };
        *self.counts.lock().entry(key).or_insert(0) += 1;
    }

    pub(crate) fn watch_opened(&self) -> WatchGuard {
        self.watches_opened.fetch_add(1, Ordering::SeqCst);
        self.watches_open.fetch_add(1, Ordering::SeqCst);
        WatchGuard(self.watches_open.clone())
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> RequestCounts {
        RequestCounts {
            by_key: self.counts.lock().clone(),
            watches_opened: self.watches_opened.load(Ordering::SeqCst),
            watches_open: self.watches_open.load(Ordering::SeqCst),
        }
    }

    /// Resets the request counters (not the open-watch gauge).
    pub fn reset(&self) {
        self.counts.lock().clear();
        self.watches_opened.store(0, Ordering::SeqCst);
    }
}
