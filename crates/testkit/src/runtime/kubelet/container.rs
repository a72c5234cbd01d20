//! One container's life: image pull, environment, start, wait, restart with backoff.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Container, Pod};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::status::{CState, Terminated};
use super::{
    Kubelet, LOOPBACK, PodWorker, SIMULATE_OOM_ANNOTATION, StoreLookup, env, image, lock, process,
    volumes,
};
use crate::runtime::logs::LogFile;
use crate::runtime::quantity::Resources;
use crate::store::{ResourceKind, now_rfc3339};

fn new_container_id() -> String {
    let a: u128 = rand::random();
    let b: u128 = rand::random();
    format!("containerd://{a:032x}{b:032x}")
}

/// Parses `"500ms"`, `"2s"`, `"1m"` (for the OOM annotation).
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        return None;
    };
    let v: f64 = num.trim().parse().ok()?;
    (0.0..1e7)
        .contains(&v)
        .then(|| Duration::from_secs_f64(v * mul))
}

/// When the OOM simulation applies to this container, how long it runs first.
fn oom_delay(pod: &Pod, container: &Container) -> Option<Duration> {
    let value = pod
        .metadata
        .annotations
        .as_ref()?
        .get(SIMULATE_OOM_ANNOTATION)?
        .trim();
    let has_limit = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .is_some_and(|l| l.contains_key("memory"));
    if !has_limit || value.is_empty() || value == "false" {
        return None;
    }
    if value == "true" {
        return Some(Duration::ZERO);
    }
    if let Some(d) = parse_duration(value) {
        return Some(d);
    }
    value
        .split(',')
        .any(|n| n.trim() == container.name)
        .then_some(Duration::ZERO)
}

pub(super) async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = stop.cancelled() => false,
    }
}

impl Kubelet {
    /// The registry hosts the pod's pull secrets (and its service account's) cover.
    pub(super) fn credential_hosts(&self, w: &PodWorker) -> BTreeSet<String> {
        let spec = w.pod.spec.clone().unwrap_or_default();
        let mut names: Vec<String> = spec
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect();
        let sa = spec
            .service_account_name
            .unwrap_or_else(|| "default".into());
        if let Ok(sa) = self
            .store
            .get(ResourceKind::ServiceAccount, Some(&w.ns), &sa)
        {
            for r in sa
                .get("imagePullSecrets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = r.get("name").and_then(Value::as_str) {
                    names.push(n.to_string());
                }
            }
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut hosts = BTreeSet::new();
        for n in names {
            let Ok(secret) = self.store.get(ResourceKind::Secret, Some(&w.ns), &n) else {
                continue;
            };
            for key in [".dockerconfigjson", ".dockercfg"] {
                if let Some(v) = secret
                    .pointer(&format!("/data/{key}"))
                    .and_then(Value::as_str)
                    && let Ok(bytes) = b64.decode(v)
                {
                    hosts.extend(image::docker_config_hosts(&bytes));
                }
            }
        }
        hosts
    }

    /// Makes the container's image available. `None` when the worker was stopped first.
    pub(super) async fn ensure_image(
        &self,
        w: &PodWorker,
        c: &Container,
        init: bool,
        stop: &CancellationToken,
    ) -> Option<String> {
        let written = c.image.clone().unwrap_or_default();
        let Some(reference) = image::parse(&written) else {
            let msg = image::invalid_name_message(&written);
            self.event(w, "Warning", "InspectFailed", &msg);
            self.event(w, "Warning", "Failed", "Error: InvalidImageName");
            self.set_state(
                w,
                &c.name,
                init,
                CState::waiting("InvalidImageName", Some(msg)),
            );
            stop.cancelled().await;
            return None;
        };
        let image_id = reference.image_id();
        let key = (w.node.clone(), reference.full());
        let present = lock(&self.pulled).contains(&key);
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if reference.tag.as_deref() == Some("latest") {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let images = &self.opts.images;
        if policy == "Never" || (policy == "IfNotPresent" && present) {
            let creds = self.credential_hosts(w);
            if present || image::check_pull(&reference, &written, images, &creds).is_ok() {
                self.event(
                    w,
                    "Normal",
                    "Pulled",
                    &format!("Container image \"{written}\" already present on machine"),
                );
                return Some(image_id);
            }
            let msg =
                format!("Container image \"{written}\" is not present with pull policy of Never");
            self.event(w, "Warning", "ErrImageNeverPull", &msg);
            self.event(w, "Warning", "Failed", "Error: ErrImageNeverPull");
            self.set_state(
                w,
                &c.name,
                init,
                CState::waiting("ErrImageNeverPull", Some(msg)),
            );
            stop.cancelled().await;
            return None;
        }
        let mut backoff = self.opts.image_pull_backoff;
        loop {
            self.event(
                w,
                "Normal",
                "Pulling",
                &format!("Pulling image \"{written}\""),
            );
            let started = Instant::now();
            if !images.pull_delay.is_zero() && !sleep_or_stop(stop, images.pull_delay).await {
                return None;
            }
            let creds = self.credential_hosts(w);
            match image::check_pull(&reference, &written, images, &creds) {
                Ok(()) => {
                    lock(&self.pulled).insert(key);
                    let took = image::go_duration(started.elapsed());
                    self.event(
                        w,
                        "Normal",
                        "Pulled",
                        &format!(
                            "Successfully pulled image \"{written}\" in {took} ({took} including waiting). Image size: 0 bytes."
                        ),
                    );
                    return Some(image_id);
                }
                Err(msg) => {
                    self.event(
                        w,
                        "Warning",
                        "Failed",
                        &format!("Failed to pull image \"{written}\": {msg}"),
                    );
                    self.event(w, "Warning", "Failed", "Error: ErrImagePull");
                    self.set_state(
                        w,
                        &c.name,
                        init,
                        CState::waiting("ErrImagePull", Some(msg.clone())),
                    );
                    if !sleep_or_stop(stop, backoff).await {
                        return None;
                    }
                    self.event(
                        w,
                        "Normal",
                        "BackOff",
                        &format!("Back-off pulling image \"{written}\""),
                    );
                    self.event(w, "Warning", "Failed", "Error: ImagePullBackOff");
                    self.set_state(
                        w,
                        &c.name,
                        init,
                        CState::waiting(
                            "ImagePullBackOff",
                            Some(format!(
                                "Back-off pulling image \"{written}\": ErrImagePull: {msg}"
                            )),
                        ),
                    );
                    if !sleep_or_stop(stop, backoff).await {
                        return None;
                    }
                    backoff = backoff.saturating_mul(2).min(self.opts.max_backoff);
                }
            }
        }
    }

    /// The environment of a container process, or the `CreateContainerConfigError` message.
    pub(super) fn container_env(
        &self,
        w: &PodWorker,
        c: &Container,
    ) -> Result<Vec<(String, String)>, String> {
        let lookup = StoreLookup {
            store: &self.store,
            ns: &w.ns,
        };
        let none = Resources::default();
        let alloc = self.node_alloc.get(&w.node).unwrap_or(&none);
        let resolved = env::resolve(&w.pod, c, &lookup, LOOPBACK, LOOPBACK, alloc)?;
        let spec = w.pod.spec.as_ref();
        let hostname = spec
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| w.name.clone());
        let tm_path = volumes::under_root(
            &w.root,
            c.termination_message_path
                .as_deref()
                .unwrap_or("/dev/termination-log"),
        );
        let mut out: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| {
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
                }),
            ),
            ("HOSTNAME".into(), hostname),
            ("HOME".into(), w.root.display().to_string()),
            ("TESTKIT_POD_ROOT".into(), w.root.display().to_string()),
            (
                "TESTKIT_TERMINATION_MESSAGE_PATH".into(),
                tm_path.display().to_string(),
            ),
        ];
        for (k, v) in &self.opts.container_env {
            out.push((k.clone(), v.clone()));
        }
        out.extend(resolved);
        Ok(out)
    }

    /// Runs one container until it is done for good (per the restart policy) or the
    /// worker stops. Returns whether its last instance exited 0.
    pub(super) async fn run_container(
        &self,
        w: &Arc<PodWorker>,
        c: &Container,
        init: bool,
        policy: &str,
        volumes: &BTreeMap<String, PathBuf>,
        stop: &CancellationToken,
    ) -> bool {
        let mut crash_backoff = self.opts.crash_loop_backoff;
        let mut cfg = self.config_gen.subscribe();
        loop {
            if stop.is_cancelled() {
                return false;
            }
            let Some(image_id) = self.ensure_image(w, c, init, stop).await else {
                return false;
            };
            {
                let mut rec = lock(&w.record);
                if let Some(r) = rec.container_mut(&c.name, init) {
                    r.image_id = image_id;
                }
            }
            let env = match self
                .container_env(w, c)
                .and_then(|e| volumes::mount(c, &w.root, volumes).map(|()| e))
            {
                Ok(env) => env,
                Err(msg) => {
                    self.event(w, "Warning", "Failed", &format!("Error: {msg}"));
                    self.set_state(
                        w,
                        &c.name,
                        init,
                        CState::waiting("CreateContainerConfigError", Some(msg)),
                    );
                    tokio::select! {
                        _ = cfg.changed() => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stop.cancelled() => return false,
                    }
                    continue;
                }
            };
            let exit_code = self.run_instance(w, c, init, env, stop).await;
            if stop.is_cancelled() {
                return exit_code == 0;
            }
            let restart = match policy {
                "Always" => true,
                "OnFailure" => exit_code != 0,
                _ => false,
            };
            if !restart {
                return exit_code == 0;
            }
            let message = format!(
                "back-off {} restarting failed container={} pod={}_{}({})",
                image::go_duration(crash_backoff),
                c.name,
                w.name,
                w.ns,
                w.uid
            );
            {
                let mut rec = lock(&w.record);
                if let Some(r) = rec.container_mut(&c.name, init) {
                    if let CState::Terminated(t) = &r.state {
                        r.last = Some(t.clone());
                    }
                    r.restart_count += 1;
                    r.state = CState::waiting("CrashLoopBackOff", Some(message));
                }
            }
            self.publish(w);
            self.event(
                w,
                "Warning",
                "BackOff",
                &format!(
                    "Back-off restarting failed container {} in pod {}_{}({})",
                    c.name, w.name, w.ns, w.uid
                ),
            );
            if !sleep_or_stop(stop, crash_backoff).await {
                return false;
            }
            crash_backoff = crash_backoff.saturating_mul(2).min(self.opts.max_backoff);
        }
    }

    /// Starts one instance of the container and waits for it; returns its exit code.
    pub(super) async fn run_instance(
        &self,
        w: &Arc<PodWorker>,
        c: &Container,
        init: bool,
        env: Vec<(String, String)>,
        stop: &CancellationToken,
    ) -> i32 {
        let container_id = new_container_id();
        let restart_count = {
            let rec = lock(&w.record);
            let list = if init { &rec.init } else { &rec.containers };
            list.iter()
                .find(|r| r.name == c.name)
                .map_or(0, |r| r.restart_count)
        };
        let log_path = w
            .root
            .join(".logs")
            .join(&c.name)
            .join(format!("{restart_count}.log"));
        let log = match LogFile::create(&log_path) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create a container log");
                return 1;
            }
        };
        if let Some(pl) = self.pod_logs(&w.ns, &w.name) {
            let mut map = lock(&pl.containers);
            let entry = map.entry(c.name.clone()).or_default();
            if let Some(old) = entry.previous.take() {
                let _ = std::fs::remove_file(old.path());
            }
            entry.previous = entry.current.take();
            entry.current = Some(log.clone());
        }
        // argv with $(VAR) expansion from the container's env.
        let vars: BTreeMap<String, String> = env.iter().cloned().collect();
        let mut argv: Vec<String> = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .map(|a| env::expand(a, &vars))
            .collect();
        if argv.is_empty() {
            argv = vec!["sleep".into(), "infinity".into()];
        }
        let cwd = match c.working_dir.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => {
                let p = volumes::under_root(&w.root, d);
                let _ = std::fs::create_dir_all(&p);
                p
            }
            None => w.root.clone(),
        };
        let tm_path = volumes::under_root(
            &w.root,
            c.termination_message_path
                .as_deref()
                .unwrap_or("/dev/termination-log"),
        );
        if let Some(p) = tm_path.parent() {
            let _ = std::fs::create_dir_all(p);
        }
        let _ = std::fs::remove_file(&tm_path);
        self.event(
            w,
            "Normal",
            "Created",
            &format!("Created container: {}", c.name),
        );
        let started_at = now_rfc3339();
        // Register before spawning so a concurrent stop sees the process.
        let running = {
            let mut procs = lock(&w.procs);
            if stop.is_cancelled() {
                log.close();
                return 1;
            }
            match process::spawn(&argv, &env, &cwd, &log) {
                Ok(r) => {
                    procs.insert(c.name.clone(), r.pgid);
                    Ok(r)
                }
                Err(msg) => Err(msg),
            }
        };
        let running = match running {
            Ok(r) => r,
            Err(msg) => {
                log.close();
                self.event(w, "Warning", "Failed", &format!("Error: {msg}"));
                self.set_state(
                    w,
                    &c.name,
                    init,
                    CState::Terminated(Terminated {
                        exit_code: 128,
                        signal: None,
                        reason: "StartError".into(),
                        message: Some(msg),
                        started_at: Some("1970-01-01T00:00:00Z".into()),
                        finished_at: now_rfc3339(),
                        container_id: Some(container_id.clone()),
                    }),
                );
                self.set_container_id(w, &c.name, init, &container_id);
                return 128;
            }
        };
        let pgid = running.pgid;
        {
            let mut rec = lock(&w.record);
            if let Some(r) = rec.container_mut(&c.name, init) {
                r.container_id = Some(container_id.clone());
                r.started_once = true;
                r.state = CState::Running {
                    started_at: started_at.clone(),
                };
            }
        }
        w.sandbox_changed.notify_waiters();
        self.publish(w);
        self.event(
            w,
            "Normal",
            "Started",
            &format!("Started container {}", c.name),
        );
        let oom = if init { None } else { oom_delay(&w.pod, c) };
        let oom_task = oom.map(|delay| {
            let w = w.clone();
            let name = c.name.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                lock(&w.oom_killed).insert(name);
                process::signal_group(pgid, Signal::SIGKILL);
            })
        });
        let exit = running.wait().await;
        if let Some(t) = oom_task {
            t.abort();
        }
        lock(&w.procs).remove(&c.name);
        w.procs_changed.notify_waiters();
        let oom_killed = lock(&w.oom_killed).remove(&c.name) && exit.signal == Some(9);
        let reason = if oom_killed {
            "OOMKilled"
        } else if exit.code == 0 {
            "Completed"
        } else {
            "Error"
        };
        let mut message = std::fs::read(&tm_path)
            .ok()
            .map(|mut b| {
                b.truncate(4096);
                String::from_utf8_lossy(&b).into_owned()
            })
            .filter(|m| !m.is_empty());
        if message.is_none()
            && exit.code != 0
            && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            message = Some(log.tail_text(80, 2048)).filter(|m| !m.is_empty());
        }
        self.set_state(
            w,
            &c.name,
            init,
            CState::Terminated(Terminated {
                exit_code: exit.code,
                signal: None,
                reason: reason.into(),
                message,
                started_at: Some(started_at),
                finished_at: now_rfc3339(),
                container_id: Some(container_id),
            }),
        );
        exit.code
    }

    pub(super) fn set_container_id(&self, w: &PodWorker, name: &str, init: bool, id: &str) {
        let mut rec = lock(&w.record);
        if let Some(r) = rec.container_mut(name, init) {
            r.container_id = Some(id.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn oom_rule() {
        let pod = |ann: &str| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p", "annotations": {SIMULATE_OOM_ANNOTATION: ann}},
                "spec": {"containers": []}}),
            )
            .unwrap()
        };
        let c = |limit: bool, name: &str| -> Container {
            let res = if limit {
                json!({"limits": {"memory": "64Mi"}})
            } else {
                json!({})
            };
            serde_json::from_value(json!({"name": name, "resources": res})).unwrap()
        };
        assert_eq!(
            oom_delay(&pod("true"), &c(true, "main")),
            Some(Duration::ZERO)
        );
        assert_eq!(oom_delay(&pod("true"), &c(false, "main")), None);
        assert_eq!(oom_delay(&pod("false"), &c(true, "main")), None);
        assert_eq!(
            oom_delay(&pod("250ms"), &c(true, "main")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            oom_delay(&pod("2s"), &c(true, "main")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            oom_delay(&pod("main,side"), &c(true, "side")),
            Some(Duration::ZERO)
        );
        assert_eq!(oom_delay(&pod("main"), &c(true, "other")), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("xs"), None);
    }
}
