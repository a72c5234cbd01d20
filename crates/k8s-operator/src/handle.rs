//! What a [`StepHandle`] of the `kubernetes` flavor carries, so that another process can
//! wait for the step, stream its logs and cancel it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use stepstack_core::{Error, ErrorKind, Result, StepHandle};
use stepstack_settings::{KubernetesStepOperatorSettings, job_name};

use crate::api::CallPolicy;
use crate::deadlines::Deadlines;
use crate::retry::RetryPlan;

/// The flavor data of a `kubernetes` [`StepHandle`] (its `data` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KubernetesHandle {
    /// The API server URL of the cluster that runs the step.
    pub cluster: String,
    /// The namespace of the step's Jobs.
    pub namespace: String,
    /// The Job of the attempt `submit` created.
    pub job_name: String,
    /// The attempt `submit` created (0 for the first); retries create attempts after it.
    pub attempt: u32,
    /// The step run (label `stepstack.dev/step-run-id`, sanitised).
    pub step_run_label: String,
    /// Number of pods per attempt.
    pub pod_count: u32,
    /// The Job-name prefix, to derive the Job names of later attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name_prefix: Option<String>,
    /// Where the step's logs are kept, if they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,
    /// How the step is judged and retried (from its settings at submit time).
    pub(crate) policy: WaitPolicy,
}

/// The settings a waiter needs, frozen at submit time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WaitPolicy {
    pub(crate) deadlines: Deadlines,
    pub(crate) retry: RetryPlan,
    pub(crate) tail_lines_on_failure: u32,
    pub(crate) api_request_timeout: Option<u64>,
    pub(crate) max_api_retries: u32,
    pub(crate) timestamps: bool,
    /// What an interrupted launcher does with the Job.
    #[serde(default)]
    pub(crate) on_interrupt: stepstack_settings::OnInterrupt,
}

impl WaitPolicy {
    pub(crate) fn from_settings(settings: &KubernetesStepOperatorSettings) -> Self {
        WaitPolicy {
            deadlines: Deadlines::from_settings(settings),
            retry: RetryPlan {
                step: settings.retry.clone(),
                infrastructure: settings.infrastructure_retry.clone(),
            },
            tail_lines_on_failure: settings.logs.tail_lines_on_failure,
            api_request_timeout: settings.api_request_timeout,
            max_api_retries: settings.max_api_retries,
            timestamps: settings.logs.timestamps,
            on_interrupt: settings.on_interrupt,
        }
    }

    pub(crate) fn calls(&self) -> CallPolicy {
        CallPolicy::new(self.api_request_timeout, self.max_api_retries)
    }
}

impl KubernetesHandle {
    /// Reads the flavor data of `handle`.
    pub fn from_handle(handle: &StepHandle) -> Result<Self> {
        if handle.flavor != crate::FLAVOR {
            return Err(Error::new(
                ErrorKind::InvalidSettings,
                format!(
                    "this step was submitted by the `{}` step operator, not `{}`; use that operator to follow it",
                    handle.flavor,
                    crate::FLAVOR
                ),
            )
            .with_context("step_run_id", handle.step_run_id.clone()));
        }
        handle.data_as()
    }

    /// What an interrupted launcher does with the step's Job (its `on_interrupt`
    /// setting at submit time), so a process that reattaches does the same.
    pub fn on_interrupt(&self) -> stepstack_settings::OnInterrupt {
        self.policy.on_interrupt
    }

    /// The Job name of attempt `attempt` of the step of `handle`.
    pub fn job_name_of_attempt(&self, handle: &StepHandle, attempt: u32) -> String {
        job_name(
            self.job_name_prefix.as_deref(),
            &handle.step_name,
            &handle.pipeline_name,
            &handle.step_run_id,
            attempt,
            self.pod_count,
        )
    }
}
