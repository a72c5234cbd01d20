//! The configuration of each auth method: typed structs (whose JSON Schemas the
//! connector type publishes) and their parsing into what `connect` and `login` use.

use std::path::Path;

use base64::Engine as _;
use kube::config::{AuthInfo, Cluster, Kubeconfig};
use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use stepstack_core::ConnectorConfig;
use stepstack_core::connector::kubeconfig;

use crate::error::{KubernetesError, KubernetesResult};
use crate::kubeconfig::{SA_CA, SA_TOKEN, base64_of, kubeconfig_problem};

/// The connector type id.
pub const CONNECTOR_TYPE: &str = "kubernetes";

/// The `AutoConfigureRequest::values` key naming the kubeconfig context to use.
pub const KUBERNETES_CONTEXT: &str = "kubernetes_context";

/// Auth method ids.
pub(crate) const TOKEN: &str = "token";
pub(crate) const CLIENT_CERTIFICATE: &str = "client-certificate";
pub(crate) const PASSWORD: &str = "password";
pub(crate) const KUBECONFIG: &str = "kubeconfig";
pub(crate) const IN_CLUSTER: &str = "in-cluster";

/// Configuration of the `token` auth method: a bearer token, optionally with a client
/// certificate and key.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TokenConfig {
    /// The API server URL, e.g. `https://10.0.0.1:6443`.
    pub server: String,
    /// The cluster's name, its resource id (default: the server's host name).
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// CA certificate(s) of the API server, PEM or base64-encoded PEM (default: the system roots).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub certificate_authority: Option<SecretString>,
    /// Skip verifying the server's certificate (insecure; logged as a warning).
    #[serde(default)]
    pub insecure: bool,
    /// The default namespace (default: `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The bearer token (none: anonymous requests).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub token: Option<SecretString>,
    /// A client certificate, PEM or base64-encoded PEM (needs `client_key`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub client_certificate: Option<SecretString>,
    /// The client certificate's private key, PEM or base64-encoded PEM.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub client_key: Option<SecretString>,
}

/// Configuration of the `client-certificate` auth method.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ClientCertificateConfig {
    /// The API server URL, e.g. `https://10.0.0.1:6443`.
    pub server: String,
    /// The cluster's name, its resource id (default: the server's host name).
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// CA certificate(s) of the API server, PEM or base64-encoded PEM (default: the system roots).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub certificate_authority: Option<SecretString>,
    /// Skip verifying the server's certificate (insecure; logged as a warning).
    #[serde(default)]
    pub insecure: bool,
    /// The default namespace (default: `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The client certificate, PEM or base64-encoded PEM.
    #[schemars(with = "String")]
    pub client_certificate: SecretString,
    /// The client certificate's private key, PEM or base64-encoded PEM.
    #[schemars(with = "String")]
    pub client_key: SecretString,
}

/// Configuration of the `password` auth method (HTTP basic auth).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PasswordConfig {
    /// The API server URL, e.g. `https://10.0.0.1:6443`.
    pub server: String,
    /// The cluster's name, its resource id (default: the server's host name).
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// CA certificate(s) of the API server, PEM or base64-encoded PEM (default: the system roots).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub certificate_authority: Option<SecretString>,
    /// Skip verifying the server's certificate (insecure; logged as a warning).
    #[serde(default)]
    pub insecure: bool,
    /// The default namespace (default: `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The user name.
    #[schemars(with = "String")]
    pub username: SecretString,
    /// The password.
    #[schemars(with = "String")]
    pub password: SecretString,
}

/// Configuration of the `kubeconfig` auth method: a stored kubeconfig with one context,
/// whose user may run an exec plugin (a local command, hence implicit).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct KubeconfigConfig {
    /// The kubeconfig YAML.
    #[schemars(with = "String")]
    pub kubeconfig: SecretString,
    /// The context to use (default: the kubeconfig's current context).
    #[serde(default)]
    pub context: Option<String>,
    /// The cluster's name, its resource id (default: the server's host name).
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// The default namespace (default: the context's namespace, else `default`).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Configuration of the `in-cluster` auth method: the pod's service account, whose token
/// and CA are read from the pod's files and re-read as they rotate.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct InClusterConfig {
    /// The API server URL (default: from `KUBERNETES_SERVICE_HOST`/`_PORT`, else
    /// `https://kubernetes.default.svc`).
    #[serde(default)]
    pub server: Option<String>,
    /// The cluster's name, its resource id (default: the server's host name).
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// The default namespace (default: the pod's namespace).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// The JSON Schema of `T`, as a value.
pub(crate) fn schema_of<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|_| serde_json::json!({"type": "object"}))
}

/// Where the cluster is and how its certificate is checked.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) server: String,
    pub(crate) cluster_name: String,
    pub(crate) ca_pem: Option<SecretString>,
    pub(crate) insecure: bool,
    pub(crate) namespace: Option<String>,
}

/// A client certificate and key, both PEM.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) certificate_pem: SecretString,
    pub(crate) key_pem: SecretString,
}

/// How the connector authenticates.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    Token {
        token: Option<SecretString>,
        identity: Option<Identity>,
    },
    ClientCertificate(Identity),
    Password {
        username: SecretString,
        password: SecretString,
    },
    /// A kubeconfig reduced to the one context it uses.
    Kubeconfig {
        kubeconfig: Box<Kubeconfig>,
    },
    InCluster,
}

/// A parsed connector configuration.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    /// `None` for in-cluster, whose server may come from the environment.
    pub(crate) target: Target,
    pub(crate) auth: Auth,
}

/// Parses the configuration of `config.auth_method`. `in_cluster_server` is the server
/// the `in-cluster` method uses when none is configured.
pub(crate) fn parse(config: &ConnectorConfig, in_cluster_server: &str) -> KubernetesResult<Parsed> {
    let method = config.auth_method.as_str();
    let merged = merged_values(config);
    let invalid = |e: serde_json::Error| KubernetesError::InvalidConfig {
        method: method.to_owned(),
        reason: e.to_string(),
    };
    match method {
        TOKEN => {
            let c: TokenConfig = serde_json::from_value(merged).map_err(invalid)?;
            let identity = identity(c.client_certificate, c.client_key, method)?;
            let target = target(
                c.server,
                c.cluster_name,
                c.certificate_authority,
                c.insecure,
                c.namespace,
            )?;
            let token = c.token.filter(|t| !t.expose_secret().trim().is_empty());
            Ok(Parsed {
                target,
                auth: Auth::Token { token, identity },
            })
        }
        CLIENT_CERTIFICATE => {
            let c: ClientCertificateConfig = serde_json::from_value(merged).map_err(invalid)?;
            let identity = identity(Some(c.client_certificate), Some(c.client_key), method)?
                .ok_or(KubernetesError::MissingField {
                    field: "client_certificate",
                    method: method.to_owned(),
                })?;
            let target = target(
                c.server,
                c.cluster_name,
                c.certificate_authority,
                c.insecure,
                c.namespace,
            )?;
            Ok(Parsed {
                target,
                auth: Auth::ClientCertificate(identity),
            })
        }
        PASSWORD => {
            let c: PasswordConfig = serde_json::from_value(merged).map_err(invalid)?;
            let target = target(
                c.server,
                c.cluster_name,
                c.certificate_authority,
                c.insecure,
                c.namespace,
            )?;
            Ok(Parsed {
                target,
                auth: Auth::Password {
                    username: c.username,
                    password: c.password,
                },
            })
        }
        KUBECONFIG => {
            let c: KubeconfigConfig = serde_json::from_value(merged).map_err(invalid)?;
            parse_kubeconfig(c)
        }
        IN_CLUSTER => {
            let c: InClusterConfig = serde_json::from_value(merged).map_err(invalid)?;
            let server = c.server.unwrap_or_else(|| in_cluster_server.to_owned());
            let target = target(server, c.cluster_name, None, false, c.namespace)?;
            Ok(Parsed {
                target,
                auth: Auth::InCluster,
            })
        }
        other => Err(KubernetesError::InvalidConfig {
            method: other.to_owned(),
            reason: "unknown auth method".to_owned(),
        }),
    }
}

/// Values and secrets in one JSON object, for deserializing the typed configuration.
/// Serde's messages for these structs name fields, never secret values: every secret
/// field is a string, so a secret cannot cause a type error.
fn merged_values(config: &ConnectorConfig) -> serde_json::Value {
    let mut map: serde_json::Map<String, serde_json::Value> = config
        .values
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, secret) in &config.secrets {
        map.insert(
            key.clone(),
            serde_json::Value::String(secret.expose_secret().to_owned()),
        );
    }
    serde_json::Value::Object(map)
}

fn identity(
    certificate: Option<SecretString>,
    key: Option<SecretString>,
    method: &str,
) -> KubernetesResult<Option<Identity>> {
    match (certificate, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(KubernetesError::MissingField {
            field: "client_key",
            method: method.to_owned(),
        }),
        (None, Some(_)) => Err(KubernetesError::MissingField {
            field: "client_certificate",
            method: method.to_owned(),
        }),
        (Some(certificate), Some(key)) => Ok(Some(Identity {
            certificate_pem: pem_or_base64(&certificate, "client_certificate")?,
            key_pem: pem_or_base64(&key, "client_key")?,
        })),
    }
}

fn target(
    server: String,
    cluster_name: Option<String>,
    ca: Option<SecretString>,
    insecure: bool,
    namespace: Option<String>,
) -> KubernetesResult<Target> {
    let url = parse_server(&server)?;
    let cluster_name = match cluster_name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
    {
        Some(name) => name,
        None => host_of(&url),
    };
    let ca_pem = ca
        .filter(|c| !c.expose_secret().trim().is_empty())
        .map(|c| pem_or_base64(&c, "certificate_authority"))
        .transpose()?;
    Ok(Target {
        server: server.trim().trim_end_matches('/').to_owned(),
        cluster_name,
        ca_pem,
        insecure,
        namespace: namespace
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty()),
    })
}

/// Parses and checks an API server URL.
pub(crate) fn parse_server(server: &str) -> KubernetesResult<url::Url> {
    let url = url::Url::parse(server.trim());
    // A URL with `user:password@` is refused below; the message must not repeat them.
    let shown = match &url {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            let mut u = u.clone();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => server.to_owned(),
    };
    let invalid = |reason: &str| KubernetesError::InvalidServer {
        url: shown.clone(),
        reason: reason.to_owned(),
    };
    let url = url.map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid("the scheme must be https (or http)"));
    }
    if url.host().is_none() {
        return Err(invalid("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    server
        .trim()
        .parse::<http::Uri>()
        .map_err(|e| invalid(&e.to_string()))?;
    Ok(url)
}

/// The host of a server URL, as a cluster name: `10.0.0.1`, `api.example.com`, `::1`.
pub(crate) fn host_of(url: &url::Url) -> String {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => String::new(),
    }
}

/// PEM text from PEM or base64-encoded PEM.
pub(crate) fn pem_or_base64(
    value: &SecretString,
    field: &'static str,
) -> KubernetesResult<SecretString> {
    let text = value.expose_secret().trim();
    if text.starts_with("-----BEGIN ") {
        return Ok(SecretString::from(format!("{text}\n")));
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for engine in engines {
        if let Ok(bytes) = engine.decode(&compact)
            && let Ok(decoded) = String::from_utf8(bytes)
            && decoded.trim_start().starts_with("-----BEGIN ")
        {
            return Ok(SecretString::from(format!("{}\n", decoded.trim())));
        }
    }
    Err(KubernetesError::NotPem { field })
}

fn parse_kubeconfig(c: KubeconfigConfig) -> KubernetesResult<Parsed> {
    let invalid = |reason: String| KubernetesError::InvalidStoredKubeconfig { reason };
    let full = Kubeconfig::from_yaml(c.kubeconfig.expose_secret()).map_err(|e| {
        KubernetesError::InvalidKubeconfigValue {
            field: "kubeconfig",
            problem: kubeconfig_problem(&e),
        }
    })?;
    let context = match c.context.filter(|c| !c.trim().is_empty()) {
        Some(context) => context,
        None => full
            .current_context
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| invalid("it has no current context; set `context`".to_owned()))?,
    };
    let reduced = crate::kubeconfig::reduce(&full, &context)?;
    let cluster = reduced
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| invalid(format!("context `{context}` has no cluster")))?;
    let server = cluster
        .server
        .clone()
        .ok_or_else(|| invalid(format!("the cluster of context `{context}` has no server")))?;
    let url = parse_server(&server)?;
    let namespace = c.namespace.or_else(|| {
        reduced
            .contexts
            .first()
            .and_then(|c| c.context.as_ref())
            .and_then(|c| c.namespace.clone())
    });
    let cluster_name = c
        .cluster_name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| host_of(&url));
    Ok(Parsed {
        target: Target {
            server,
            cluster_name,
            ca_pem: None,
            insecure: cluster.insecure_skip_tls_verify.unwrap_or(false),
            namespace,
        },
        auth: Auth::Kubeconfig {
            kubeconfig: Box::new(reduced),
        },
    })
}

/// The cluster, user and context (all named `name`) that a connector stands for, with
/// `name` as the current context. `in_cluster_dir` is where the `in-cluster` method finds
/// the service account's files.
pub(crate) fn entries(parsed: &Parsed, name: &str, in_cluster_dir: &Path) -> Kubeconfig {
    let target = &parsed.target;
    let (cluster, user) = match &parsed.auth {
        Auth::Kubeconfig { kubeconfig, .. } => {
            let cluster = kubeconfig
                .clusters
                .first()
                .and_then(|c| c.cluster.clone())
                .unwrap_or_default();
            let user = kubeconfig
                .auth_infos
                .first()
                .and_then(|u| u.auth_info.clone())
                .unwrap_or_default();
            (cluster, user)
        }
        auth => {
            let mut cluster = Cluster {
                server: Some(target.server.clone()),
                ..Default::default()
            };
            if target.insecure {
                // kubectl refuses a CA together with insecure-skip-tls-verify.
                cluster.insecure_skip_tls_verify = Some(true);
            } else if let Some(ca) = &target.ca_pem {
                cluster.certificate_authority_data = Some(base64_of(ca));
            }
            let mut user = AuthInfo::default();
            match auth {
                Auth::Token { token, identity } => {
                    user.token = token.clone();
                    if let Some(identity) = identity {
                        set_identity(&mut user, identity);
                    }
                }
                Auth::ClientCertificate(identity) => set_identity(&mut user, identity),
                Auth::Password { username, password } => {
                    user.username = Some(username.expose_secret().to_owned());
                    user.password = Some(password.clone());
                }
                Auth::InCluster => {
                    cluster.certificate_authority_data = None;
                    cluster.certificate_authority = Some(path_string(&in_cluster_dir.join(SA_CA)));
                    user.token_file = Some(path_string(&in_cluster_dir.join(SA_TOKEN)));
                }
                Auth::Kubeconfig { .. } => {}
            }
            (cluster, user)
        }
    };
    kubeconfig::single_context(name, cluster, user, target.namespace.clone())
}

fn set_identity(user: &mut AuthInfo, identity: &Identity) {
    user.client_certificate_data = Some(base64_of(&identity.certificate_pem));
    user.client_key_data = Some(SecretString::from(base64_of(&identity.key_pem)));
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";

    #[test]
    fn pem_is_accepted_plain_or_base64_in_any_alphabet() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(PEM);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(PEM);
        for input in [
            PEM.to_owned(),
            b64.clone(),
            url_safe,
            format!("{}\n{}", &b64[..10], &b64[10..]),
        ] {
            let pem = pem_or_base64(&SecretString::from(input), "certificate_authority").unwrap();
            assert_eq!(pem.expose_secret(), format!("{PEM}\n"));
        }
        let err = pem_or_base64(&SecretString::from("hunter2"), "client_key").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`client_key` is neither PEM nor base64-encoded PEM; give the content of the PEM file"
        );
    }

    #[test]
    fn hosts_are_parsed_not_stripped() {
        // ZenML's `strip("https://")` turned these into `ttps-api.example.com` and `ost`.
        for (server, host) in [
            (
                "https://https-api.example.com:6443",
                "https-api.example.com",
            ),
            ("https://host", "host"),
            ("https://10.0.0.1:6443/", "10.0.0.1"),
            ("https://[::1]:6443", "::1"),
            ("http://ps.local:8080/k8s/clusters/c-1", "ps.local"),
        ] {
            assert_eq!(host_of(&parse_server(server).unwrap()), host, "{server}");
        }
        for bad in [
            "10.0.0.1:6443",
            "ftp://x",
            "https://user:pw@x",
            "https://x/?a=b",
            "not a url",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn configuration_errors_name_fields_but_never_values() {
        let config = ConnectorConfig::new("c", "kubernetes", TOKEN)
            .with_value("server", "https://k8s.example.com")
            .with_value("tokn", "x")
            .with_secret("token", "s3cr3t-token");
        let err = parse(&config, "https://kubernetes.default.svc").unwrap_err();
        assert!(err.to_string().contains("unknown field `tokn`"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"));
        let config = ConnectorConfig::new("c", "kubernetes", CLIENT_CERTIFICATE)
            .with_value("server", "https://k8s.example.com")
            .with_secret("client_certificate", PEM);
        let err = parse(&config, "").unwrap_err();
        assert!(
            err.to_string().contains("missing field `client_key`"),
            "{err}"
        );
    }

    /// The token every malformed kubeconfig below carries.
    pub(crate) const TOKEN_TEXT: &str = "kc-SeCrEt-t0ken-4f9a2b";

    /// Kubeconfigs that do not parse, each with the token in or next to the bad spot.
    pub(crate) fn malformed_kubeconfigs() -> Vec<String> {
        let t = TOKEN_TEXT;
        let head = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443\n";
        vec![
            // An unclosed quote on the token line.
            format!("{head}users:\n- name: u\n  user:\n    token: \"{t}\n"),
            // A dedent that fits no level, right after the token.
            format!("{head}users:\n- name: u\n  user:\n    token: {t}\n   bad: x\n"),
            // A tab as indentation on the token line.
            format!("{head}users:\n- name: u\n  user:\n\ttoken: {t}\n"),
            // `users` as a string that holds the token.
            format!("{head}users: \"token: {t}\"\n"),
            // The token as a sequence or a mapping.
            format!("{head}users:\n- name: u\n  user:\n    token: [{t}]\n"),
            format!("{head}users:\n- name: u\n  user:\n    token: {{value: {t}}}\n"),
            // Only the token, pasted instead of the kubeconfig.
            t.to_owned(),
            format!("{t}\n"),
            // Broken JSON.
            format!("{{\"users\": [{{\"name\": \"u\", \"user\": {{\"token\": \"{t}\"}}}}]"),
            // A colon inside the unquoted token.
            format!("{head}users:\n- name: u\n  user:\n    token: {t}: more\n"),
            // An alias named after the token, which no anchor defines.
            format!("{head}users:\n- name: u\n  user:\n    token: *{t}\n"),
            // The token twice under one key.
            format!("{head}users:\n- name: u\n  user:\n    token: {t}\n    token: {t}\n"),
            // The token as a key, and a flow mapping that never closes.
            format!("{head}users:\n- name: u\n  user: {{{t}: x\n"),
            // A bad type elsewhere, with the token on the same line of flow YAML.
            format!("{{users: [{{name: u, user: {{token: {t}}}}}], clusters: {t}}}"),
        ]
    }

    #[test]
    fn malformed_kubeconfigs_are_reported_by_line_never_by_content() {
        for (i, text) in malformed_kubeconfigs().into_iter().enumerate() {
            let config = ConnectorConfig::new("kc", "kubernetes", KUBECONFIG)
                .with_secret("kubeconfig", text.clone());
            let err = parse(&config, "").expect_err(&format!("shape {i} parses"));
            let message = err.to_string();
            // Any 8 characters of the token would be a leak.
            for start in 0..=TOKEN_TEXT.len() - 8 {
                assert!(
                    !message.contains(&TOKEN_TEXT[start..start + 8]),
                    "shape {i} leaks the token: {message}"
                );
            }
            assert!(
                message.starts_with("`kubeconfig` is not a valid kubeconfig"),
                "shape {i}: {message}"
            );
            assert!(
                message.contains("line ") || message.contains("not valid kubeconfig YAML"),
                "shape {i} says where: {message}"
            );
            let debug = format!("{err:?}");
            assert!(!debug.contains(TOKEN_TEXT), "shape {i}: {debug}");
        }
    }

    #[test]
    fn a_server_url_with_credentials_is_refused_without_repeating_them() {
        let err = parse_server("https://admin:hunter2@k8s.example.com:6443").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("must not carry credentials"), "{message}");
        assert!(
            !message.contains("hunter2") && !message.contains("admin"),
            "{message}"
        );
    }

    #[test]
    fn token_config_defaults_the_cluster_name_to_the_host() {
        let config = ConnectorConfig::new("c", "kubernetes", TOKEN)
            .with_value("server", "https://https-api.example.com:6443")
            .with_value("insecure", true)
            .with_secret("token", "t");
        let parsed = parse(&config, "").unwrap();
        assert_eq!(parsed.target.cluster_name, "https-api.example.com");
        assert!(parsed.target.insecure);
        assert!(matches!(
            parsed.auth,
            Auth::Token {
                token: Some(_),
                identity: None
            }
        ));
    }
}
