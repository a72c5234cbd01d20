//! "did you mean …?" for unknown keys and invalid enum values.

use crate::schema::snake_to_camel;

/// The best candidate for a misspelt `key`: its camelCase form, a case- or
/// separator-insensitive match, or the nearest name by edit distance (at most a third
/// of the key's length, between 1 and 3). Every stepstack "did you mean …?" uses this,
/// so suggestions read the same in settings, run configurations and pipelines.
///
/// ```
/// use stepstack_settings::did_you_mean;
/// assert_eq!(did_you_mean("comand", &["command", "args"]), Some("command"));
/// assert_eq!(did_you_mean("zzz", &["command", "args"]), None);
/// ```
pub fn did_you_mean<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let camel = snake_to_camel(key);
    if let Some(c) = candidates.iter().find(|c| **c == camel) {
        return Some(c);
    }
    let squash = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let squashed = squash(key);
    if let Some(c) = candidates.iter().find(|c| squash(c) == squashed) {
        return Some(c);
    }
    let max_distance = (key.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&squashed, &squash(c)), *c))
        .filter(|(d, _)| *d <= max_distance)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let fields = ["tolerationSeconds", "key", "operator", "effect", "value"];
        assert_eq!(
            did_you_mean("toleration_seconds", &fields),
            Some("tolerationSeconds")
        );
        assert_eq!(did_you_mean("Operator", &fields), Some("operator"));
        assert_eq!(did_you_mean("efect", &fields), Some("effect"));
        assert_eq!(did_you_mean("completely_else", &fields), None);
        let settings = ["node_selectors", "tolerations", "affinity"];
        assert_eq!(
            did_you_mean("node_selector", &settings),
            Some("node_selectors")
        );
        assert_eq!(
            did_you_mean("nodeSelectors", &settings),
            Some("node_selectors")
        );
    }
}
