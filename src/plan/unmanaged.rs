//! Instances of managed apps that no state record holds: made outside teeform (`phala cvms
//! replicate`, `POST /cvms/{id}/replicas`), or left out by an interrupted run that could not
//! tell them apart. The plan shows them, as Terraform shows drift it does not act on, each with
//! the `teeform import` that would manage it; it never adopts or deletes them by itself, and
//! they do not make a plan unconverged (`--detailed-exitcode` is unchanged by them).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Action, Change, Mode, Plan, Roll};
use crate::manifest::Config;
use crate::model::{Address, CvmStatus, RemoteCvm, ResourceRecord};

/// An instance of an app that state manages, held by no record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmanaged {
    /// The manifest entry (`cvm.KEY`) whose app it belongs to.
    pub entry: Address,
    pub app_id: String,
    /// The id `teeform import` takes: its vm_uuid, else the API's id.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub name: String,
    /// The node it runs on, by name, where the API says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub status: CvmStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_hash: Option<String>,
    /// The address `teeform import` can give it: a free index of the entry. `None` when the
    /// manifest no longer has the entry, or the plan destroys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_as: Option<Address>,
    /// The `replicas:` the entry needs once it is imported there (`None`: as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_after: Option<u32>,
    /// This plan creates `import_as`: importing this instance there instead avoids a new CVM.
    /// Never a surge instance's create: a roll makes those whatever state holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instead_of_create: bool,
    /// The surge instances of a roll (planned, or left by a paused one) hold the indices past
    /// `replicas:` (these addresses): an import there would turn one into a permanent instance
    /// or count it as a replica, so `import_as` is `None` until the roll ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_roll: Vec<Address>,
}

/// `plan` with [`Plan::unmanaged`]: the instances of `found` (refresh's, already free of those
/// state holds) whose app a record of `records` (state after the plan's moves) has.
pub(super) fn attach(
    mut plan: Plan,
    config: &Config,
    records: &BTreeMap<Address, ResourceRecord>,
    found: &[RemoteCvm],
) -> Plan {
    plan.unmanaged = of(config, records, &plan.changes, &plan.rolls, found, plan.mode);
    plan
}

/// Each of `found` whose app a record has, with a free address to import it at: first the
/// instances this plan would create (importing instead avoids a new CVM), then the lowest
/// indices state does not hold. Surge instances are never offered, never avoided and never
/// counted as replicas: while an entry has some, an index past `replicas:` waits for the roll.
fn of(
    config: &Config,
    records: &BTreeMap<Address, ResourceRecord>,
    changes: &[Change],
    rolls: &[Roll],
    found: &[RemoteCvm],
    mode: Mode,
) -> Vec<Unmanaged> {
    let norm = |a: &str| a.trim().trim_start_matches("app_").trim_start_matches("0x").to_ascii_lowercase();
    // Each app's entry: the lowest address of state holding it (any, if they disagree).
    let mut owner: BTreeMap<String, &Address> = BTreeMap::new();
    for r in records.values() {
        if let Some(a) = &r.ids.app_id {
            owner.entry(norm(a)).or_insert(&r.address);
        }
    }
    let mut taken: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for a in records.keys() {
        taken.entry(a.key().to_string()).or_default().insert(a.index().unwrap_or(0));
    }
    let surges = surges(records, changes, rolls);
    let mut sorted: Vec<&RemoteCvm> = found.iter().collect();
    sorted.sort_by(|a, b| (&a.ids.vm_uuid, &a.ids.id).cmp(&(&b.ids.vm_uuid, &b.ids.id)));
    let mut out = Vec::new();
    for r in sorted {
        let Some(app_id) = &r.ids.app_id else { continue };
        let Some(entry) = owner.get(&norm(app_id)).map(|a| a.entry()) else { continue };
        let cfg = config.cvms.get(entry.key()).filter(|_| mode != Mode::Destroy);
        let mut u = Unmanaged {
            app_id: app_id.clone(),
            id: r.ids.vm_uuid.clone().unwrap_or_else(|| r.ids.id.clone()),
            vm_uuid: r.ids.vm_uuid.clone(),
            instance_id: r.ids.instance_id.clone(),
            name: r.attrs.name.clone(),
            node: r.attrs.node.clone(),
            status: r.status.clone(),
            compose_hash: r.compose_hash.clone(),
            import_as: None,
            replicas_after: None,
            instead_of_create: false,
            after_roll: vec![],
            entry,
        };
        if let Some(cfg) = cfg {
            let held = taken.entry(cfg.key.clone()).or_default();
            let surge = surges.get(cfg.key.as_str());
            let created = changes
                .iter()
                .filter(|c| {
                    c.action == Action::Create
                        && c.address.key() == cfg.key
                        && !records.contains_key(&c.address)
                        && !surge.is_some_and(|s| s.contains(&c.address))
                })
                .filter_map(|c| c.address.index())
                .find(|i| !held.contains(i));
            let index = created.unwrap_or_else(|| (0..).find(|i| !held.contains(i)).unwrap_or(u32::MAX));
            if let Some(s) = surge.filter(|_| index >= cfg.replicas) {
                u.after_roll = s.iter().map(|a| (*a).clone()).collect();
                out.push(u);
                continue;
            }
            held.insert(index);
            u.import_as = Some(Address::instance(&cfg.key, index));
            u.instead_of_create = created.is_some();
            u.replicas_after = (index >= cfg.replicas).then_some(index + 1);
        }
        out.push(u);
    }
    out
}

/// Each entry's surge instances, by key: planned, kept by a roll, or left over (destroyed by
/// this plan).
fn surges<'a>(
    records: &'a BTreeMap<Address, ResourceRecord>,
    changes: &'a [Change],
    rolls: &'a [Roll],
) -> BTreeMap<&'a str, BTreeSet<&'a Address>> {
    let mut surges: BTreeMap<&str, BTreeSet<&Address>> = BTreeMap::new();
    let planned = changes.iter().filter(|c| c.instance.as_ref().is_some_and(|i| i.surge)).map(|c| &c.address);
    let recorded = records.values().filter(|r| r.surge).map(|r| &r.address);
    for a in planned.chain(recorded).chain(rolls.iter().flat_map(|r| &r.surge)) {
        surges.entry(a.key()).or_default().insert(a);
    }
    surges
}
