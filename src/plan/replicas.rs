//! Replicas: a CVM with `replicas:` above 1 is its instances `cvm.KEY[0]` … in the plan, each
//! planned as a CVM of its own; instance `i > 0` is made from instance 0, goes on its node of
//! `nodes:`, and is updated a batch of `update_policy.max_unavailable` at a time. A roll is
//! one change of the plan's text ([`Roll`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Action, Change, Reason};
use crate::manifest::{Config, CvmConfig};
use crate::model::{Address, CvmAttrs, ResourceRecord};

/// An instance of a replicated CVM, as a change needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub index: u32,
    /// The instance a create copies (`POST /cvms/{id}/replicas`): instance 0, for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Address>,
    /// The node it goes on, by name (`nodes:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The instances of the batch before (`update_policy.max_unavailable` at a time): this one
    /// starts once they are done. Also in [`Change::dependencies`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Address>,
    /// `update_policy.pause_on_failure`: a failure in the batch before stops this one.
    pub pause_on_failure: bool,
}

/// An update that rolls over the instances of a replicated CVM: one change in the plan's
/// text, one step per instance in apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roll {
    /// The manifest entry (`cvm.KEY`).
    pub address: Address,
    /// The instances this plan updates, in index order.
    pub instances: Vec<Address>,
    /// `update_policy.max_unavailable`.
    pub max_unavailable: u32,
    /// The instances' restarts.
    pub restarts: usize,
}

/// Every CVM the manifest wants, by address: each instance of a replicated CVM.
pub(super) fn desired(config: &Config) -> BTreeMap<Address, &CvmConfig> {
    config.cvms.values().flat_map(|c| c.instances().into_iter().map(move |a| (a, c))).collect()
}

/// What a change of `address`, an instance of `cfg`, needs to know of it (`None` for a CVM of
/// one replica).
pub(super) fn instance(address: &Address, cfg: &CvmConfig) -> Option<Instance> {
    let i = address.index()?;
    Some(Instance {
        index: i,
        source: (i > 0).then(|| Address::instance(&cfg.key, 0)),
        node: cfg.node_of(i).map(str::to_string),
        after: batch_before(cfg, i),
        pause_on_failure: cfg.update_policy.pause_on_failure,
    })
}

/// The graph's nodes for `c`'s instances: what each waits for (`depends_on`, every instance of
/// a replicated CVM named; instance 0, which it is made from; the batch before).
pub(super) fn nodes(config: &Config, c: &CvmConfig) -> Vec<(Address, Vec<Address>)> {
    let instances = |key: &String| config.cvms.get(key).map_or_else(|| vec![Address::cvm(key)], |c| c.instances());
    let deps: Vec<Address> = c.depends_on.iter().flat_map(instances).collect();
    c.instances()
        .into_iter()
        .map(|a| {
            let mut d = deps.clone();
            if let Some(i) = a.index().filter(|i| *i > 0) {
                d.push(Address::instance(&c.key, 0));
                d.extend(batch_before(c, i));
                d.sort();
                d.dedup();
            }
            (a, d)
        })
        .collect()
}

/// An instance's node, where `nodes:` spreads them.
pub(super) fn place(address: &Address, cfg: &CvmConfig, after: &mut CvmAttrs) {
    if let Some(node) = address.index().and_then(|i| cfg.node_of(i)) {
        after.node = Some(node.to_string());
    }
}

/// A change of an instance, fitted to its place among the others: [`roll_dependencies`],
/// [`stay_in_app`].
pub(super) fn fit(
    c: &mut Change,
    cfg: &CvmConfig,
    current: &BTreeMap<Address, ResourceRecord>,
    gone: &BTreeSet<Address>,
) {
    roll_dependencies(c);
    stay_in_app(c, cfg, current, gone);
    if let Some(source) = c.instance.as_ref().and_then(|i| i.source.clone()).filter(|_| c.action == Action::Replace) {
        // Made from another instance, a replacement keeps the app id.
        for r in c.reasons.iter_mut().filter(|r| matches!(r, Reason::RotatesAppId { .. })) {
            *r = Reason::JoinsApp { source: source.clone() };
        }
    }
}

/// An instance's update waits for the batch before, and for instance 0 only when that is in
/// it: instance 0 is what a create copies, not a step of the roll.
fn roll_dependencies(c: &mut Change) {
    if c.action != Action::Update {
        return;
    }
    if let Some(i) = c.instance.as_ref().filter(|i| i.index > 0) {
        let first = Address::instance(c.address.key(), 0);
        let keep = i.after.contains(&first);
        c.dependencies.retain(|d| keep || *d != first);
    }
}

/// Instance 0 made anew (deleted outside teeform, or replaced) while other instances of the
/// app run is made from one of them, so it joins their app instead of starting another.
fn stay_in_app(c: &mut Change, cfg: &CvmConfig, current: &BTreeMap<Address, ResourceRecord>, gone: &BTreeSet<Address>) {
    let Some(i) = c.instance.as_mut().filter(|i| i.index == 0) else { return };
    if !matches!(c.action, Action::Create | Action::Replace) {
        return;
    }
    let kept = (1..cfg.replicas).map(|k| Address::instance(&cfg.key, k));
    i.source = kept.into_iter().find(|a| current.contains_key(a) && !gone.contains(a));
}

/// The instances of the batch before instance `index`'s (batches of
/// `update_policy.max_unavailable`, in index order).
fn batch_before(c: &CvmConfig, index: u32) -> Vec<Address> {
    let k = c.update_policy.max_unavailable.max(1);
    let batch = index / k;
    if batch == 0 {
        return vec![];
    }
    ((batch - 1) * k..batch * k).map(|i| Address::instance(&c.key, i)).collect()
}

/// The rolls: the updates of each replicated CVM's instances, as one change of the plan's text.
pub(super) fn rolls(config: &Config, changes: &[Change]) -> Vec<Roll> {
    let mut out = Vec::new();
    for c in config.cvms.values().filter(|c| c.replicas > 1) {
        let updates: Vec<&Change> = changes
            .iter()
            // An update that restarts nothing (a rename, a stop) is not a roll.
            .filter(|x| {
                x.action == Action::Update && x.restarts() && x.address.key() == c.key && x.address.index().is_some()
            })
            .collect();
        if updates.is_empty() {
            continue;
        }
        let mut instances: Vec<Address> = updates.iter().map(|x| x.address.clone()).collect();
        instances.sort_by_key(Address::index);
        out.push(Roll {
            address: c.address(),
            instances,
            max_unavailable: c.update_policy.max_unavailable,
            restarts: updates.iter().filter(|x| x.restarts()).count(),
        });
    }
    out
}
