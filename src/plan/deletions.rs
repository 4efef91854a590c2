//! The deletions a plan makes: CVMs in state the manifest no longer has (or all, for
//! `destroy`), instances scaled in, and surge instances a roll left.

use std::collections::BTreeMap;

use super::desired::Known;
use super::{Action, Change, Mode, Moved, Reason, replicas};
use crate::graph::Graph;
use crate::manifest::CvmConfig;
use crate::model::{Address, ResourceRecord};

/// Why an instance the manifest's entry still has, past its `replicas:`, goes:
/// [`Reason::ScaledIn`] when state holds more instances than `replicas:` (surge instances not
/// counted: they are above `replicas` by design), else [`Reason::BeyondReplicas`] (an instance
/// `state mv` or an import put past the range, while an index in it is free).
fn scaled_in(
    addr: &Address,
    desired: &BTreeMap<Address, &CvmConfig>,
    current: &BTreeMap<Address, ResourceRecord>,
) -> Option<Reason> {
    addr.index()?;
    let cfg = desired.iter().find(|(a, _)| a.key() == addr.key()).map(|(_, c)| *c)?;
    let held = current.values().filter(|r| r.address.key() == addr.key() && !r.surge);
    let from = u32::try_from(held.count()).unwrap_or(u32::MAX);
    Some(if from > cfg.replicas {
        Reason::ScaledIn { from, to: cfg.replicas }
    } else {
        Reason::BeyondReplicas { replicas: cfg.replicas }
    })
}

/// The deletions: CVMs in state the manifest no longer has (or all, for `destroy`), chosen by
/// `--target`/`--exclude`. Dependents go before what they depend on: the order walked backwards.
#[allow(clippy::too_many_arguments)]
pub(super) fn deletions(
    graph: &Graph,
    known: &mut Known,
    live: &dyn Fn(&Address) -> bool,
    desired: &BTreeMap<Address, &CvmConfig>,
    mode: Mode,
    chosen: &dyn Fn(&Address) -> bool,
    moved: &[Moved],
) -> Vec<Change> {
    let mut deletes = Vec::new();
    for addr in graph.topo_order().into_iter().rev() {
        let Some(rec) = known.current.get(addr) else {
            continue;
        };
        let addr = &rec.address;
        let reasons = if mode == Mode::Destroy {
            vec![Reason::DestroyRequested]
        } else if !live(addr) {
            let mut r = vec![Reason::NotInManifest];
            if rec.surge {
                r.push(Reason::SurgeLeftover);
            } else if let Some(s) = scaled_in(addr, desired, known.current) {
                r.push(s);
            }
            r
        } else {
            continue;
        };
        if !chosen(addr) {
            continue;
        }
        let c = Change {
            ids: Some(rec.ids.clone()),
            before: Some(rec.attrs.clone()),
            reasons,
            dependencies: rec.dependencies.clone(),
            moved_from: moved.iter().find(|m| m.to == *addr).map(|m| m.from.clone()),
            prevent_destroy: rec.prevent_destroy,
            ..Change::new(addr.clone(), Action::Delete)
        };
        let c = if mode == Mode::Normal { replicas::surge_delete(c, rec, desired) } else { c };
        known.record(&c);
        deletes.push(c);
    }
    deletes
}
