//! A step's resource settings reach its Job as written: the launch carries the one
//! `ResourceSettings` type, so no field (the GPU vendor once) is lost on the way.

mod common;

use common::Cli;

#[test]
fn the_gpu_vendor_of_a_run_configuration_reaches_the_job() {
    let cli = Cli::new();
    cli.ok([
        "step-operator",
        "register",
        "k8s",
        "--flavor",
        "kubernetes",
        "--kubernetes_namespace=ml",
    ]);
    cli.ok(["stack", "register", "s", "-s", "k8s", "--set"]);
    let file = cli.base().join("run.yaml");
    std::fs::write(
        &file,
        "steps:\n  trainer:\n    settings:\n      resources: {cpu_count: 2, gpu_count: 1, memory: 4GB, gpu_vendor: amd}\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let out = cli.ok([
        "step",
        "preview",
        "trainer",
        "--settings",
        &file,
        "-o",
        "json",
        "--",
        "true",
    ]);
    let preview: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let text = preview.to_string();
    assert!(text.contains("\"amd.com/gpu\":\"1\""), "{text}");
    assert!(!text.contains("nvidia.com/gpu"), "{text}");
    assert!(text.contains("\"cpu\":\"2\""), "{text}");
    assert!(text.contains("\"memory\":\"4G\""), "{text}");
}
