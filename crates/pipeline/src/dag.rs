//! The dependency graph of a pipeline's steps: an edge `a -> b` means `b` runs after
//! `a` (it reads one of `a`'s outputs, or names `a` in `after`).
//!
//! What the orchestrator asks of it: a topological order, the steps ready once a set
//! of steps has finished, and everything downstream of a failed step (to skip it).
//! Ties are broken by step name, so every order is deterministic. Nothing recurses, so
//! a pipeline of any length cannot overflow the stack.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// The steps and their dependencies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dag {
    /// Step names, sorted; a step's index is its position here.
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// For each step, the steps it waits for (sorted, each once).
    upstream: Vec<Vec<usize>>,
    /// For each step, the steps that wait for it (sorted, each once).
    downstream: Vec<Vec<usize>>,
}

impl Dag {
    /// The graph of `names` with `edges` (`(from, to)`: `to` runs after `from`).
    /// Edges naming unknown steps and self-edges are ignored (validation reports them).
    pub fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
        edges: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Dag {
        let mut names: Vec<String> = names.into_iter().map(str::to_string).collect();
        names.sort_unstable();
        names.dedup();
        let index: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let mut upstream = vec![Vec::new(); names.len()];
        let mut downstream = vec![Vec::new(); names.len()];
        for (from, to) in edges {
            let (Some(&f), Some(&t)) = (index.get(from), index.get(to)) else {
                continue;
            };
            if f != t {
                upstream[t].push(f);
                downstream[f].push(t);
            }
        }
        for list in upstream.iter_mut().chain(downstream.iter_mut()) {
            list.sort_unstable();
            list.dedup();
        }
        Dag {
            names,
            index,
            upstream,
            downstream,
        }
    }

    /// The step names, sorted.
    pub fn steps(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// The steps `step` waits for directly.
    pub fn upstream(&self, step: &str) -> Vec<&str> {
        self.index
            .get(step)
            .map(|&i| self.upstream[i].iter().map(|&u| self.name(u)).collect())
            .unwrap_or_default()
    }

    /// Every step that waits, directly or not, for `step`: what a failure of `step`
    /// skips.
    pub fn downstream(&self, step: &str) -> BTreeSet<&str> {
        let mut found = BTreeSet::new();
        let Some(&start) = self.index.get(step) else {
            return found;
        };
        let mut seen = vec![false; self.names.len()];
        let mut pending = vec![start];
        while let Some(i) = pending.pop() {
            for &d in &self.downstream[i] {
                if !seen[d] {
                    seen[d] = true;
                    found.insert(self.name(d));
                    pending.push(d);
                }
            }
        }
        found
    }

    /// The steps not in `finished` whose upstream steps are all in `finished`, sorted.
    /// The orchestrator passes the steps that succeeded (or were cached) and leaves out
    /// those already running; steps downstream of a failure never become ready.
    pub fn ready(&self, finished: &BTreeSet<String>) -> Vec<&str> {
        (0..self.names.len())
            .filter(|&i| !finished.contains(&self.names[i]))
            .filter(|&i| {
                self.upstream[i]
                    .iter()
                    .all(|&u| finished.contains(&self.names[u]))
            })
            .map(|i| self.name(i))
            .collect()
    }

    /// Every step, each after the steps it waits for (ties by name). Steps on a cycle
    /// are left out (a validated pipeline has none).
    pub fn topological_order(&self) -> Vec<&str> {
        let mut waiting: Vec<usize> = self.upstream.iter().map(Vec::len).collect();
        let mut ready: BTreeSet<usize> =
            (0..self.names.len()).filter(|&i| waiting[i] == 0).collect();
        let mut order = Vec::with_capacity(self.names.len());
        while let Some(i) = ready.pop_first() {
            order.push(self.name(i));
            for &d in &self.downstream[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        order
    }

    /// One cycle per group of steps that wait for each other, each as the list of its
    /// steps from the smallest name around to it again (`[a, b, c, a]`): the shortest
    /// way back along the edges. Empty when the graph is acyclic.
    pub fn cycles(&self) -> Vec<Vec<&str>> {
        let mut cycles = Vec::new();
        for component in self.strongly_connected() {
            if component.len() < 2 {
                continue;
            }
            let start = component[0];
            let inside: BTreeSet<usize> = component.iter().copied().collect();
            // Breadth-first from `start` inside the component, back to `start`.
            let mut parent: HashMap<usize, usize> = HashMap::new();
            let mut queue = VecDeque::from([start]);
            let mut last = None;
            'search: while let Some(i) = queue.pop_front() {
                for &d in &self.downstream[i] {
                    if d == start {
                        last = Some(i);
                        break 'search;
                    }
                    if inside.contains(&d) && !parent.contains_key(&d) {
                        parent.insert(d, i);
                        queue.push_back(d);
                    }
                }
            }
            let Some(mut at) = last else { continue };
            // Walk back from the step before `start` to `start`'s successor.
            let mut back = Vec::new();
            while at != start {
                back.push(at);
                at = parent[&at];
            }
            let path = std::iter::once(start)
                .chain(back.into_iter().rev())
                .chain(std::iter::once(start));
            cycles.push(path.map(|i| self.name(i)).collect());
        }
        cycles
    }

    fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Tarjan's strongly connected components, iteratively; each component sorted,
    /// the components ordered by their smallest step.
    fn strongly_connected(&self) -> Vec<Vec<usize>> {
        let n = self.names.len();
        let mut index = vec![usize::MAX; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut next = 0;
        let mut components = Vec::new();
        for root in 0..n {
            if index[root] != usize::MAX {
                continue;
            }
            // (node, position in its downstream list)
            let mut work = vec![(root, 0usize)];
            index[root] = next;
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&mut (v, ref mut pos)) = work.last_mut() {
                if let Some(&w) = self.downstream[v].get(*pos) {
                    *pos += 1;
                    if index[w] == usize::MAX {
                        index[w] = next;
                        low[w] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        work.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    component.sort_unstable();
                    components.push(component);
                }
            }
        }
        components.sort_by_key(|c| c[0]);
        components
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dag(names: &[&str], edges: &[(&str, &str)]) -> Dag {
        Dag::new(names.iter().copied(), edges.iter().copied())
    }

    #[test]
    fn order_ready_and_downstream() {
        // load -> clean -> train -> eval, load -> eval, report alone
        let g = dag(
            &["eval", "load", "clean", "train", "report"],
            &[
                ("load", "clean"),
                ("clean", "train"),
                ("train", "eval"),
                ("load", "eval"),
            ],
        );
        assert_eq!(
            g.topological_order(),
            ["load", "clean", "report", "train", "eval"]
        );
        let finished = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(g.ready(&finished(&[])), ["load", "report"]);
        assert_eq!(g.ready(&finished(&["load"])), ["clean", "report"]);
        assert_eq!(
            g.ready(&finished(&["load", "clean", "train"])),
            ["eval", "report"]
        );
        assert_eq!(
            g.downstream("clean").into_iter().collect::<Vec<_>>(),
            ["eval", "train"]
        );
        assert!(g.downstream("report").is_empty());
        assert_eq!(g.upstream("eval"), ["load", "train"]);
        assert!(g.cycles().is_empty());
    }

    #[test]
    fn a_cycle_is_named_from_its_smallest_step() {
        let g = dag(
            &["a", "b", "c", "d"],
            &[("b", "c"), ("c", "a"), ("a", "b"), ("c", "d")],
        );
        assert_eq!(g.cycles(), vec![vec!["a", "b", "c", "a"]]);
        assert_eq!(g.topological_order(), Vec::<&str>::new());
        let two = dag(
            &["x", "y", "p", "q"],
            &[("x", "y"), ("y", "x"), ("q", "p"), ("p", "q")],
        );
        assert_eq!(two.cycles(), vec![vec!["p", "q", "p"], vec!["x", "y", "x"]]);
    }

    /// A random acyclic graph over `n` steps: edges only from a lower to a higher
    /// position of a random permutation of the names.
    fn acyclic() -> impl Strategy<Value = (Vec<String>, Vec<(usize, usize)>)> {
        (2usize..24).prop_flat_map(|n| {
            let names = Just((0..n).map(|i| format!("s{i:02}")).collect::<Vec<_>>()).prop_shuffle();
            let edges = proptest::collection::vec((0..n, 0..n), 0..n * 2).prop_map(|pairs| {
                pairs
                    .into_iter()
                    .filter(|(a, b)| a != b)
                    .map(|(a, b)| (a.min(b), a.max(b)))
                    .collect::<Vec<_>>()
            });
            (names, edges)
        })
    }

    proptest! {
        /// A generated acyclic graph has no cycle, a full topological order that
        /// respects every edge, and `ready` releases every step exactly when its
        /// upstream finished.
        #[test]
        fn acyclic_graphs_order_fully((names, edges) in acyclic()) {
            let named: Vec<(&str, &str)> =
                edges.iter().map(|&(a, b)| (names[a].as_str(), names[b].as_str())).collect();
            let g = Dag::new(names.iter().map(String::as_str), named.iter().copied());
            prop_assert!(g.cycles().is_empty());
            let order = g.topological_order();
            prop_assert_eq!(order.len(), names.len());
            let position: HashMap<&str, usize> = order.iter().enumerate().map(|(i, s)| (*s, i)).collect();
            for (a, b) in &named {
                prop_assert!(position[a] < position[b], "{a} before {b}");
                prop_assert!(g.downstream(a).contains(b));
            }
            // Running in `ready` waves finishes everything.
            let mut finished = BTreeSet::new();
            while finished.len() < names.len() {
                let wave: Vec<String> = g.ready(&finished).into_iter().map(str::to_string).collect();
                prop_assert!(!wave.is_empty());
                finished.extend(wave);
            }
        }

        /// Adding an edge back along an existing path `u -> … -> v` (v -> u) makes
        /// exactly that cycle when the path is the graph's only one: a chain.
        #[test]
        fn a_back_edge_on_a_chain_yields_exactly_that_cycle(
            (names, _) in acyclic(), from in 0usize..100, to in 0usize..100
        ) {
            let n = names.len();
            let (u, v) = { let (a, b) = (from % n, to % n); (a.min(b), a.max(b)) };
            let chain: Vec<(&str, &str)> =
                (0..n - 1).map(|i| (names[i].as_str(), names[i + 1].as_str())).collect();
            let mut edges = chain.clone();
            edges.push((names[v].as_str(), names[u].as_str()));
            let g = Dag::new(names.iter().map(String::as_str), edges.iter().copied());
            if u == v {
                // A self-edge is validation's to report, not the graph's.
                prop_assert!(g.cycles().is_empty());
                return Ok(());
            }
            let mut expected: Vec<&str> = names[u..=v].iter().map(String::as_str).collect();
            // Rotate to start at the smallest name, then close the loop.
            let smallest = (0..expected.len()).min_by_key(|&i| expected[i]).unwrap_or(0);
            expected.rotate_left(smallest);
            expected.push(expected[0]);
            prop_assert_eq!(g.cycles(), vec![expected]);
        }

        /// In any graph with a back edge added, every reported cycle is a real, simple
        /// cycle of the graph through that edge's steps.
        #[test]
        fn reported_cycles_are_real((names, edges) in acyclic(), pick in 0usize..1000) {
            prop_assume!(!edges.is_empty());
            let (a, b) = edges[pick % edges.len()];
            let mut named: Vec<(&str, &str)> =
                edges.iter().map(|&(x, y)| (names[x].as_str(), names[y].as_str())).collect();
            named.push((names[b].as_str(), names[a].as_str()));
            let g = Dag::new(names.iter().map(String::as_str), named.iter().copied());
            let cycles = g.cycles();
            prop_assert_eq!(cycles.len(), 1);
            let cycle = &cycles[0];
            prop_assert_eq!(cycle.first(), cycle.last());
            let inner: BTreeSet<&str> = cycle[1..].iter().copied().collect();
            prop_assert_eq!(inner.len(), cycle.len() - 1, "simple: {:?}", cycle);
            for pair in cycle.windows(2) {
                prop_assert!(named.contains(&(pair[0], pair[1])), "{:?} is an edge", pair);
            }
            prop_assert!(inner.contains(names[a].as_str()) && inner.contains(names[b].as_str()));
        }
    }
}
