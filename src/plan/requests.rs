//! What a run asks for beyond the manifest, as Terraform's flags do: `--replace` (a
//! replacement nothing forces), `--target` and `--exclude` (a partial plan), and the consent
//! `--allow-replace` gives to replacements nobody named.
//!
//! Targeting follows dependencies as Terraform does. Planning changes, a target brings in
//! everything it depends on (a CVM cannot be made before what it needs), and an exclusion
//! takes out everything that depends on it (nothing may change on the strength of a CVM left
//! as it is). Planning a destroy, the directions turn: a target brings in its dependents
//! (they go first), an exclusion keeps what it depends on.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Mode, PlanError};
use crate::graph::Graph;
use crate::manifest::CvmConfig;
use crate::model::{Address, ResourceRecord};

/// What the run asked for beyond the manifest. A saved plan keeps it, so the consent it gives
/// applies to that plan alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// `--replace ADDRESS`: replace these CVMs though nothing forces it (Terraform's
    /// `-replace`); consent to their replacement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<Address>,
    /// `--target ADDRESS`: plan only these CVMs and what they depend on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<Address>,
    /// `--exclude ADDRESS`: leave out these CVMs and what depends on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Address>,
    /// `--allow-replace`: consent to every replacement in the plan, named or not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_replace: bool,
}

impl Requests {
    /// Whether the plan is partial (`--target` or `--exclude`).
    pub fn targeted(&self) -> bool {
        !self.target.is_empty() || !self.exclude.is_empty()
    }

    /// The warning a partial plan carries (Terraform's), or none.
    pub fn warning(&self) -> Option<String> {
        if !self.targeted() {
            return None;
        }
        let mut asked: Vec<String> = self.target.iter().map(|a| format!("--target {a}")).collect();
        asked.extend(self.exclude.iter().map(|a| format!("--exclude {a}")));
        Some(format!(
            "targeting is in effect ({}): this plan covers only some CVMs, so it may not hold every change the manifest asks for, and outputs are left as they are; use it for exceptional cases (recovering from a mistake, working around a limit), and run a full plan afterwards",
            asked.join(" ")
        ))
    }
}

/// What a partial plan covers: the CVMs it may change, and why each one the run did not name
/// is in it, or out of it (`cvm.web[0]` → `pulled in: cvm.web[1] is made from it`).
#[derive(Debug, Default)]
pub(super) struct Selection {
    pub chosen: BTreeSet<Address>,
    /// For each CVM brought in (or left out) by following a dependency from one the run named.
    why: BTreeMap<Address, String>,
}

impl Selection {
    /// The warnings a partial plan adds to Terraform's: each CVM this plan changes though the
    /// run did not name it (found by following dependencies from a target), and each CVM left
    /// out because of one `--exclude` names, with the reason, in address order.
    pub(super) fn warnings(&self, changes: &[super::Change]) -> Vec<String> {
        let changed = |a: &Address| changes.iter().any(|c| c.address == *a);
        self.why
            .iter()
            .filter(|(a, why)| !why.starts_with("pulled in") || changed(a))
            .map(|(a, why)| format!("{a}: {why}"))
            .collect()
    }
}

/// The CVMs the plan may change: `None` for all of them. `nodes` are the plan's graph nodes
/// (CVMs in the manifest or in state); an address the run names that is not one is an error.
///
/// An instance of a replicated CVM waits for its siblings only for the roll's order, or for
/// instance 0 to copy: that edge pulls a sibling in (or takes it out) only when the sibling
/// is not in state (`in_state`), i.e. it must be made first. So `--target cvm.web[1]` changes
/// only that instance, and `--exclude cvm.web[0]` leaves the others' changes in.
pub(super) fn selection(
    graph: &Graph,
    nodes: &BTreeMap<Address, Vec<Address>>,
    in_state: &dyn Fn(&Address) -> bool,
    r: &Requests,
    mode: Mode,
) -> Result<Option<Selection>, PlanError> {
    let named = [("--target", &r.target), ("--exclude", &r.exclude), ("--replace", &r.replace)];
    for (flag, list) in named {
        if let Some(address) = list.iter().find(|a| instances(nodes, a).is_empty()) {
            let known = nodes.keys().cloned().collect();
            return Err(PlanError::UnknownAddress { flag, address: address.clone(), known });
        }
    }
    if !r.targeted() {
        return Ok(None);
    }
    // Destroying, dependents go first: a target needs them gone, an exclusion keeps what it needs.
    let (pulled_in, left_out) = match mode {
        Mode::Destroy => (Follow::Dependents, Follow::Dependencies),
        Mode::Normal | Mode::RefreshOnly => (Follow::Dependencies, Follow::Dependents),
    };
    let walk = |from: &Address, follow: Follow| reachable(graph, nodes, in_state, from, follow);
    let mut out = Selection::default();
    let targets: BTreeSet<Address> = r.target.iter().flat_map(|t| instances(nodes, t)).collect();
    let mut chosen: BTreeSet<String> = if r.target.is_empty() {
        nodes.keys().map(ToString::to_string).collect()
    } else {
        let mut chosen: BTreeSet<String> = targets.iter().map(ToString::to_string).collect();
        for t in &targets {
            for (n, from) in walk(t, pulled_in) {
                if chosen.insert(n.to_string()) {
                    out.why.insert(n.clone(), format!("pulled in: {}", because(&n, &from, t, pulled_in, "--target")));
                }
            }
        }
        chosen
    };
    let excluded: BTreeSet<Address> = r.exclude.iter().flat_map(|e| instances(nodes, e)).collect();
    for e in &excluded {
        chosen.remove(e.as_str());
        out.why.remove(e);
        for (n, from) in walk(e, left_out) {
            if chosen.remove(n.as_str()) && !excluded.contains(&n) {
                out.why.insert(n.clone(), format!("left out: {}", because(&n, &from, e, left_out, "--exclude")));
            }
        }
    }
    out.chosen = nodes.keys().filter(|a| chosen.contains(a.as_str())).cloned().collect();
    Ok(Some(out))
}

/// Why `n` was reached from `from` along `follow`, on the way from `root`, which `flag` names:
/// `cvm.web[1] is made from it`, `it depends on cvm.db, which --exclude names`….
fn because(n: &Address, from: &Address, root: &Address, follow: Follow, flag: &str) -> String {
    let (dependency, dependent) = match follow {
        Follow::Dependencies => (n, from),
        Follow::Dependents => (from, n),
    };
    let siblings = dependency.key() == dependent.key() && dependency.index().is_some();
    let verb = match (siblings, dependency.index()) {
        (true, Some(0)) => "is made from",
        (true, _) => "is created after",
        (false, _) => "depends on",
    };
    let on_the_way = if from == root { String::new() } else { format!(", on the way from {flag} {root}") };
    match (flag, dependent == n) {
        ("--exclude", true) => {
            let whose = if from == root { "--exclude names".to_string() } else { "is left out too".to_string() };
            let not_yet = if siblings { " (not created yet)" } else { "" };
            format!("it {verb} {from}{not_yet}, which {whose}")
        }
        ("--exclude", false) => format!("{from} {verb} it and stays{on_the_way}"),
        (_, true) => format!("it {verb} {from}, so it goes first{on_the_way}"),
        (_, false) => format!("{from} {verb} it{on_the_way}"),
    }
}

#[derive(Clone, Copy)]
enum Follow {
    Dependencies,
    Dependents,
}

/// Everything reachable from `from` along `follow`, each with the node it was reached from,
/// but for an edge between two instances of one replicated CVM whose dependency is in state
/// (see [`selection`]).
fn reachable(
    graph: &Graph,
    nodes: &BTreeMap<Address, Vec<Address>>,
    in_state: &dyn Fn(&Address) -> bool,
    from: &Address,
    follow: Follow,
) -> BTreeMap<Address, Address> {
    let mut out = BTreeMap::new();
    let mut stack = vec![from.clone()];
    while let Some(a) = stack.pop() {
        let next = match follow {
            Follow::Dependencies => graph.dependencies(a.as_str()),
            Follow::Dependents => graph.dependents(a.as_str()),
        };
        for n in next {
            let Some((n, _)) = nodes.get_key_value(n) else {
                continue;
            };
            let (dependency, dependent) = match follow {
                Follow::Dependencies => (n, &a),
                Follow::Dependents => (&a, n),
            };
            let siblings =
                dependency.key() == dependent.key() && dependency.index().is_some() && dependent.index().is_some();
            if siblings && in_state(dependency) {
                continue;
            }
            if n != from && !out.contains_key(n) {
                out.insert(n.clone(), a.clone());
                stack.push(n.clone());
            }
        }
    }
    out
}

/// What an address the run names stands for: itself, or for `cvm.KEY` of a replicated CVM,
/// every instance `cvm.KEY[i]` (as Terraform's `-target` of a resource with `count`). Empty:
/// no such CVM.
fn instances(nodes: &BTreeMap<Address, Vec<Address>>, a: &Address) -> Vec<Address> {
    if nodes.contains_key(a) {
        return vec![a.clone()];
    }
    if a.index().is_some() {
        return vec![];
    }
    nodes.keys().filter(|n| n.index().is_some() && n.key() == a.key()).cloned().collect()
}

/// Refuses a `--replace` the plan cannot carry out: of a CVM state does not have (nothing to
/// replace), the manifest does not have (it would be destroyed, not replaced), or targeting
/// leaves out. (Only a plan in `Mode::Normal` replaces.)
pub(super) fn check_replace(
    r: &Requests,
    desired: &BTreeMap<Address, &CvmConfig>,
    records: &BTreeMap<Address, ResourceRecord>,
    selected: Option<&BTreeSet<Address>>,
    mode: Mode,
) -> Result<(), PlanError> {
    if mode != Mode::Normal {
        return Ok(());
    }
    for a in &r.replace {
        let why = if !records.contains_key(a) {
            "it is not in state, so there is nothing to replace (the plan creates it)"
        } else if !desired.contains_key(a) {
            "it is no longer in the manifest, so it would be destroyed, not replaced"
        } else if selected.is_some_and(|s| !s.contains(a)) {
            "--target/--exclude leave it out of this plan"
        } else {
            continue;
        };
        return Err(PlanError::NotReplaceable { address: a.clone(), why });
    }
    Ok(())
}
