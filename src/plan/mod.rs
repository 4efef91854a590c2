//! The planner: a pure function from (desired configuration, state, refreshed facts) to a
//! [`Plan`]. Renderers live in [`render`] and [`json`].
//!
//! Invariants: no I/O, no clock, no randomness, no async here (a tidy test checks the
//! imports). A `Plan` is plain data: apply is driven only by its changes. It never contains a
//! secret's value: sensitive env values carry a digest and the reference to read them again.

mod change;
pub mod checks;
mod current;
mod deletions;
mod desired;
mod diff;
mod digests;
pub mod health;
mod identity;
pub mod json;
pub mod markdown;
mod preview;
pub mod render;
mod replicas;
mod requests;
mod unmanaged;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::graph::{CycleError, Graph};
use crate::manifest::{Config, CvmConfig, HealthCheck, Kms, Template};
use crate::model::schema::{Create, SCHEMA};
use crate::model::{Address, Attr, CloudIds, CvmAttrs, OutputValue, RemoteCvm, ResourceRecord};
use crate::secrets::{Digester, SecretValues};
use crate::state::Snapshot;
use current::Current;
pub use desired::configured_attrs;
use desired::{Known, desired_attrs, resolve_plain};
pub use diff::{diff_attrs, merge_refresh};
pub use digests::Redigested;
pub use health::{Attention, Problem};
pub use preview::app_compose_for_create;
pub use replicas::{Instance, Roll};
pub use requests::Requests;
pub use unmanaged::Unmanaged;

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
    /// These attributes cannot change in place (the cause of a replacement).
    ForcesReplacement { attributes: Vec<Attr> },
    /// `--replace ADDRESS` asked for the replacement.
    ReplaceRequested,
    /// A create did not finish last time.
    Tainted,
    /// The CVM was deleted outside teeform.
    DeletedOutsideTeeform,
    /// The resource is no longer in the manifest.
    NotInManifest,
    /// With [`Reason::NotInManifest`]: an instance of a replicated CVM whose `replicas:` went
    /// down, from (the instances state has) to (the manifest's).
    ScaledIn { from: u32, to: u32 },
    /// With [`Reason::NotInManifest`]: an instance whose index is `replicas` or more while
    /// state holds no more instances than that (`state mv` to a gap): not a scale-in.
    BeyondReplicas { replicas: u32 },
    /// `teeform destroy`.
    DestroyRequested,
    /// A surge instance of the roll of `of` (`update_policy.max_surge`): made from instance 0,
    /// brought to the new revision, and deleted once the roll's last batch passes.
    Surge { of: Address },
    /// With [`Reason::NotInManifest`]: a surge instance a paused roll left, whose roll is done.
    SurgeLeftover,
    /// What a replacement costs: a new app id, so new KMS-derived keys and a fresh disk (the
    /// old one's data is lost), and for an on-chain KMS a new app contract.
    RotatesAppId {
        #[serde(default)]
        onchain: bool,
    },
    /// What the replacement of an instance of a replicated CVM costs: it is made from
    /// `source`, another instance of the app (`POST /cvms/{id}/replicas`), so it keeps the app
    /// id and KMS-derived keys and gets a new disk (the old one's data is lost), vm_uuid and
    /// instance id. Stands for [`Reason::RotatesAppId`] there.
    JoinsApp { source: Address },
    /// The name changes in place with the API's rename call: the CVM keeps its app id, keys
    /// and disk, and does not restart.
    Renames,
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
    /// State's digests of these secret env values were made with a key this run does not have
    /// (`made_with`, as [`crate::secrets::Made::describe`]; this run: `now`), so the values cannot be compared
    /// and are sent again.
    SecretsResent { keys: Vec<String>, made_with: String, now: String },
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
    /// The manifest's `kms.signer`: the KMS signing key the env-encryption key must be
    /// signed by (when unset, the one the API's KMS info names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_signer: Option<String>,
    /// The address state kept the CVM at before this plan moved it (`moved:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<Address>,
    /// The manifest's `lifecycle.prevent_destroy`, recorded with the CVM.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prevent_destroy: bool,
    /// The address its env digests are made under, when not its own
    /// ([`ResourceRecord::secrets_scope`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_scope: Option<Address>,
    /// Where the change is an instance of a replicated CVM (`cvm.KEY[i]`): how it is made and
    /// which instances it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<Instance>,
    /// The manifest's `health:`, checked once the CVM runs after this change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
}

impl Change {
    /// A change of `action` to `address` with nothing else known yet.
    pub fn new(address: Address, action: Action) -> Change {
        Change {
            address,
            action,
            ids: None,
            before: None,
            after: None,
            attributes: vec![],
            reasons: vec![],
            dependencies: vec![],
            compose_hash: None,
            kms: None,
            kms_signer: None,
            moved_from: None,
            prevent_destroy: false,
            secrets_scope: None,
            instance: None,
            health: None,
        }
    }

    /// A create of `cfg` at `address`, with what the manifest says of it beside its
    /// attributes (its KMS, the KMS's pinned signer, `prevent_destroy`).
    fn of_config(address: &Address, cfg: &CvmConfig) -> Change {
        Change {
            kms: kms_spec(&cfg.kms),
            kms_signer: cfg.kms_signer.clone(),
            prevent_destroy: cfg.prevent_destroy,
            instance: replicas::instance(address, cfg),
            health: cfg.health.clone(),
            ..Change::new(address.clone(), Action::Create)
        }
    }

    /// Whether this change changes `attr`.
    pub fn changes(&self, attr: Attr) -> bool {
        self.attributes.iter().any(|a| a.name == attr)
    }

    /// Whether applying it restarts a CVM (an update, or the update after a create).
    pub fn restarts(&self) -> bool {
        self.reasons.iter().any(|r| matches!(r, Reason::RestartsCvm | Reason::SetAfterCreate { .. }))
    }

    /// Whether applying it boots the CVM (made, replaced, restarted or started): what the
    /// attestation gate checks. A rename or a stop boots nothing.
    pub fn boots(&self) -> bool {
        matches!(self.action, Action::Create | Action::Replace)
            || self.restarts()
            || self.reasons.iter().any(|r| matches!(r, Reason::Starts))
    }

    /// A replacement somebody asked for: with `--replace`, or of a create that never finished
    /// (a tainted CVM never ran, so it has no data or keys in use to lose).
    pub fn replacement_requested(&self) -> bool {
        self.reasons.iter().any(|r| matches!(r, Reason::ReplaceRequested | Reason::Tainted))
    }

    /// Whether it renames the CVM (in place, or as its replacement is created).
    pub fn renames(&self) -> bool {
        self.changes(Attr::Name)
    }
}

/// A CVM this plan moves in state (`moved:`): the same CVM under its new address, no cloud call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub from: Address,
    pub to: Address,
}

/// A CVM whose `lifecycle.prevent_destroy` state records anew (no cloud call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    pub address: Address,
    pub prevent_destroy: bool,
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
    /// Records written to state when the plan is applied, before any step: refreshed from the
    /// API (drift), moved ([`Plan::moved`]), with their protection changed
    /// ([`Plan::protection`]), or whose secret digests are made again ([`Plan::redigested`]).
    #[serde(default)]
    pub refreshed: Vec<ResourceRecord>,
    /// Secret digests applying makes again in this run's mode, the values unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redigested: Vec<Redigested>,
    /// CVMs moved in state (`moved:`): their old addresses are removed as the plan is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<Moved>,
    /// CVMs whose `lifecycle.prevent_destroy` state records anew.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protection: Vec<Protection>,
    /// Updates that roll over a replicated CVM's instances (their changes are in `changes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rolls: Vec<Roll>,
    /// What the run asked for beyond the manifest: `--replace`, `--target`, `--exclude`, and
    /// the consent `--allow-replace` gives (a saved plan keeps it).
    #[serde(default)]
    pub requests: Requests,
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
    /// Things worth knowing that need nothing done (a `moved:` entry with nothing to move).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Instances of managed apps that no record holds: shown, never changed ([`Unmanaged`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmanaged: Vec<Unmanaged>,
}

impl Plan {
    pub fn count(&self, a: Action) -> usize {
        self.changes.iter().filter(|c| c.action == a).count()
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
            || self.outputs_changed
            || !self.moved.is_empty()
            || !self.protection.is_empty()
            || (self.mode == Mode::RefreshOnly && !(self.drift.is_empty() && self.attention.is_empty()))
    }

    /// Adds, changes, destroys as Terraform counts them (a replacement is one add and one destroy).
    pub fn summary(&self) -> (usize, usize, usize) {
        let r = self.count(Action::Replace);
        // The surge instances a roll deletes when it ends are destroys no change lists.
        let surge = self.surge_deletes().count();
        (self.count(Action::Create) + r, self.count(Action::Update), self.count(Action::Delete) + r + surge)
    }

    pub fn restarts(&self) -> usize {
        self.changes.iter().filter(|c| c.restarts()).count()
    }

    /// The steps applying it takes: one per change, and one per surge instance a roll deletes
    /// when it ends ([`Roll::surge`]), which no change lists.
    pub fn steps(&self) -> usize {
        self.changes.len() + self.surge_deletes().count()
    }

    /// The surge instances the rolls delete when they end.
    pub fn surge_deletes(&self) -> impl Iterator<Item = &Address> {
        self.rolls.iter().flat_map(|r| &r.surge)
    }

    /// Whether the CVMs are as the manifest says: nothing to change, nothing needing a person.
    /// `plan --detailed-exitcode` exits 2 unless they are.
    pub fn converged(&self) -> bool {
        !self.has_changes() && self.attention.is_empty()
    }

    /// Replacements nobody asked for and no consent covers: apply refuses the plan while there
    /// are any (each would give a CVM a new app id, keys and disk).
    pub fn needs_consent(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| c.action == Action::Replace && !c.replacement_requested() && !self.requests.allow_replace)
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
    /// How this run digests secrets (for `snapshot`'s salt) and compares state's digests.
    pub digests: &'a Digester,
    pub mode: Mode,
    /// `--replace`, `--target`, `--exclude`, `--allow-replace`.
    pub requests: &'a Requests,
    /// Instances of the apps of CVMs in state that no record holds, as refresh found them.
    pub unmanaged: &'a [RemoteCvm],
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Cycle(#[from] CycleError),
    /// `--target`, `--exclude` or `--replace` names a CVM neither the manifest nor state has.
    #[error("{flag} {address}: there is no such CVM in the manifest or in state")]
    UnknownAddress { flag: &'static str, address: Address, known: Vec<Address> },
    /// `--replace` names a CVM this plan cannot replace (`why` says so).
    #[error("--replace {address}: {why}")]
    NotReplaceable { address: Address, why: &'static str },
    /// A `moved:` entry that cannot be carried out as written (ambiguous, or onto a CVM state
    /// already holds).
    #[error(transparent)]
    Move(#[from] crate::model::MoveError),
    /// The plan would destroy or replace CVMs whose `lifecycle.prevent_destroy` is set (by
    /// the manifest, or recorded in state for a CVM the manifest no longer has).
    #[error("{} has `lifecycle.prevent_destroy` set, but this plan would {} it", .blocked[0].0, verb(&.blocked[0].1))]
    PreventDestroy { blocked: Vec<(Address, Action)> },
    /// Renames that each need a name another one frees first (a swap): no order works.
    #[error("renames form a cycle: {}", .cycle.iter().map(|(a, n)| format!("{a} → `{n}`")).collect::<Vec<_>>().join(", "))]
    NameCycle { cycle: Vec<(Address, String)> },
}

fn verb(a: &Action) -> &'static str {
    match a {
        Action::Replace => "replace",
        _ => "destroy",
    }
}

/// The nodes of the plan's graph: every CVM in the manifest or in `records` (state, as the
/// plan sees it), with what it depends on (the manifest's `depends_on` and references, else
/// what state recorded).
fn nodes(config: &Config, records: &BTreeMap<Address, ResourceRecord>) -> BTreeMap<Address, Vec<Address>> {
    let mut nodes: BTreeMap<Address, Vec<Address>> = BTreeMap::new();
    for c in config.cvms.values() {
        nodes.extend(replicas::nodes(config, c));
    }
    for r in records.values() {
        nodes.entry(r.address.clone()).or_insert_with(|| r.dependencies.clone());
    }
    nodes
}

/// The graph of everything the plan touches: CVMs in the manifest and CVMs only in state.
pub fn graph(config: &Config, snapshot: &Snapshot) -> Result<Graph, CycleError> {
    graph_of(&nodes(config, &snapshot.resources))
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

/// Builds the plan.
// Long: the planner's passes in order — moves, selection, refresh, creates and updates, surge
// instances, deletions — each a call, sharing a dozen locals that splitting would pass around.
pub fn plan(input: &Input) -> Result<Plan, PlanError> {
    let Input { config, snapshot, refreshed, secrets, digests, mode, requests, unmanaged: outside } = *input;
    debug_assert_eq!(digests.salt(), snapshot.meta.salt, "digests are made for the state planned against");
    let desired = replicas::desired(config);
    // Moves first: everything below sees a moved CVM at its new address.
    let (moved, notes) = identity::moves(config, snapshot, mode)?;
    let (records, protection) = identity::view(snapshot, &moved, &desired, mode);
    let nodes = nodes(config, &records);
    let graph = graph_of(&nodes)?;
    let selected = requests::selection(&graph, &nodes, &|a| records.contains_key(a), requests, mode)?;
    requests::check_replace(requests, &desired, &records, selected.as_ref().map(|s| &s.chosen), mode)?;
    let chosen = |a: &Address| selected.as_ref().is_none_or(|s| s.chosen.contains(a));

    // What refresh saw of a CVM: it went by state's addresses, from before any move.
    let origins: BTreeMap<Address, Address> = moved.iter().map(|m| (m.to.clone(), m.from.clone())).collect();
    let refresh_of = |addr: &Address| refreshed.and_then(|r| r.get(origins.get(addr).unwrap_or(addr)));
    let Current { current, drift, refreshed: refreshed_records, gone, mut attention } =
        Current::of(&records, snapshot, refresh_of);

    let mut changes: Vec<Change> = Vec::new();
    let mut known = Known { current: &current, actions: BTreeMap::new(), names: BTreeMap::new() };
    let mut state = State { moved, protection, notes, refreshed: refreshed_records, warnings: vec![] };

    if mode == Mode::RefreshOnly {
        let p = finish(config, snapshot, &known, Vec::new(), drift, state, attention, mode, requests, &BTreeSet::new());
        return Ok(unmanaged::attach(p, config, &records, outside));
    }

    if mode != Mode::Destroy {
        digests::prepare(config, &known, secrets, digests);
    }
    let mut redigested = Vec::new();

    // Creates, updates and replacements in dependency order, so a CVM's references see what
    // happens to the CVMs it references.
    for addr in graph.topo_order() {
        let Some((addr, cfg)) = desired.get_key_value(addr).filter(|(a, _)| mode != Mode::Destroy && chosen(a)) else {
            continue;
        };
        // A CVM keeps the scope its digests were made under, even when replaced.
        let scope = current.get(addr).map_or(addr, |r| r.digest_scope()).clone();
        let (mut after, seen) = desired_attrs(cfg, &scope, &known, secrets, digests, current.get(addr));
        replicas::place(addr, cfg, &mut after);
        // Digests state keeps in another mode, of unchanged values, are compared in this one.
        let redigested_rec = digests::redigest(addr, current.get(addr), &seen, digests, &mut state, &mut redigested);
        let cur = redigested_rec.as_ref().or(current.get(addr));
        let base = Change {
            dependencies: dependencies(&graph, &nodes, addr),
            moved_from: state.moved.iter().find(|m| m.to == *addr).map(|m| m.from.clone()),
            secrets_scope: Some(scope.clone()).filter(|s| s != addr),
            ..Change::of_config(addr, cfg)
        };
        let facts = change::Facts {
            gone: gone.contains(addr),
            requested: requests.replace.contains(addr),
            refresh: refresh_of(addr),
        };
        let change = change::of_desired(base, cur, after, &facts, &mut attention);
        if let Some(mut c) = change {
            replicas::fit(&mut c, cfg, &current, &gone);
            // (A replacement creates the CVM anew: nothing to explain there.)
            if c.action == Action::Update {
                c.reasons.extend(digests::resent_reason(&seen, digests));
            }
            known.record(&c);
            changes.push(c);
        }
    }

    let ctx = replicas::SurgeCtx {
        current: &current,
        gone: &gone,
        known: &known,
        secrets,
        digests,
        graph: &graph,
        nodes: &nodes,
        refresh: &refresh_of,
    };
    let kept = replicas::surges(config, mode, &mut changes, &ctx, &mut attention);
    replicas::batches(config, &mut changes, &current, &gone);
    let live = |a: &Address| desired.contains_key(a) || kept.contains(a);
    changes.extend(deletions::deletions(&graph, &mut known, &live, &desired, mode, &chosen, &state.moved));
    identity::check_prevent_destroy(&changes, &desired, &records)?;
    identity::check_name_cycles(&changes)?;
    state.warnings = selected.map(|s| s.warnings(&changes)).unwrap_or_default();
    state.warnings.extend(identity::likely_moves(&changes, &records));
    state.warnings.extend(identity::instances_to_move_back(&changes));
    let mut plan = finish(config, snapshot, &known, changes, drift, state, attention, mode, requests, &kept);
    plan.warnings.extend(digests::resent_warning(&plan));
    plan.redigested = redigested;
    Ok(unmanaged::attach(plan, config, &records, outside))
}

/// What `addr` depends on, as the graph's nodes name them.
fn dependencies(graph: &Graph, nodes: &BTreeMap<Address, Vec<Address>>, addr: &Address) -> Vec<Address> {
    graph
        .dependencies(addr.as_str())
        .into_iter()
        .filter_map(|d| nodes.get_key_value(d))
        .map(|(d, _)| d.clone())
        .collect()
}

/// What the plan writes to state beside the changes' steps, and notes about it.
struct State {
    moved: Vec<Moved>,
    protection: Vec<Protection>,
    notes: Vec<String>,
    refreshed: Vec<ResourceRecord>,
    /// Warnings about the changes themselves (a key that looks renamed without `moved:`).
    warnings: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn finish(
    config: &Config,
    snapshot: &Snapshot,
    known: &Known,
    changes: Vec<Change>,
    drift: Vec<Drift>,
    state: State,
    mut attention: Vec<Attention>,
    mode: Mode,
    requests: &Requests,
    kept: &BTreeSet<Address>,
) -> Plan {
    if mode == Mode::Destroy {
        attention.clear();
    }
    // A failed create is replaced by this plan; its note says why.
    attention.retain(|a| a.problem != Problem::FailedCreate || !changes.iter().any(|c| c.address == a.address));
    let mut outputs = BTreeMap::new();
    let mut outputs_changed = false;
    // A partial plan leaves outputs as they are: they may reference CVMs it leaves out.
    let outputs_planned = mode != Mode::RefreshOnly && !requests.targeted();
    if mode != Mode::Destroy && outputs_planned {
        for (name, o) in &config.outputs {
            let value = if o.sensitive { None } else { resolve_plain(&o.value, known) };
            let prev = snapshot.outputs.get(name);
            outputs_changed |= match prev {
                None => true,
                Some(p) => p.sensitive != o.sensitive || (!o.sensitive && (value.is_none() || value != p.value)),
            };
            outputs.insert(
                name.clone(),
                PlannedOutput {
                    value: o.value.clone(),
                    sensitive: o.sensitive,
                    known: value,
                    before: prev.and_then(|p| p.value.clone()),
                    in_state: prev.is_some(),
                },
            );
        }
    }
    let removed_outputs: BTreeMap<String, OutputValue> = snapshot
        .outputs
        .iter()
        .filter(|(k, _)| outputs_planned && !outputs.contains_key(*k))
        .map(|(k, o)| {
            (
                k.clone(),
                OutputValue { value: o.value.clone().filter(|_| !o.sensitive), sensitive: o.sensitive, digest: None },
            )
        })
        .collect();
    let outputs_changed = outputs_planned && (outputs_changed || !removed_outputs.is_empty());
    let mut warnings: Vec<String> = config.warnings.iter().map(|d| d.to_string()).collect();
    warnings.sort();
    warnings.extend(requests.warning());
    warnings.extend(state.warnings);
    Plan {
        format_version: FORMAT_VERSION,
        mode,
        state: StateRef { lineage: snapshot.meta.lineage.clone(), serial: snapshot.meta.serial },
        rolls: replicas::rolls(config, &changes, kept),
        changes,
        drift,
        refreshed: state.refreshed,
        redigested: Vec::new(),
        moved: state.moved,
        protection: state.protection,
        requests: requests.clone(),
        outputs,
        removed_outputs,
        outputs_changed,
        attention,
        warnings,
        notes: state.notes,
        unmanaged: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
