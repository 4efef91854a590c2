//! Resources and their dependencies as a petgraph DAG.
//!
//! Invariant: a [`Graph`] is acyclic; building one from a cyclic set of edges fails with the
//! whole cycle named. Iteration orders are sorted by address so output is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dependency cycle: {}", .cycle.join(" → "))]
pub struct CycleError {
    /// The addresses around the cycle, each depending on the next; the first is repeated last.
    pub cycle: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Edges point from a dependency to its dependent.
    g: DiGraph<String, ()>,
    index: BTreeMap<String, NodeIndex>,
}

impl Graph {
    /// Builds the graph from `(address, dependencies)`; dependencies naming unknown
    /// addresses are ignored (the manifest loader reports those).
    pub fn new<'a>(nodes: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Result<Graph, CycleError> {
        let nodes: Vec<(&str, &[String])> = nodes.into_iter().collect();
        let mut g = DiGraph::new();
        let mut index = BTreeMap::new();
        let mut sorted: Vec<&str> = nodes.iter().map(|(a, _)| *a).collect();
        sorted.sort_unstable();
        for a in sorted {
            index.entry(a.to_string()).or_insert_with(|| g.add_node(a.to_string()));
        }
        for (a, deps) in &nodes {
            let to = index[*a];
            let mut deps: Vec<&String> = deps.iter().collect();
            deps.sort();
            deps.dedup();
            for d in deps {
                if let Some(&from) = index.get(d.as_str()) {
                    g.add_edge(from, to, ());
                }
            }
        }
        let graph = Graph { g, index };
        graph.check_acyclic()?;
        Ok(graph)
    }

    fn check_acyclic(&self) -> Result<(), CycleError> {
        let mut cycles: Vec<Vec<String>> = Vec::new();
        for scc in tarjan_scc(&self.g) {
            let self_loop = scc.len() == 1 && self.g.contains_edge(scc[0], scc[0]);
            if scc.len() > 1 || self_loop {
                cycles.push(self.cycle_in(&scc));
            }
        }
        cycles.sort();
        match cycles.into_iter().next() {
            Some(cycle) => Err(CycleError { cycle }),
            None => Ok(()),
        }
    }

    /// One concrete cycle through a strongly connected component, starting at its smallest
    /// address; `a → b` reads "a depends on b".
    fn cycle_in(&self, scc: &[NodeIndex]) -> Vec<String> {
        let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
        let start = *scc.iter().min_by_key(|n| &self.g[**n]).expect("non-empty scc");
        // Depth-first search for a path back to start, visiting neighbours in address order.
        let mut path = vec![start];
        let mut seen = BTreeSet::from([start]);
        fn dfs(
            gr: &Graph,
            members: &BTreeSet<NodeIndex>,
            start: NodeIndex,
            path: &mut Vec<NodeIndex>,
            seen: &mut BTreeSet<NodeIndex>,
        ) -> bool {
            let cur = *path.last().expect("path starts non-empty");
            let mut next: Vec<NodeIndex> =
                gr.g.neighbors_directed(cur, petgraph::Direction::Incoming).filter(|t| members.contains(t)).collect();
            next.sort_by_key(|n| &gr.g[*n]);
            for n in next {
                if n == start {
                    return true;
                }
                if seen.insert(n) {
                    path.push(n);
                    if dfs(gr, members, start, path, seen) {
                        return true;
                    }
                    path.pop();
                }
            }
            false
        }
        dfs(self, &members, start, &mut path, &mut seen);
        let mut names: Vec<String> = path.iter().map(|n| self.g[*n].clone()).collect();
        names.push(self.g[start].clone());
        names
    }

    pub fn contains(&self, addr: &str) -> bool {
        self.index.contains_key(addr)
    }

    /// Direct dependencies of `addr`, sorted.
    pub fn dependencies(&self, addr: &str) -> Vec<&str> {
        self.neighbours(addr, petgraph::Direction::Incoming)
    }

    /// Direct dependents of `addr`, sorted.
    pub fn dependents(&self, addr: &str) -> Vec<&str> {
        self.neighbours(addr, petgraph::Direction::Outgoing)
    }

    fn neighbours(&self, addr: &str, dir: petgraph::Direction) -> Vec<&str> {
        let Some(&n) = self.index.get(addr) else {
            return Vec::new();
        };
        let mut v: Vec<&str> = self.g.neighbors_directed(n, dir).map(|m| self.g[m].as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Every address, dependencies before dependents, ties broken by address.
    pub fn topo_order(&self) -> Vec<&str> {
        let mut indeg: BTreeMap<NodeIndex, usize> = self
            .g
            .node_indices()
            .map(|n| (n, self.g.neighbors_directed(n, petgraph::Direction::Incoming).count()))
            .collect();
        let mut ready: BTreeSet<(&str, NodeIndex)> =
            indeg.iter().filter(|(_, d)| **d == 0).map(|(n, _)| (self.g[*n].as_str(), *n)).collect();
        let mut out = Vec::with_capacity(self.g.node_count());
        while let Some(first) = ready.iter().next().copied() {
            ready.remove(&first);
            out.push(first.0);
            for m in self.g.neighbors_directed(first.1, petgraph::Direction::Outgoing) {
                let d = indeg.get_mut(&m).expect("every node has a degree");
                *d -= 1;
                if *d == 0 {
                    ready.insert((self.g[m].as_str(), m));
                }
            }
        }
        out
    }

    /// Every address that transitively depends on `addr`.
    pub fn all_dependents(&self, addr: &str) -> BTreeSet<String> {
        self.reachable(addr, petgraph::Direction::Outgoing)
    }

    /// Every address `addr` transitively depends on.
    pub fn all_dependencies(&self, addr: &str) -> BTreeSet<String> {
        self.reachable(addr, petgraph::Direction::Incoming)
    }

    fn reachable(&self, addr: &str, dir: petgraph::Direction) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![addr.to_string()];
        while let Some(a) = stack.pop() {
            for d in self.neighbours(&a, dir) {
                if out.insert(d.to_string()) {
                    stack.push(d.to_string());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Result<Graph, CycleError> {
        let owned: Vec<(String, Vec<String>)> =
            edges.iter().map(|(a, d)| (a.to_string(), d.iter().map(|s| s.to_string()).collect())).collect();
        Graph::new(owned.iter().map(|(a, d)| (a.as_str(), d.as_slice())))
    }

    #[test]
    fn orders_dependencies_first() {
        let g = graph(&[("cvm.web", &["cvm.db", "cvm.worker"]), ("cvm.worker", &["cvm.db"]), ("cvm.db", &[])]).unwrap();
        assert_eq!(g.topo_order(), ["cvm.db", "cvm.worker", "cvm.web"]);
        assert_eq!(g.dependencies("cvm.web"), ["cvm.db", "cvm.worker"]);
        assert_eq!(g.dependents("cvm.db"), ["cvm.web", "cvm.worker"]);
        assert_eq!(g.all_dependents("cvm.db").len(), 2);
        assert_eq!(g.all_dependencies("cvm.web").into_iter().collect::<Vec<_>>(), ["cvm.db", "cvm.worker"]);
        assert!(g.all_dependencies("cvm.db").is_empty());
    }

    type Edges<'a> = &'a [(&'a str, &'a [&'a str])];

    #[test]
    fn names_the_whole_cycle() {
        let cases: &[(Edges, &str)] = &[
            (&[("cvm.a", &["cvm.b"]), ("cvm.b", &["cvm.c"]), ("cvm.c", &["cvm.a"])], "cvm.a → cvm.b → cvm.c → cvm.a"),
            (&[("cvm.a", &["cvm.a"])], "cvm.a → cvm.a"),
            (&[("cvm.x", &[]), ("cvm.b", &["cvm.a"]), ("cvm.a", &["cvm.b"])], "cvm.a → cvm.b → cvm.a"),
        ];
        for (edges, want) in cases {
            let err = graph(edges).unwrap_err();
            assert_eq!(err.cycle.join(" → "), *want);
        }
    }

    #[test]
    fn independent_nodes_are_all_ready() {
        let g = graph(&[("cvm.b", &[]), ("cvm.a", &[])]).unwrap();
        assert_eq!(g.topo_order(), ["cvm.a", "cvm.b"]);
        assert!(g.dependencies("cvm.a").is_empty());
    }
}
