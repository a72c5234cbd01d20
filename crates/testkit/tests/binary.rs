//! The `stepstack-testkit serve` binary: one ready line, a working kubeconfig, and a
//! clean exit on SIGTERM.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn serve_prints_ready_line_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kc.yaml");
    let nodes = dir.path().join("nodes.yaml");
    std::fs::write(
        &nodes,
        "nodes:\n  - name: alpha\n  - name: beta\n    gpus: 2\n",
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stepstack-testkit"))
        .arg("serve")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--nodes")
        .arg(&nodes)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("ready line in time")
        .unwrap()
        .expect("a ready line");
    let rest = line
        .strip_prefix("ready https://127.0.0.1:")
        .expect("ready line format");
    let (port, kc) = rest.split_once(' ').unwrap();
    assert!(port.parse::<u16>().is_ok());
    assert_eq!(kc, format!("kubeconfig={}", kubeconfig.display()));

    let yaml = std::fs::read_to_string(&kubeconfig).unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let nss = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        nss.items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("default"))
    );
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<_> = nodes
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["alpha", "beta"]);

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        lines.next_line().await.unwrap().is_none(),
        "exactly one line on stdout"
    );
}
