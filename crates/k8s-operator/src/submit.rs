//! Creating one attempt of a step: the Secret with its secret environment, the Job, and
//! for `pod_count > 1` the headless Service; retried creates adopt what exists.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use stepstack_core::secrecy::ExposeSecret;
use stepstack_core::{Error, ErrorKind, Result, StepHandle, StepLaunch};
use stepstack_settings::{
    KubernetesStepOperatorSettings, ManifestError, ManifestInput, SecretEnvRef, build_job,
    job_labels, sanitize_label_value,
};

use crate::api::{Api, Call, CallPolicy, encode};
use crate::handle::{KubernetesHandle, WaitPolicy};
use crate::jobs::{CreateError, attach, create_error, create_job, secret_path};
use crate::state::Inner;

/// The handle [`submit`] returns for `launch`, computed without creating anything: the
/// Job name is deterministic per step run, the cluster is the one this operator uses.
pub(crate) async fn plan(inner: &Inner, launch: &StepLaunch) -> Result<StepHandle> {
    let settings = inner.effective_settings(launch)?;
    let namespace = inner.config.kubernetes_namespace.clone();
    let (job, _) = manifests(&settings, launch, &namespace)?;
    let (_, cluster) = inner.api().await?;
    let job_name = job.metadata.name.clone().unwrap_or_default();
    handle(inner, launch, &settings, cluster, &namespace, &job_name)
}

/// The handle of attempt 0 of `launch`, whose Job is `job_name` in `namespace`.
fn handle(
    inner: &Inner,
    launch: &StepLaunch,
    settings: &KubernetesStepOperatorSettings,
    cluster: &str,
    namespace: &str,
    job_name: &str,
) -> Result<StepHandle> {
    let data = KubernetesHandle {
        cluster: cluster.to_owned(),
        namespace: namespace.to_owned(),
        job_name: job_name.to_owned(),
        attempt: 0,
        step_run_label: sanitize_label_value(&launch.step_run_id),
        pod_count: settings.pod_count.max(1),
        job_name_prefix: settings.job_name_prefix.clone(),
        log_file: crate::state_dir::log_file(
            inner.state_dir.as_deref(),
            &launch.step_run_id,
            settings.logs.keep,
        ),
        policy: WaitPolicy::from_settings(settings),
    };
    let data = serde_json::to_value(&data).map_err(|e| {
        Error::new(ErrorKind::Internal, "cannot serialize the step handle").with_source(e)
    })?;
    Ok(StepHandle::new(crate::FLAVOR, launch, data))
}

/// Submits attempt 0 of `launch`.
pub(crate) async fn submit(inner: &Inner, launch: StepLaunch) -> Result<StepHandle> {
    submit_or_refusal(inner, launch).await.map_err(|e| e.error)
}

/// Submits attempt 0 of `launch`, telling a create the API server refused (see
/// [`crate::jobs::rejection_reason`]) from other failures.
pub(crate) async fn submit_or_refusal(
    inner: &Inner,
    launch: StepLaunch,
) -> Result<StepHandle, CreateError> {
    let settings = inner.effective_settings(&launch)?;
    let namespace = inner.config.kubernetes_namespace.clone();
    let calls = CallPolicy::new(settings.api_request_timeout, settings.max_api_retries);
    let (job, secret) = manifests(&settings, &launch, &namespace)?;
    let (api, cluster) = inner.api().await?;
    // Start the namespace's shared watch now, so it sees the step from the beginning.
    inner.hub.namespace(api, &namespace);
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let context = |e: CreateError| {
        e.map(|e| {
            e.with_context("namespace", namespace.clone())
                .with_context("job", job_name.clone())
                .with_context("step", launch.step_name.clone())
        })
    };

    if let Some(sa) = settings.service_account_name.as_deref() {
        check_service_account(inner, api, &namespace, sa, calls)
            .await
            .map_err(|e| context(e.into()))?;
    }
    if let Some(secret) = &secret {
        crate::sweep::sweep_namespace_once(inner, api, &namespace, calls);
        create_secret(api, secret, calls).await.map_err(context)?;
    }
    inner.submitted.lock().insert(job_name.clone());
    let created = match create_job(api, &job, calls).await {
        Ok(created) => created,
        Err(e) => {
            if let Some(secret) = &secret {
                delete_quietly(
                    api,
                    &secret_path(&namespace, secret.metadata.name.as_deref().unwrap_or("")),
                    calls,
                )
                .await;
            }
            return Err(context(e));
        }
    };
    attach(
        api,
        &created,
        secret.as_ref().and_then(|s| s.metadata.name.as_deref()),
        calls,
    )
    .await
    .map_err(context)?;
    tracing::info!(namespace = %namespace, job = %job_name, step = %launch.step_name, "submitted step");

    Ok(handle(
        inner, &launch, &settings, cluster, &namespace, &job_name,
    )?)
}

/// The Job (and the Secret of the secret environment) of attempt 0 of `launch`.
pub(crate) fn manifests(
    settings: &KubernetesStepOperatorSettings,
    launch: &StepLaunch,
    namespace: &str,
) -> Result<(Job, Option<Secret>)> {
    let mut input = manifest_input(launch, namespace);
    let probe = build_job(settings, &input).map_err(|e| manifest_error(e, launch))?;
    if launch.secret_environment.is_empty() {
        return Ok((probe, None));
    }
    let job_name = probe.metadata.name.clone().unwrap_or_default();
    let secret_name = format!("{job_name}-env");
    input.secret_env = launch
        .secret_environment
        .keys()
        .map(|name| SecretEnvRef {
            name: name.clone(),
            secret_name: secret_name.clone(),
            key: name.clone(),
        })
        .collect();
    let job = build_job(settings, &input).map_err(|e| manifest_error(e, launch))?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name),
            namespace: Some(namespace.to_owned()),
            labels: Some(job_labels(&input)),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(
            launch
                .secret_environment
                .iter()
                .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    };
    Ok((job, Some(secret)))
}

fn manifest_input(launch: &StepLaunch, namespace: &str) -> ManifestInput {
    ManifestInput {
        pipeline_name: launch.pipeline_name.clone(),
        run_name: launch.run_name.clone(),
        run_id: launch.run_id.clone(),
        step_name: launch.step_name.clone(),
        step_run_id: launch.step_run_id.clone(),
        attempt: 0,
        namespace: namespace.to_owned(),
        image: launch.image.clone(),
        command: launch.command.clone(),
        args: launch.args.clone(),
        env: launch
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        secret_env: Vec::new(),
        resources: launch.resources.clone(),
        pod_count: None,
    }
}

fn manifest_error(e: ManifestError, launch: &StepLaunch) -> Error {
    Error::new(
        ErrorKind::InvalidSettings,
        format!("cannot build the step's Job: {e}"),
    )
    .with_context("flavor", crate::FLAVOR)
    .with_context("step", launch.step_name.clone())
}

async fn create_secret(api: &Api, secret: &Secret, calls: CallPolicy) -> Result<(), CreateError> {
    let namespace = secret.metadata.namespace.clone().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    let call = Call::post(
        format!("create Secret {namespace}/{name}"),
        format!("/api/v1/namespaces/{namespace}/secrets"),
        secret,
    );
    match api.bytes(&call, calls).await {
        Ok(_) => Ok(()),
        Err(err) if err.code() == Some(409) => {
            // A retried submit: replace the values (the name is per step run).
            let patch = serde_json::json!({"stringData": secret.string_data});
            let call = Call::merge_patch(
                format!("update Secret {namespace}/{name}"),
                secret_path(&namespace, &name),
                &patch,
            );
            api.bytes(&call, calls)
                .await
                .map(|_| ())
                .map_err(|e| e.into_core().into())
        }
        Err(err) => Err(create_error(err, &namespace)),
    }
}

async fn delete_quietly(api: &Api, path: &str, calls: CallPolicy) {
    let call = Call::delete(format!("delete {path}"), path, &serde_json::json!({}));
    if let Err(err) = api.bytes(&call, calls).await {
        tracing::warn!(error = %stepstack_core::error_chain(&err), "cleanup failed");
    }
}

/// Checks once per operator that the service account exists, so a typo is a clear error
/// rather than a Job that never creates a pod.
async fn check_service_account(
    inner: &Inner,
    api: &Api,
    namespace: &str,
    name: &str,
    calls: CallPolicy,
) -> Result<()> {
    let key = (namespace.to_owned(), name.to_owned());
    if inner.service_accounts.lock().contains(&key) {
        return Ok(());
    }
    let call = Call::get(
        format!("get ServiceAccount {namespace}/{name}"),
        format!(
            "/api/v1/namespaces/{namespace}/serviceaccounts/{}",
            encode(name)
        ),
    );
    match api.json::<ServiceAccount>(&call, calls).await {
        Ok(_) => {
            inner.service_accounts.lock().insert(key);
            Ok(())
        }
        Err(err) if err.code() == Some(404) => {
            let not_found = err.status_message().unwrap_or_default().to_owned();
            let message = if not_found.contains("namespaces") {
                format!(
                    "namespace `{namespace}` does not exist; create it with `kubectl create namespace {namespace}` or set `kubernetes_namespace` to an existing one"
                )
            } else {
                format!(
                    "service account `{name}` does not exist in namespace `{namespace}`; create it with `kubectl create serviceaccount {name} -n {namespace}` or change `service_account_name`"
                )
            };
            Err(Error::new(ErrorKind::NotFound, message).with_source(err))
        }
        Err(err) => Err(err.into_core()),
    }
}
