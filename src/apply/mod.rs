//! The executor: walks a plan's changes in dependency order with bounded parallelism.
//!
//! Invariants:
//! - every cloud operation is journaled before it is sent, and its result is written to state
//!   (in the same atomic batch that clears the journal entry) before the next step depends on it;
//! - one CVM gets at most one update call per apply: all its changed fields go in one
//!   `PATCH /cvms/{id}`, so it restarts once;
//! - a failed step stops only its dependents; independent steps carry on;
//! - after cancellation no new step starts; running steps finish, gates included (the
//!   `health:` check is not cut short), and are recorded; a step still waiting for the batch
//!   before it, which has not touched the cloud, is skipped.

mod attrs;
mod create;
mod error;
mod gates;
pub mod onchain;
mod order;
mod reconcile;
mod surge;
mod update;
mod wait;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use order::{dependencies, start_order};

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
    /// Shared by every step (one map per run, not one per step in flight).
    pub secrets: Arc<SecretValues>,
    /// How this run digests secrets (the plan's: its digests are in the process's cache).
    pub digests: Arc<Digester>,
    pub onchain: Option<Arc<dyn OnChain>>,
    /// Stamped on every record and journal entry, so a later run against another endpoint
    /// is refused instead of taking these CVMs for deleted.
    pub endpoint: String,
    /// The attestation gate, with what it verifies with: each CVM created or updated is
    /// verified once it runs ([`crate::verify`]); a mismatch fails its step and marks it
    /// `unverified`. `None`: no gate (`--no-verify`).
    pub verify: Option<Arc<crate::verify::Checker>>,
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
    /// CVMs (added, changed, destroyed) in the cloud, as Terraform counts a summary. A CVM
    /// created in this run is added only: what its step did to it after the create (the update
    /// of what a create cannot set, a stop for `power: stopped`) is part of that create, as
    /// the plan counts it.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |f: fn(&Effects) -> bool| self.effects.values().filter(|e| f(e)).count();
        (n(|e| e.created), n(|e| e.updated && !e.created), n(|e| e.deleted))
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
    /// The OS image hash each CVM's last read reported, for the attestation gate (so it needs
    /// no second read of the detail).
    os_hashes: Mutex<BTreeMap<Address, Option<String>>>,
    /// Each roll precondition checked this run (an instance of the batch before runs and
    /// passes its health check), once for every instance that waits on it: `None` when it
    /// held, else the instance that reported the failure.
    preconditions: Mutex<BTreeMap<Address, Arc<tokio::sync::OnceCell<Option<Address>>>>>,
}

impl Executor {
    /// Applies the plan. Refreshed records and outputs are written too.
    pub async fn run(&self, plan: &Plan) -> Result<Report, ApplyError> {
        let start = Instant::now();
        let shared = self.write_state_only(plan).await?;
        let endpoint: Arc<str> = Arc::from(self.endpoint.as_str());
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
                if running.len() >= self.parallelism.max(1) && !self.cancel.is_cancelled() {
                    break;
                }
                let addr = &order[i];
                let action = changes[addr].action;
                let d = &deps[addr];
                let soft = order::soft(&changes[addr]);
                if let Some(why) = self.cannot_start(d, soft, &results) {
                    let r = StepResult::Skipped(why);
                    self.events.finished(addr.as_str(), action, &r, Duration::ZERO);
                    results.insert(addr.clone(), (action, r));
                    settled.push(i);
                    continue;
                }
                let finished = |x: &Address| results.get(x).is_some_and(|(_, r)| r.is_done() || soft.contains(x));
                if d.iter().all(finished) {
                    settled.push(i);
                    let change = changes[addr].clone();
                    let step = self.step(&waiter, &shared, &endpoint);
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
        self.end_rolls(plan, &waiter, &shared, &endpoint, &mut results).await;
        self.write_outputs(plan, &shared).await?;
        let effects = shared.effects.lock().expect("effects lock").clone();
        let state_failed = shared.state_failed.load(std::sync::atomic::Ordering::Relaxed);
        Ok(Report { results, effects, elapsed: start.elapsed(), state_failed })
    }

    /// Writes what changes state alone, in one write before any step: refreshed records, moved
    /// ones (their old addresses removed) and new protection. Returns what the steps share,
    /// starting from that state.
    async fn write_state_only(&self, plan: &Plan) -> Result<Arc<Shared>, ApplyError> {
        let snap = self.store.snapshot().await?;
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
        Ok(Arc::new(Shared {
            current: Mutex::new(current),
            effects: Mutex::default(),
            digests: self.digests.clone(),
            nodes: Default::default(),
            types: Default::default(),
            state_failed: Default::default(),
            os_hashes: Mutex::default(),
            preconditions: Mutex::default(),
        }))
    }

    /// Why a step can no longer start: a change it waits for did not complete, or the run was
    /// interrupted. `None`: it may start once what it waits for is done.
    fn cannot_start(
        &self,
        deps: &BTreeSet<Address>,
        soft: &[Address],
        results: &BTreeMap<Address, (Action, StepResult)>,
    ) -> Option<String> {
        let failed = |x: &&Address| !soft.contains(x) && results.get(*x).is_some_and(|(_, r)| !r.is_done());
        if let Some(bad) = deps.iter().find(failed) {
            return Some(format!("{bad} did not complete"));
        }
        self.cancel.is_cancelled().then(|| INTERRUPTED.to_string())
    }

    /// A step of this run.
    fn step(&self, waiter: &Arc<Waiter>, shared: &Arc<Shared>, endpoint: &Arc<str>) -> Step {
        Step {
            api: self.api.clone(),
            store: self.store.clone(),
            events: self.events.clone(),
            waiter: waiter.clone(),
            secrets: self.secrets.clone(),
            shared: shared.clone(),
            onchain: self.onchain.clone(),
            cancel: self.cancel.clone(),
            endpoint: endpoint.clone(),
            verify: self.verify.clone(),
        }
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

/// Why a step did not start (or stopped before its first cloud call): Ctrl-C or SIGTERM.
const INTERRUPTED: &str = "the run was interrupted";

/// The scope (in place of a CVM address) of sensitive outputs' digests.
pub const OUTPUT_DIGEST_SCOPE: &str = "output";

/// Resolves a template against current state and secrets; `Err` names what is missing.
pub fn resolve(
    t: &Template,
    current: &BTreeMap<Address, ResourceRecord>,
    secrets: &SecretValues,
) -> Result<String, Unresolved> {
    let out = t.substitute(|r| match r {
        Ref::Cvm { name, attr } => current
            .get(&Address::cvm(name))
            .or_else(|| current.get(&Address::instance(name, 0)))
            .and_then(|rec| rec.reference(attr)),
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
    secrets: Arc<SecretValues>,
    shared: Arc<Shared>,
    onchain: Option<Arc<dyn OnChain>>,
    cancel: CancellationToken,
    endpoint: Arc<str>,
    verify: Option<Arc<crate::verify::Checker>>,
}

impl Step {
    async fn run(&self, c: &Change) -> StepResult {
        if let Err(r) = self.batch_before_runs(c).await {
            return r;
        }
        // Interrupted while it waited for the batch before: it never touched the cloud.
        if self.cancel.is_cancelled() {
            return StepResult::Skipped(INTERRUPTED.into());
        }
        let source = c.instance.as_ref().and_then(|i| i.source.as_ref());
        let r = match c.action {
            Action::Create if source.is_some() => self.replicate(c, source.expect("checked"), vec![]).await,
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
                match (self.delete(c).await, source) {
                    (Ok(()), Some(source)) => self.replicate(c, source, prior).await,
                    (Ok(()), None) => self.create(c, prior).await,
                    (Err(e), _) => Err(e),
                }
            }
        };
        let r = match r {
            // Only a CVM that (re)booted has a new attestation to check.
            Ok(StepResult::Done { id }) if c.boots() && self.verify.is_some() => {
                let checker = self.verify.as_deref().expect("checked");
                self.gate(c, checker).await.map(|()| StepResult::Done { id })
            }
            r => r,
        };
        let r = match (r, &c.health) {
            // In-flight work finishes on the first interrupt, its gates too (each bounded by
            // its timeout): the check is not cut short, so the step is not failed for it.
            (Ok(StepResult::Done { id }), Some(h)) if c.action != Action::Delete => {
                self.health(c, h, &CancellationToken::new()).await.map(|()| StepResult::Done { id })
            }
            (r, _) => r,
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

    /// The app's env-encryption key from its KMS (`kms`: id, slug or kind), its signature
    /// checked against the manifest's `kms.signer` or else the signing key the API's KMS info
    /// names. Nothing is encrypted to a key that fails: the step stops here, before any env is
    /// sent. `offered`: the key the API gave elsewhere (provision, CVM info), which must be the
    /// same key.
    async fn checked_key(
        &self,
        c: &Change,
        kms: &str,
        app_id: &str,
        offered: Option<&str>,
    ) -> Result<String, StepError> {
        use crate::verify::kms_key::{self, Signer};
        let refuse = |why: String| StepError::refused(format!("not encrypting env to the key from KMS `{kms}`: {why}"));
        let (signer, from) = match &c.kms_signer {
            Some(s) => (s.clone(), "kms.signer in the manifest"),
            None => match self.api.kms_signer(kms).await? {
                Some(s) => (s, "the API's KMS info"),
                None => {
                    return Err(refuse(
                        "the API names no signing key for this KMS, so the key cannot be checked; pin it with `kms: {signer: 0x…}`".into(),
                    ));
                }
            },
        };
        let signer = Signer::parse(&signer).map_err(|m| refuse(format!("the signing key from {from}: {m}")))?;
        if app_id.is_empty() {
            return Err(refuse("the CVM's app id is unknown".into()));
        }
        let signed = self.api.kms_pubkey(kms, app_id).await?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let key =
            kms_key::check(&signed, app_id, &signer, now).map_err(|e| refuse(format!("{e} (signer from {from})")))?;
        if let Some(o) = offered
            && !o.trim_start_matches("0x").eq_ignore_ascii_case(&key)
        {
            return Err(refuse(format!("the API offered key {o}, but the KMS signed {key}")));
        }
        Ok(key)
    }

    /// The record of `address` as this run has it now.
    fn current_record(&self, address: &Address) -> Result<ResourceRecord, StepError> {
        let current = self.shared.current.lock().expect("state lock");
        current.get(address).cloned().ok_or_else(|| StepError::internal(format!("{address} is not in state")))
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
        if let Some(r) = remote {
            self.shared.os_hashes.lock().expect("os hashes lock").insert(c.address.clone(), r.os_image_hash.clone());
        }
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
            unverified: None,
            endpoint: Some(self.endpoint.to_string()),
            prevent_destroy: c.prevent_destroy,
            secrets_scope: c.secrets_scope.clone(),
            surge: c.instance.as_ref().is_some_and(|i| i.surge),
        }
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
}
