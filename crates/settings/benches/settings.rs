//! Micro-benchmarks: the seed's settings from YAML to a validated Job manifest, and the
//! name and label sanitisation every launch does.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use stepstack_settings::{LoadedDocument, ManifestInput, build_job, load_str, parse_settings};

const SEED_YAML: &str = include_str!("../tests/fixtures/seed-settings.yaml");

fn launch() -> ManifestInput {
    ManifestInput {
        pipeline_name: "my_pipeline".into(),
        run_name: "my_pipeline-2024_05_01-12_00_00_123456".into(),
        run_id: "6f1c2d3e-0000-4000-8000-000000000001".into(),
        step_name: "trainer".into(),
        step_run_id: "6f1c2d3e-0000-4000-8000-0000000000aa".into(),
        namespace: "ml".into(),
        image: "registry.example.com/ml/train:1.0".into(),
        command: vec!["python".into(), "train.py".into()],
        ..Default::default()
    }
}

fn settings_to_manifest(c: &mut Criterion) {
    let input = launch();
    c.bench_function("seed settings: load + validate + build Job", |b| {
        b.iter(|| {
            let LoadedDocument::Settings(value) = load_str(
                black_box(SEED_YAML),
                stepstack_settings::Format::Yaml,
                "seed",
            )
            .expect("the seed loads") else {
                unreachable!("the seed is a settings document")
            };
            let settings = parse_settings(&value, "").expect("the seed is valid");
            build_job(&settings, &input).expect("the seed builds")
        })
    });
}

fn sanitisation(c: &mut Criterion) {
    c.bench_function("sanitize_label_value", |b| {
        b.iter(|| {
            stepstack_settings::sanitize_label_value(black_box(
                "Train Model (v2) ünïcode_pipeline-2024_05_01",
            ))
        })
    });
    c.bench_function("sanitize_label", |b| {
        b.iter(|| {
            stepstack_settings::sanitize_label(black_box(
                "MyPrefix-0a1b2c3d-Train Model!-My Pipeline-step-operator",
            ))
        })
    });
}

criterion_group!(benches, settings_to_manifest, sanitisation);
criterion_main!(benches);
