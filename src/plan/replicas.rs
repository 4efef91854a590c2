//! Replicas: a CVM with `replicas:` above 1 is its instances `cvm.KEY[0]` … in the plan, each
//! planned as a CVM of its own; instance `i > 0` is made from instance 0, goes on its node of
//! `nodes:`, and is updated a batch of `update_policy.max_unavailable + max_surge` at a time.
//! A roll is one change of the plan's text ([`Roll`]). With `max_surge`, the roll first makes
//! that many surge instances `cvm.KEY[N]` … on the new revision ([`surges`]), which the first
//! batch waits for, and apply deletes them once the last batch passes ([`Roll::surge`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::desired::{Known, desired_attrs};
use super::{Action, Attention, Change, Mode, Reason, Refresh, change};
use crate::graph::Graph;
use crate::manifest::{Config, CvmConfig};
use crate::model::{Address, CvmAttrs, Power, ResourceRecord};
use crate::secrets::{Digester, SecretValues};

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
    /// A surge instance (`update_policy.max_surge`): made from `source` (its revision, then
    /// updated to the new one) and deleted when the roll ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub surge: bool,
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
    /// `update_policy.max_surge`.
    #[serde(default)]
    pub max_surge: u32,
    /// The instances' restarts (the surge instances' are not among them).
    pub restarts: usize,
    /// The surge instances apply deletes once every instance of the roll is done (made by
    /// this plan, or left by a paused roll).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub surge: Vec<Address>,
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
        surge: false,
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

/// A batch's size: `max_unavailable` down, and as many more as surge instances stand in for.
fn batch_size(c: &CvmConfig) -> u32 {
    (c.update_policy.max_unavailable + c.update_policy.max_surge).max(1)
}

/// The instances of the batch before instance `index`'s (batches of [`batch_size`], in index
/// order).
fn batch_before(c: &CvmConfig, index: u32) -> Vec<Address> {
    let k = batch_size(c);
    let batch = index / k;
    if batch == 0 {
        return vec![];
    }
    ((batch - 1) * k..batch * k).map(|i| Address::instance(&c.key, i)).collect()
}

/// Whether `x` is an update of one of `c`'s instances (not of a surge instance).
fn in_roll(x: &Change, c: &CvmConfig) -> bool {
    x.action == Action::Update && x.address.key() == c.key && x.address.index().is_some_and(|i| i < c.replicas)
}

/// The addresses of `c`'s surge instances, `cvm.KEY[N]` … `cvm.KEY[N+max_surge-1]`.
pub(super) fn surge_addresses(c: &CvmConfig) -> Vec<Address> {
    let n = c.replicas;
    if n < 2 {
        return vec![];
    }
    (n..n + c.update_policy.max_surge).map(|i| Address::instance(&c.key, i)).collect()
}

/// Whether the plan rolls `c` with surge instances: it restarts one of its instances.
fn surges_for(c: &CvmConfig, changes: &[Change]) -> bool {
    !surge_addresses(c).is_empty() && changes.iter().any(|x| in_roll(x, c) && x.restarts())
}

/// What [`surges`] needs of the planner.
pub(super) struct SurgeCtx<'a> {
    pub current: &'a BTreeMap<Address, ResourceRecord>,
    pub gone: &'a BTreeSet<Address>,
    pub known: &'a Known<'a>,
    pub secrets: &'a SecretValues,
    pub digests: &'a Digester,
    pub graph: &'a Graph,
    pub nodes: &'a BTreeMap<Address, Vec<Address>>,
    pub refresh: &'a dyn Fn(&Address) -> Option<&'a Refresh>,
}

impl SurgeCtx<'_> {
    /// Instance 0's desired attributes (secret digests made under its scope), and that scope.
    fn desired(&self, cfg: &CvmConfig) -> (CvmAttrs, Address) {
        let first = Address::instance(&cfg.key, 0);
        let cur = self.current.get(&first);
        let scope = cur.map_or(&first, |r| r.digest_scope()).clone();
        (desired_attrs(cfg, &scope, self.known, self.secrets, self.digests, cur).0, scope)
    }
}

/// The surge instances of each roll of a CVM with `update_policy.max_surge`: each made (or,
/// left by a paused roll, brought to the new revision) before the first batch, which waits
/// for them to run and pass the gates. Returns their addresses, which the plan keeps (no
/// deletion for being above `replicas`: apply deletes them when the roll ends).
///
/// A record already at a surge address is that surge instance, whether a roll left it or
/// this plan scales in from above `replicas`: it serves as the extra capacity, then goes.
pub(super) fn surges(
    config: &Config,
    mode: Mode,
    changes: &mut Vec<Change>,
    ctx: &SurgeCtx,
    attention: &mut Vec<Attention>,
) -> BTreeSet<Address> {
    let mut kept = BTreeSet::new();
    if mode != Mode::Normal {
        return kept;
    }
    // Surge instances a paused roll left beyond today's `max_surge` (it was lowered): while the
    // CVM still rolls they stay as the extra capacity they are, and go when the roll ends with
    // its other surge instances; deleting them first would leave fewer serving than the policy
    // they were made under promised. With no roll left they are leftovers (`deletions`).
    for cfg in config.cvms.values().filter(|c| changes.iter().any(|x| in_roll(x, c) && x.restarts())) {
        let surge = surge_addresses(cfg);
        let surplus = ctx.current.values().filter(|r| r.surge && r.address.key() == cfg.key);
        let surplus = surplus.map(|r| &r.address).filter(|a| !surge.contains(a) && !ctx.gone.contains(*a));
        kept.extend(surplus.filter(|a| a.index().is_some_and(|i| i >= cfg.replicas)).cloned());
    }
    let rolled: Vec<&CvmConfig> = config.cvms.values().filter(|c| surges_for(c, changes)).collect();
    for cfg in rolled {
        let surge = surge_addresses(cfg);
        let first = Address::instance(&cfg.key, 0);
        let (after0, scope) = ctx.desired(cfg);
        let deps = super::dependencies(ctx.graph, ctx.nodes, &first);
        let deps: Vec<Address> = deps.into_iter().filter(|d| d.key() != cfg.key).collect();
        let mut made = Vec::new();
        for (a, i) in surge.iter().filter_map(|a| Some((a, a.index()?))) {
            let mut after = after0.clone();
            place(a, cfg, &mut after);
            let base = Change {
                dependencies: deps.clone(),
                secrets_scope: Some(scope.clone()).filter(|s| s != a),
                instance: Some(Instance {
                    index: i,
                    source: Some(first.clone()),
                    node: cfg.node_of(i).map(str::to_string),
                    after: vec![],
                    pause_on_failure: cfg.update_policy.pause_on_failure,
                    surge: true,
                }),
                ..Change::of_config(a, cfg)
            };
            let gone = ctx.gone.contains(a);
            let cur = ctx.current.get(a).filter(|_| !gone);
            let facts = change::Facts { gone, requested: false, refresh: (ctx.refresh)(a) };
            if let Some(mut c) = change::of_desired(base, cur, after, &facts, attention) {
                c.reasons.insert(0, Reason::Surge { of: cfg.address() });
                made.push(c);
            }
            kept.insert(a.clone());
        }
        let at = changes.iter().position(|c| c.address.key() == cfg.key).unwrap_or(changes.len());
        changes.splice(at..at, made);
    }
    kept
}

/// Each roll's batches, over the instances this plan rolls (a `--target`, a resumed roll, a
/// roll beside a scale-out need not start at instance 0): in index order, `max_unavailable +
/// max_surge` at a time, each batch waiting for the one before. The first batch waits for the
/// roll's surge instances and for every other instance of the CVM that should be serving — one
/// an earlier run updated may still be restarting — to run and pass the gates. So no instance
/// of a roll goes down before the capacity the policy counts on is up, whatever subset rolls.
///
/// The surge instances and the batch before are what the step waits for
/// ([`Change::dependencies`]); the instances outside the roll only in [`Instance::after`]
/// (their own changes, a rename, may wait on the roll).
pub(super) fn batches(
    config: &Config,
    changes: &mut [Change],
    current: &BTreeMap<Address, ResourceRecord>,
    gone: &BTreeSet<Address>,
) {
    for cfg in config.cvms.values().filter(|c| c.replicas > 1) {
        let mut roll: Vec<Address> =
            changes.iter().filter(|x| in_roll(x, cfg) && x.restarts()).map(|x| x.address.clone()).collect();
        if roll.is_empty() {
            continue;
        }
        roll.sort_by_key(Address::index);
        let surge = if surges_for(cfg, changes) { surge_addresses(cfg) } else { vec![] };
        let position: BTreeMap<Address, usize> = roll.iter().enumerate().map(|(p, a)| (a.clone(), p)).collect();
        // Serving instances this plan neither rolls nor makes, replaces or deletes.
        let steady: Vec<Address> = {
            let planned: BTreeMap<&Address, &Change> =
                changes.iter().filter(|c| c.address.key() == cfg.key).map(|c| (&c.address, c)).collect();
            let serving = |a: &Address| current.contains_key(a) && !gone.contains(a);
            // An update that leaves it running (a rename) keeps it serving; a stop does not.
            let stops = |c: &Change| c.after.as_ref().is_some_and(|x| x.power == Some(Power::Stopped));
            let untouched = |a: &Address| planned.get(a).is_none_or(|c| c.action == Action::Update && !stops(c));
            cfg.instances().into_iter().filter(|a| !position.contains_key(a) && serving(a) && untouched(a)).collect()
        };
        let k = batch_size(cfg) as usize;
        for c in changes.iter_mut() {
            let Some(b) = position.get(&c.address).map(|p| p / k) else { continue };
            let before: Vec<Address> = if b == 0 { surge.clone() } else { roll[(b - 1) * k..b * k].to_vec() };
            c.dependencies.retain(|d| d.key() != cfg.key);
            c.dependencies.extend(before.iter().cloned());
            c.dependencies.sort();
            c.dependencies.dedup();
            if let Some(i) = c.instance.as_mut() {
                i.after = before;
                if b == 0 {
                    i.after.extend(steady.iter().cloned());
                }
            }
        }
    }
}

/// A surge instance's delete (its roll is done) waits for every instance of its CVM to run
/// and pass its `health:` check: a roll an earlier run left may still be restarting one.
pub(super) fn surge_delete(mut c: Change, rec: &ResourceRecord, desired: &BTreeMap<Address, &CvmConfig>) -> Change {
    let Some(cfg) = desired.iter().find(|(a, _)| a.key() == rec.address.key()).map(|(_, c)| *c) else { return c };
    if rec.surge {
        c.instance = Some(Instance {
            index: rec.address.index().unwrap_or_default(),
            source: None,
            node: None,
            after: cfg.instances(),
            pause_on_failure: true,
            surge: true,
        });
        c.health = cfg.health.clone();
    }
    c
}

/// The rolls: the updates of each replicated CVM's instances, as one change of the plan's text.
/// `kept`: the surge instances [`surges`] keeps, which each roll deletes at its end.
pub(super) fn rolls(config: &Config, changes: &[Change], kept: &BTreeSet<Address>) -> Vec<Roll> {
    let mut out = Vec::new();
    for c in config.cvms.values().filter(|c| c.replicas > 1) {
        // An update that restarts nothing (a rename, a stop) is not a roll.
        let updates: Vec<&Change> = changes.iter().filter(|x| in_roll(x, c) && x.restarts()).collect();
        if updates.is_empty() {
            continue;
        }
        let mut instances: Vec<Address> = updates.iter().map(|x| x.address.clone()).collect();
        instances.sort_by_key(Address::index);
        out.push(Roll {
            address: c.address(),
            instances,
            max_unavailable: c.update_policy.max_unavailable,
            max_surge: c.update_policy.max_surge,
            restarts: updates.iter().filter(|x| x.restarts()).count(),
            surge: {
                let mut s = if surges_for(c, changes) { surge_addresses(c) } else { vec![] };
                let more: Vec<Address> = kept.iter().filter(|a| a.key() == c.key && !s.contains(a)).cloned().collect();
                s.extend(more);
                s.sort_by_key(Address::index);
                s
            },
        });
    }
    out
}
