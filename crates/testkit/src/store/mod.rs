//! The in-memory object store: JSON objects keyed by kind, namespace and name, with a
//! global resourceVersion, watch fan-out with a bounded history, and garbage collection.
//!
//! All methods are synchronous and never hold a lock across an `.await`; the store is
//! cheap to clone (an `Arc` inside) and shared by the API server and the runtime.

mod defaults;
pub use defaults::default_pod_spec;
mod kind;
mod watch;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::ApiError;
pub use crate::selectors::{FieldSelector, LabelSelector, ListFilter};
pub use kind::ResourceKind;
pub use watch::{StoreEvent, WatchEvent, WatchEventType, WatchStream};

/// How dependents are handled when their owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// The kind's default: `Orphan` for batch/v1 Jobs, `Background` for everything else.
    #[default]
    Default,
    /// Delete the owner now, then its dependents.
    Background,
    /// Keep the owner (with `deletionTimestamp` and the `foregroundDeletion`
    /// finalizer) until its dependents are gone.
    Foreground,
    /// Delete the owner and strip the owner reference from its dependents.
    Orphan,
}

impl Propagation {
    /// Parses a `propagationPolicy` value.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            "Orphan" => Ok(Propagation::Orphan),
            "" => Ok(Propagation::Default),
            other => Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            ))),
        }
    }
}

/// Options of a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`: for pods bound to a node, `None` uses the pod's
    /// `terminationGracePeriodSeconds` and `Some(0)` removes the pod at once.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`.
    pub propagation: Propagation,
    /// `preconditions.resourceVersion`.
    pub precondition_resource_version: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
}

/// Store tuning.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How many past events per kind are kept for watch resumption; a watch from an
    /// older resourceVersion gets 410 Gone.
    pub history_window: usize,
    /// Capacity of each subscriber's channel; a subscriber further behind is dropped.
    pub channel_capacity: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            history_window: 10_000,
            channel_capacity: 8192,
        }
    }
}

type Key = (String, String);

#[derive(Default)]
struct KindState {
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<StoreEvent>>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted_rv: u64,
}

struct Inner {
    rv: u64,
    kinds: HashMap<ResourceKind, KindState>,
    ip_counter: u32,
    /// Namespace → the most pods that may exist there at once (a `ResourceQuota` with
    /// `hard: {pods: N}`).
    pod_quotas: HashMap<String, u32>,
}

/// What makes two events the same event (its count is bumped instead of a new one).
type EventKey = (String, String, String, String, String);

struct Shared {
    inner: Mutex<Inner>,
    /// The event recording each (namespace, involved uid, reason, message, component),
    /// so a repeat bumps its count without scanning the namespace's events.
    event_index: Mutex<HashMap<EventKey, String>>,
    senders: HashMap<ResourceKind, broadcast::Sender<Arc<StoreEvent>>>,
    all: broadcast::Sender<Arc<StoreEvent>>,
    options: StoreOptions,
}

/// The shared in-memory object store. Clone it freely.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("resource_version", &self.current_resource_version())
            .finish()
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// The current time as an RFC 3339 timestamp with second precision, as Kubernetes writes it.
pub fn now_rfc3339() -> String {
    let ts = jiff::Timestamp::now();
    jiff::Timestamp::from_second(ts.as_second())
        .unwrap_or(ts)
        .to_string()
}

/// The current time as an RFC 3339 timestamp with microsecond precision (`MicroTime`).
pub fn now_rfc3339_micro() -> String {
    let ts = jiff::Timestamp::now();
    let micros = ts.as_microsecond();
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| format!("{t:.6}"))
        .unwrap_or_else(|_| ts.to_string())
}

/// A random RFC 4122 version-4 UUID string.
pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random lowercase alphanumeric suffix of `n` characters, as `generateName` uses.
pub fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Event name suffixes: the creation time in nanoseconds as hex, strictly increasing (as
/// the real event recorder names events), so name order is creation order.
fn next_event_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// When a graceful deletion of `grace_seconds` ends, in whole seconds as the API server
/// writes `deletionTimestamp`.
fn deletion_deadline(grace_seconds: i64) -> String {
    let deadline = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(grace_seconds))
        .unwrap_or(jiff::Timestamp::MAX);
    jiff::Timestamp::from_second(deadline.as_second())
        .unwrap_or(deadline)
        .to_string()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn pod_is_terminal(obj: &Value) -> bool {
    matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

impl Store {
    /// A store with the default options, holding the `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease` namespaces with their `default` service accounts.
    pub fn new() -> Self {
        Self::with_options(StoreOptions::default())
    }

    /// A store with the given options (and the standard namespaces).
    pub fn with_options(options: StoreOptions) -> Self {
        let mut kinds = HashMap::new();
        let mut senders = HashMap::new();
        for k in ResourceKind::ALL {
            kinds.insert(k, KindState::default());
            senders.insert(k, broadcast::channel(options.channel_capacity).0);
        }
        let store = Store {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    rv: 0,
                    kinds,
                    ip_counter: 0,
                    pod_quotas: HashMap::new(),
                }),
                event_index: Mutex::new(HashMap::new()),
                senders,
                all: broadcast::channel(options.channel_capacity).0,
                options,
            }),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = store.create(
                ResourceKind::Namespace,
                None,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            );
        }
        store
    }

    /// The store's options.
    pub fn options(&self) -> &StoreOptions {
        &self.shared.options
    }

    /// The newest resourceVersion handed out.
    pub fn current_resource_version(&self) -> u64 {
        self.shared.inner.lock().rv
    }

    fn key(kind: ResourceKind, ns: Option<&str>, name: &str) -> Result<Key, ApiError> {
        if kind.namespaced() {
            match ns {
                Some(ns) if !ns.is_empty() => Ok((ns.to_string(), name.to_string())),
                _ => Err(ApiError::bad_request(format!(
                    "a namespace is required for {}",
                    kind.plural()
                ))),
            }
        } else {
            Ok((String::new(), name.to_string()))
        }
    }

    /// Creates an object: assigns `uid`, `creationTimestamp`, `resourceVersion`, the
    /// name from `generateName`, the namespace, and the kind's defaults; emits ADDED.
    ///
    /// Errors: 409 AlreadyExists, 404 if the namespace does not exist, 403 if it is
    /// terminating, 400 on a namespace mismatch, 422 when neither name nor generateName is set.
    pub fn create(
        &self,
        kind: ResourceKind,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let mut inner = self.shared.inner.lock();
        let out = self.create_locked(&mut inner, kind, ns, obj)?;
        if kind == ResourceKind::Namespace {
            let name = meta_str(&out, "name").unwrap_or_default().to_string();
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
            let _ = self.create_locked(&mut inner, ResourceKind::ServiceAccount, Some(&name), sa);
        }
        Ok(out)
    }

    /// Validates a create without storing it (`dryRun=All`): returns the object as it
    /// would be stored, without a resourceVersion bump.
    pub fn create_dry_run(
        &self,
        kind: ResourceKind,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let inner = self.shared.inner.lock();
        let (key, mut obj) = self.prepare_create(&inner, kind, ns, obj)?;
        if inner.kinds[&kind].objects.contains_key(&key) {
            return Err(ApiError::already_exists(&kind.qualified(), &key.1));
        }
        obj["metadata"]["uid"] = json!(new_uid());
        obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
        defaults::apply(kind, &mut obj, 0);
        Ok(obj)
    }

    fn prepare_create(
        &self,
        inner: &Inner,
        kind: ResourceKind,
        ns: Option<&str>,
        mut obj: Value,
    ) -> Result<(Key, Value), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        obj["apiVersion"] = json!(kind.api_version());
        obj["kind"] = json!(kind.kind());
        if kind.namespaced() {
            let req_ns = ns.filter(|s| !s.is_empty());
            let obj_ns = meta_str(&obj, "namespace")
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            let ns = match (req_ns, obj_ns.as_deref()) {
                (Some(a), Some(b)) if a != b => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                (Some(a), _) => a.to_string(),
                (None, Some(b)) => b.to_string(),
                (None, None) => "default".to_string(),
            };
            match inner.kinds[&ResourceKind::Namespace]
                .objects
                .get(&(String::new(), ns.clone()))
            {
                None => return Err(ApiError::not_found("namespaces", &ns)),
                Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                    return Err(ApiError::forbidden(
                        &kind.qualified(),
                        meta_str(&obj, "name").unwrap_or_default(),
                        format!(
                            "unable to create new content in namespace {ns} because it is being terminated"
                        ),
                    ));
                }
                Some(_) => {}
            }
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let name = match meta_str(&obj, "name").filter(|s| !s.is_empty()) {
            Some(n) => n.to_string(),
            None => match meta_str(&obj, "generateName").filter(|s| !s.is_empty()) {
                Some(prefix) => {
                    let existing = &inner.kinds[&kind].objects;
                    let ns_key = meta_str(&obj, "namespace").unwrap_or_default().to_string();
                    let mut tries = 0;
                    loop {
                        let candidate = format!("{prefix}{}", random_suffix(5));
                        tries += 1;
                        if !existing.contains_key(&(ns_key.clone(), candidate.clone())) || tries > 8
                        {
                            break candidate;
                        }
                    }
                }
                None => {
                    return Err(ApiError::invalid(
                        kind.kind(),
                        "",
                        vec![crate::error::StatusCause::new(
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        )],
                    ));
                }
            },
        };
        obj["metadata"]["name"] = json!(name);
        let meta = obj["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.remove(f);
        }
        let key = Self::key(kind, meta_str(&obj, "namespace"), &name)?;
        if kind == ResourceKind::Pod {
            Self::admit_pod_quota(inner, &key)?;
        }
        Ok((key, obj))
    }

    /// Limits how many pods that have not finished may exist in `namespace` (`None`
    /// lifts the limit), as a `ResourceQuota` with `hard: {pods: N}` does: a pod beyond
    /// it is refused with 403 `exceeded quota`, whoever creates it (kubectl, the job
    /// controller).
    pub fn set_pod_quota(&self, namespace: &str, pods: Option<u32>) {
        let mut inner = self.shared.inner.lock();
        match pods {
            Some(n) => inner.pod_quotas.insert(namespace.to_owned(), n),
            None => inner.pod_quotas.remove(namespace),
        };
    }

    fn admit_pod_quota(inner: &Inner, key: &Key) -> Result<(), ApiError> {
        let Some(&limit) = inner.pod_quotas.get(&key.0) else {
            return Ok(());
        };
        let used = inner.kinds[&ResourceKind::Pod]
            .objects
            .iter()
            .filter(|((ns, _), pod)| *ns == key.0 && !pod_is_terminal(pod))
            .count();
        if used < limit as usize {
            return Ok(());
        }
        Err(ApiError::forbidden(
            "pods",
            &key.1,
            format!(
                "exceeded quota: pod-quota, requested: pods=1, used: pods={used}, limited: pods={limit}"
            ),
        ))
    }

    fn create_locked(
        &self,
        inner: &mut Inner,
        kind: ResourceKind,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let (key, mut obj) = self.prepare_create(inner, kind, ns, obj)?;
        if inner.kinds[&kind].objects.contains_key(&key) {
            return Err(ApiError::already_exists(&kind.qualified(), &key.1));
        }
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["uid"] = json!(new_uid());
        obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if matches!(
            kind,
            ResourceKind::Job | ResourceKind::Pod | ResourceKind::Service
        ) {
            obj["metadata"]["generation"] = json!(1);
        }
        if kind == ResourceKind::Service {
            inner.ip_counter += 1;
        }
        defaults::apply(kind, &mut obj, inner.ip_counter);
        inner
            .kinds
            .get_mut(&kind)
            .map(|k| k.objects.insert(key.clone(), obj.clone()));
        self.emit(
            inner,
            kind,
            &key,
            WatchEventType::Added,
            rv,
            obj.clone(),
            None,
        );
        Ok(obj)
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        inner: &mut Inner,
        kind: ResourceKind,
        key: &Key,
        t: WatchEventType,
        rv: u64,
        object: Value,
        old: Option<Value>,
    ) {
        let ev = Arc::new(StoreEvent {
            resource: kind,
            namespace: if kind.namespaced() {
                Some(key.0.clone())
            } else {
                None
            },
            name: key.1.clone(),
            kind: t,
            resource_version: rv,
            object,
            old_object: old,
        });
        let window = self.shared.options.history_window;
        if let Some(state) = inner.kinds.get_mut(&kind) {
            state.history.push_back(ev.clone());
            while state.history.len() > window {
                if let Some(old) = state.history.pop_front() {
                    state.compacted_rv = old.resource_version;
                }
            }
        }
        if let Some(tx) = self.shared.senders.get(&kind) {
            let _ = tx.send(ev.clone());
        }
        let _ = self.shared.all.send(ev);
    }

    /// Stores `new` as the next revision of the object at `key` (replacing `old`), stamps
    /// its resourceVersion, tells the watchers and returns what was stored.
    fn store_modified(
        &self,
        inner: &mut Inner,
        kind: ResourceKind,
        key: &Key,
        mut new: Value,
        old: Value,
    ) -> Value {
        inner.rv += 1;
        let rv = inner.rv;
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        if let Some(state) = inner.kinds.get_mut(&kind) {
            state.objects.insert(key.clone(), new.clone());
        }
        self.emit(
            inner,
            kind,
            key,
            WatchEventType::Modified,
            rv,
            new.clone(),
            Some(old),
        );
        new
    }

    /// Reads one object (404 NotFound if absent).
    pub fn get(&self, kind: ResourceKind, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let key = Self::key(kind, ns, name)?;
        self.shared.inner.lock().kinds[&kind]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))
    }

    /// Lists objects of a kind (in one namespace, or all with `None`) that match the
    /// filter, sorted by namespace and name, with the list's resourceVersion.
    pub fn list(
        &self,
        kind: ResourceKind,
        ns: Option<&str>,
        filter: &ListFilter,
    ) -> (Vec<Value>, u64) {
        let inner = self.shared.inner.lock();
        let state = &inner.kinds[&kind];
        let items = match ns.filter(|_| kind.namespaced()) {
            Some(ns) => state
                .objects
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v)
                .filter(|v| filter.matches(v))
                .cloned()
                .collect(),
            None => state
                .objects
                .values()
                .filter(|v| filter.matches(v))
                .cloned()
                .collect(),
        };
        (items, inner.rv)
    }

    /// Replaces an object (PUT semantics). If `metadata.resourceVersion` is set and
    /// stale, returns 409 Conflict. `uid`, `creationTimestamp` and the name are kept.
    pub fn update(
        &self,
        kind: ResourceKind,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let want_rv = meta_str(&obj, "resourceVersion")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let name2 = name.clone();
        self.modify(kind, ns, &name, move |cur| {
            if let Some(rv) = &want_rv
                && meta_str(cur, "resourceVersion") != Some(rv.as_str())
            {
                return Err(ApiError::conflict(&kind.qualified(), &name2));
            }
            *cur = obj;
            Ok(())
        })
    }

    /// The stored object at `key` (404 NotFound if absent).
    fn current(inner: &Inner, kind: ResourceKind, key: &Key) -> Result<Value, ApiError> {
        inner.kinds[&kind]
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&kind.qualified(), &key.1))
    }

    /// Backdates an object's `creationTimestamp` (which no API call can change), for
    /// scenarios about objects left from long ago. Watchers see a MODIFIED event.
    pub fn set_creation_timestamp(
        &self,
        kind: ResourceKind,
        ns: Option<&str>,
        name: &str,
        created: jiff::Timestamp,
    ) -> Result<Value, ApiError> {
        let key = Self::key(kind, ns, name)?;
        let mut inner = self.shared.inner.lock();
        let old = Self::current(&inner, kind, &key)?;
        let mut new = old.clone();
        new["metadata"]["creationTimestamp"] = json!(
            jiff::Timestamp::from_second(created.as_second())
                .unwrap_or(created)
                .to_string()
        );
        Ok(self.store_modified(&mut inner, kind, &key, new, old))
    }

    /// Atomic read-modify-write: runs `f` on the current object under the store lock;
    /// identity fields (name, namespace, uid, creationTimestamp) are restored afterwards.
    /// If the object changed, bumps the resourceVersion (and `metadata.generation` when
    /// `spec` changed) and emits MODIFIED; an unchanged object is returned as is.
    /// If the result has a `deletionTimestamp` and no finalizers left, it is removed.
    pub fn modify<F>(
        &self,
        kind: ResourceKind,
        ns: Option<&str>,
        name: &str,
        f: F,
    ) -> Result<Value, ApiError>
    where
        F: FnOnce(&mut Value) -> Result<(), ApiError>,
    {
        let key = Self::key(kind, ns, name)?;
        let mut inner = self.shared.inner.lock();
        let old = Self::current(&inner, kind, &key)?;
        let mut new = old.clone();
        f(&mut new)?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        if !new.get("metadata").is_some_and(Value::is_object) {
            new["metadata"] = json!({});
        }
        new["apiVersion"] = json!(kind.api_version());
        new["kind"] = json!(kind.kind());
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            match old["metadata"].get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        if let Some(g) = old["metadata"].get("deletionGracePeriodSeconds") {
            new["metadata"]["deletionGracePeriodSeconds"] = g.clone();
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == old {
            return Ok(old);
        }
        if old.get("spec") != new.get("spec")
            && let Some(g) = old["metadata"].get("generation").and_then(Value::as_i64)
        {
            new["metadata"]["generation"] = json!(g + 1);
        }
        inner.rv += 1;
        let rv = inner.rv;
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        let finalizers_empty = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        if new.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers_empty
            && !matches!(kind, ResourceKind::Pod | ResourceKind::Namespace)
        {
            inner
                .kinds
                .get_mut(&kind)
                .map(|k| k.objects.insert(key.clone(), new.clone()));
            self.remove_locked(&mut inner, kind, &key, Propagation::Background);
            return Ok(new);
        }
        inner
            .kinds
            .get_mut(&kind)
            .map(|k| k.objects.insert(key.clone(), new.clone()));
        self.emit(
            &mut inner,
            kind,
            &key,
            WatchEventType::Modified,
            rv,
            new.clone(),
            Some(old),
        );
        Ok(new)
    }

    /// Deletes an object. A pod bound to a node (`spec.nodeName`) that is not terminal
    /// gets `deletionTimestamp`/`deletionGracePeriodSeconds` (MODIFIED) and stays until the
    /// kubelet calls [`Store::finalize_delete`] (unless the grace period is 0). Objects with
    /// finalizers, and owners deleted with foreground propagation, get a
    /// `deletionTimestamp` and stay until their finalizers are removed. Everything else is
    /// removed at once (DELETED), and dependents are garbage-collected per the propagation.
    ///
    /// Returns the object's state after the call.
    pub fn delete(
        &self,
        kind: ResourceKind,
        ns: Option<&str>,
        name: &str,
        opts: DeleteOptions,
    ) -> Result<Value, ApiError> {
        let key = Self::key(kind, ns, name)?;
        let mut inner = self.shared.inner.lock();
        let cur = inner.kinds[&kind]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))?;
        if let Some(rv) = &opts.precondition_resource_version
            && meta_str(&cur, "resourceVersion") != Some(rv.as_str())
        {
            return Err(ApiError::conflict_msg(
                &kind.qualified(),
                name,
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    kind.qualified(),
                    meta_str(&cur, "resourceVersion").unwrap_or_default()
                ),
            ));
        }
        if let Some(uid) = &opts.precondition_uid
            && meta_str(&cur, "uid") != Some(uid.as_str())
        {
            return Err(ApiError::conflict_msg(
                &kind.qualified(),
                name,
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    kind.qualified(),
                    meta_str(&cur, "uid").unwrap_or_default()
                ),
            ));
        }
        let propagation = match opts.propagation {
            Propagation::Default if kind == ResourceKind::Job => Propagation::Orphan,
            Propagation::Default => Propagation::Background,
            p => p,
        };
        let now = now_rfc3339();

        // Pods on a node: graceful deletion, finished by the kubelet.
        if kind == ResourceKind::Pod
            && cur
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            && !pod_is_terminal(&cur)
            && opts.grace_period_seconds != Some(0)
        {
            let grace = opts.grace_period_seconds.unwrap_or_else(|| {
                cur.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            });
            let existing = cur
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if existing.is_some_and(|e| e <= grace) {
                return Ok(cur);
            }
            let mut new = cur.clone();
            let ts = deletion_deadline(grace);
            if existing.is_none() {
                new["metadata"]["deletionTimestamp"] = json!(ts);
            }
            new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            let new = self.store_modified(&mut inner, kind, &key, new, cur);
            if propagation == Propagation::Orphan {
                self.orphan_dependents(&mut inner, &new);
            }
            return Ok(new);
        }

        let mut finalizers: Vec<Value> = cur
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let uid = meta_str(&cur, "uid").unwrap_or_default().to_string();
        let has_dependents = !self.dependents_locked(&inner, &uid).is_empty();
        if propagation == Propagation::Foreground
            && has_dependents
            && !finalizers.iter().any(|f| f == "foregroundDeletion")
        {
            finalizers.push(json!("foregroundDeletion"));
        }
        if kind == ResourceKind::Namespace {
            return Ok(self.delete_namespace_locked(&mut inner, &key, cur, &now));
        }
        if !finalizers.is_empty() {
            if cur.pointer("/metadata/deletionTimestamp").is_some()
                && cur.pointer("/metadata/finalizers") == Some(&json!(finalizers))
            {
                return Ok(cur);
            }
            let mut new = cur.clone();
            if new.pointer("/metadata/deletionTimestamp").is_none() {
                new["metadata"]["deletionTimestamp"] = json!(now);
                new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            }
            new["metadata"]["finalizers"] = Value::Array(finalizers);
            let new = self.store_modified(&mut inner, kind, &key, new, cur);
            if propagation == Propagation::Foreground {
                for (dk, dkey) in self.dependents_locked(&inner, &uid) {
                    self.delete_dependent_locked(&mut inner, dk, &dkey, Propagation::Foreground);
                }
                self.maybe_finish_foreground(&mut inner, kind, &key);
            } else if propagation == Propagation::Orphan {
                self.orphan_dependents(&mut inner, &new);
            }
            return inner.kinds[&kind]
                .objects
                .get(&key)
                .cloned()
                .map_or(Ok(new), Ok);
        }
        Ok(self.remove_locked(&mut inner, kind, &key, propagation))
    }

    /// Removes an object for good (the kubelet calls this once a deleting pod's
    /// containers have stopped). Emits DELETED and garbage-collects dependents.
    /// Returns the removed object's final state.
    pub fn finalize_delete(
        &self,
        kind: ResourceKind,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = Self::key(kind, ns, name)?;
        let mut inner = self.shared.inner.lock();
        if !inner.kinds[&kind].objects.contains_key(&key) {
            return Err(ApiError::not_found(&kind.qualified(), name));
        }
        Ok(self.remove_locked(&mut inner, kind, &key, Propagation::Background))
    }

    fn remove_locked(
        &self,
        inner: &mut Inner,
        kind: ResourceKind,
        key: &Key,
        propagation: Propagation,
    ) -> Value {
        let Some(mut obj) = inner
            .kinds
            .get_mut(&kind)
            .and_then(|k| k.objects.remove(key))
        else {
            return Value::Null;
        };
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(
            inner,
            kind,
            key,
            WatchEventType::Deleted,
            rv,
            obj.clone(),
            None,
        );
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
        match propagation {
            Propagation::Orphan => self.orphan_dependents(inner, &obj),
            p => {
                let p = if p == Propagation::Foreground {
                    Propagation::Foreground
                } else {
                    Propagation::Background
                };
                for (dk, dkey) in self.dependents_locked(inner, &uid) {
                    self.delete_dependent_locked(inner, dk, &dkey, p);
                }
            }
        }
        // An owner waiting in foreground deletion may now be free to go.
        if let Some(refs) = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
        {
            for r in refs {
                let Some(owner_uid) = r.get("uid").and_then(Value::as_str) else {
                    continue;
                };
                if let Some((ok, okey)) = self.find_by_uid(inner, owner_uid, &key.0) {
                    self.maybe_finish_foreground(inner, ok, &okey);
                }
            }
        }
        // A terminating namespace goes away once empty.
        if kind.namespaced() {
            let ns_key = (String::new(), key.0.clone());
            if inner.kinds[&ResourceKind::Namespace]
                .objects
                .get(&ns_key)
                .is_some_and(|n| n.pointer("/metadata/deletionTimestamp").is_some())
                && self.namespace_empty(inner, &key.0)
            {
                self.remove_locked(
                    inner,
                    ResourceKind::Namespace,
                    &ns_key,
                    Propagation::Background,
                );
            }
        }
        obj
    }

    fn delete_namespace_locked(
        &self,
        inner: &mut Inner,
        key: &Key,
        cur: Value,
        now: &str,
    ) -> Value {
        let ns = key.1.clone();
        let mut new = cur.clone();
        if new.pointer("/metadata/deletionTimestamp").is_none() {
            new["metadata"]["deletionTimestamp"] = json!(now);
            new["status"]["phase"] = json!("Terminating");
            new = self.store_modified(inner, ResourceKind::Namespace, key, new, cur);
        }
        for kind in ResourceKind::ALL.into_iter().filter(|k| k.namespaced()) {
            let keys: Vec<Key> = inner.kinds[&kind]
                .objects
                .keys()
                .filter(|(n, _)| *n == ns)
                .cloned()
                .collect();
            for k in keys {
                self.delete_dependent_locked(inner, kind, &k, Propagation::Background);
            }
        }
        let still_there = inner.kinds[&ResourceKind::Namespace]
            .objects
            .contains_key(key);
        if still_there && self.namespace_empty(inner, &ns) {
            return self.remove_locked(
                inner,
                ResourceKind::Namespace,
                key,
                Propagation::Background,
            );
        }
        new
    }

    fn namespace_empty(&self, inner: &Inner, ns: &str) -> bool {
        ResourceKind::ALL
            .into_iter()
            .filter(|k| k.namespaced())
            .all(|k| !inner.kinds[&k].objects.keys().any(|(n, _)| n == ns))
    }

    /// Deletes a dependent during garbage collection (graceful for running pods).
    fn delete_dependent_locked(
        &self,
        inner: &mut Inner,
        kind: ResourceKind,
        key: &Key,
        propagation: Propagation,
    ) {
        let Some(cur) = inner.kinds[&kind].objects.get(key).cloned() else {
            return;
        };
        if cur.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let bound_pod = kind == ResourceKind::Pod
            && cur
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            && !pod_is_terminal(&cur);
        let has_finalizers = cur
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if bound_pod || has_finalizers {
            let mut new = cur.clone();
            let grace = if bound_pod {
                cur.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            } else {
                0
            };
            let ts = deletion_deadline(grace);
            new["metadata"]["deletionTimestamp"] = json!(ts);
            new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            self.store_modified(inner, kind, key, new, cur);
            return;
        }
        self.remove_locked(inner, kind, key, propagation);
    }

    fn maybe_finish_foreground(&self, inner: &mut Inner, kind: ResourceKind, key: &Key) {
        let Some(owner) = inner.kinds[&kind].objects.get(key).cloned() else {
            return;
        };
        let waiting = owner
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|f| f == "foregroundDeletion"));
        if !waiting {
            return;
        }
        let uid = meta_str(&owner, "uid").unwrap_or_default().to_string();
        if !self.dependents_locked(inner, &uid).is_empty() {
            return;
        }
        let mut new = owner.clone();
        let rest: Vec<Value> = owner
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|f| *f != "foregroundDeletion")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if rest.is_empty() {
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("finalizers");
            }
            inner
                .kinds
                .get_mut(&kind)
                .map(|k| k.objects.insert(key.clone(), new));
            self.remove_locked(inner, kind, key, Propagation::Background);
        } else {
            new["metadata"]["finalizers"] = Value::Array(rest);
            self.store_modified(inner, kind, key, new, owner);
        }
    }

    fn orphan_dependents(&self, inner: &mut Inner, owner: &Value) {
        let uid = meta_str(owner, "uid").unwrap_or_default().to_string();
        for (dk, dkey) in self.dependents_locked(inner, &uid) {
            let Some(cur) = inner.kinds[&dk].objects.get(&dkey).cloned() else {
                continue;
            };
            let mut new = cur.clone();
            if let Some(refs) = new
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                if refs.is_empty()
                    && let Some(m) = new["metadata"].as_object_mut()
                {
                    m.remove("ownerReferences");
                }
            }
            self.store_modified(inner, dk, &dkey, new, cur);
        }
    }

    fn dependents_locked(&self, inner: &Inner, owner_uid: &str) -> Vec<(ResourceKind, Key)> {
        if owner_uid.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (kind, state) in &inner.kinds {
            for (key, obj) in &state.objects {
                let owned = obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(owner_uid))
                    });
                if owned {
                    out.push((*kind, key.clone()));
                }
            }
        }
        out
    }

    fn find_by_uid(&self, inner: &Inner, uid: &str, ns: &str) -> Option<(ResourceKind, Key)> {
        for (kind, state) in &inner.kinds {
            for (key, obj) in &state.objects {
                if (key.0 == ns || key.0.is_empty()) && meta_str(obj, "uid") == Some(uid) {
                    return Some((*kind, key.clone()));
                }
            }
        }
        None
    }

    /// The objects (kind and namespace/name) whose ownerReferences name `owner_uid`.
    pub fn dependents(&self, owner_uid: &str) -> Vec<(ResourceKind, Option<String>, String)> {
        let inner = self.shared.inner.lock();
        self.dependents_locked(&inner, owner_uid)
            .into_iter()
            .map(|(k, (ns, name))| (k, if k.namespaced() { Some(ns) } else { None }, name))
            .collect()
    }

    /// Watches one kind (in one namespace, or all with `None`). With `from_rv`, replays
    /// every change after that resourceVersion first (410 Gone if it is older than the
    /// history window); with `None`, starts from now. No synthetic ADDED events are
    /// produced: list first, then watch from the list's resourceVersion.
    pub fn watch(
        &self,
        kind: ResourceKind,
        ns: Option<&str>,
        from_rv: Option<u64>,
    ) -> Result<WatchStream, ApiError> {
        self.watch_filtered(kind, ns, from_rv, ListFilter::default())
    }

    /// Like [`Store::watch`] with a label/field filter; an object that stops matching
    /// is reported as DELETED and one that starts matching as ADDED.
    pub fn watch_filtered(
        &self,
        kind: ResourceKind,
        ns: Option<&str>,
        from_rv: Option<u64>,
        filter: ListFilter,
    ) -> Result<WatchStream, ApiError> {
        let inner = self.shared.inner.lock();
        let state = &inner.kinds[&kind];
        let rx = self.shared.senders[&kind].subscribe();
        let (replay, start) = match from_rv {
            None => (VecDeque::new(), inner.rv),
            Some(rv) => {
                if rv < state.compacted_rv {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {rv} ({})",
                        state.compacted_rv + 1
                    )));
                }
                let replay: VecDeque<_> = state
                    .history
                    .iter()
                    .filter(|e| e.resource_version > rv)
                    .cloned()
                    .collect();
                (replay, rv)
            }
        };
        Ok(WatchStream::new(
            replay,
            rx,
            kind,
            ns.filter(|_| kind.namespaced()).map(str::to_string),
            filter,
            start,
        ))
    }

    /// Subscribes to every change of every kind (for controllers). A receiver that falls
    /// more than the channel capacity behind gets `RecvError::Lagged` and should relist.
    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<StoreEvent>> {
        self.shared.all.subscribe()
    }

    /// Drops all watch history, so any watch from a past resourceVersion gets 410 Gone
    /// (simulates etcd compaction).
    pub fn compact(&self) {
        let mut inner = self.shared.inner.lock();
        let rv = inner.rv;
        for state in inner.kinds.values_mut() {
            state.history.clear();
            state.compacted_rv = rv;
        }
    }

    /// Records a core/v1 Event about `involved_object` from the `stepstack-testkit` component.
    pub fn record_event(
        &self,
        ns: &str,
        involved_object: &Value,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<Value, ApiError> {
        self.record_event_from(
            "stepstack-testkit",
            None,
            ns,
            involved_object,
            type_,
            reason,
            message,
        )
    }

    /// Records a core/v1 Event with a source component (`default-scheduler`, `kubelet`,
    /// `job-controller`) and optional host. Repeats of the same (object, reason, message)
    /// bump `count` and `lastTimestamp` instead of creating a new Event.
    #[allow(clippy::too_many_arguments)]
    pub fn record_event_from(
        &self,
        component: &str,
        host: Option<&str>,
        ns: &str,
        involved_object: &Value,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<Value, ApiError> {
        let iname = meta_str(involved_object, "name").unwrap_or_default();
        let iuid = meta_str(involved_object, "uid").unwrap_or_default();
        let now = now_rfc3339();
        let key: EventKey = (
            ns.to_owned(),
            iuid.to_owned(),
            reason.to_owned(),
            message.to_owned(),
            component.to_owned(),
        );
        let known = self.shared.event_index.lock().get(&key).cloned();
        if let Some(name) = known {
            let bumped = self.modify(ResourceKind::Event, Some(ns), &name, |ev| {
                let c = ev.get("count").and_then(Value::as_i64).unwrap_or(1);
                ev["count"] = json!(c + 1);
                ev["lastTimestamp"] = json!(now);
                Ok(())
            });
            // A deleted event (namespace gone, GC) is recorded anew below.
            if bumped.is_ok() {
                return bumped;
            }
        }
        let mut involved = json!({
            "kind": involved_object.get("kind").cloned().unwrap_or(Value::Null),
            "name": iname,
            "apiVersion": involved_object.get("apiVersion").cloned().unwrap_or(Value::Null),
        });
        if let Some(n) = meta_str(involved_object, "namespace") {
            involved["namespace"] = json!(n);
        }
        if !iuid.is_empty() {
            involved["uid"] = json!(iuid);
        }
        if let Some(rv) = meta_str(involved_object, "resourceVersion") {
            involved["resourceVersion"] = json!(rv);
        }
        let mut source = json!({"component": component});
        if let Some(h) = host {
            source["host"] = json!(h);
        }
        let suffix = next_event_suffix();
        let ev = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{iname}.{suffix:x}"), "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": host.unwrap_or(""),
        });
        let created = self.create(ResourceKind::Event, Some(ns), ev)?;
        if let Some(name) = meta_str(&created, "name") {
            self.shared.event_index.lock().insert(key, name.to_owned());
        }
        Ok(created)
    }
}

#[cfg(test)]
mod tests;

/// Applies the API server's defaults for `kind` to an object (used on updates; create
/// applies them itself).
pub fn default_object(kind: ResourceKind, obj: &mut Value) {
    defaults::apply(kind, obj, 0);
}
