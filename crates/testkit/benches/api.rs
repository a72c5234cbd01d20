//! Criterion benchmarks of the emulated API server (`cargo bench -p stepstack-testkit
//! --bench api`), folded into `cargo xtask bench`'s report as its "Emulator" section:
//!
//! - one GET of a ConfigMap through kube-rs (request latency);
//! - 16 GETs at once (one iteration = 16 requests: the server's throughput);
//! - the delay from a create returning to its watch event arriving.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use stepstack_testkit::{Cluster, ClusterOptions};

/// Requests in flight in the concurrent benchmark.
const CONCURRENT: usize = 16;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
        .expect("a valid ConfigMap")
}

fn emulator(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (cluster, cms) = runtime.block_on(async {
        let cluster = Cluster::start(ClusterOptions::default())
            .await
            .expect("the emulated cluster starts");
        let client = cluster.client().await.expect("a client");
        let cms: Api<ConfigMap> = Api::namespaced(client, "default");
        cms.create(&PostParams::default(), &config_map("bench"))
            .await
            .expect("create");
        (cluster, cms)
    });

    let mut group = c.benchmark_group("emulator");
    group.bench_function("GET configmap (kube-rs)", |b| {
        b.iter(|| runtime.block_on(async { black_box(cms.get("bench").await.expect("get")) }))
    });
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function(format!("{CONCURRENT} GETs in flight"), |b| {
        b.iter(|| {
            runtime.block_on(async {
                let gets = (0..CONCURRENT).map(|_| cms.get("bench"));
                for got in join_all(gets).await {
                    black_box(got.expect("get"));
                }
            })
        })
    });
    group.throughput(Throughput::Elements(1));

    // Watch delivery: each iteration creates a ConfigMap and waits for its ADDED event.
    let mut stream = runtime.block_on(async {
        let rv = cms
            .list(&ListParams::default())
            .await
            .expect("list")
            .metadata
            .resource_version
            .expect("a list resourceVersion");
        cms.watch(&WatchParams::default(), &rv)
            .await
            .expect("watch")
            .boxed()
    });
    let mut next = 0u64;
    group.bench_function("create returned → watch event", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    next += 1;
                    let name = format!("w{next}");
                    cms.create(&PostParams::default(), &config_map(&name))
                        .await
                        .expect("create");
                    let created = Instant::now();
                    loop {
                        match stream.next().await {
                            Some(Ok(WatchEvent::Added(o)))
                                if o.metadata.name.as_deref() == Some(name.as_str()) =>
                            {
                                break;
                            }
                            Some(Ok(_)) => {}
                            other => panic!("the watch ended: {other:?}"),
                        }
                    }
                    total += created.elapsed();
                }
                total
            })
        })
    });
    group.finish();
    drop(stream);
    runtime.block_on(cluster.shutdown());
}

criterion_group!(benches, emulator);
criterion_main!(benches);
