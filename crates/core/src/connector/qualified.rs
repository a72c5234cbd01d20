//! Resource ids that are a bare name where the name is unique and `qualifier/name`
//! otherwise (GKE: `location/name`, AKS: `resource-group/name`).

/// Splits `qualifier/name` at the first `/`; a bare name has no qualifier.
pub fn split_qualified(id: &str) -> (Option<&str>, &str) {
    match id.split_once('/') {
        Some((qualifier, name)) => (Some(qualifier), name),
        None => (None, id),
    }
}

/// The ids to list for `(qualifier, name)` resources, sorted: the bare name of a resource
/// whose name is unique, `qualifier/name` for each resource sharing its name.
pub fn qualified_ids<'a>(resources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let resources: Vec<(&str, &str)> = resources.into_iter().collect();
    let mut ids: Vec<String> = resources
        .iter()
        .map(|&(qualifier, name)| {
            if resources.iter().filter(|(_, other)| *other == name).count() > 1 {
                format!("{qualifier}/{name}")
            } else {
                name.to_owned()
            }
        })
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_names_are_qualified_and_unique_ones_are_bare() {
        let ids = qualified_ids([("rg-a", "prod"), ("rg-b", "prod"), ("rg-a", "dev")]);
        assert_eq!(ids, ["dev", "rg-a/prod", "rg-b/prod"]);
        assert_eq!(split_qualified("rg-a/prod"), (Some("rg-a"), "prod"));
        assert_eq!(split_qualified("prod"), (None, "prod"));
    }
}
