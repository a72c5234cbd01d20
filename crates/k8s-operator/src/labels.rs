//! The labels and annotations stepstack puts on the objects it creates, in one place:
//! every layer (the watch's index, the verdict, retries, Job creation) reads them, so
//! they sit below all of them.

/// Label with the sanitised step-run id.
pub(crate) const STEP_RUN_LABEL: &str = "stepstack.dev/step-run-id";
/// Label with the attempt number.
pub(crate) const ATTEMPT_LABEL: &str = "stepstack.dev/attempt";
/// Label and annotation with a pod's index in an Indexed Job.
pub(crate) const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// The label selector of everything stepstack manages.
pub(crate) const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=stepstack";
/// Annotation in which stepstack records a failure it decided itself (a deadline, a
/// fail-fast waiting reason) before it deletes the Job, so every watcher sees the same
/// verdict.
pub(crate) const FAILURE_ANNOTATION: &str = "stepstack.dev/failure";
/// Annotation with the retries used so far (JSON of `RetryCounts`).
pub(crate) const RETRIES_ANNOTATION: &str = "stepstack.dev/retries";
/// Labels the API server adds to a Job's pod template; a retry must not copy them.
pub(crate) const GENERATED_LABELS: [&str; 4] = [
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
];
