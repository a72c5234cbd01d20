//! `StepHandle`: a submitted step's reference, serializable so another process can adopt it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A reference to a submitted step that survives the process: serialize it, store it, and
/// another process can wait for the step, stream its logs or cancel it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepHandle {
    /// The step-operator flavor that submitted the step.
    pub flavor: String,
    /// The pipeline the step belongs to.
    pub pipeline_name: String,
    /// The step's name.
    pub step_name: String,
    /// The step run this handle refers to.
    pub step_run_id: String,
    /// When the step was accepted.
    pub submitted_at: Timestamp,
    /// Flavor-specific data that locates the work (cluster, namespace, Job name, …).
    pub data: serde_json::Value,
}

impl StepHandle {
    /// A handle for a step submitted now.
    pub fn new(
        flavor: impl Into<String>,
        launch: &super::StepLaunch,
        data: serde_json::Value,
    ) -> Self {
        StepHandle {
            flavor: flavor.into(),
            pipeline_name: launch.pipeline_name.clone(),
            step_name: launch.step_name.clone(),
            step_run_id: launch.step_run_id.clone(),
            submitted_at: Timestamp::now(),
            data,
        }
    }

    /// The flavor data deserialized into the flavor's own type.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> crate::Result<T> {
        serde_json::from_value(self.data.clone()).map_err(|e| {
            crate::Error::new(
                crate::ErrorKind::InvalidSettings,
                "step handle data does not match this flavor; was it written by another version?",
            )
            .with_context("flavor", self.flavor.clone())
            .with_context("step_run_id", self.step_run_id.clone())
            .with_source(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StepLaunch;

    #[test]
    fn round_trips_through_json() {
        let launch = StepLaunch::new(
            "my_pipeline",
            "trainer",
            "python:3.12",
            ["python", "train.py"],
        );
        let handle = StepHandle::new(
            "kubernetes",
            &launch,
            serde_json::json!({"namespace": "ml", "job": "trainer-abc"}),
        );
        let json = serde_json::to_string(&handle).unwrap();
        let back: StepHandle = serde_json::from_str(&json).unwrap();
        assert_eq!(back, handle);
        assert_eq!(back.step_run_id, launch.step_run_id);

        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Data {
            namespace: String,
            job: String,
        }
        assert_eq!(
            back.data_as::<Data>().unwrap(),
            Data {
                namespace: "ml".into(),
                job: "trainer-abc".into()
            }
        );
        let err = back.data_as::<u32>().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidSettings);
        assert_eq!(err.context_value("flavor"), Some("kubernetes"));
    }
}
