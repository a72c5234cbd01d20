//! The cache key of a step run: a sha256 over everything that can change what the step
//! writes, and nothing that cannot.
//!
//! **In the key:** the command and arguments and the plain environment as written (with
//! their placeholders, not the run's paths: a placeholder names *which* input or output,
//! the input's content is in the key through its digest); the *names* of secret
//! environment variables (never their values); the image (a digest reference
//! `…@sha256:…` when the caller knows one, else the reference as written); where the step
//! runs (`local`, or the step operator's flavor); the generic resources (`cpu_count`,
//! `gpu_count`, `memory`, `gpu_vendor`); the output names; the content digest of every
//! input; and the effective step-operator settings minus the ones listed in
//! [`IGNORED_SETTINGS`].
//!
//! **Not in the key** ([`IGNORED_SETTINGS`]): deadlines and timeouts, retry budgets, log
//! options, API timeouts and retries, what happens on interrupt, cleanup (TTL), the Job
//! name prefix, pod labels and annotations, the scheduler name and image pull secrets —
//! they change when or how the work runs, not what it computes. Everything else in the
//! settings (node selectors, affinity, tolerations, pod resources, volumes and mounts,
//! env and envFrom, security context, service account, privileged, `pod_count`,
//! `host_ipc`, `additional_pod_spec_args`, and any field added later) is in the key: an
//! unknown field costs a cache miss, never a wrong hit. `{{run.id}}` and `{{run.name}}`
//! are in the key only as placeholders, so a step that merely names its run can be
//! cached.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use stepstack_core::artifact_store::ArtifactDigest;

/// The version of the key's layout: bump it when what goes into the key changes, so old
/// records stop matching.
const KEY_VERSION: u32 = 1;

/// Settings paths (dot-separated, from the top of the step operator's settings) that do
/// not change a step's result and are left out of its cache key.
pub const IGNORED_SETTINGS: &[&str] = &[
    "job_name_prefix",
    "ttl_seconds_after_finished",
    "active_deadline_seconds",
    "fail_on_container_waiting_reasons",
    "api_request_timeout",
    "max_api_retries",
    "scheduling_timeout",
    "startup_timeout",
    "retry",
    "infrastructure_retry",
    "logs",
    "on_interrupt",
    "pod_startup_timeout",
    "pod_failure_max_retries",
    "pod_failure_retry_delay",
    "pod_failure_backoff",
    "pod_settings.labels",
    "pod_settings.annotations",
    "pod_settings.scheduler_name",
    "pod_settings.image_pull_secrets",
];

/// A cache key, `sha256:<64 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key of arbitrary bytes (for tests and other stores' fixtures).
    pub fn from_bytes(bytes: &[u8]) -> CacheKey {
        let digest = Sha256::digest(bytes);
        CacheKey(format!("sha256:{digest:x}"))
    }

    /// A key as stored, e.g. read back from a database; `None` unless it has the form
    /// `sha256:<64 lowercase hex digits>`.
    pub fn parse(text: &str) -> Option<CacheKey> {
        let hex = text.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| CacheKey(text.to_string()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything that goes into a step's cache key.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct CacheInputs {
    /// The program and its first arguments, as written (placeholders unrendered).
    pub command: Vec<String>,
    /// The further arguments, as written.
    pub args: Vec<String>,
    /// Plain environment variables, as written.
    pub environment: BTreeMap<String, String>,
    /// The names of secret environment variables (their values never enter the key).
    pub secret_names: BTreeSet<String>,
    /// The image, by digest when known.
    pub image: Option<String>,
    /// `local`, or the step operator's flavor.
    pub runner: String,
    /// The generic resource settings (serialized).
    pub resources: Value,
    /// The effective step-operator settings (`Null` for a local step).
    pub settings: Value,
    /// The declared output names.
    pub outputs: Vec<String>,
    /// The content digest of every input, by input name.
    pub inputs: BTreeMap<String, ArtifactDigest>,
}

impl CacheInputs {
    /// The key: a sha256 over a canonical JSON document of the inputs (object keys
    /// sorted, [`IGNORED_SETTINGS`] removed, null fields dropped).
    pub fn key(&self) -> CacheKey {
        let mut settings = self.settings.clone();
        for path in IGNORED_SETTINGS {
            remove_path(&mut settings, path);
        }
        let mut outputs = self.outputs.clone();
        outputs.sort();
        let document = json!({
            "version": KEY_VERSION,
            "command": self.command,
            "args": self.args,
            "environment": self.environment,
            "secret_names": self.secret_names,
            "image": self.image,
            "runner": self.runner,
            "resources": canonical(&self.resources),
            "settings": canonical(&settings),
            "outputs": outputs,
            "inputs": self.inputs.iter().map(|(k, v)| (k.clone(), v.as_str().to_string())).collect::<BTreeMap<_, _>>(),
        });
        CacheKey::from_bytes(canonical(&document).to_string().as_bytes())
    }
}

/// Removes the value at the dot-separated `path`, if present.
fn remove_path(value: &mut Value, path: &str) {
    let mut segments: Vec<&str> = path.split('.').collect();
    let Some(last) = segments.pop() else {
        return;
    };
    let mut current = value;
    for segment in segments {
        match current.get_mut(segment) {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Value::Object(map) = current {
        map.remove(last);
    }
}

/// `value` with object keys sorted and null members and empty objects dropped, so the
/// same settings written in another order, or with a default spelled out as null, give
/// the same key. (serde_json keeps insertion order when another crate in the build turns
/// on `preserve_order`, so the order is made explicit here.)
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, canonical(v)))
                .filter(|(_, v)| !matches!(v, Value::Object(m) if m.is_empty()))
                .collect();
            let mut out = serde_json::Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(text: &str) -> ArtifactDigest {
        format!("sha256:{:x}", Sha256::digest(text.as_bytes()))
            .parse()
            .unwrap()
    }

    fn base() -> CacheInputs {
        CacheInputs {
            command: vec!["python".into(), "train.py".into()],
            args: vec!["{{inputs.data}}".into(), "{{outputs.model}}".into()],
            environment: BTreeMap::from([("MODE".into(), "fast".into())]),
            secret_names: BTreeSet::from(["TOKEN".into()]),
            image: Some("registry.example.com/train@sha256:aa".into()),
            runner: "kubernetes".into(),
            resources: json!({"gpu_count": 1, "memory": "16GB"}),
            settings: json!({
                "pod_count": 1,
                "service_account_name": "trainer",
                "privileged": false,
                "scheduling_timeout": 60,
                "startup_timeout": 600,
                "active_deadline_seconds": 3600,
                "ttl_seconds_after_finished": 60,
                "job_name_prefix": "train",
                "api_request_timeout": 30,
                "max_api_retries": 5,
                "retry": {"max_retries": 2, "delay_seconds": 1},
                "infrastructure_retry": {"max_retries": 2, "delay_seconds": 0},
                "logs": {"tail_lines_on_failure": 10},
                "on_interrupt": "cancel",
                "pod_settings": {
                    "node_selectors": {"pool": "gpu"},
                    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "affinity": {"nodeAffinity": {}},
                    "resources": {"limits": {"memory": "16Gi"}},
                    "labels": {"team": "ml"},
                    "annotations": {"note": "x"},
                    "scheduler_name": "default-scheduler",
                    "image_pull_secrets": ["regcred"],
                    "env": [{"name": "A", "value": "1"}],
                    "volumes": [],
                    "host_ipc": false
                }
            }),
            outputs: vec!["model".into()],
            inputs: BTreeMap::from([("data".into(), digest("data"))]),
        }
    }

    /// A change to the cache inputs.
    type Change = Box<dyn FnOnce(&mut CacheInputs)>;

    /// Applies `change` to a copy of the base inputs.
    fn with(change: impl FnOnce(&mut CacheInputs)) -> CacheKey {
        let mut inputs = base();
        change(&mut inputs);
        inputs.key()
    }

    fn set(path: &str, value: Value) -> impl FnOnce(&mut CacheInputs) {
        let path = path.to_string();
        move |inputs: &mut CacheInputs| {
            let mut current = &mut inputs.settings;
            for segment in path.split('.') {
                current = current
                    .as_object_mut()
                    .unwrap()
                    .entry(segment.to_string())
                    .or_insert(Value::Null);
            }
            *current = value;
        }
    }

    #[test]
    fn the_key_has_the_documented_form_and_is_stable() {
        let key = base().key();
        assert!(CacheKey::parse(key.as_str()).is_some(), "{key}");
        assert_eq!(key, base().key());
        assert!(CacheKey::parse("sha256:xyz").is_none());
    }

    #[test]
    fn every_field_that_can_change_the_result_changes_the_key() {
        let base_key = base().key();
        let changes: Vec<(&str, Change)> = vec![
            ("command", Box::new(|i| i.command[1] = "train2.py".into())),
            ("args", Box::new(|i| i.args.push("--fast".into()))),
            (
                "environment value",
                Box::new(|i| {
                    i.environment.insert("MODE".into(), "slow".into());
                }),
            ),
            (
                "environment name",
                Box::new(|i| {
                    i.environment.insert("OTHER".into(), "fast".into());
                }),
            ),
            (
                "secret name",
                Box::new(|i| {
                    i.secret_names.insert("PASSWORD".into());
                }),
            ),
            (
                "image",
                Box::new(|i| i.image = Some("registry.example.com/train@sha256:bb".into())),
            ),
            ("no image", Box::new(|i| i.image = None)),
            ("runner", Box::new(|i| i.runner = "local".into())),
            (
                "resources",
                Box::new(|i| i.resources = json!({"gpu_count": 2, "memory": "16GB"})),
            ),
            ("outputs", Box::new(|i| i.outputs.push("metrics".into()))),
            (
                "input digest",
                Box::new(|i| {
                    i.inputs.insert("data".into(), digest("other data"));
                }),
            ),
            (
                "input name",
                Box::new(|i| {
                    let d = i.inputs.remove("data").unwrap();
                    i.inputs.insert("dataset".into(), d);
                }),
            ),
            (
                "node selectors",
                Box::new(set("pod_settings.node_selectors.pool", json!("cpu"))),
            ),
            (
                "tolerations",
                Box::new(set("pod_settings.tolerations", json!([]))),
            ),
            (
                "affinity",
                Box::new(set(
                    "pod_settings.affinity",
                    json!({"podAffinity": {"x": 1}}),
                )),
            ),
            (
                "pod resources",
                Box::new(set("pod_settings.resources.limits.memory", json!("32Gi"))),
            ),
            (
                "pod env",
                Box::new(set(
                    "pod_settings.env",
                    json!([{"name": "A", "value": "2"}]),
                )),
            ),
            (
                "volumes",
                Box::new(set(
                    "pod_settings.volumes",
                    json!([{"name": "v", "emptyDir": {}}]),
                )),
            ),
            (
                "host ipc",
                Box::new(set("pod_settings.host_ipc", json!(true))),
            ),
            ("pod count", Box::new(set("pod_count", json!(2)))),
            (
                "service account",
                Box::new(set("service_account_name", json!("other"))),
            ),
            ("privileged", Box::new(set("privileged", json!(true)))),
            (
                "a field added later",
                Box::new(set("future_field", json!(1))),
            ),
        ];
        for (name, change) in changes {
            assert_ne!(with(change), base_key, "{name} must change the key");
        }
    }

    #[test]
    fn settings_that_cannot_change_the_result_leave_the_key_alone() {
        let base_key = base().key();
        let changes: Vec<(&str, Change)> = vec![
            (
                "scheduling timeout",
                Box::new(set("scheduling_timeout", json!(1))),
            ),
            (
                "startup timeout",
                Box::new(set("startup_timeout", json!(1))),
            ),
            (
                "active deadline",
                Box::new(set("active_deadline_seconds", json!(1))),
            ),
            ("ttl", Box::new(set("ttl_seconds_after_finished", json!(1)))),
            (
                "job name prefix",
                Box::new(set("job_name_prefix", json!("other"))),
            ),
            (
                "api timeout",
                Box::new(set("api_request_timeout", json!(1))),
            ),
            ("api retries", Box::new(set("max_api_retries", json!(0)))),
            ("retry", Box::new(set("retry.max_retries", json!(9)))),
            (
                "infrastructure retry",
                Box::new(set("infrastructure_retry", json!({}))),
            ),
            (
                "logs",
                Box::new(set("logs.tail_lines_on_failure", json!(99))),
            ),
            ("on interrupt", Box::new(set("on_interrupt", json!("keep")))),
            (
                "waiting reasons",
                Box::new(set("fail_on_container_waiting_reasons", json!(["X"]))),
            ),
            (
                "labels",
                Box::new(set("pod_settings.labels.team", json!("other"))),
            ),
            (
                "annotations",
                Box::new(set("pod_settings.annotations", json!({}))),
            ),
            (
                "scheduler",
                Box::new(set("pod_settings.scheduler_name", json!("x"))),
            ),
            (
                "pull secrets",
                Box::new(set("pod_settings.image_pull_secrets", json!([]))),
            ),
            ("output order", Box::new(|i| i.outputs.reverse())),
            (
                "a null field",
                Box::new(set("pod_settings.scheduler_x", Value::Null)),
            ),
        ];
        for (name, change) in changes {
            assert_eq!(with(change), base_key, "{name} must not change the key");
        }
        // Key order of the settings document does not matter.
        let mut reordered = base();
        let Value::Object(map) = &reordered.settings else {
            unreachable!()
        };
        let mut entries: Vec<_> = map.clone().into_iter().collect();
        entries.reverse();
        reordered.settings = Value::Object(entries.into_iter().collect());
        assert_eq!(reordered.key(), base_key);
    }
}
