//! Kubernetes name and label sanitisation, and deterministic Job names.
//!
//! The sanitisation rules follow ZenML's `kube_utils` (see `reference/zenml.md` §3.4);
//! the Job name differs on purpose: it is derived from the step run (no randomness), it
//! never starts with `-`, and its hash part is never cut off by a long prefix.

/// Maximum length of a DNS-1123 label, a label value and a label name part.
pub const MAX_LABEL_LEN: usize = 63;

/// Sanitises `s` into a DNS-1123 label (resource names): lowercase, every character
/// outside `[a-z0-9-]` becomes `-`, runs of `-` collapse, leading `-` are stripped, the
/// result is cut to 63 characters and trailing `-` are stripped. The result may be empty.
///
/// ```
/// use stepstack_settings::sanitize_label;
/// assert_eq!(sanitize_label("__weird__"), "weird");
/// assert_eq!(sanitize_label("My Pipeline"), "my-pipeline");
/// ```
pub fn sanitize_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(MAX_LABEL_LEN);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Sanitises `s` into a Kubernetes label value. Case, `.`, `_` and `-` are kept; every
/// run of other characters becomes one `-`; non-alphanumeric characters are stripped
/// from both ends; the result is cut to 63 characters. The result may be empty.
///
/// ```
/// use stepstack_settings::sanitize_label_value;
/// assert_eq!(sanitize_label_value("Train Model (v2)"), "Train-Model-v2");
/// ```
pub fn sanitize_label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    let trimmed = out.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let cut: String = trimmed.chars().take(MAX_LABEL_LEN).collect();
    cut.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// Makes `name` usable as the name of an Indexed Job with a headless Service: it must
/// start with a letter (Service names do), and `<name>-<index>` pod hostnames must fit
/// in 63 characters. The result never ends with `-`.
///
/// ```
/// use stepstack_settings::multi_pod_job_name;
/// assert_eq!(multi_pod_job_name("0abc-train", 2), "j0abc-train");
/// ```
pub fn multi_pod_job_name(name: &str, pod_count: u32) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        out.push('j');
    }
    out.push_str(name);
    let max = max_multi_pod_len(pod_count);
    out.truncate(max);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

fn max_multi_pod_len(pod_count: u32) -> usize {
    let digits = pod_count.saturating_sub(1).to_string().len();
    (MAX_LABEL_LEN - 1).saturating_sub(digits)
}

/// A short, stable hash (8 lowercase hex characters, FNV-1a) of a step run and attempt.
///
/// Used in Job names so that a retried create of the same attempt hits `409 Conflict`
/// (and can adopt the existing Job) instead of creating a duplicate.
pub fn step_run_hash(step_run_id: &str, attempt: u32) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in step_run_id
        .bytes()
        .chain(std::iter::once(b':'))
        .chain(attempt.to_string().bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    format!("{:08x}", (hash >> 32) ^ (hash & 0xffff_ffff))
}

/// The deterministic Job name of one attempt of a step run:
/// `<prefix>-<step>-<pipeline>-<hash>`, sanitised as a DNS-1123 label. The readable part
/// is shortened so the 8-character hash always survives; for `pod_count > 1` the name
/// also satisfies [`multi_pod_job_name`].
///
/// ```
/// use stepstack_settings::job_name;
/// let name = job_name(None, "trainer", "my_pipeline", "run-1", 0, 1);
/// assert!(name.starts_with("trainer-my-pipeline-"));
/// assert_eq!(name, job_name(None, "trainer", "my_pipeline", "run-1", 0, 1));
/// ```
pub fn job_name(
    prefix: Option<&str>,
    step_name: &str,
    pipeline_name: &str,
    step_run_id: &str,
    attempt: u32,
    pod_count: u32,
) -> String {
    let hash = step_run_hash(step_run_id, attempt);
    let readable = match prefix.filter(|p| !p.is_empty()) {
        Some(prefix) => format!("{prefix}-{step_name}-{pipeline_name}"),
        None => format!("{step_name}-{pipeline_name}"),
    };
    let mut max_total = MAX_LABEL_LEN;
    let mut readable = sanitize_label(&readable);
    let multi = pod_count > 1;
    if multi {
        max_total = max_multi_pod_len(pod_count);
        if !readable
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        {
            readable.insert(0, 'j');
        }
    }
    // `-` + 8 hex characters.
    readable.truncate(max_total - hash.len() - 1);
    while readable.ends_with('-') {
        readable.pop();
    }
    if readable.is_empty() {
        // Always start with a letter so that the name is also a valid Service name.
        format!("j{hash}")
    } else {
        format!("{readable}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_label_vectors() {
        assert_eq!(sanitize_label("__weird__"), "weird");
        assert_eq!(
            sanitize_label("MyPrefix-0a1b2c3d-Train Model!-My Pipeline-step-operator"),
            "myprefix-0a1b2c3d-train-model-my-pipeline-step-operator"
        );
        assert_eq!(
            sanitize_label("-0a1b2c3d-trainer-my_pipeline-step-operator"),
            "0a1b2c3d-trainer-my-pipeline-step-operator"
        );
        assert_eq!(sanitize_label("---"), "");
        assert_eq!(sanitize_label(&"a".repeat(70)).len(), 63);
        assert_eq!(
            sanitize_label(&format!("{}-b", "a".repeat(62))),
            "a".repeat(62)
        );
    }

    #[test]
    fn sanitize_label_value_vectors() {
        let id = "my_pipeline-2024_05_01-12_00_00_123456";
        assert_eq!(sanitize_label_value(id), id);
        assert_eq!(sanitize_label_value("Train Model (v2)"), "Train-Model-v2");
        assert_eq!(sanitize_label_value("..._abc_.."), "abc");
        assert_eq!(
            sanitize_label_value(&format!("{}.b", "a".repeat(70))),
            "a".repeat(63)
        );
        assert_eq!(sanitize_label_value("---"), "");
        assert_eq!(sanitize_label_value("ünïcode-name"), "n-code-name");
    }

    #[test]
    fn multi_pod_job_name_vectors() {
        assert_eq!(multi_pod_job_name("0abc-train", 2), "j0abc-train");
        let long = multi_pod_job_name(&"a".repeat(63), 10);
        assert!(long.len() <= 61, "{long}");
        assert!(!multi_pod_job_name(&format!("{}-b", "a".repeat(60)), 10).ends_with('-'));
        assert!(!multi_pod_job_name("train-", 3).ends_with('-'));
    }

    #[test]
    fn job_names_are_deterministic_valid_and_keep_the_hash() {
        let a = job_name(None, "trainer", "my_pipeline", "sr-1", 0, 1);
        assert_eq!(a, job_name(None, "trainer", "my_pipeline", "sr-1", 0, 1));
        assert_ne!(a, job_name(None, "trainer", "my_pipeline", "sr-1", 1, 1));
        assert_ne!(a, job_name(None, "trainer", "my_pipeline", "sr-2", 0, 1));
        assert!(a.starts_with("trainer-my-pipeline-"));
        let hash = step_run_hash("sr-1", 0);
        assert!(a.ends_with(&hash));

        let long = job_name(
            Some(&"P".repeat(80)),
            "Train Model!",
            "My Pipeline",
            "x",
            0,
            1,
        );
        assert_eq!(long.len(), 63);
        assert!(long.ends_with(&step_run_hash("x", 0)));

        let multi = job_name(None, "0step", "p", "x", 0, 12);
        assert!(multi.starts_with('j'));
        assert!(multi.len() <= 60);
        assert!(job_name(Some("--"), "__", "__", "x", 0, 1).starts_with('j'));
    }
}
