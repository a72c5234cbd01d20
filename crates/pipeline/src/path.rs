//! Paths of values in a pipeline file, rendered as the settings crate renders them
//! (`steps.train.command[2]`; keys that are not plain names as `["a.b"]`), so one error
//! list reads the same whichever crate found the problem.

/// `parent.key`, or `parent["key"]` when `key` is not a plain name.
pub(crate) fn key(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (plain, parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{key:?}]"),
    }
}

/// `parent[i]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_the_settings_crate() {
        assert_eq!(key("", "steps"), "steps");
        assert_eq!(
            index(&key(&key("steps", "train"), "command"), 2),
            "steps.train.command[2]"
        );
        assert_eq!(key("steps", "a.b"), "steps[\"a.b\"]");
        assert_eq!(key("steps", "My Step"), "steps[\"My Step\"]");
    }
}
