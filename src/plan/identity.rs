//! What keeps a CVM the same CVM: moves (`moved:`: a renamed manifest key is the same CVM,
//! moved in state, no cloud call), `lifecycle.prevent_destroy` (a plan that would destroy or
//! replace a protected CVM is an error), and renames that no order can carry out (a swap).

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Change, Mode, Moved, PlanError, Protection};
use crate::manifest::{Config, CvmConfig};
use crate::model::{self, Address, ResourceRecord};
use crate::state::Snapshot;

/// The moves this plan carries out, and notes for `moved:` entries with nothing to move. An
/// entry moves what [`model::moves::resolve`] says (an address without an index names every
/// instance; each destination in the form its CVM's `replicas:` gives it); an entry whose
/// `from` state does not hold is ignored (it may stay in the manifest after its move was
/// applied); one that is ambiguous or lands on a CVM state already holds is an error. A
/// refresh-only plan moves nothing.
pub(super) fn moves(config: &Config, snapshot: &Snapshot, mode: Mode) -> Result<(Vec<Moved>, Vec<String>), PlanError> {
    let mut moved: Vec<Moved> = Vec::new();
    let mut notes = Vec::new();
    if mode == Mode::RefreshOnly {
        return Ok((moved, notes));
    }
    for m in &config.moved {
        let replicas = config.cvms.get(m.to.key()).map(|c| c.replicas);
        let pairs = model::moves::resolve(&snapshot.resources, &m.from, &m.to, replicas)?;
        if pairs.is_empty() {
            notes.push(format!(
                "moved: state holds nothing at {}, so the entry moving it to {} has nothing to do (it may stay in the manifest)",
                m.from, m.to
            ));
        }
        for (from, to) in pairs {
            if let Some(other) = moved.iter().find(|x| x.to == to) {
                let sources = [other.from.clone(), from];
                return Err(model::MoveError::Collision { to, sources }.into());
            }
            moved.push(Moved { from, to });
        }
    }
    moved.extend(replica_moves(config, snapshot, &moved));
    Ok((moved, notes))
}

/// The moves `replicas:` implies, as Terraform's `count` does: a CVM going from one replica
/// to more keeps its CVM as instance 0 (`cvm.web` → `cvm.web[0]`), and back to one, instance 0
/// becomes the CVM (`cvm.web[0]` → `cvm.web`); the other instances are created or deleted.
fn replica_moves(config: &Config, snapshot: &Snapshot, explicit: &[Moved]) -> Vec<Moved> {
    let taken = |a: &Address| snapshot.resources.contains_key(a) || explicit.iter().any(|m| m.from == *a || m.to == *a);
    let mut out = Vec::new();
    for c in config.cvms.values() {
        let (one, first) = (c.address(), Address::instance(&c.key, 0));
        let (from, to) = if c.replicas > 1 { (one, first) } else { (first, one) };
        if snapshot.resources.contains_key(&from) && !taken(&to) && !explicit.iter().any(|m| m.from == from) {
            out.push(Moved { from, to });
        }
    }
    out
}

/// State as this plan sees it: moved records at their new addresses, and (planning changes)
/// each record's protection as the manifest now says, with the CVMs whose protection changes.
pub(super) fn view(
    snapshot: &Snapshot,
    moved: &[Moved],
    desired: &BTreeMap<Address, &CvmConfig>,
    mode: Mode,
) -> (BTreeMap<Address, ResourceRecord>, Vec<Protection>) {
    let pairs: Vec<(Address, Address)> = moved.iter().map(|m| (m.from.clone(), m.to.clone())).collect();
    let mut view = model::moved_records(&snapshot.resources, &pairs);
    let mut protection = Vec::new();
    if mode == Mode::Normal {
        for (addr, rec) in view.iter_mut() {
            // A surge instance whose index `replicas:` now covers is an instance of the app:
            // no roll deletes it, and state says so once the plan is applied.
            if rec.surge && desired.contains_key(addr) {
                rec.surge = false;
            }
            if let Some(c) = desired.get(addr)
                && c.prevent_destroy != rec.prevent_destroy
            {
                rec.prevent_destroy = c.prevent_destroy;
                protection.push(Protection { address: addr.clone(), prevent_destroy: c.prevent_destroy });
            }
        }
    }
    (view, protection)
}

/// Refuses a plan that destroys or replaces a protected CVM: protected by the manifest's
/// `lifecycle.prevent_destroy`, or, for a CVM the manifest no longer has, by what state
/// recorded (so taking a CVM out of the manifest does not take its protection with it).
pub(super) fn check_prevent_destroy(
    changes: &[Change],
    desired: &BTreeMap<Address, &CvmConfig>,
    records: &BTreeMap<Address, ResourceRecord>,
) -> Result<(), PlanError> {
    let protected = |a: &Address| match desired.get(a) {
        Some(c) => c.prevent_destroy,
        None => records.get(a).is_some_and(|r| r.prevent_destroy),
    };
    let blocked: Vec<(Address, Action)> = changes
        .iter()
        .filter(|c| matches!(c.action, Action::Replace | Action::Delete) && protected(&c.address))
        .map(|c| (c.address.clone(), c.action))
        .collect();
    if blocked.is_empty() { Ok(()) } else { Err(PlanError::PreventDestroy { blocked }) }
}

/// Refuses renames that wait on each other for ever: a change taking a name waits for the
/// change that frees it (apply orders them so), and a cycle of such waits (two CVMs swapping
/// names) has no order.
pub(super) fn check_name_cycles(changes: &[Change]) -> Result<(), PlanError> {
    // Names compared without letter case (`model::name_key`).
    fn name(a: Option<&model::CvmAttrs>) -> Option<String> {
        a.map(|a| model::name_key(&a.name))
    }
    // Who frees each name: a change whose CVM has it now and will not.
    let freed_by: BTreeMap<String, usize> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.action != Action::Create && name(c.before.as_ref()) != name(c.after.as_ref()))
        .filter_map(|(i, c)| Some((name(c.before.as_ref())?, i)))
        .collect();
    for (start, c) in changes.iter().enumerate() {
        let mut cycle = Vec::new();
        let mut at = start;
        let mut current = c;
        while let Some(n) = name(current.after.as_ref()).filter(|_| current.action != Action::Delete) {
            let Some(&next) = freed_by.get(&n).filter(|&&j| j != at) else { break };
            let written = current.after.as_ref().map_or(n, |a| a.name.clone());
            cycle.push((current.address.clone(), written));
            if next == start {
                return Err(PlanError::NameCycle { cycle });
            }
            if cycle.len() > changes.len() {
                break;
            }
            at = next;
            current = &changes[next];
        }
    }
    Ok(())
}

/// Instances destroyed because their index is past `replicas:` (a `state mv` to a gap) while
/// the same plan creates missing indexes of the same CVM: the `teeform state mv` commands that
/// keep them (app id, keys, disks), each paired index order to index order.
pub(super) fn instances_to_move_back(changes: &[Change]) -> Vec<String> {
    let mut out = Vec::new();
    let beyond = |c: &&Change| {
        c.action == Action::Delete && c.reasons.iter().any(|r| matches!(r, super::Reason::BeyondReplicas { .. }))
    };
    let keys: BTreeSet<&str> = changes.iter().filter(beyond).map(|c| c.address.key()).collect();
    for key in keys {
        let of_key = |c: &&Change| c.address.key() == key;
        let mut gone: Vec<&Address> = changes.iter().filter(beyond).filter(of_key).map(|c| &c.address).collect();
        let mut made: Vec<&Address> = changes
            .iter()
            .filter(of_key)
            .filter(|c| c.action == Action::Create && !c.instance.as_ref().is_some_and(|i| i.surge))
            .map(|c| &c.address)
            .collect();
        if made.is_empty() {
            continue;
        }
        gone.sort_by_key(|a| a.index());
        made.sort_by_key(|a| a.index());
        let commands: Vec<String> =
            gone.iter().zip(&made).map(|(from, to)| format!("`teeform state mv '{from}' '{to}'`")).collect();
        out.push(format!(
            "{} {} destroyed (past `replicas:`) while {} {} created: to keep {} (app id, keys, disk) instead, run {} before applying",
            gone.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "),
            if gone.len() == 1 { "is" } else { "are" },
            made.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "),
            if made.len() == 1 { "is" } else { "are" },
            if commands.len() == 1 { "it" } else { "them" },
            commands.join(", then "),
        ));
    }
    out
}

/// Warnings for a CVM destroyed because its key left the manifest while a new key creates one
/// of the same name: most likely a renamed key without its `moved:` entry, which would give
/// the CVM a new app id, keys and disk. The suggestion moves the whole CVM (`cvm.old` to
/// `cvm.new`), which keeps each instance's index; a new key that `records` (state after the
/// plan's moves) already holds instances of is a scale-out, not a rename.
pub(super) fn likely_moves(changes: &[Change], records: &BTreeMap<Address, ResourceRecord>) -> Vec<String> {
    type ByKey<'a> = BTreeMap<&'a str, (Vec<&'a Address>, Vec<&'a str>)>;
    fn by_key<'a>(
        changes: impl Iterator<Item = &'a Change>,
        attrs: fn(&Change) -> Option<&model::CvmAttrs>,
    ) -> ByKey<'a> {
        let mut out: ByKey = BTreeMap::new();
        for c in changes {
            let Some(a) = attrs(c) else { continue };
            let (addresses, names) = out.entry(c.address.key()).or_default();
            addresses.push(&c.address);
            names.push(a.name.as_str());
        }
        out
    }
    let in_state = |key: &str| records.keys().any(|a| a.key() == key);
    let created = by_key(changes.iter().filter(|c| c.action == Action::Create && !in_state(c.address.key())), |c| {
        c.after.as_ref()
    });
    let destroyed = by_key(
        changes.iter().filter(|c| {
            c.action == Action::Delete
                && c.reasons.contains(&super::Reason::NotInManifest)
                && !c
                    .reasons
                    .iter()
                    .any(|r| matches!(r, super::Reason::ScaledIn { .. } | super::Reason::BeyondReplicas { .. }))
        }),
        |c| c.before.as_ref(),
    );
    let list = |a: &[&Address]| {
        let mut a: Vec<&Address> = a.to_vec();
        a.sort_by_key(|a| a.index());
        a.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
    };
    let mut out = Vec::new();
    for (old, (gone, names)) in &destroyed {
        let same = |a: &&str, b: &&str| model::name_key(a) == model::name_key(b);
        let Some((new, (made, _))) =
            created.iter().find(|(_, (_, n))| n.iter().any(|n| names.iter().any(|m| same(n, m))))
        else {
            continue;
        };
        let (from, to) = (Address::cvm(old), Address::cvm(new));
        let (verb, them) = if gone.len() == 1 {
            ("is", "the CVM (its app id, keys and disk)")
        } else {
            ("are", "its instances (their app id, keys and disks)")
        };
        out.push(format!(
            "{} (CVM `{}`) {verb} destroyed and {} created with the same name: if {to} is {from} under a new key, add `moved: [{{from: {from}, to: {to}}}]` to the manifest to keep {them} instead",
            list(gone),
            names[0],
            list(made),
        ));
    }
    out
}
