//! Resource settings (`cpu_count`, `gpu_count`, `memory`) translated into container
//! requests and limits, and the default memory request.
//!
//! ZenML leaves `ResourceSettings` untranslated for step operators and always adds a
//! `400Mi` memory request, which breaks pods whose memory limit is lower. Here the
//! resource settings become requests and limits, explicit `pod_settings.resources`
//! values win, and the default request never exceeds a user memory limit.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::{memory_to_quantity, parse_quantity};

/// The memory request added when the user set none.
pub const DEFAULT_MEMORY_REQUEST: &str = "400Mi";

// One type for resources, shared with the step launch (`stepstack_core::StepLaunch`
// carries it unchanged from the settings to the step operator).
pub use stepstack_core::{GpuVendor, ResourceSettings};

/// A resource setting that cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// `memory` is neither a ZenML memory string nor a Kubernetes quantity.
    #[error("resources.memory: `{value}` {reason}; use e.g. 4GB, 512MiB or 4Gi")]
    Memory {
        /// The value given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `cpu_count` is negative or not finite.
    #[error("resources.cpu_count: {value} is not a positive number of cores")]
    Cpu {
        /// The value given.
        value: String,
    },
}

fn cpu_quantity(cores: f64) -> String {
    let millis = (cores * 1000.0).round() as u64;
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Sets requests and limits from `settings`, keeping every value the user already set
/// explicitly in `resources`. CPU and memory become both request and limit; GPUs become
/// request and limit of the vendor's extended resource.
pub fn apply_resources(
    settings: &ResourceSettings,
    resources: &mut ResourceRequirements,
) -> Result<(), ResourceError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(cores) = settings.cpu_count {
        if !cores.is_finite() || cores <= 0.0 {
            return Err(ResourceError::Cpu {
                value: cores.to_string(),
            });
        }
        pairs.push(("cpu".into(), cpu_quantity(cores)));
    }
    if let Some(memory) = &settings.memory {
        let q = memory_to_quantity(memory).map_err(|e| ResourceError::Memory {
            value: memory.clone(),
            reason: e.to_string(),
        })?;
        pairs.push(("memory".into(), q));
    }
    if let Some(gpus) = settings.gpu_count.filter(|g| *g > 0) {
        pairs.push((settings.gpu_vendor.resource_name().into(), gpus.to_string()));
    }
    for (name, value) in pairs {
        let requests = resources.requests.get_or_insert_with(BTreeMap::new);
        requests
            .entry(name.clone())
            .or_insert_with(|| Quantity(value.clone()));
        let limits = resources.limits.get_or_insert_with(BTreeMap::new);
        limits.entry(name).or_insert(Quantity(value));
    }
    Ok(())
}

/// Adds the default memory request ([`DEFAULT_MEMORY_REQUEST`]) when the user set none.
/// If the user's memory limit is lower than the default, the limit is used as the
/// request instead, so the pod stays valid (ZenML fault 7).
pub fn apply_default_memory_request(resources: &mut ResourceRequirements) {
    if resources
        .requests
        .as_ref()
        .is_some_and(|r| r.contains_key("memory"))
    {
        return;
    }
    let default = parse_quantity(DEFAULT_MEMORY_REQUEST).map(|q| q.value());
    let limit = resources
        .limits
        .as_ref()
        .and_then(|l| l.get("memory"))
        .cloned();
    let request = match (limit, default) {
        (Some(limit), Ok(default))
            if parse_quantity(&limit.0).is_ok_and(|l| l.value() < default) =>
        {
            limit
        }
        _ => Quantity(DEFAULT_MEMORY_REQUEST.to_string()),
    };
    resources
        .requests
        .get_or_insert_with(BTreeMap::new)
        .insert("memory".into(), request);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn resource_settings_become_requests_and_limits() {
        let settings = ResourceSettings {
            cpu_count: Some(1.5),
            gpu_count: Some(2),
            memory: Some("4GB".into()),
            gpu_vendor: GpuVendor::Amd,
        };
        let mut r = ResourceRequirements::default();
        apply_resources(&settings, &mut r).unwrap();
        let requests = r.requests.unwrap();
        let limits = r.limits.unwrap();
        assert_eq!(requests["cpu"], q("1500m"));
        assert_eq!(limits["cpu"], q("1500m"));
        assert_eq!(requests["memory"], q("4G"));
        assert_eq!(limits["amd.com/gpu"], q("2"));
        assert_eq!(requests["amd.com/gpu"], q("2"));
    }

    #[test]
    fn explicit_pod_resources_win() {
        let settings = ResourceSettings {
            cpu_count: Some(2.0),
            ..Default::default()
        };
        let mut r = ResourceRequirements {
            limits: Some([("cpu".to_string(), q("4"))].into()),
            ..Default::default()
        };
        apply_resources(&settings, &mut r).unwrap();
        assert_eq!(r.limits.unwrap()["cpu"], q("4"));
        assert_eq!(r.requests.unwrap()["cpu"], q("2"));
    }

    #[test]
    fn bad_memory_is_an_error() {
        let settings = ResourceSettings {
            memory: Some("lots".into()),
            ..Default::default()
        };
        let err = apply_resources(&settings, &mut ResourceRequirements::default()).unwrap_err();
        assert!(
            err.to_string().starts_with("resources.memory: `lots`"),
            "{err}"
        );
    }

    #[test]
    fn default_memory_request() {
        let mut r = ResourceRequirements::default();
        apply_default_memory_request(&mut r);
        assert_eq!(r.requests.unwrap()["memory"], q("400Mi"));

        // A lower user limit becomes the request.
        let mut r = ResourceRequirements {
            limits: Some([("memory".to_string(), q("256Mi"))].into()),
            ..Default::default()
        };
        apply_default_memory_request(&mut r);
        assert_eq!(r.requests.unwrap()["memory"], q("256Mi"));

        // A higher limit keeps the default request.
        let mut r = ResourceRequirements {
            limits: Some([("memory".to_string(), q("1Gi"))].into()),
            ..Default::default()
        };
        apply_default_memory_request(&mut r);
        assert_eq!(r.requests.unwrap()["memory"], q("400Mi"));

        // A user request is kept.
        let mut r = ResourceRequirements {
            requests: Some([("memory".to_string(), q("2G"))].into()),
            ..Default::default()
        };
        apply_default_memory_request(&mut r);
        assert_eq!(r.requests.unwrap()["memory"], q("2G"));
    }
}
