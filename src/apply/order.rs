//! The order of the steps: which change waits for which, and which ready step starts first.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Address;
use crate::plan::{Action, Change, Plan};

/// Which changes each change waits for.
pub(super) fn dependencies(plan: &Plan) -> BTreeMap<Address, BTreeSet<Address>> {
    let in_plan: BTreeMap<&Address, &Change> = plan.changes.iter().map(|c| (&c.address, c)).collect();
    let mut deps: BTreeMap<Address, BTreeSet<Address>> = BTreeMap::new();
    for c in &plan.changes {
        let mut d = BTreeSet::new();
        match c.action {
            Action::Delete => {
                // Dependents are deleted first.
                for other in &plan.changes {
                    if other.action == Action::Delete && other.dependencies.contains(&c.address) {
                        d.insert(other.address.clone());
                    }
                }
            }
            _ => {
                for dep in &c.dependencies {
                    if in_plan.get(dep).is_some_and(|x| x.action != Action::Delete) {
                        d.insert(dep.clone());
                    }
                }
                // A name freed by a delete, a replacement or a rename must be free before it is
                // taken again (the planner refuses renames that wait on each other).
                // Names compared without letter case (`model::name_key`).
                let key = |a: Option<&crate::model::CvmAttrs>| a.map(|a| crate::model::name_key(&a.name));
                let name = key(c.after.as_ref());
                let frees = |o: &Change| {
                    o.action != Action::Create && key(o.before.as_ref()) == name && key(o.after.as_ref()) != name
                };
                for other in plan.changes.iter().filter(|o| o.address != c.address) {
                    if frees(other) {
                        d.insert(other.address.clone());
                    }
                }
            }
        }
        deps.insert(c.address.clone(), d);
    }
    deps
}

/// What `c` waits for whatever its end: the batch before, in a roll whose
/// `update_policy.pause_on_failure` is off (a failure there does not stop this one).
pub(super) fn soft(c: &Change) -> &[Address] {
    match &c.instance {
        Some(i) if !i.pause_on_failure => &i.after,
        _ => &[],
    }
}

/// The order in which ready steps start: those with the longest chain of steps waiting on
/// them first, then plan order. Starting a chain's head at once, rather than behind independent
/// work, lets the chain run alongside that work (critical-path-first list scheduling).
pub(super) fn start_order(plan: &Plan, deps: &BTreeMap<Address, BTreeSet<Address>>) -> Vec<Address> {
    let mut dependents: BTreeMap<&Address, Vec<&Address>> = BTreeMap::new();
    for (addr, ds) in deps {
        for d in ds {
            dependents.entry(d).or_default().push(addr);
        }
    }
    // Heights from the steps nothing waits on, back towards the ones everything waits on.
    let mut unresolved: BTreeMap<&Address, usize> =
        deps.keys().map(|a| (a, dependents.get(a).map_or(0, Vec::len))).collect();
    let mut next: Vec<&Address> = unresolved.iter().filter(|(_, n)| **n == 0).map(|(a, _)| *a).collect();
    let mut height: BTreeMap<&Address, usize> = BTreeMap::new();
    while let Some(a) = next.pop() {
        let below =
            dependents.get(a).map_or(0, |ds| ds.iter().filter_map(|d| height.get(d)).max().copied().unwrap_or(0));
        height.insert(a, below + 1);
        for d in &deps[a] {
            if let Some(n) = unresolved.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    next.push(d);
                }
            }
        }
    }
    let mut order: Vec<(usize, usize, &Address)> = plan
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| (height.get(&c.address).copied().unwrap_or(1), i, &c.address))
        .collect();
    order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    order.into_iter().map(|(_, _, a)| a.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CvmAttrs;
    use crate::plan;

    /// (address, action, dependencies)
    type Spec<'a> = (&'a str, Action, &'a [&'a str]);

    fn plan_of(changes: &[Spec]) -> Plan {
        let changes = changes
            .iter()
            .map(|(addr, action, deps)| Change {
                after: Some(CvmAttrs { name: addr.to_string(), ..Default::default() }),
                dependencies: deps.iter().map(|d| (*d).into()).collect(),
                ..Change::new((*addr).into(), *action)
            })
            .collect();
        Plan {
            format_version: plan::FORMAT_VERSION,
            mode: plan::Mode::Normal,
            state: plan::StateRef { lineage: "l".into(), serial: 0 },
            changes,
            drift: vec![],
            refreshed: vec![],
            redigested: vec![],
            moved: vec![],
            protection: vec![],
            rolls: vec![],
            requests: Default::default(),
            outputs: BTreeMap::new(),
            removed_outputs: BTreeMap::new(),
            outputs_changed: false,
            attention: vec![],
            warnings: vec![],
            notes: vec![],
            unmanaged: vec![],
        }
    }

    #[test]
    fn longest_chains_start_first_then_plan_order() {
        use Action::{Create, Update};
        let cases: &[(&[Spec], &[&str])] = &[
            // Independent steps keep plan order.
            (&[("cvm.a", Update, &[]), ("cvm.b", Update, &[]), ("cvm.c", Update, &[])], &["cvm.a", "cvm.b", "cvm.c"]),
            // A chain sorting last in plan order starts its head first.
            (
                &[
                    ("cvm.a", Update, &[]),
                    ("cvm.b", Update, &[]),
                    ("cvm.x", Update, &[]),
                    ("cvm.y", Update, &["cvm.x"]),
                ],
                &["cvm.x", "cvm.a", "cvm.b", "cvm.y"],
            ),
            // Longer chains before shorter ones; a dependency outside the plan is no chain.
            (
                &[
                    ("cvm.a", Create, &["cvm.elsewhere"]),
                    ("cvm.b", Create, &[]),
                    ("cvm.c", Create, &["cvm.b"]),
                    ("cvm.d", Create, &[]),
                    ("cvm.e", Create, &["cvm.d"]),
                    ("cvm.f", Create, &["cvm.e"]),
                ],
                &["cvm.d", "cvm.b", "cvm.e", "cvm.a", "cvm.c", "cvm.f"],
            ),
        ];
        for (changes, want) in cases {
            let p = plan_of(changes);
            assert_eq!(start_order(&p, &dependencies(&p)), *want, "{changes:?}");
        }
    }
}
