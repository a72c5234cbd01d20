//! Throughput and watch-latency benchmark of the emulated API server:
//! `cargo bench -p stepstack-testkit --bench api`.
//!
//! Prints simple GET requests per second (kube-rs, 16 concurrent tasks) and the median
//! and p99 delay from a create returning to the watch event arriving.

#![allow(clippy::print_stdout, missing_docs)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use stepstack_testkit::{Cluster, ClusterOptions};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let cluster = Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster");
    let client = cluster.client().await.expect("client");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();

    let total = 5_000usize;
    let tasks = 16usize;
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let cms = cms.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..total / tasks {
                cms.get("bench").await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "GET configmap: {} requests in {secs:.2}s = {:.0} req/s",
        total / tasks * tasks,
        (total / tasks * tasks) as f64 / secs
    );

    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let mut delays = Vec::new();
    for i in 0..200 {
        let cm: ConfigMap =
            serde_json::from_value(serde_json::json!({"metadata": {"name": format!("w{i}")}}))
                .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        let t = Instant::now();
        loop {
            match stream.next().await {
                Some(Ok(WatchEvent::Added(o)))
                    if o.metadata.name.as_deref() == Some(&format!("w{i}")) =>
                {
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("watch ended: {other:?}"),
            }
        }
        delays.push(t.elapsed());
    }
    delays.sort();
    let p = |q: f64| delays[((delays.len() as f64 - 1.0) * q) as usize];
    println!(
        "watch delivery after create returned: median {:?}, p99 {:?}, max {:?}",
        p(0.5),
        p(0.99),
        delays.last().copied().unwrap_or(Duration::ZERO)
    );
    cluster.shutdown().await;
}
