//! The floor: a minimal hand-written kube-rs program that creates a Job, waits for it
//! with one watch and deletes it.

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, PostParams};
use kube_runtime::watcher;

use crate::env::{IMAGE, NAMESPACE};

/// Milliseconds of one create → complete → delete cycle of Job `baseline-{i}`.
pub(crate) async fn launch(client: &kube::Client, i: usize) -> anyhow::Result<f64> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    {
        let name = format!("baseline-{i}");
        let job: Job = serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 0,
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": IMAGE, "command": ["true"]}]
                }}
            }
        }))?;
        let start = Instant::now();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut events = watcher(jobs.clone(), config).boxed();
        jobs.create(&PostParams::default(), &job).await?;
        while let Some(event) = events.try_next().await? {
            let done = match event {
                watcher::Event::Apply(job) | watcher::Event::InitApply(job) => is_finished(&job),
                _ => false,
            };
            if done {
                break;
            }
        }
        jobs.delete(&name, &DeleteParams::background()).await?;
        Ok(start.elapsed().as_secs_f64() * 1000.0)
    }
}

fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}
