//! The executor: walks a plan's changes in dependency order with bounded parallelism.
//!
//! Invariants:
//! - every cloud operation is journaled before it is sent, and its result is written to state
//!   (in the same atomic batch that clears the journal entry) before the next step depends on it;
//! - one CVM gets at most one update call per apply: all its changed fields go in one
//!   `PATCH /cvms/{id}`, so it restarts once;
//! - a failed step stops only its dependents; independent steps carry on;
//! - after cancellation no new step starts; running steps finish and are recorded.

mod attrs;
mod error;
pub mod onchain;
mod reconcile;
mod wait;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use error::{EnvProblem, Failure, Next, StepError, Unresolved};
pub use reconcile::{CreateDetail, ReconcileError, Reconciled, elsewhere, reconcile};
pub use wait::{WaitError, WaitOptions, Waiter};

use crate::manifest::{Ref, Template};
use crate::model::{
    Address, Attr, BootHistory, CloudIds, CvmAttrs, CvmStatus, EnvVal, OutputValue, Power, RemoteCvm, ResourceRecord,
    boot_log_command, now_rfc3339,
};
use crate::plan::{self, Action, Change, Plan};
use crate::providers::{CommitRequest, ErrorKind, PatchOutcome, PatchRequest, PhalaApi, PowerAction, Provisioned};
use crate::secrets::{Check, Digester, Made, SecretValues};
use crate::state::{Batch, JournalEntry, StateError, Store};

/// Progress reporting; the CLI renders it.
pub trait Events: Send + Sync {
    fn started(&self, address: &str, action: Action);
    fn status(&self, address: &str, message: &str);
    fn finished(&self, address: &str, action: Action, result: &StepResult, elapsed: Duration);
}

#[derive(Debug)]
pub enum StepResult {
    Done {
        id: Option<String>,
    },
    /// Boxed: a failure carries an API error and its context, far larger than the others.
    Failed(Box<StepError>),
    /// Not started because a dependency failed or the run was cancelled.
    Skipped(String),
    /// Waiting for something outside teeform (on-chain registration); resumable.
    Paused(String),
}

impl StepResult {
    pub fn is_done(&self) -> bool {
        matches!(self, StepResult::Done { .. })
    }
}

/// What the executor needs for CVMs with on-chain KMS (implemented in [`onchain`]).
#[async_trait::async_trait]
pub trait OnChain: Send + Sync {
    /// Whether updates of on-chain-KMS CVMs are only prepared (`X-Prepare-Only`), for a multisig.
    fn prepare_only(&self) -> bool;
    /// An update an earlier run paused for this change: continued when it is still what the
    /// change wants (`Some`), dropped when the desired state moved on (`None`).
    async fn continue_pending(&self, ctx: &OnChainCtx<'_>) -> Result<Option<OnChainOutcome>, StepError>;
    /// Handles the API's 465 (`ctx.required`): journals the paused update, then registers the
    /// hash and confirms, or pauses.
    async fn on_hash_required(&self, ctx: &OnChainCtx<'_>) -> Result<OnChainOutcome, StepError>;
    /// Deploys the app contract a new on-chain-KMS CVM needs (the API gave no app id).
    async fn deploy_app(&self, ctx: &OnChainCtx<'_>, prov: &Provisioned) -> Result<DeployedApp, StepError>;
}

pub struct OnChainCtx<'a> {
    pub change: &'a Change,
    /// The CVM's path id (updates).
    pub cvm_id: Option<&'a str>,
    pub required: Option<&'a crate::providers::HashRequired>,
    /// The attributes state records once the change is done (env as digests).
    pub attrs: &'a CvmAttrs,
    /// The journal entry of the update the API paused, replaced by the pending one.
    pub update_journal_id: Option<&'a str>,
    pub api: &'a dyn PhalaApi,
    pub store: &'a dyn Store,
    pub events: &'a dyn Events,
    /// Stamped on the journal entries on-chain steps write.
    pub endpoint: &'a str,
    /// Set on Ctrl-C: stop waiting for the chain (the update stays paused).
    pub cancel: &'a CancellationToken,
}

pub enum OnChainOutcome {
    /// The API accepted the update; `journal_id` is cleared when its result is recorded.
    Committed { journal_id: String, attrs: Box<CvmAttrs> },
    /// Waiting for the chain; resumable.
    Paused(String),
}

/// An app contract deployed for a create.
pub struct DeployedApp {
    /// 40 hex digits, as the API writes app ids.
    pub app_id: String,
    pub contract_address: String,
    pub deployer_address: String,
    /// The journal entry of the deployment, cleared when the CVM is recorded.
    pub journal_id: String,
}

pub struct Executor {
    pub api: Arc<dyn PhalaApi>,
    pub store: Arc<dyn Store>,
    pub parallelism: usize,
    pub events: Arc<dyn Events>,
    pub cancel: CancellationToken,
    pub wait: WaitOptions,
    pub secrets: SecretValues,
    /// How this run digests secrets (the plan's: its digests are in the process's cache).
    pub digests: Arc<Digester>,
    pub onchain: Option<Arc<dyn OnChain>>,
    /// Stamped on every record and journal entry, so a later run against another endpoint
    /// is refused instead of taking these CVMs for deleted.
    pub endpoint: String,
}

#[derive(Debug)]
pub struct Report {
    pub results: BTreeMap<Address, (Action, StepResult)>,
    /// What each step did in the cloud, whether or not it then finished: a replacement whose
    /// new CVM failed to boot still deleted one CVM and created another.
    pub effects: BTreeMap<Address, Effects>,
    pub elapsed: Duration,
    /// A state write failed: state may lack what some steps did (their errors say what).
    pub state_failed: bool,
}

/// What one step did in the cloud.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    /// A CVM was created (the API accepted the commit).
    pub created: bool,
    /// A CVM was updated, started or stopped (the API accepted the request).
    pub updated: bool,
    /// A CVM was deleted.
    pub deleted: bool,
}

impl Report {
    /// CVMs (added, changed, destroyed) in the cloud, as Terraform counts a summary.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |f: fn(&Effects) -> bool| self.effects.values().filter(|e| f(e)).count();
        (n(|e| e.created), n(|e| e.updated), n(|e| e.deleted))
    }
}

impl Report {
    pub fn failed(&self) -> impl Iterator<Item = (&Address, &StepError)> {
        self.results.iter().filter_map(|(a, (_, r))| if let StepResult::Failed(e) = r { Some((a, &**e)) } else { None })
    }
    pub fn paused(&self) -> impl Iterator<Item = (&Address, &String)> {
        self.results.iter().filter_map(|(a, (_, r))| if let StepResult::Paused(e) = r { Some((a, e)) } else { None })
    }
    pub fn all_done(&self) -> bool {
        self.results.values().all(|(_, r)| r.is_done())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    State(#[from] StateError),
}

/// Shared by the steps: the state as it evolves during the run.
struct Shared {
    current: Mutex<BTreeMap<Address, ResourceRecord>>,
    effects: Mutex<BTreeMap<Address, Effects>>,
    digests: Arc<Digester>,
    nodes: tokio::sync::OnceCell<Vec<crate::providers::NodeInfo>>,
    types: tokio::sync::OnceCell<Vec<crate::providers::InstanceType>>,
    /// Set when a state write fails.
    state_failed: std::sync::atomic::AtomicBool,
}

/// Which changes each change waits for.
fn dependencies(plan: &Plan) -> BTreeMap<Address, BTreeSet<Address>> {
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
                let name = c.after.as_ref().map(|a| a.name.as_str());
                let frees = |o: &Change| {
                    let before = o.before.as_ref().map(|b| b.name.as_str());
                    o.action != Action::Create && before == name && o.after.as_ref().map(|a| a.name.as_str()) != name
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

/// The order in which ready steps start: those with the longest chain of steps waiting on
/// them first, then plan order. Starting a chain's head at once, rather than behind independent
/// work, lets the chain run alongside that work (critical-path-first list scheduling).
fn start_order(plan: &Plan, deps: &BTreeMap<Address, BTreeSet<Address>>) -> Vec<Address> {
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

impl Executor {
    /// Applies the plan. Refreshed records and outputs are written too.
    pub async fn run(&self, plan: &Plan) -> Result<Report, ApplyError> {
        let start = Instant::now();
        let snap = self.store.snapshot().await?;
        // What changes state alone, in one write before any step: refreshed records, moved
        // ones (their old addresses removed) and new protection.
        let moved_from: Vec<Address> = plan.moved.iter().map(|m| m.from.clone()).collect();
        if !plan.refreshed.is_empty() || !moved_from.is_empty() {
            let batch = Batch { put: plan.refreshed.clone(), remove: moved_from.clone(), ..Default::default() };
            self.store.commit(batch).await?;
        }
        let mut current = snap.resources.clone();
        for a in &moved_from {
            current.remove(a);
        }
        for r in &plan.refreshed {
            current.insert(r.address.clone(), r.clone());
        }
        let endpoint: Arc<str> = Arc::from(self.endpoint.as_str());
        let shared = Arc::new(Shared {
            current: Mutex::new(current),
            effects: Mutex::default(),
            digests: self.digests.clone(),
            nodes: Default::default(),
            types: Default::default(),
            state_failed: Default::default(),
        });
        // One poller watches every CVM the steps wait on.
        let waiter = Arc::new(Waiter::new(self.api.clone(), self.wait.clone()));
        let deps = dependencies(plan);
        let changes: BTreeMap<Address, Change> = plan.changes.iter().map(|c| (c.address.clone(), c.clone())).collect();
        let order = start_order(plan, &deps);
        let mut results: BTreeMap<Address, (Action, StepResult)> = BTreeMap::new();
        let mut running: JoinSet<(Address, StepResult, Duration)> = JoinSet::new();
        let mut tasks: std::collections::HashMap<tokio::task::Id, Address> = Default::default();
        // Steps neither started nor skipped yet, by position in `order`.
        let mut waiting: BTreeSet<usize> = (0..order.len()).collect();
        loop {
            // Skip what can no longer run; start what is ready. Once every slot is taken the
            // rest waits for the next step to finish, so a large apply stays linear.
            let mut settled = Vec::new();
            for &i in &waiting {
                let full = running.len() >= self.parallelism.max(1);
                if full && !self.cancel.is_cancelled() {
                    break;
                }
                let addr = &order[i];
                let action = changes[addr].action;
                let d = &deps[addr];
                if let Some(bad) = d.iter().find(|x| results.get(*x).is_some_and(|(_, r)| !r.is_done())) {
                    let r = StepResult::Skipped(format!("{bad} did not complete"));
                    self.events.finished(addr.as_str(), action, &r, Duration::ZERO);
                    results.insert(addr.clone(), (action, r));
                    settled.push(i);
                    continue;
                }
                if self.cancel.is_cancelled() {
                    let r = StepResult::Skipped("the run was interrupted".into());
                    self.events.finished(addr.as_str(), action, &r, Duration::ZERO);
                    results.insert(addr.clone(), (action, r));
                    settled.push(i);
                    continue;
                }
                let ready = d.iter().all(|x| results.get(x).is_some_and(|(_, r)| r.is_done()));
                if ready {
                    settled.push(i);
                    let change = changes[addr].clone();
                    let step = Step {
                        api: self.api.clone(),
                        store: self.store.clone(),
                        events: self.events.clone(),
                        waiter: waiter.clone(),
                        secrets: self.secrets.clone(),
                        shared: shared.clone(),
                        onchain: self.onchain.clone(),
                        cancel: self.cancel.clone(),
                        endpoint: endpoint.clone(),
                    };
                    self.events.started(addr.as_str(), action);
                    let task = running.spawn(async move {
                        let t = Instant::now();
                        let addr = change.address.clone();
                        let r = step.run(&change).await;
                        (addr, r, t.elapsed())
                    });
                    tasks.insert(task.id(), addr.clone());
                }
            }
            for i in settled {
                waiting.remove(&i);
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                joined = running.join_next_with_id() => {
                    let Some(joined) = joined else { break };
                    let (addr, r, elapsed) = match joined {
                        Ok((_, done)) => done,
                        // Tasks are never aborted: this is a panic, a bug; its step failed.
                        Err(e) => match tasks.get(&e.id()) {
                            Some(addr) => (addr.clone(), StepResult::Failed(Box::new(StepError::internal(e.to_string()))), Duration::ZERO),
                            None => continue,
                        },
                    };
                    let action = changes.get(&addr).map(|c| c.action).unwrap_or(Action::Update);
                    self.events.finished(addr.as_str(), action, &r, elapsed);
                    results.insert(addr, (action, r));
                }
                _ = self.cancel.cancelled(), if !self.cancel.is_cancelled() => {}
            }
        }
        self.write_outputs(plan, &shared).await?;
        let effects = shared.effects.lock().expect("effects lock").clone();
        let state_failed = shared.state_failed.load(std::sync::atomic::Ordering::Relaxed);
        Ok(Report { results, effects, elapsed: start.elapsed(), state_failed })
    }

    async fn write_outputs(&self, plan: &Plan, shared: &Shared) -> Result<(), StateError> {
        // A partial plan (`--target`, `--exclude`) leaves outputs as they are.
        if plan.mode == plan::Mode::RefreshOnly || plan.requests.targeted() {
            return Ok(());
        }
        let current = shared.current.lock().expect("state lock").clone();
        let outputs: BTreeMap<String, OutputValue> = plan
            .outputs
            .iter()
            .map(|(k, o)| {
                let v = if o.sensitive {
                    // Only a digest: `output --raw NAME` recomputes the value and checks it.
                    let digest = resolve(&o.value, &current, &self.secrets)
                        .ok()
                        .map(|v| shared.digests.digest(OUTPUT_DIGEST_SCOPE, k, &v));
                    OutputValue { value: None, sensitive: true, digest }
                } else {
                    OutputValue { value: resolve(&o.value, &current, &SecretValues::new()).ok(), ..Default::default() }
                };
                (k.clone(), v)
            })
            .collect();
        let prev = self.store.snapshot().await?.outputs;
        if prev != outputs {
            self.store.commit(Batch { outputs: Some(outputs), ..Default::default() }).await?;
        }
        Ok(())
    }
}

/// The scope (in place of a CVM address) of sensitive outputs' digests.
pub const OUTPUT_DIGEST_SCOPE: &str = "output";

/// Resolves a template against current state and secrets; `Err` names what is missing.
pub fn resolve(
    t: &Template,
    current: &BTreeMap<Address, ResourceRecord>,
    secrets: &SecretValues,
) -> Result<String, Unresolved> {
    let out = t.substitute(|r| match r {
        Ref::Cvm { name, attr } => current.get(&Address::cvm(name)).and_then(|rec| rec.reference(attr)),
        r if r.is_secret() => secrets.get(r).map(|s| s.expose().to_string()),
        _ => None,
    });
    out.as_literal().ok_or_else(|| Unresolved { refs: out.refs().map(ToString::to_string).collect() })
}

/// Env as sent to the API: (key, value) in key order.
type EnvPairs = Vec<(String, String)>;

/// The env encrypted to the CVM's key (`key`, hex).
fn encrypt_env(env: &[(String, String)], key: &str) -> Result<String, StepError> {
    crate::envcrypt::encrypt(env, key).map_err(|e| {
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        StepError::env(&keys.join(", "), EnvProblem::Encrypt(e))
    })
}

/// A journal entry's detail; our own types always serialize.
fn to_json(v: &impl serde::Serialize) -> Result<serde_json::Value, StepError> {
    serde_json::to_value(v).map_err(|e| StepError::internal(format!("cannot encode a journal entry: {e}")))
}

struct Step {
    api: Arc<dyn PhalaApi>,
    store: Arc<dyn Store>,
    events: Arc<dyn Events>,
    waiter: Arc<Waiter>,
    secrets: SecretValues,
    shared: Arc<Shared>,
    onchain: Option<Arc<dyn OnChain>>,
    cancel: CancellationToken,
    endpoint: Arc<str>,
}

impl Step {
    async fn run(&self, c: &Change) -> StepResult {
        let r = match c.action {
            Action::Create => self.create(c, vec![]).await,
            Action::Update => self.update(c).await,
            Action::Delete => self.delete(c).await.map(|_| StepResult::Done { id: None }),
            Action::Replace => {
                // A tainted CVM replaced with the configuration that failed carries its failed
                // boots along, so a replacement that fails the same way ends the replacing.
                let prior = match self.shared.current.lock().expect("state lock").get(&c.address) {
                    Some(r) if r.tainted && c.attributes.is_empty() => r.boot.failures.clone(),
                    _ => vec![],
                };
                match self.delete(c).await {
                    Ok(()) => self.create(c, prior).await,
                    Err(e) => Err(e),
                }
            }
        };
        r.unwrap_or_else(|e| StepResult::Failed(Box::new(e)))
    }

    fn effect(&self, address: &Address, f: impl FnOnce(&mut Effects)) {
        f(self.shared.effects.lock().expect("effects lock").entry(address.clone()).or_default());
    }

    fn journal(&self, c: &Change, op: &str, cloud_id: Option<String>, detail: serde_json::Value) -> JournalEntry {
        JournalEntry {
            id: format!("{}-{}", now_rfc3339(), uuid::Uuid::new_v4().simple()),
            address: c.address.clone(),
            op: op.into(),
            name: c.after.as_ref().or(c.before.as_ref()).map(|a| a.name.clone()).unwrap_or_default(),
            cloud_id,
            started_at: now_rfc3339(),
            detail,
            endpoint: Some(self.endpoint.to_string()),
        }
    }

    async fn commit(&self, batch: Batch) -> Result<(), StepError> {
        let puts = batch.put.clone();
        let removes = batch.remove.clone();
        if let Err(e) = self.store.commit(batch).await {
            self.shared.state_failed.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(StepError::state_write(e));
        }
        let mut cur = self.shared.current.lock().expect("state lock");
        for r in puts {
            cur.insert(r.address.clone(), r);
        }
        for a in &removes {
            cur.remove(a);
        }
        Ok(())
    }

    /// Env values for the API, and the same env as state keeps it (values, or digests made
    /// under the change's scope: its address, or the one a moved CVM's digests were made at).
    fn resolve_env(
        &self,
        c: &Change,
        env: &BTreeMap<String, EnvVal>,
    ) -> Result<(EnvPairs, BTreeMap<String, EnvVal>), StepError> {
        let scope = c.secrets_scope.as_ref().unwrap_or(&c.address);
        // References are resolved under the lock (cheap, and no copy of the whole state per
        // step); secret digests, slow by design, are computed after it is released.
        let values: Vec<String> = {
            let current = self.shared.current.lock().expect("state lock");
            env.iter()
                .map(|(k, v)| match (&v.value, &v.template) {
                    (Some(val), _) => Ok(val.clone()),
                    (None, Some(t)) => resolve(t, &current, &self.secrets).map_err(|e| StepError::env(k, e)),
                    (None, None) => Err(StepError::env(k, EnvProblem::NoValue)),
                })
                .collect::<Result<_, StepError>>()?
        };
        let mut plain = Vec::new();
        let mut kept = BTreeMap::new();
        for ((k, v), value) in env.iter().zip(values) {
            let sensitive = v.digest.is_some() || v.template.as_ref().is_some_and(|t| t.refs().any(Ref::is_secret));
            let stored = if sensitive {
                let digests = &self.shared.digests;
                let d = digests.digest(scope.as_str(), k, &value);
                // A saved plan may have been made in another mode: compared in the plan's.
                if let Some(planned) = &v.digest
                    && *planned != d
                {
                    match digests.check(planned, scope.as_str(), k, &value) {
                        Check::Same => {}
                        Check::Different => return Err(StepError::env(k, EnvProblem::SecretChanged)),
                        Check::Unknown => {
                            let made = Made::of(planned).describe();
                            return Err(StepError::env(
                                k,
                                EnvProblem::SecretsKeyChanged { made, now: digests.describe() },
                            ));
                        }
                    }
                }
                EnvVal { value: None, digest: Some(d), template: None }
            } else {
                EnvVal::plain(value.clone())
            };
            plain.push((k.clone(), value));
            kept.insert(k.clone(), stored);
        }
        Ok((plain, kept))
    }

    async fn node_id(&self, node: &str) -> Result<u64, StepError> {
        if let Ok(n) = node.parse::<u64>() {
            return Ok(n);
        }
        let nodes = self.shared.nodes.get_or_try_init(|| self.api.nodes()).await?;
        nodes.iter().find(|n| n.name == node).map(|n| n.id).ok_or_else(|| {
            StepError::refused(format!(
                "no node named `{node}` is available (known: {})",
                nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    fn record(
        &self,
        c: &Change,
        ids: CloudIds,
        attrs: CvmAttrs,
        remote: Option<&RemoteCvm>,
        tainted: bool,
    ) -> ResourceRecord {
        let attrs = match remote {
            Some(r) => attrs::as_observed(attrs, r),
            None => attrs,
        };
        ResourceRecord {
            address: c.address.clone(),
            ids,
            attrs,
            compose_hash: remote.and_then(|r| r.compose_hash.clone()),
            env_pubkey: remote.and_then(|r| r.env_pubkey.clone()),
            kms_info: remote.and_then(|r| r.kms_info.clone()),
            status: remote.map(|r| r.status.clone()),
            tainted,
            boot: Default::default(),
            dependencies: c.dependencies.clone(),
            updated_at: now_rfc3339(),
            endpoint: Some(self.endpoint.to_string()),
            prevent_destroy: c.prevent_destroy,
            secrets_scope: c.secrets_scope.clone(),
        }
    }

    /// Creates the CVM and waits for it to run. `prior`: failed boots of this configuration
    /// before (a replacement of a tainted CVM).
    async fn create(&self, c: &Change, prior: Vec<String>) -> Result<StepResult, StepError> {
        let after = c.after.clone().ok_or_else(|| StepError::internal("a create needs desired attributes"))?;
        let (env, env_kept) = self.resolve_env(c, &after.env)?;
        let node_id = match &after.node {
            Some(n) => Some(self.node_id(n).await?),
            None => None,
        };
        let req = attrs::provision(&after, node_id);
        // What the create cannot set, the update right after it does.
        let later = plan::set_after_create(&after);
        let state_attrs = attrs::before_after_create(CvmAttrs { env: env_kept, ..after.clone() }, &later);
        // Provisioning only computes (compose hash, app id, key); nothing exists until the
        // commit, so nothing is journaled yet and a refused provision leaves nothing behind.
        self.events.status(c.address.as_str(), "provisioning");
        let prov = self.api.provision(&req).await?;
        if let Some(h) = c.compose_hash.as_ref().filter(|h| h.after != prov.compose_hash) {
            tracing::warn!(address = %c.address, planned = %h.after, api = %prov.compose_hash, "the API's compose hash differs from the planned preview; the API's is authoritative");
            self.events.status(
                c.address.as_str(),
                &format!(
                    "note: the API's compose hash {} differs from the preview {}; using the API's",
                    plan::render::short_hash(&prov.compose_hash),
                    plan::render::short_hash(&h.after)
                ),
            );
        }
        // On-chain KMS: the app id is an app contract this run deploys (the CLI's create path).
        let deployed = match (&prov.app_id, &self.onchain) {
            (Some(_), _) => None,
            (None, Some(oc)) => Some(oc.deploy_app(&self.onchain_ctx(c, None, None, &state_attrs, None), &prov).await?),
            (None, None) => {
                return Err(StepError::refused(
                    "this KMS needs an app contract deployed on chain before the CVM can be created, and on-chain registration is not configured",
                ));
            }
        };
        let app_id = prov.app_id.clone().or_else(|| deployed.as_ref().map(|d| d.app_id.clone())).unwrap_or_default();
        let encrypted_env = if env.is_empty() {
            None
        } else {
            let key = match &prov.env_pubkey {
                Some(k) => k.clone(),
                None => self.api.kms_pubkey(prov.kms_id.as_deref().unwrap_or("phala"), &app_id).await?,
            };
            Some(encrypt_env(&env, &key)?)
        };
        if app_id.is_empty() {
            return Err(StepError::refused("the API gave no app id for the new CVM"));
        }
        // The journal entry carries the app id this provision gave (a fresh one per create):
        // after a crash it is what proves a CVM was made by this commit. Never the name alone.
        let detail = CreateDetail {
            attrs: state_attrs.clone(),
            app_id: Some(app_id.clone()),
            compose_hash: Some(prov.compose_hash.clone()),
            prevent_destroy: c.prevent_destroy,
            secrets_scope: c.secrets_scope.clone(),
        };
        let entry = self.journal(c, "create", None, to_json(&detail)?);
        self.commit(Batch { journal_put: vec![entry.clone()], ..Default::default() }).await?;
        self.events.status(c.address.as_str(), "creating");
        let commit = CommitRequest {
            app_id: app_id.clone(),
            compose_hash: prov.compose_hash.clone(),
            encrypted_env,
            env_keys: after.env_keys(),
            kms_id: prov.kms_id.clone(),
            contract_address: deployed.as_ref().map(|d| d.contract_address.clone()),
            deployer_address: deployed.as_ref().map(|d| d.deployer_address.clone()),
            commit_token: prov.commit_token.clone(),
        };
        let ids = match self.api.commit_provision(&commit).await {
            Ok(ids) => {
                self.effect(&c.address, |e| e.created = true);
                ids
            }
            Err(e) => {
                // The create may or may not have happened; leave the journal entry for the
                // next run to reconcile unless the API clearly refused it.
                if e.changed_nothing() {
                    self.commit(Batch { journal_done: vec![entry.id.clone()], ..Default::default() }).await?;
                }
                return Err(e.into());
            }
        };
        // The CVM exists now: record it in the batch that clears the journal, so no crash can
        // forget it. It is tainted only if it then fails to run (a kill while it boots is not a
        // failed create).
        let path_id = ids.vm_uuid.clone().unwrap_or_else(|| ids.id.clone());
        let mut rec_ids = ids.clone();
        rec_ids.id = path_id.clone();
        rec_ids.app_id = rec_ids.app_id.or(Some(app_id));
        let mut rec = self.record(c, rec_ids.clone(), state_attrs.clone(), None, false);
        rec.compose_hash = Some(prov.compose_hash.clone());
        rec.status = Some(CvmStatus::Starting);
        // Not yet seen running: should it fail to boot, even after this run was killed, the
        // next plan knows the create failed.
        rec.boot = BootHistory { pending: true, failures: prior };
        let mut done = vec![entry.id.clone()];
        done.extend(deployed.map(|d| d.journal_id));
        // Should state be lost from here on, say which CVM it no longer knows.
        let unrecorded = |e: StepError| {
            e.then(Next::Import { address: c.address.clone(), id: path_id.clone(), name: after.name.clone() })
        };
        self.commit(Batch { put: vec![rec.clone()], journal_done: done, ..Default::default() })
            .await
            .map_err(unrecorded)?;
        let remote = match self.waiter.until_ready(&rec_ids, |s| self.events.status(c.address.as_str(), s)).await {
            Ok(r) => r,
            Err(WaitError::Failed { cvm, .. }) => {
                return Err(self.failed_boot(c, rec, &cvm).await?);
            }
            // Still booting, or the API did not answer: not a failed boot (yet). The next
            // plan sees how it ends.
            Err(e) => return Err(StepError::from(e).then(Next::PlanShows)),
        };
        let ids = CloudIds { id: path_id.clone(), ..remote.ids.clone() };
        let rec = self.record(c, ids.clone(), state_attrs, Some(&remote), false);
        self.commit(Batch { put: vec![rec], ..Default::default() }).await.map_err(unrecorded)?;
        if !later.is_empty() {
            let r = self.update_after_create(c, &ids, &later).await?;
            if !r.is_done() {
                return Ok(r);
            }
        }
        if c.after.as_ref().and_then(|a| a.power) == Some(Power::Stopped) {
            self.set_power(c, &rec_ids, PowerAction::Stop).await?;
        }
        Ok(StepResult::Done { id: Some(path_id) })
    }

    /// Sets what the create could not (`later`) with one update of the new CVM, as an update
    /// in place of those attributes alone.
    async fn update_after_create(&self, c: &Change, ids: &CloudIds, later: &[Attr]) -> Result<StepResult, StepError> {
        let after = c.after.clone().ok_or_else(|| StepError::internal("a create needs desired attributes"))?;
        let current = self.shared.current.lock().expect("state lock").get(&c.address).map(|r| r.attrs.clone());
        let before = current.ok_or_else(|| StepError::internal(format!("{} is not in state", c.address)))?;
        let attributes = later
            .iter()
            .map(|&a| plan::AttrChange {
                name: a,
                before: before.get(a),
                after: after.get(a),
                forces_replacement: false,
            })
            .collect();
        let update = Change {
            action: Action::Update,
            ids: Some(ids.clone()),
            before: Some(before),
            attributes,
            reasons: vec![plan::Reason::RestartsCvm],
            compose_hash: None,
            ..c.clone()
        };
        // The summary counts the CVM as added, not also as changed.
        let updated = self.shared.effects.lock().expect("effects lock").get(&c.address).is_some_and(|e| e.updated);
        let r = self.update_config(&update).await;
        self.effect(&c.address, |e| e.updated = updated);
        r
    }

    /// Records a create whose boot failed: tainted, with why. Returns the step's error: the
    /// next apply replaces it once; after a replacement fails too, it is left for a person.
    async fn failed_boot(
        &self,
        c: &Change,
        mut rec: ResourceRecord,
        remote: &RemoteCvm,
    ) -> Result<StepError, StepError> {
        let uuid = remote.ids.vm_uuid.clone().unwrap_or_else(|| rec.ids.id.clone());
        // The status poll that saw the failure may have brought the boot error along.
        let reason = match remote.boot.error.clone() {
            Some(e) => Some(e),
            None => match self.api.boot_errors(std::slice::from_ref(&uuid)).await {
                Ok(mut errors) => errors.remove(&uuid),
                Err(e) => {
                    tracing::warn!(address = %c.address, "cannot read the boot error: {e}");
                    None
                }
            },
        }
        .unwrap_or_else(|| format!("status `{}` (the API gave no boot error)", remote.status));
        rec.tainted = true;
        rec.status = Some(remote.status.clone());
        rec.boot.pending = false;
        rec.boot.failures.push(reason.clone());
        let tries = rec.boot.failures.len();
        let logs = boot_log_command(&rec.ids);
        self.commit(Batch { put: vec![rec], ..Default::default() }).await?;
        Ok(StepError::new(Failure::BootFailed { reason, again: tries >= plan::health::MAX_BOOT_TRIES, logs }))
    }

    /// Starts or stops the CVM and waits until it is so.
    async fn set_power(&self, c: &Change, ids: &CloudIds, action: PowerAction) -> Result<(), StepError> {
        let target = match action {
            PowerAction::Start => Power::Running,
            PowerAction::Stop => Power::Stopped,
        };
        let mut rec = self
            .shared
            .current
            .lock()
            .expect("state lock")
            .get(&c.address)
            .cloned()
            .ok_or_else(|| StepError::internal(format!("{} is not in state", c.address)))?;
        rec.attrs.power = Some(target);
        let entry = self.journal(c, "update", Some(ids.id.clone()), serde_json::json!({ "attrs": rec.attrs }));
        self.commit(Batch { journal_put: vec![entry.clone()], ..Default::default() }).await?;
        self.events.status(c.address.as_str(), if action == PowerAction::Start { "starting" } else { "stopping" });
        if let Err(e) = self.api.power(&ids.id, action).await {
            // A refused request changed nothing; anything else may have, so the entry stays for
            // the next run to re-read.
            if e.changed_nothing() {
                self.commit(Batch { journal_done: vec![entry.id.clone()], ..Default::default() }).await?;
            }
            return Err(e.into());
        }
        self.effect(&c.address, |e| e.updated = true);
        rec.updated_at = now_rfc3339();
        self.commit(Batch { put: vec![rec.clone()], journal_done: vec![entry.id], ..Default::default() }).await?;
        let remote = self.waiter.until(ids, target, |s| self.events.status(c.address.as_str(), s)).await.map_err(
            |e| match e {
                WaitError::Failed { .. } => StepError::from(e).then(Next::BootLog(boot_log_command(ids))),
                e => e.into(),
            },
        )?;
        rec.status = Some(remote.status.clone());
        self.commit(Batch { put: vec![rec], ..Default::default() }).await
    }

    /// Renames the CVM in place (`PATCH /cvms/{id}/name`): journaled, sent, recorded. The
    /// CVM keeps its identity and does not restart, so there is nothing to wait for.
    async fn rename(&self, c: &Change, ids: &CloudIds) -> Result<(), StepError> {
        let name = c
            .after
            .as_ref()
            .map(|a| a.name.clone())
            .ok_or_else(|| StepError::internal("a rename needs the new name"))?;
        let mut rec = self
            .shared
            .current
            .lock()
            .expect("state lock")
            .get(&c.address)
            .cloned()
            .ok_or_else(|| StepError::internal(format!("{} is not in state", c.address)))?;
        rec.attrs.name = name.clone();
        let entry = self.journal(c, "update", Some(ids.id.clone()), serde_json::json!({ "attrs": rec.attrs }));
        self.commit(Batch { journal_put: vec![entry.clone()], ..Default::default() }).await?;
        self.events.status(c.address.as_str(), "renaming");
        if let Err(e) = self.api.rename(&ids.id, &name).await {
            // A refused request changed nothing; anything else may have, so the entry stays for
            // the next run to re-read.
            if e.changed_nothing() {
                self.commit(Batch { journal_done: vec![entry.id.clone()], ..Default::default() }).await?;
            }
            return Err(e.into());
        }
        self.effect(&c.address, |e| e.updated = true);
        rec.updated_at = now_rfc3339();
        self.commit(Batch { put: vec![rec], journal_done: vec![entry.id], ..Default::default() }).await
    }

    async fn patch_request(
        &self,
        c: &Change,
        before: &CvmAttrs,
        after: &CvmAttrs,
        env: &[(String, String)],
        pubkey: Option<&str>,
    ) -> Result<PatchRequest, StepError> {
        let encrypted_env = if c.changes(Attr::Env) {
            let key = pubkey
                .ok_or_else(|| StepError::refused("the CVM's env encryption key is unknown; run plan with refresh"))?;
            Some(encrypt_env(env, key)?)
        } else {
            None
        };
        let sizes = match &after.instance_type {
            Some(t) if c.changes(Attr::InstanceType) => {
                let types = self.shared.types.get_or_try_init(|| self.api.instance_types()).await?;
                let ty = types.iter().find(|x| &x.id == t).ok_or_else(|| {
                    StepError::refused(format!(
                        "unknown instance type `{t}` (known: {})",
                        types.iter().map(|x| x.id.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                })?;
                Some((ty.vcpu, ty.memory_mb))
            }
            _ => None,
        };
        Ok(attrs::patch(&c.attributes, before, after, sizes, encrypted_env))
    }

    fn onchain_ctx<'a>(
        &'a self,
        c: &'a Change,
        cvm_id: Option<&'a str>,
        required: Option<&'a crate::providers::HashRequired>,
        attrs: &'a CvmAttrs,
        update_journal_id: Option<&'a str>,
    ) -> OnChainCtx<'a> {
        OnChainCtx {
            change: c,
            cvm_id,
            required,
            attrs,
            update_journal_id,
            api: self.api.as_ref(),
            store: self.store.as_ref(),
            events: self.events.as_ref(),
            cancel: &self.cancel,
            endpoint: &self.endpoint,
        }
    }

    async fn onchain_outcome(&self, c: &Change, ids: &CloudIds, o: OnChainOutcome) -> Result<StepResult, StepError> {
        match o {
            OnChainOutcome::Committed { journal_id, attrs } => self.finish_update(c, ids, *attrs, &journal_id).await,
            OnChainOutcome::Paused(why) => Ok(StepResult::Paused(why)),
        }
    }

    /// An update in place: a stop first (`power: stopped`), then the configuration in one
    /// `PATCH`, then a start (a stopped CVM the manifest wants running), so it boots once.
    async fn update(&self, c: &Change) -> Result<StepResult, StepError> {
        let ids = c.ids.clone().ok_or_else(|| StepError::internal("an update needs the CVM's id"))?;
        let power = if c.changes(Attr::Power) { c.after.as_ref().and_then(|a| a.power) } else { None };
        if power == Some(Power::Stopped) {
            self.set_power(c, &ids, PowerAction::Stop).await?;
        }
        if c.changes(Attr::Name) {
            self.rename(c, &ids).await?;
        }
        let mut result = StepResult::Done { id: Some(ids.id.clone()) };
        if c.attributes.iter().any(|a| a.name.patched()) {
            result = self.update_config(c).await?;
            if !result.is_done() {
                return Ok(result);
            }
        }
        if power == Some(Power::Running) {
            self.set_power(c, &ids, PowerAction::Start).await?;
        }
        Ok(result)
    }

    async fn update_config(&self, c: &Change) -> Result<StepResult, StepError> {
        let ids = c.ids.clone().ok_or_else(|| StepError::internal("an update needs the CVM's id"))?;
        let before = c.before.clone().unwrap_or_default();
        let after = c.after.clone().ok_or_else(|| StepError::internal("an update needs desired attributes"))?;
        let (env, env_kept) = self.resolve_env(c, &after.env)?;
        let mut state_attrs = after.clone();
        state_attrs.env = env_kept;
        // An update an earlier run paused for on-chain registration is finished, not sent again.
        if let Some(oc) = &self.onchain
            && let Some(o) = oc.continue_pending(&self.onchain_ctx(c, Some(&ids.id), None, &state_attrs, None)).await?
        {
            return self.onchain_outcome(c, &ids, o).await;
        }
        let rec = self.shared.current.lock().expect("state lock").get(&c.address).cloned();
        let mut pubkey = rec.as_ref().and_then(|r| r.env_pubkey.clone());
        if pubkey.is_none() && c.changes(Attr::Env) {
            pubkey = self.api.get_cvm(&ids.id).await?.and_then(|r| r.env_pubkey);
        }
        let req = self.patch_request(c, &before, &after, &env, pubkey.as_deref()).await?;
        let entry = self.journal(c, "update", Some(ids.id.clone()), serde_json::json!({ "attrs": state_attrs }));
        self.commit(Batch { journal_put: vec![entry.clone()], ..Default::default() }).await?;
        self.events.status(c.address.as_str(), "updating");
        let prepare_only = c.kms.is_some() && self.onchain.as_ref().is_some_and(|o| o.prepare_only());
        let mut outcome = self.api.patch(&ids.id, &req, prepare_only).await;
        if matches!(&outcome, Err(e) if e.kind == ErrorKind::Conflict) {
            // Another operation (e.g. a restart) is still running: wait for it, then once more.
            self.events.status(c.address.as_str(), "waiting for a previous operation to finish");
            self.waiter.until_ready(&ids, |s| self.events.status(c.address.as_str(), s)).await?;
            outcome = self.api.patch(&ids.id, &req, prepare_only).await;
        }
        match outcome {
            Ok(PatchOutcome::Accepted { .. }) => {}
            Ok(PatchOutcome::Unchanged) => return self.finish_unchanged(c, &ids, state_attrs, &entry.id).await,
            Ok(PatchOutcome::HashRequired(h)) => {
                let Some(oc) = &self.onchain else {
                    self.commit(Batch { journal_done: vec![entry.id.clone()], ..Default::default() }).await?;
                    return Err(StepError::refused(format!(
                        "the API requires compose hash 0x{} to be registered on chain first (HTTP 465), and on-chain registration is not configured for this CVM",
                        h.compose_hash
                    )));
                };
                let ctx = self.onchain_ctx(c, Some(&ids.id), Some(&h), &state_attrs, Some(&entry.id));
                let o = oc.on_hash_required(&ctx).await?;
                return self.onchain_outcome(c, &ids, o).await;
            }
            Err(e) => {
                // A refused request changed nothing; anything else may have, so the entry stays
                // for the next run to re-read.
                if e.changed_nothing() {
                    self.commit(Batch { journal_done: vec![entry.id.clone()], ..Default::default() }).await?;
                }
                return Err(e.into());
            }
        }
        self.finish_update(c, &ids, state_attrs, &entry.id).await
    }

    /// Records an accepted update and waits for the restart to finish.
    pub(crate) async fn finish_update(
        &self,
        c: &Change,
        ids: &CloudIds,
        attrs: CvmAttrs,
        journal_id: &str,
    ) -> Result<StepResult, StepError> {
        self.effect(&c.address, |e| e.updated = true);
        let prev = self.shared.current.lock().expect("state lock").get(&c.address).cloned();
        // A stopped CVM takes the update and stays stopped (it is started afterwards, if the
        // manifest wants it running).
        let stopped = prev.as_ref().and_then(|p| p.attrs.power) == Some(Power::Stopped);
        let mut rec = self.record(c, ids.clone(), attrs.clone(), None, false);
        if let Some(p) = &prev {
            rec.env_pubkey = p.env_pubkey.clone();
            rec.kms_info = p.kms_info.clone();
            rec.attrs.power = p.attrs.power;
        }
        self.commit(Batch { put: vec![rec.clone()], journal_done: vec![journal_id.to_string()], ..Default::default() })
            .await?;
        let target = if stopped { Power::Stopped } else { Power::Running };
        let remote = self.waiter.until(ids, target, |s| self.events.status(c.address.as_str(), s)).await?;
        let mut done = self.record(c, ids.clone(), attrs, Some(&remote), false);
        done.env_pubkey = done.env_pubkey.or(rec.env_pubkey);
        self.commit(Batch { put: vec![done], ..Default::default() }).await?;
        Ok(StepResult::Done { id: Some(ids.id.clone()) })
    }

    /// Records an update the API found already in place (`no_change`): nothing changed in the
    /// cloud and nothing restarts, so there is no restart to wait for.
    async fn finish_unchanged(
        &self,
        c: &Change,
        ids: &CloudIds,
        attrs: CvmAttrs,
        journal_id: &str,
    ) -> Result<StepResult, StepError> {
        self.events.status(c.address.as_str(), "already so: the API changed nothing and nothing restarts");
        let prev = self.shared.current.lock().expect("state lock").get(&c.address).cloned();
        let mut rec = self.record(c, ids.clone(), attrs, None, false);
        if let Some(p) = &prev {
            rec.env_pubkey = p.env_pubkey.clone();
            rec.kms_info = p.kms_info.clone();
            rec.compose_hash = p.compose_hash.clone();
            rec.status = p.status.clone();
            rec.attrs.power = p.attrs.power;
        }
        self.commit(Batch { put: vec![rec], journal_done: vec![journal_id.to_string()], ..Default::default() }).await?;
        Ok(StepResult::Done { id: Some(ids.id.clone()) })
    }

    async fn delete(&self, c: &Change) -> Result<(), StepError> {
        let ids = c.ids.clone().ok_or_else(|| StepError::internal("a delete needs the CVM's id"))?;
        let entry = self.journal(c, "delete", Some(ids.id.clone()), serde_json::Value::Null);
        self.commit(Batch { journal_put: vec![entry.clone()], ..Default::default() }).await?;
        self.events.status(c.address.as_str(), "deleting");
        self.api.delete(&ids.id).await?;
        self.effect(&c.address, |e| e.deleted = true);
        // An update paused for on-chain registration has nothing left to finish once its CVM
        // is gone; dropping it in the same write keeps `--resume` from chasing a deleted CVM.
        let journal = self.store.journal().await.map_err(StepError::state_read)?;
        let paused =
            journal.into_iter().filter(|e| e.op == onchain::PENDING_OP && e.cloud_id.as_ref() == Some(&ids.id));
        let done = std::iter::once(entry.id).chain(paused.map(|e| e.id)).collect();
        self.commit(Batch { remove: vec![c.address.clone()], journal_done: done, ..Default::default() }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (address, action, dependencies)
    type Spec<'a> = (&'a str, Action, &'a [&'a str]);

    fn plan_of(changes: &[Spec]) -> Plan {
        let changes = changes
            .iter()
            .map(|(addr, action, deps)| Change {
                address: (*addr).into(),
                action: *action,
                ids: None,
                before: None,
                after: Some(CvmAttrs { name: addr.to_string(), ..Default::default() }),
                attributes: vec![],
                reasons: vec![],
                dependencies: deps.iter().map(|d| (*d).into()).collect(),
                compose_hash: None,
                kms: None,
                moved_from: None,
                prevent_destroy: false,
                secrets_scope: None,
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
            requests: Default::default(),
            outputs: BTreeMap::new(),
            removed_outputs: BTreeMap::new(),
            outputs_changed: false,
            attention: vec![],
            warnings: vec![],
            notes: vec![],
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
