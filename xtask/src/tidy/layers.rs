//! Modules import downward only: within a crate, no top-level module may use a module
//! that (directly or through others) uses it back.
//!
//! The module graph is read from the source text: every `crate::NAME` path, including
//! the names inside a `use crate::{…}` group, is an edge from the file's top-level
//! module to `NAME`. A submodule's `super::` paths stay inside its parent, so they are
//! not edges. Cycles are found as strongly connected components and reported with one
//! concrete loop (`wait -> cancel -> wait`), which is what the reader has to break.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level module a file under `src/` belongs to (`watch/state.rs` → `watch`);
/// `None` for the crate root.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The names a source text reaches through `crate::`: `crate::a::b` gives `a`, and
/// `use crate::{a, b::c}` gives `a` and `b`.
pub(crate) fn crate_references(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue; // e.g. `some_crate::x`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1usize;
            let mut item = String::new();
            let mut at_item_start = true;
            for c in group.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        at_item_start = false;
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => at_item_start = true,
                    c if depth == 1 && at_item_start && (c.is_alphanumeric() || c == '_') => {
                        item.push(c)
                    }
                    _ => {
                        if !item.is_empty() {
                            names.insert(std::mem::take(&mut item));
                        }
                        if !c.is_whitespace() {
                            at_item_start = false;
                        }
                    }
                }
            }
            if !item.is_empty() {
                names.insert(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// One loop per cycle among the crate's top-level modules, e.g. `wait -> cancel -> wait`.
pub(crate) fn module_cycles(src: &Path, files: &[(std::path::PathBuf, String)]) -> Vec<String> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, _) in files {
        if let Some(module) = top_module(src, file) {
            edges.entry(module).or_default();
        }
    }
    let modules: BTreeSet<String> = edges.keys().cloned().collect();
    for (file, text) in files {
        let Some(from) = top_module(src, file) else {
            continue;
        };
        for to in crate_references(text) {
            if to != from && modules.contains(&to) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    cycles(&edges)
}

/// A loop through each strongly connected component of more than one module.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut reported = BTreeSet::new();
    let mut loops = Vec::new();
    for start in edges.keys() {
        if reported.contains(start) {
            continue;
        }
        // Breadth-first from `start` back to `start`: the shortest loop through it.
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.as_str()]);
        let mut found = false;
        while let Some(node) = queue.pop_front() {
            for next in edges.get(node).into_iter().flatten() {
                if next == start {
                    previous.insert(start.as_str(), node);
                    found = true;
                    break;
                }
                if !previous.contains_key(next.as_str()) {
                    previous.insert(next.as_str(), node);
                    queue.push_back(next.as_str());
                }
            }
            if found {
                break;
            }
        }
        if !found {
            continue;
        }
        let mut path = vec![start.as_str()];
        let mut node = previous[start.as_str()];
        while node != start {
            path.push(node);
            node = previous[node];
        }
        path.push(start.as_str());
        path.reverse();
        reported.extend(path.iter().map(|m| (*m).to_owned()));
        loops.push(path.join(" -> "));
    }
    loops
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn references_include_grouped_imports() {
        let text = "use crate::{api::Api, watch, handle::{A, B}};\nlet x = crate::retry::policy();\nuse other_crate::nope;";
        let names: Vec<String> = crate_references(text).into_iter().collect();
        assert_eq!(names, ["api", "handle", "retry", "watch"]);
    }

    #[test]
    fn a_loop_is_named_and_a_layering_is_not() {
        let src = PathBuf::from("src");
        let file = |name: &str, text: &str| (src.join(name), text.to_owned());
        let layered = [
            file("lib.rs", "mod a; mod b; mod c;"),
            file("a.rs", "use crate::b::X; use crate::c::Y;"),
            file("b/mod.rs", "use crate::c::Y;"),
            file("b/inner.rs", "use super::X; use crate::c::Z;"),
            file("c.rs", ""),
        ];
        assert!(module_cycles(&src, &layered).is_empty());

        let looped = [
            file("a.rs", "use crate::b::X;"),
            file("b/mod.rs", "mod inner;"),
            file("b/inner.rs", "use crate::c::Y;"),
            file("c.rs", "fn f() { crate::a::g() }"),
        ];
        assert_eq!(module_cycles(&src, &looped), ["a -> b -> c -> a"]);
    }
}
