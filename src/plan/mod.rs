//! The planner: a pure function from (desired configuration, state, refreshed facts) to a
//! [`Plan`]. Renderers live in [`render`] and [`json`].
//!
//! Invariants: no I/O, no clock, no randomness, no async here (a tidy test checks the
//! imports). A `Plan` is plain data: apply is driven only by its changes. It never contains a
//! secret's value: sensitive env values carry a digest and the reference to read them again.

pub mod checks;
mod diff;
pub mod health;
pub mod json;
pub mod markdown;
mod preview;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::graph::{CycleError, Graph};
use crate::manifest::{Config, CvmConfig, Kms, Ref, Template};
use crate::model::schema::{Create, SCHEMA};
use crate::model::{self, Address, Attr, CloudIds, CvmAttrs, EnvVal, OutputValue, Power, RemoteCvm, ResourceRecord};
use crate::secrets::{self, SecretValues};
use crate::state::Snapshot;
use diff::diff_attrs;
pub use diff::merge_refresh;
pub use health::{Attention, Problem};
pub use preview::app_compose_for_create;
use preview::{preview_create, preview_update};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Normal,
    RefreshOnly,
    Destroy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
}

impl Action {
    /// The Terraform-style symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }

    /// As Terraform's JSON plan lists them.
    pub fn json_actions(self) -> &'static [&'static str] {
        match self {
            Action::Create => &["create"],
            Action::Update => &["update"],
            Action::Replace => &["delete", "create"],
            Action::Delete => &["delete"],
        }
    }
}

/// Why a change happens or what it entails; rendered as notes, never recomputed by renderers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Every configuration update restarts the CVM (seed 001).
    RestartsCvm,
    /// A create cannot set these (the create request has no field for them): one update right
    /// after the create does, and restarts the new CVM once.
    SetAfterCreate { attributes: Vec<Attr> },
    /// These attributes cannot change in place.
    ForcesReplacement { attributes: Vec<Attr> },
    /// A create did not finish last time.
    Tainted,
    /// The CVM was deleted outside teeform.
    DeletedOutsideTeeform,
    /// The resource is no longer in the manifest.
    NotInManifest,
    /// `teeform destroy`.
    DestroyRequested,
    /// Replacing creates a new app id: KMS-derived keys and disks do not survive.
    RotatesAppId,
    /// Env keys changed, which changes `allowed_envs` and so the compose hash.
    EnvKeysChanged { added: Vec<String>, removed: Vec<String> },
    /// The new compose hash must be registered on chain before the update commits.
    OnChainRegistration(OnChainNote),
    /// The CVM is stopped and the manifest wants it running: `POST /cvms/{id}/start`.
    Starts,
    /// The manifest says `power: stopped`: `POST /cvms/{id}/stop`.
    Stops,
    /// The replaced CVM's boot failed; if the replacement fails the same way, teeform stops
    /// replacing it.
    BootFailed { errors: Vec<String>, logs: String },
}

/// What the chain must allow before a change commits (filled in by the CLI's read-only check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnChainNote {
    pub compose_hash: String,
    pub chain_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    /// Whether the contract already allows the hash (`None`: not checked or unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
}

/// One attribute's before and after, as JSON (`null` = unset, unknown shown separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChange {
    pub name: Attr,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    #[serde(default)]
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub address: Address,
    pub action: Action,
    /// Identifiers of the existing CVM (update, replace, delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<CloudIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<CvmAttrs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<CvmAttrs>,
    /// The changed attributes (updates and replacements).
    #[serde(default)]
    pub attributes: Vec<AttrChange>,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    #[serde(default)]
    pub dependencies: Vec<Address>,
    /// Compose hash before and (previewed) after; the API's answer is authoritative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_hash: Option<HashChange>,
    /// The KMS the CVM uses (for on-chain registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<KmsSpec>,
}

impl Change {
    /// Whether this change changes `attr`.
    pub fn changes(&self, attr: Attr) -> bool {
        self.attributes.iter().any(|a| a.name == attr)
    }

    /// Whether applying it restarts a CVM (an update, or the update after a create).
    pub fn restarts(&self) -> bool {
        self.reasons.iter().any(|r| matches!(r, Reason::RestartsCvm | Reason::SetAfterCreate { .. }))
    }
}

/// The attributes `after` sets that a create cannot carry: one update after the create sets
/// them ([`Reason::SetAfterCreate`]).
pub fn set_after_create(after: &CvmAttrs) -> Vec<Attr> {
    SCHEMA.iter().filter(|s| s.create == Create::AfterCreate && after.is_set(s.attr)).map(|s| s.attr).collect()
}

/// The note of a create or a replacement that sets what a create cannot.
fn after_create_reason(after: &CvmAttrs) -> Option<Reason> {
    let attributes = set_after_create(after);
    (!attributes.is_empty()).then_some(Reason::SetAfterCreate { attributes })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    pub after: String,
}

/// The on-chain KMS settings a change needs at apply time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsSpec {
    pub chain_id: u64,
    /// The manifest's `kms.rpc_url`. A secret (hosted RPC URLs carry a key): never written
    /// into a saved or JSON plan; a saved plan keeps its fingerprint and reads the URL from
    /// the manifest again at apply.
    #[serde(skip)]
    pub rpc_url: Option<String>,
    /// [`crate::redact::fingerprint`] of `rpc_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_url_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    pub private_key_env: String,
    pub rpc_url_env: String,
    pub confirmations: u64,
}

/// Attributes that changed outside teeform, or a CVM that disappeared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub address: Address,
    pub deleted: bool,
    #[serde(default)]
    pub attributes: Vec<AttrChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedOutput {
    pub value: Template,
    pub sensitive: bool,
    /// The value if it is known now and not sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<String>,
    /// The value in state before this plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Whether state has this output already (a sensitive one has no `before`).
    #[serde(default)]
    pub in_state: bool,
}

impl PlannedOutput {
    /// What applying does to this output: `create`, `update` or `no-op` (Terraform's words).
    pub fn action(&self) -> &'static str {
        match &self.before {
            None if !self.in_state => "create",
            // State keeps no value for a sensitive output, so there is nothing to compare.
            None => "no-op",
            Some(b) if self.sensitive || self.known.as_ref() != Some(b) => "update",
            Some(_) => "no-op",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRef {
    pub lineage: String,
    pub serial: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub mode: Mode,
    /// The state this plan was made against; applying it elsewhere or later is refused.
    pub state: StateRef,
    /// Changes in dependency order.
    pub changes: Vec<Change>,
    pub drift: Vec<Drift>,
    /// Records refreshed from the API (drift), written to state when the plan is applied.
    #[serde(default)]
    pub refreshed: Vec<ResourceRecord>,
    pub outputs: BTreeMap<String, PlannedOutput>,
    /// Outputs in state that this plan removes, as state has them (no value when sensitive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub removed_outputs: BTreeMap<String, OutputValue>,
    /// Whether applying would change outputs only.
    #[serde(default)]
    pub outputs_changed: bool,
    /// CVMs whose run state needs a person (failed, stuck, failing to boot again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attention: Vec<Attention>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn count(&self, a: Action) -> usize {
        self.changes.iter().filter(|c| c.action == a).count()
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
            || self.outputs_changed
            || (self.mode == Mode::RefreshOnly && !(self.drift.is_empty() && self.attention.is_empty()))
    }

    /// Adds, changes, destroys as Terraform counts them (a replacement is one add and one destroy).
    pub fn summary(&self) -> (usize, usize, usize) {
        let r = self.count(Action::Replace);
        (self.count(Action::Create) + r, self.count(Action::Update), self.count(Action::Delete) + r)
    }

    pub fn restarts(&self) -> usize {
        self.changes.iter().filter(|c| c.restarts()).count()
    }

    /// Whether the CVMs are as the manifest says: nothing to change, nothing needing a person.
    /// `plan --detailed-exitcode` exits 2 unless they are.
    pub fn converged(&self) -> bool {
        !self.has_changes() && self.attention.is_empty()
    }

    /// CVMs needing attention that no change in this plan touches: applying leaves them so.
    pub fn unresolved(&self) -> impl Iterator<Item = &Attention> {
        self.attention.iter().filter(|a| !self.changes.iter().any(|c| c.address == a.address))
    }
}

/// What the API said when refreshing one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Refresh {
    Found(Box<RemoteCvm>),
    Gone,
}

pub struct Input<'a> {
    pub config: &'a Config,
    pub snapshot: &'a Snapshot,
    /// `None` when refresh was skipped.
    pub refreshed: Option<&'a BTreeMap<Address, Refresh>>,
    pub secrets: &'a SecretValues,
    pub mode: Mode,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Cycle(#[from] CycleError),
}

/// The nodes of the plan's graph: every CVM in the manifest or in state, with what it
/// depends on (the manifest's `depends_on` and references, else what state recorded).
fn nodes(config: &Config, snapshot: &Snapshot) -> BTreeMap<Address, Vec<Address>> {
    let mut nodes: BTreeMap<Address, Vec<Address>> = BTreeMap::new();
    for c in config.cvms.values() {
        nodes.insert(c.address(), c.depends_on.iter().map(|d| Address::cvm(d)).collect());
    }
    for r in snapshot.resources.values() {
        nodes.entry(r.address.clone()).or_insert_with(|| r.dependencies.clone());
    }
    nodes
}

/// The graph of everything the plan touches: CVMs in the manifest and CVMs only in state.
pub fn graph(config: &Config, snapshot: &Snapshot) -> Result<Graph, CycleError> {
    graph_of(&nodes(config, snapshot))
}

fn graph_of(nodes: &BTreeMap<Address, Vec<Address>>) -> Result<Graph, CycleError> {
    let edges: Vec<(&str, Vec<String>)> =
        nodes.iter().map(|(a, d)| (a.as_str(), d.iter().map(ToString::to_string).collect())).collect();
    Graph::new(edges.iter().map(|(a, d)| (*a, d.as_slice())))
}

pub fn kms_spec(kms: &Kms) -> Option<KmsSpec> {
    match kms {
        Kms::Phala => None,
        Kms::OnChain(k) => Some(KmsSpec {
            chain_id: k.chain_id,
            rpc_url: k.rpc_url.clone(),
            rpc_url_fingerprint: k.rpc_url.as_deref().map(crate::redact::fingerprint),
            contract: k.contract.clone(),
            private_key_env: k.private_key_env.clone(),
            rpc_url_env: k.rpc_url_env.clone(),
            confirmations: k.confirmations,
        }),
    }
}

/// What the chain must allow before an update of an on-chain-KMS CVM commits. Whether it
/// already does is a chain read, filled in by the CLI (`allowed`).
fn onchain_note(spec: &KmsSpec, h: &HashChange, rec: &ResourceRecord) -> OnChainNote {
    // For on-chain KMS the app id is the app contract's address.
    let from_api = rec
        .kms_info
        .as_ref()
        .and_then(|k| k.get("dstack_app_address"))
        .and_then(|a| a.as_str())
        .map(str::to_string)
        .or_else(|| rec.ids.app_id.clone());
    let contract =
        spec.contract.clone().or(from_api).map(|a| format!("0x{}", a.trim_start_matches("0x").to_ascii_lowercase()));
    OnChainNote { compose_hash: h.after.clone(), chain_id: spec.chain_id, contract, allowed: None }
}

/// Builds the plan.
pub fn plan(input: &Input) -> Result<Plan, PlanError> {
    let Input { config, snapshot, refreshed, secrets, mode } = *input;
    let nodes = nodes(config, snapshot);
    let graph = graph_of(&nodes)?;

    // Current records: state, brought up to date by refresh.
    let mut current: BTreeMap<Address, ResourceRecord> = BTreeMap::new();
    let mut drift = Vec::new();
    let mut refreshed_records = Vec::new();
    let mut gone: BTreeSet<Address> = BTreeSet::new();
    let mut attention: Vec<Attention> = Vec::new();
    for (addr, rec) in &snapshot.resources {
        match refreshed.and_then(|r| r.get(addr)) {
            Some(Refresh::Found(remote)) => {
                let (mut merged, changes) = merge_refresh(rec, remote);
                attention.extend(health::judge(&mut merged, remote));
                if !changes.is_empty() {
                    drift.push(Drift { address: addr.clone(), deleted: false, attributes: changes });
                }
                if merged != *rec {
                    refreshed_records.push(merged.clone());
                }
                current.insert(addr.clone(), merged);
            }
            Some(Refresh::Gone) => {
                drift.push(Drift { address: addr.clone(), deleted: true, attributes: vec![] });
                gone.insert(addr.clone());
            }
            None => {
                let attrs = rec.attrs.clone().normalized();
                current.insert(addr.clone(), ResourceRecord { attrs, ..rec.clone() });
            }
        }
    }

    let mut changes: Vec<Change> = Vec::new();
    let mut actions: BTreeMap<Address, Action> = BTreeMap::new();
    let desired: BTreeMap<Address, &CvmConfig> = config.cvms.values().map(|c| (c.address(), c)).collect();

    if mode == Mode::RefreshOnly {
        let changes = Vec::new();
        return Ok(finish(config, snapshot, &current, &actions, changes, drift, refreshed_records, attention, mode));
    }

    // Creates, updates and replacements in dependency order, so a CVM's references see what
    // happens to the CVMs it references.
    for addr in graph.topo_order() {
        let Some((addr, cfg)) = desired.get_key_value(addr).filter(|_| mode != Mode::Destroy) else {
            continue;
        };
        let cur = current.get(addr);
        let after = desired_attrs(cfg, &current, &actions, secrets, &snapshot.meta.salt);
        // Graph nodes are the keys of `nodes`: each dependency is found there.
        let deps: Vec<Address> = graph
            .dependencies(addr.as_str())
            .into_iter()
            .filter_map(|d| nodes.get_key_value(d))
            .map(|(d, _)| d.clone())
            .collect();
        let kms = kms_spec(&cfg.kms);
        let change = match cur {
            None => {
                let mut reasons = if gone.contains(addr) { vec![Reason::DeletedOutsideTeeform] } else { vec![] };
                reasons.extend(after_create_reason(&after));
                let hash = preview_create(&after);
                Some(Change {
                    address: addr.clone(),
                    action: Action::Create,
                    ids: None,
                    before: None,
                    after: Some(after),
                    attributes: vec![],
                    reasons,
                    dependencies: deps,
                    compose_hash: Some(hash),
                    kms,
                })
            }
            Some(rec) => {
                let attrs = diff_attrs(&rec.attrs, &after, true);
                let gave_up = health::gave_up(rec, attrs.is_empty());
                if let Some(a) = gave_up {
                    attention.push(a);
                    None
                } else if rec.tainted {
                    let mut reasons = vec![Reason::Tainted];
                    if !rec.boot.failures.is_empty() {
                        reasons.push(Reason::BootFailed {
                            errors: rec.boot.failures.clone(),
                            logs: model::boot_log_command(&rec.ids),
                        });
                    }
                    reasons.push(Reason::RotatesAppId);
                    reasons.extend(after_create_reason(&after));
                    let hash = HashChange { before: rec.compose_hash.clone(), ..preview_create(&after) };
                    Some(Change {
                        address: addr.clone(),
                        action: Action::Replace,
                        ids: Some(rec.ids.clone()),
                        before: Some(rec.attrs.clone()),
                        after: Some(after),
                        attributes: attrs,
                        reasons,
                        dependencies: deps,
                        compose_hash: Some(hash),
                        kms,
                    })
                } else if attrs.is_empty() {
                    None
                } else {
                    let forcing: Vec<Attr> = attrs.iter().filter(|a| a.forces_replacement).map(|a| a.name).collect();
                    let (action, mut reasons, hash) = if forcing.is_empty() {
                        let hash = preview_update(rec, &after, refreshed.and_then(|r| r.get(addr)));
                        (Action::Update, update_reasons(rec, &attrs, &after), hash)
                    } else {
                        (
                            Action::Replace,
                            [Reason::ForcesReplacement { attributes: forcing }, Reason::RotatesAppId]
                                .into_iter()
                                .chain(after_create_reason(&after))
                                .collect(),
                            Some(HashChange { before: rec.compose_hash.clone(), ..preview_create(&after) }),
                        )
                    };
                    let (added, removed) = key_changes(&rec.attrs.env, &after.env);
                    if !added.is_empty() || !removed.is_empty() {
                        reasons.push(Reason::EnvKeysChanged { added, removed });
                    }
                    if action == Action::Update
                        && let (Some(spec), Some(h)) = (&kms, &hash)
                    {
                        reasons.push(Reason::OnChainRegistration(onchain_note(spec, h, rec)));
                    }
                    Some(Change {
                        address: addr.clone(),
                        action,
                        ids: Some(rec.ids.clone()),
                        before: Some(rec.attrs.clone()),
                        after: Some(after),
                        attributes: attrs,
                        reasons,
                        dependencies: deps,
                        compose_hash: hash,
                        kms,
                    })
                }
            }
        };
        if let Some(c) = change {
            actions.insert(addr.clone(), c.action);
            changes.push(c);
        }
    }

    // Deletions: dependents go before what they depend on, so walk the order backwards.
    let mut deletes = Vec::new();
    for addr in graph.topo_order().into_iter().rev() {
        let Some(rec) = current.get(addr) else {
            continue;
        };
        let addr = &rec.address;
        let reason = if mode == Mode::Destroy {
            Reason::DestroyRequested
        } else if !desired.contains_key(addr) {
            Reason::NotInManifest
        } else {
            continue;
        };
        actions.insert(addr.clone(), Action::Delete);
        deletes.push(Change {
            address: addr.clone(),
            action: Action::Delete,
            ids: Some(rec.ids.clone()),
            before: Some(rec.attrs.clone()),
            after: None,
            attributes: vec![],
            reasons: vec![reason],
            dependencies: rec.dependencies.clone(),
            compose_hash: None,
            kms: None,
        });
    }
    changes.extend(deletes);
    if mode == Mode::Destroy {
        attention.clear();
    }
    // A failed create is replaced by this plan; its note says why.
    attention.retain(|a| a.problem != Problem::FailedCreate || !changes.iter().any(|c| c.address == a.address));
    Ok(finish(config, snapshot, &current, &actions, changes, drift, refreshed_records, attention, mode))
}

/// What an in-place update entails: a start or stop when the run state changes, a restart
/// when the configuration changes on a CVM that runs and keeps running.
fn update_reasons(rec: &ResourceRecord, attrs: &[AttrChange], after: &CvmAttrs) -> Vec<Reason> {
    let power = attrs.iter().any(|a| a.name == Attr::Power).then_some(after.power).flatten();
    let config = attrs.iter().any(|a| a.name != Attr::Power);
    match power {
        Some(Power::Stopped) => vec![Reason::Stops],
        Some(Power::Running) => vec![Reason::Starts],
        None if config && rec.attrs.power != Some(Power::Stopped) => vec![Reason::RestartsCvm],
        None => vec![],
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    config: &Config,
    snapshot: &Snapshot,
    current: &BTreeMap<Address, ResourceRecord>,
    actions: &BTreeMap<Address, Action>,
    changes: Vec<Change>,
    drift: Vec<Drift>,
    refreshed: Vec<ResourceRecord>,
    attention: Vec<Attention>,
    mode: Mode,
) -> Plan {
    let mut outputs = BTreeMap::new();
    let mut outputs_changed = false;
    if mode != Mode::Destroy {
        for (name, o) in &config.outputs {
            let known = if o.sensitive { None } else { resolve_plain(&o.value, current, actions) };
            let prev = snapshot.outputs.get(name);
            outputs_changed |= match prev {
                None => true,
                Some(p) => p.sensitive != o.sensitive || (!o.sensitive && (known.is_none() || known != p.value)),
            };
            outputs.insert(
                name.clone(),
                PlannedOutput {
                    value: o.value.clone(),
                    sensitive: o.sensitive,
                    known,
                    before: prev.and_then(|p| p.value.clone()),
                    in_state: prev.is_some(),
                },
            );
        }
    }
    let removed_outputs: BTreeMap<String, OutputValue> = snapshot
        .outputs
        .iter()
        .filter(|(k, _)| !outputs.contains_key(*k))
        .map(|(k, o)| {
            (
                k.clone(),
                OutputValue { value: o.value.clone().filter(|_| !o.sensitive), sensitive: o.sensitive, digest: None },
            )
        })
        .collect();
    let outputs_changed = mode != Mode::RefreshOnly && (outputs_changed || !removed_outputs.is_empty());
    let mut warnings: Vec<String> = config.warnings.iter().map(|d| d.to_string()).collect();
    warnings.sort();
    Plan {
        format_version: FORMAT_VERSION,
        mode,
        state: StateRef { lineage: snapshot.meta.lineage.clone(), serial: snapshot.meta.serial },
        changes,
        drift,
        refreshed,
        outputs,
        removed_outputs,
        outputs_changed,
        attention,
        warnings,
    }
}

fn key_changes(before: &BTreeMap<String, EnvVal>, after: &BTreeMap<String, EnvVal>) -> (Vec<String>, Vec<String>) {
    let added = after.keys().filter(|k| !before.contains_key(*k)).cloned().collect();
    let removed = before.keys().filter(|k| !after.contains_key(*k)).cloned().collect();
    (added, removed)
}

/// The value of a CVM attribute other resources may reference, if known before apply.
fn cvm_attr(
    target: &str,
    attr: &str,
    current: &BTreeMap<Address, ResourceRecord>,
    actions: &BTreeMap<Address, Action>,
) -> Option<String> {
    let addr = Address::cvm(target);
    match actions.get(&addr) {
        Some(Action::Create | Action::Replace | Action::Delete) => return None,
        Some(Action::Update) if attr == "compose_hash" => return None,
        _ => {}
    }
    current.get(&addr)?.reference(attr)
}

/// Resolves a template whose references are all known and none secret.
fn resolve_plain(
    t: &Template,
    current: &BTreeMap<Address, ResourceRecord>,
    actions: &BTreeMap<Address, Action>,
) -> Option<String> {
    if t.refs().any(Ref::is_secret) {
        return None;
    }
    let r = t.substitute(|r| match r {
        Ref::Cvm { name, attr } => cvm_attr(name, attr, current, actions),
        _ => None,
    });
    r.as_literal()
}

/// Desired attributes of one CVM, with references resolved as far as they can be now.
fn desired_attrs(
    c: &CvmConfig,
    current: &BTreeMap<Address, ResourceRecord>,
    actions: &BTreeMap<Address, Action>,
    secrets: &SecretValues,
    salt: &str,
) -> CvmAttrs {
    let addr = c.address();
    let env = c
        .env
        .iter()
        .map(|(k, t)| {
            let sensitive = t.refs().any(Ref::is_secret);
            let resolved = t.substitute(|r| match r {
                Ref::Cvm { name, attr } => cvm_attr(name, attr, current, actions),
                r if r.is_secret() => secrets.get(r).map(|s| s.expose().to_string()),
                _ => None,
            });
            let v = match (resolved.as_literal(), sensitive) {
                (Some(value), false) => EnvVal::plain(value),
                (Some(value), true) => EnvVal {
                    value: None,
                    digest: Some(secrets::digest(salt, addr.as_str(), k, &value)),
                    template: Some(t.clone()),
                },
                (None, _) => EnvVal { value: None, digest: None, template: Some(t.clone()) },
            };
            (k.clone(), v)
        })
        .collect();
    CvmAttrs { env, ..configured_attrs(c) }
}

/// The attributes the manifest gives a CVM, in the API's normal form, env aside (its values
/// need references and secrets resolved: the plan does that).
pub fn configured_attrs(c: &CvmConfig) -> CvmAttrs {
    CvmAttrs {
        name: c.name.clone(),
        compose: Some(c.compose.content.clone()),
        pre_launch_script: c.pre_launch_script.as_ref().map(|f| f.content.clone()),
        kms: Some(c.kms.kind().to_string()),
        env: BTreeMap::new(),
        power: Some(if c.stopped { Power::Stopped } else { Power::Running }),
        // The plain-valued attributes, as the manifest's reader typed them.
        ..c.attrs.clone()
    }
    .normalized()
}

#[cfg(test)]
mod tests;
