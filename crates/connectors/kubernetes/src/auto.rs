//! Auto-configuration: a new `kubernetes` connector from the local kubeconfig (the
//! current or a named context, its files inlined) or, inside a pod, from the pod's
//! service account.

use kube::config::Kubeconfig;
use secrecy::ExposeSecret;
use stepstack_core::connector::{ConnectorError as _, KUBERNETES_CLUSTER};
use stepstack_core::{AutoConfigureRequest, ConnectorConfig, Result};

use crate::config::{
    self, CLIENT_CERTIFICATE, CONNECTOR_TYPE, IN_CLUSTER, KUBECONFIG, KUBERNETES_CONTEXT, PASSWORD,
    TOKEN,
};
use crate::environment::LocalEnvironment;
use crate::error::{KubernetesError, KubernetesResult};
use crate::kubeconfig::{self as kc, SA_TOKEN};

/// The configuration auto-configuration finds for `request` in `env`.
pub(crate) fn auto_config(
    env: &LocalEnvironment,
    request: &AutoConfigureRequest,
) -> Result<ConnectorConfig> {
    let name = request.name.as_str();
    match request.auth_method.as_deref() {
        Some(IN_CLUSTER) => in_cluster_config(env, request),
        requested => {
            match kc::read_merged(&env.kubeconfig_paths()).map_err(|e| e.into_core(name))? {
                Some(kubeconfig) => kubeconfig_config(request, requested, kubeconfig),
                None if requested.is_none() && env.service_account_dir.join(SA_TOKEN).is_file() => {
                    in_cluster_config(env, request)
                }
                None => {
                    let looked_at = env
                        .kubeconfig_paths()
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    Err(KubernetesError::NoKubeconfig {
                        looked_at: if looked_at.is_empty() {
                            "nowhere: KUBECONFIG and HOME are unset".to_owned()
                        } else {
                            looked_at
                        },
                    }
                    .into_core(name))
                }
            }
        }
    }
}

/// The `in-cluster` configuration: the pod's service account must be there.
fn in_cluster_config(
    env: &LocalEnvironment,
    request: &AutoConfigureRequest,
) -> Result<ConnectorConfig> {
    let token = env.service_account_dir.join(SA_TOKEN);
    if !token.is_file() {
        return Err(KubernetesError::InCluster {
            what: "token",
            path: token,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
        .into_core(&request.name));
    }
    let mut config = ConnectorConfig::new(request.name.clone(), CONNECTOR_TYPE, IN_CLUSTER)
        .with_resource_types([KUBERNETES_CLUSTER])
        .with_value("server", env.in_cluster_server.clone());
    if let Some(id) = &request.resource_id {
        config = config.with_value("cluster_name", id.clone());
    }
    Ok(config)
}

/// The configuration for one context of the merged local kubeconfig.
fn kubeconfig_config(
    request: &AutoConfigureRequest,
    requested: Option<&str>,
    kubeconfig: Kubeconfig,
) -> Result<ConnectorConfig> {
    let name = request.name.as_str();
    let context = match request
        .values
        .get(KUBERNETES_CONTEXT)
        .filter(|c| !c.is_empty())
    {
        Some(context) => context.clone(),
        None => kubeconfig
            .current_context
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                KubernetesError::NoCurrentContext {
                    available: kc::context_names(&kubeconfig),
                }
                .into_core(name)
            })?,
    };
    let mut reduced = kc::reduce(&kubeconfig, &context).map_err(|e| e.into_core(name))?;
    kc::inline_files(&mut reduced).map_err(|e| e.into_core(name))?;
    auto_config_from(name, request, requested, &context, reduced).map_err(|e| e.into_core(name))
}

/// The connector configuration for one reduced kubeconfig context.
fn auto_config_from(
    name: &str,
    request: &AutoConfigureRequest,
    requested: Option<&str>,
    context: &str,
    reduced: Kubeconfig,
) -> KubernetesResult<ConnectorConfig> {
    let cluster = reduced
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .unwrap_or_default();
    let user = reduced
        .auth_infos
        .first()
        .and_then(|u| u.auth_info.clone())
        .unwrap_or_default();
    let namespace = reduced
        .contexts
        .first()
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.namespace.clone());
    let server =
        cluster
            .server
            .clone()
            .ok_or_else(|| KubernetesError::InvalidStoredKubeconfig {
                reason: format!("the cluster of context `{context}` has no server"),
            })?;
    let url = config::parse_server(&server)?;
    let cluster_name = request
        .resource_id
        .clone()
        .unwrap_or_else(|| config::host_of(&url));
    let token = match (&user.token, &user.token_file) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(file)) => Some(kc::read_secret_file(
            std::path::Path::new(file),
            "the token file",
        )?),
        (None, None) => None,
    };
    let has_identity = user.client_certificate_data.is_some() && user.client_key_data.is_some();
    let has_basic = user.username.is_some() && user.password.is_some();
    let is_plugin = user.exec.is_some() || user.auth_provider.is_some();
    let method = match requested {
        Some(method) => method.to_owned(),
        None if is_plugin => KUBECONFIG.to_owned(),
        None if has_basic => PASSWORD.to_owned(),
        None if token.is_none() && has_identity => CLIENT_CERTIFICATE.to_owned(),
        None => TOKEN.to_owned(),
    };
    let does_not_fit = |reason: &str| KubernetesError::MethodDoesNotFit {
        method: method.clone(),
        reason: reason.to_owned(),
    };
    let mut config = ConnectorConfig::new(name, CONNECTOR_TYPE, method.clone())
        .with_resource_types([KUBERNETES_CLUSTER])
        .with_value("cluster_name", cluster_name);
    if let Some(namespace) = namespace.filter(|n| !n.is_empty()) {
        config = config.with_value("namespace", namespace);
    }
    if method == KUBECONFIG {
        let yaml = serde_norway::to_string(&reduced).map_err(|e| {
            KubernetesError::InvalidStoredKubeconfig {
                reason: e.to_string(),
            }
        })?;
        return Ok(config
            .with_secret("kubeconfig", yaml)
            .with_value("context", context));
    }
    if is_plugin {
        return Err(does_not_fit(
            "the user runs an exec or auth-provider plugin, whose short-lived credentials must not be stored; use the `kubeconfig` auth method",
        ));
    }
    if cluster.tls_server_name.is_some() || cluster.proxy_url.is_some() {
        tracing::warn!(
            connector = name,
            context,
            "the kubeconfig cluster sets tls-server-name or proxy-url, which auth method `{method}` does not carry; use the `kubeconfig` auth method to keep them"
        );
    }
    config = config.with_value("server", server);
    if cluster.insecure_skip_tls_verify == Some(true) {
        config = config.with_value("insecure", true);
    }
    if let Some(ca) = &cluster.certificate_authority_data {
        config = config.with_secret("certificate_authority", ca.clone());
    }
    match method.as_str() {
        PASSWORD => {
            let (Some(username), Some(password)) = (&user.username, &user.password) else {
                return Err(does_not_fit("the user has no user name and password"));
            };
            config = config
                .with_secret("username", username.clone())
                .with_secret("password", password.expose_secret().to_owned());
        }
        CLIENT_CERTIFICATE | TOKEN => {
            if method == CLIENT_CERTIFICATE && !has_identity {
                return Err(does_not_fit("the user has no client certificate and key"));
            }
            if let (Some(cert), Some(key)) = (&user.client_certificate_data, &user.client_key_data)
            {
                config = config
                    .with_secret("client_certificate", cert.clone())
                    .with_secret("client_key", key.expose_secret().to_owned());
            }
            if method == TOKEN {
                match token {
                    Some(token) => {
                        config =
                            config.with_secret("token", token.expose_secret().trim().to_owned())
                    }
                    None if !has_identity => {
                        tracing::warn!(
                            connector = name,
                            "the kubeconfig user has no credentials; the connector will send anonymous requests"
                        );
                    }
                    None => {}
                }
            }
        }
        _ => return Err(does_not_fit("it is not configured from a kubeconfig")),
    }
    Ok(config)
}
