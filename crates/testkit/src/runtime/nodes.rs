//! Node configuration (`RuntimeOptions.nodes`, the binary's `--nodes FILE`) and the Node
//! objects built from it.
//!
//! # The `--nodes` file
//!
//! YAML (or JSON), either a list of nodes or a map with a `nodes` list:
//!
//! ```yaml
//! nodes:
//!   - name: node-1          # required
//!     cpu: "8"              # allocatable CPU (quantity), default "8"
//!     memory: 32Gi          # allocatable memory (quantity), default "32Gi"
//!     pods: 110             # max pods, default 110
//!   - name: gpu-1
//!     labels: { gpu-type: a100 }
//!     taints:
//!       - { key: nvidia.com/gpu, value: present, effect: NoSchedule }
//!     gpus: 4               # allocatable nvidia.com/gpu, default 0
//!     resources:            # any other extended resources
//!       example.com/fpga: "2"
//! ```
//!
//! Every node also carries the labels `kubernetes.io/hostname=<name>`,
//! `kubernetes.io/os=linux` and `kubernetes.io/arch=amd64`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One node of the emulated cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    /// The node name.
    pub name: String,
    /// Extra labels (on top of `kubernetes.io/hostname`, `kubernetes.io/os`, `kubernetes.io/arch`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Taints (`NoSchedule`, `PreferNoSchedule`, `NoExecute`).
    #[serde(default)]
    pub taints: Vec<TaintConfig>,
    /// Allocatable CPU as a quantity (`"8"`, `"7500m"`).
    #[serde(default = "default_cpu", deserialize_with = "quantity_text")]
    pub cpu: String,
    /// Allocatable memory as a quantity (`"32Gi"`).
    #[serde(default = "default_memory", deserialize_with = "quantity_text")]
    pub memory: String,
    /// Allocatable `nvidia.com/gpu`.
    #[serde(default)]
    pub gpus: u32,
    /// Maximum number of pods.
    #[serde(default = "default_pods")]
    pub pods: u32,
    /// Other extended resources (`example.com/fpga: "2"`).
    #[serde(default)]
    pub resources: BTreeMap<String, String>,
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaintConfig {
    /// Taint key.
    pub key: String,
    /// Taint value (may be empty).
    #[serde(default)]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

fn default_cpu() -> String {
    "8".into()
}
fn default_memory() -> String {
    "32Gi".into()
}
fn default_pods() -> u32 {
    110
}

/// Accepts `cpu: 8` as well as `cpu: "8"`.
fn quantity_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        I(i64),
        F(f64),
    }
    Ok(match Text::deserialize(d)? {
        Text::S(s) => s,
        Text::I(i) => i.to_string(),
        Text::F(f) => f.to_string(),
    })
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self::new("node-1")
    }
}

impl NodeConfig {
    /// A plain node: 8 CPUs, 32Gi memory, 110 pods, no GPU, no taints.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            cpu: default_cpu(),
            memory: default_memory(),
            gpus: 0,
            pods: default_pods(),
            resources: BTreeMap::new(),
        }
    }

    /// A GPU node as cloud providers set them up: `gpus` × `nvidia.com/gpu`, the label
    /// `gpu-type=<gpu_type>` and the taint `nvidia.com/gpu=present:NoSchedule`.
    pub fn gpu(name: impl Into<String>, gpu_type: impl Into<String>, gpus: u32) -> Self {
        let mut n = Self::new(name);
        n.labels.insert("gpu-type".into(), gpu_type.into());
        n.taints.push(TaintConfig {
            key: "nvidia.com/gpu".into(),
            value: "present".into(),
            effect: "NoSchedule".into(),
        });
        n.gpus = gpus;
        n
    }

    /// Adds a label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a taint.
    pub fn with_taint(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        effect: impl Into<String>,
    ) -> Self {
        self.taints.push(TaintConfig {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        });
        self
    }

    /// Sets allocatable CPU and memory (quantities).
    pub fn with_capacity(mut self, cpu: impl Into<String>, memory: impl Into<String>) -> Self {
        self.cpu = cpu.into();
        self.memory = memory.into();
        self
    }

    /// Parses a `--nodes` file's text (YAML or JSON; a list, or a map with `nodes`).
    pub fn parse_list(text: &str) -> Result<Vec<NodeConfig>, NodesFileError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum File {
            List(Vec<NodeConfig>),
            Map { nodes: Vec<NodeConfig> },
        }
        let file: File =
            serde_norway::from_str(text).map_err(|e| NodesFileError::Parse(e.to_string()))?;
        let nodes = match file {
            File::List(n) | File::Map { nodes: n } => n,
        };
        let mut seen = std::collections::BTreeSet::new();
        for n in &nodes {
            if n.name.is_empty() {
                return Err(NodesFileError::Invalid("a node has an empty name".into()));
            }
            if !seen.insert(n.name.clone()) {
                return Err(NodesFileError::Invalid(format!(
                    "node {:?} is listed twice",
                    n.name
                )));
            }
            for q in [&n.cpu, &n.memory] {
                if super::quantity::parse_milli(q).is_none() {
                    return Err(NodesFileError::Invalid(format!(
                        "node {:?}: {q:?} is not a quantity",
                        n.name
                    )));
                }
            }
            for t in &n.taints {
                if !matches!(
                    t.effect.as_str(),
                    "NoSchedule" | "PreferNoSchedule" | "NoExecute"
                ) {
                    return Err(NodesFileError::Invalid(format!(
                        "node {:?}: taint effect {:?} is not NoSchedule, PreferNoSchedule or NoExecute",
                        n.name, t.effect
                    )));
                }
            }
        }
        Ok(nodes)
    }

    /// Reads and parses a `--nodes` file.
    pub fn load_file(path: &Path) -> Result<Vec<NodeConfig>, NodesFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NodesFileError::Read(path.display().to_string(), e.to_string()))?;
        Self::parse_list(&text)
    }

    /// The allocatable (and capacity) resource list of this node.
    pub(crate) fn allocatable(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("cpu".to_string(), self.cpu.clone());
        m.insert("memory".to_string(), self.memory.clone());
        m.insert("pods".to_string(), self.pods.to_string());
        m.insert("ephemeral-storage".to_string(), "100Gi".to_string());
        if self.gpus > 0 {
            m.insert("nvidia.com/gpu".to_string(), self.gpus.to_string());
        }
        for (k, v) in &self.resources {
            m.insert(k.clone(), v.clone());
        }
        m
    }

    /// The Node object (JSON) for this configuration, Ready.
    pub(crate) fn to_object(&self, now: &str) -> Value {
        let mut labels = BTreeMap::new();
        labels.insert("kubernetes.io/hostname".to_string(), self.name.clone());
        labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
        labels.insert("kubernetes.io/arch".to_string(), "amd64".to_string());
        labels.insert("beta.kubernetes.io/os".to_string(), "linux".to_string());
        labels.insert("beta.kubernetes.io/arch".to_string(), "amd64".to_string());
        for (k, v) in &self.labels {
            labels.insert(k.clone(), v.clone());
        }
        let taints: Vec<Value> = self
            .taints
            .iter()
            .map(|t| {
                let mut o = json!({"key": t.key, "effect": t.effect});
                if !t.value.is_empty() {
                    o["value"] = json!(t.value);
                }
                o
            })
            .collect();
        let alloc = self.allocatable();
        let mut spec = json!({});
        if !taints.is_empty() {
            spec["taints"] = Value::Array(taints);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": spec,
            "status": {
                "capacity": alloc,
                "allocatable": alloc,
                "conditions": node_conditions(true, now),
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.name},
                ],
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "osImage": "stepstack testkit",
                    "kernelVersion": "",
                    "kubeletVersion": "v1.33.0",
                    "kubeProxyVersion": "v1.33.0",
                    "containerRuntimeVersion": "testkit://process",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            },
        })
    }
}

/// The node conditions the kubelet reports; `ready=false` gives the node lifecycle
/// controller's `Unknown` state after the kubelet stopped reporting.
pub(crate) fn node_conditions(ready: bool, now: &str) -> Value {
    let healthy = |t: &str, reason: &str, message: &str| {
        json!({"type": t, "status": if ready { "False" } else { "Unknown" },
            "reason": if ready { reason } else { "NodeStatusUnknown" },
            "message": if ready { message } else { "Kubelet stopped posting node status." },
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!([
        healthy(
            "MemoryPressure",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        healthy(
            "DiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        healthy(
            "PIDPressure",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        {"type": "Ready", "status": if ready { "True" } else { "Unknown" },
         "reason": if ready { "KubeletReady" } else { "NodeStatusUnknown" },
         "message": if ready { "kubelet is posting ready status" } else { "Kubelet stopped posting node status." },
         "lastHeartbeatTime": now, "lastTransitionTime": now},
    ])
}

/// The taints the node lifecycle controller puts on an unreachable node.
pub(crate) fn unreachable_taints(now: &str) -> Vec<Value> {
    vec![
        json!({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": now}),
        json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": now}),
    ]
}

/// An unusable `--nodes` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodesFileError {
    /// The file could not be read.
    #[error("cannot read nodes file {0}: {1}")]
    Read(String, String),
    /// The file is not valid YAML/JSON of the expected shape.
    #[error("invalid nodes file: {0}")]
    Parse(String),
    /// The file parsed but describes an impossible node set.
    #[error("invalid nodes file: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_map_form_with_gpu_node() {
        let text = r#"
nodes:
  - name: node-1
  - name: gpu-1
    cpu: 32
    memory: 256Gi
    gpus: 4
    labels: { gpu-type: a100 }
    taints:
      - { key: nvidia.com/gpu, value: present, effect: NoSchedule }
"#;
        let nodes = NodeConfig::parse_list(text).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0], NodeConfig::new("node-1"));
        assert_eq!(nodes[1].cpu, "32");
        assert_eq!(nodes[1].gpus, 4);
        let obj = nodes[1].to_object("2026-01-01T00:00:00Z");
        assert_eq!(obj["status"]["allocatable"]["nvidia.com/gpu"], "4");
        assert_eq!(obj["metadata"]["labels"]["gpu-type"], "a100");
        assert_eq!(obj["spec"]["taints"][0]["value"], "present");
    }

    #[test]
    fn parses_list_form_and_rejects_bad_input() {
        let nodes = NodeConfig::parse_list("- name: a\n- name: b\n").unwrap();
        assert_eq!(nodes.len(), 2);
        assert!(NodeConfig::parse_list("- name: a\n- name: a\n").is_err());
        assert!(NodeConfig::parse_list("- name: a\n  cpu: lots\n").is_err());
        assert!(NodeConfig::parse_list("- name: a\n  colour: red\n").is_err());
        assert!(
            NodeConfig::parse_list("- name: a\n  taints: [{key: k, effect: Sometimes}]\n").is_err()
        );
        assert!(NodeConfig::parse_list(": : :").is_err());
    }

    #[test]
    fn gpu_constructor_matches_cloud_setup() {
        let n = NodeConfig::gpu("gpu-1", "a100", 4);
        assert_eq!(n.labels["gpu-type"], "a100");
        assert_eq!(n.taints[0].key, "nvidia.com/gpu");
        assert_eq!(n.allocatable()["nvidia.com/gpu"], "4");
    }
}
