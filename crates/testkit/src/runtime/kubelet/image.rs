//! Simulated images: reference parsing and the pull rules.
//!
//! Nothing is downloaded. A reference that doesn't parse is `InvalidImageName`; a pull
//! fails (`ErrImagePull`, then `ImagePullBackOff`) when the registry host ends in
//! `.invalid`, when the image is listed in [`ImageOptions::missing`], or when its
//! registry is listed in [`ImageOptions::private_registries`] and the pod has no
//! `imagePullSecrets` entry naming a `kubernetes.io/dockerconfigjson` secret with
//! credentials for that host. Every other image "pulls" after
//! [`ImageOptions::pull_delay`].

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Image rules of the process kubelet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageOptions {
    /// Images that don't exist: a pull fails with "not found". Entries match the
    /// reference as written, its normalized form (`docker.io/library/busybox:1.36`), or
    /// the repository without tag (`docker.io/library/busybox`, then every tag is missing).
    pub missing: Vec<String>,
    /// Registry hosts (`registry.example.com`, `localhost:5000`) that require an
    /// `imagePullSecrets` entry with credentials for the host.
    pub private_registries: Vec<String>,
    /// How long each successful pull takes.
    #[serde(with = "millis")]
    pub pull_delay: Duration,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRef {
    /// Registry host (with port), `docker.io` by default.
    pub(crate) domain: String,
    /// Repository path (`library/busybox`).
    pub(crate) path: String,
    /// Tag (`latest` when neither tag nor digest is given).
    pub(crate) tag: Option<String>,
    /// Digest (`sha256:…`).
    pub(crate) digest: Option<String>,
}

impl ImageRef {
    /// The fully qualified reference (`docker.io/library/busybox:latest`).
    pub(crate) fn full(&self) -> String {
        let mut s = self.repository();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// `domain/path` without tag or digest.
    pub(crate) fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// A stable fake image ID for `containerStatuses[].imageID`.
    pub(crate) fn image_id(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.full().hash(&mut h);
        let x = h.finish();
        format!(
            "{}@sha256:{x:016x}{x:016x}{x:016x}{x:016x}",
            self.repository()
        )
    }
}

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A path component: lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn valid_component(s: &str) -> bool {
    if s.is_empty() || !s.starts_with(is_alnum_lower) || !s.ends_with(is_alnum_lower) {
        return false;
    }
    let bytes: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if is_alnum_lower(c) {
            i += 1;
            continue;
        }
        // A separator run.
        let start = i;
        while i < bytes.len() && !is_alnum_lower(bytes[i]) {
            i += 1;
        }
        let sep: String = bytes[start..i].iter().collect();
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_domain(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Parses an image reference as the container runtime does (`docker.io` and
/// `library/` defaults, `latest` tag). `None` means `InvalidImageName`.
pub(crate) fn parse(reference: &str) -> Option<ImageRef> {
    if reference.is_empty() || reference.len() > 255 + 128 + 80 || reference.trim() != reference {
        return None;
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => {
            let (algo, hex) = d.split_once(':')?;
            if algo.is_empty()
                || !algo
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                || hex.len() < 32
                || !hex.chars().all(|c| c.is_ascii_hexdigit())
            {
                return None;
            }
            (r, Some(d.to_string()))
        }
        None => (reference, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &rest[last_slash + i + 1..];
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return None;
            }
            (&rest[..last_slash + i], Some(tag.to_string()))
        }
        None => (rest, None),
    };
    let mut parts: Vec<&str> = name.split('/').collect();
    let domain = if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        let d = parts.remove(0);
        if !valid_domain(d) {
            return None;
        }
        d.to_string()
    } else {
        "docker.io".to_string()
    };
    if parts.is_empty() || !parts.iter().all(|p| valid_component(p)) {
        return None;
    }
    let mut path = parts.join("/");
    if domain == "docker.io" && parts.len() == 1 {
        path = format!("library/{path}");
    }
    let tag = match (&tag, &digest) {
        (None, None) => Some("latest".to_string()),
        _ => tag,
    };
    Some(ImageRef {
        domain,
        path,
        tag,
        digest,
    })
}

/// The waiting message (and event) of an image that doesn't parse.
pub(crate) fn invalid_name_message(reference: &str) -> String {
    format!(
        "Failed to apply default image tag \"{reference}\": couldn't parse image name \"{reference}\": invalid reference format"
    )
}

/// Decides whether a pull of `image` succeeds. `credential_hosts` are the registry hosts
/// the pod's pull secrets have credentials for. `Err` is the runtime's error message.
pub(crate) fn check_pull(
    image: &ImageRef,
    written: &str,
    opts: &ImageOptions,
    credential_hosts: &BTreeSet<String>,
) -> Result<(), String> {
    let full = image.full();
    let host = image.domain.split(':').next().unwrap_or_default();
    if host.ends_with(".invalid") {
        let reference = image
            .tag
            .as_deref()
            .or(image.digest.as_deref())
            .unwrap_or("latest");
        return Err(format!(
            "rpc error: code = Unknown desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": failed to do request: Head \"https://{}/v2/{}/manifests/{reference}\": dial tcp: lookup {host}: no such host",
            image.domain, image.path
        ));
    }
    let repo = image.repository();
    if opts
        .missing
        .iter()
        .any(|m| m == written || *m == full || *m == repo)
    {
        return Err(format!(
            "rpc error: code = NotFound desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {full}: not found"
        ));
    }
    if opts.private_registries.contains(&image.domain) && !credential_hosts.contains(&image.domain)
    {
        return Err(format!(
            "rpc error: code = Unknown desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials"
        ));
    }
    Ok(())
}

/// The registry hosts a `.dockerconfigjson` (or legacy `.dockercfg`) secret payload has
/// credentials for.
pub(crate) fn docker_config_hosts(config_json: &[u8]) -> BTreeSet<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(config_json) else {
        return BTreeSet::new();
    };
    let auths = v.get("auths").unwrap_or(&v);
    auths
        .as_object()
        .map(|m| {
            m.keys()
                .map(|k| {
                    let k = k
                        .trim_start_matches("https://")
                        .trim_start_matches("http://");
                    k.split('/').next().unwrap_or(k).to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `Duration` as Kubernetes prints it in the Pulled event (`12ms`, `1.5s`).
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{}ms", ms.round() as u64)
    } else {
        let s = d.as_secs_f64();
        let text = format!("{s:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let r = parse("busybox").unwrap();
        assert_eq!(r.full(), "docker.io/library/busybox:latest");
        let r = parse("ghcr.io/org/app:1.2.3").unwrap();
        assert_eq!(r.domain, "ghcr.io");
        assert_eq!(r.path, "org/app");
        assert_eq!(r.tag.as_deref(), Some("1.2.3"));
        let r = parse("localhost:5000/x").unwrap();
        assert_eq!(r.domain, "localhost:5000");
        assert_eq!(r.full(), "localhost:5000/x:latest");
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("python@{digest}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert!(parse("org/my_app__x.y-z:tag_1.0-rc").is_some());
        assert!(parse("registry.invalid/x:1").is_some());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "Busybox",
            "busy box",
            "busybox:",
            "busybox:-x",
            "a//b",
            "/a",
            "a/",
            "a@sha256:xyz",
            "UPPER.io/Repo:1",
            "a:b:c",
            " busybox",
            "a..b",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} should be invalid");
        }
        assert!(invalid_name_message("Bad").contains("invalid reference format"));
    }

    #[test]
    fn pull_rules() {
        let opts = ImageOptions {
            missing: vec!["docker.io/library/gone".into(), "other:2".into()],
            private_registries: vec!["private.example.com".into()],
            pull_delay: Duration::ZERO,
        };
        let none = BTreeSet::new();
        let check =
            |s: &str, creds: &BTreeSet<String>| check_pull(&parse(s).unwrap(), s, &opts, creds);
        assert!(check("busybox:1.36", &none).is_ok());
        let e = check("registry.invalid/x:1", &none).unwrap_err();
        assert!(e.contains("no such host"), "{e}");
        assert!(e.contains("\"registry.invalid/x:1\""), "{e}");
        assert!(check("gone:any", &none).unwrap_err().contains("not found"));
        assert!(check("other:2", &none).is_err());
        assert!(check("other:3", &none).is_ok());
        let e = check("private.example.com/team/app:1", &none).unwrap_err();
        assert!(e.contains("authorization failed"), "{e}");
        let creds = docker_config_hosts(
            br#"{"auths": {"https://private.example.com/v1/": {"auth": "eDp5"}}}"#,
        );
        assert!(check("private.example.com/team/app:1", &creds).is_ok());
        assert!(docker_config_hosts(b"not json").is_empty());
    }

    #[test]
    fn durations_like_go() {
        assert_eq!(go_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
    }
}
