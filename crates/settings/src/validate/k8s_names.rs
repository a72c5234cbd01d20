//! Kubernetes naming rules (apimachinery `validation`): label keys and values,
//! DNS-1123 labels and subdomains. Each returns `Err(reason)` in Kubernetes' words.

const NAME_CHARS: &str = "alphanumeric characters, '-', '_' or '.'";

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 label: at most 63 lowercase alphanumerics or '-', alphanumeric at both ends.
pub fn check_dns1123_label(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err("must not be empty".into());
    }
    if b.len() > 63 {
        return Err(format!("must be at most 63 characters, found {}", b.len()));
    }
    let ok = b[0].is_ascii_lowercase() || b[0].is_ascii_digit();
    let ok_end = b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit();
    if !ok
        || !ok_end
        || !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    {
        return Err(
            "must be a DNS-1123 label: lowercase alphanumeric characters or '-', starting and ending with an alphanumeric character"
                .into(),
        );
    }
    Ok(())
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels.
pub(crate) fn check_dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 253 {
        return Err(format!("must be at most 253 characters, found {}", s.len()));
    }
    if s.split('.').any(|part| check_dns1123_label(part).is_err()) {
        return Err(
            "must be a DNS-1123 subdomain: lowercase alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character"
                .into(),
        );
    }
    Ok(())
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS-1123 subdomain, the name
/// at most 63 characters of alphanumerics, '-', '_' or '.', alphanumeric at both ends.
pub(crate) fn check_qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        check_dns1123_subdomain(prefix).map_err(|e| format!("prefix `{prefix}` {e}"))?;
    }
    if name.is_empty() {
        return Err("name part must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "name part must be at most 63 characters, found {}",
            name.len()
        ));
    }
    if !is_name_part(name) {
        return Err(format!(
            "name part must consist of {NAME_CHARS}, and start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 of alphanumerics, '-', '_' or '.', alphanumeric
/// at both ends.
pub fn check_label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > 63 {
        return Err(format!("must be at most 63 characters, found {}", s.len()));
    }
    if !is_name_part(s) {
        return Err(format!(
            "must consist of {NAME_CHARS}, and start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_dns1123_label("my-vol-1").is_ok());
        assert!(check_dns1123_label("My_vol").is_err());
        assert!(check_dns1123_label("-a").is_err());
        assert!(check_dns1123_label(&"a".repeat(64)).is_err());
        assert!(check_dns1123_subdomain("registry.example.com").is_ok());
        assert!(check_dns1123_subdomain("a..b").is_err());
        assert!(check_qualified_name("app.kubernetes.io/name").is_ok());
        assert!(check_qualified_name("gpu-type").is_ok());
        assert!(check_qualified_name("Team_A").is_ok());
        assert!(check_qualified_name("bad key").is_err());
        assert!(check_qualified_name("/x").is_err());
        assert!(check_qualified_name("x/").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("a100").is_ok());
        assert!(check_label_value("-a").is_err());
        assert!(check_label_value("a b").is_err());
    }
}
