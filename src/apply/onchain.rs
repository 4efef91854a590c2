//! On-chain compose-hash registration: updates of CVMs whose KMS is a contract (base,
//! ethereum) commit only once the app contract allows the new compose hash.
//!
//! When the API answers an update with HTTP 465, the update is journaled as
//! `pending_onchain` (with everything needed to finish it, never a secret) and then:
//! with a signer, `addComposeHash` is signed, its hash journaled, sent, mined, checked, and the
//! update confirmed with the transaction hash; without one (or with `--prepare-only`) the step
//! pauses and `apply --resume` finishes it once the chain allows the hash.
//!
//! Invariants: a transaction's hash and raw bytes are journaled before it is broadcast, and
//! the chain is asked whether the hash is already allowed before anything is signed, so a
//! crash at any point never leads to a second transaction for the same hash; the API's
//! compose hash is the one registered (a differing local preview is reported, not used).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{DeployedApp, Next, OnChain, OnChainCtx, OnChainOutcome, StepError};
use crate::chain::{self, ChainError, Rpc, Signer};
use crate::model::{Address, CvmAttrs, now_rfc3339};
use crate::plan::{Change, KmsSpec};
use crate::providers::{ErrorKind, Provisioned};
use crate::state::{Batch, JournalEntry, Store};

/// The journal op of an update (or app deployment) waiting on the chain.
pub const PENDING_OP: &str = "pending_onchain";

/// How long a sent transaction may take to be mined when no `--timeout` says otherwise.
const TX_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingKind {
    /// An update accepted by the API once the hash is allowed (confirm or commit-update).
    Update,
    /// A new app contract deployed through the KMS contract, for a create.
    DeployApp,
}

/// What a `pending_onchain` journal entry holds. Everything here may be shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub kind: PendingKind,
    /// The CVM (path id) the update is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvm_id: Option<String>,
    /// The hash the API returned: the one the CVM boots with and the chain must allow.
    pub compose_hash: String,
    /// The local preview at plan time, when it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_hash: Option<String>,
    pub chain_id: u64,
    /// The app contract (updates) or the KMS contract (deployments).
    pub contract: String,
    /// An RPC URL older versions stored here. Read, never written: an RPC URL is a secret
    /// (hosted ones carry a key), so it comes from the manifest (the change's `kms`) or the
    /// environment each run, and the next write of this entry drops it.
    #[serde(default, skip_serializing)]
    pub rpc_url: Option<String>,
    pub rpc_url_env: String,
    pub private_key_env: String,
    pub confirmations: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_token: Option<String>,
    #[serde(default)]
    pub prepare_only: bool,
    /// The transaction teeform signed (journaled before it was sent) or was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_tx: Option<String>,
    /// The attributes state records once the update is committed (env as digests).
    pub attrs: CvmAttrs,
    #[serde(default)]
    pub dependencies: Vec<Address>,
}

impl Pending {
    pub fn from_entry(e: &JournalEntry) -> Option<Pending> {
        (e.op == PENDING_OP).then(|| serde_json::from_value(e.detail.clone()).ok()).flatten()
    }

    /// `addComposeHash` calldata for this hash.
    pub fn calldata(&self) -> String {
        chain::add_compose_hash_calldata(&self.compose_hash).unwrap_or_default()
    }
}

/// Signers and RPC URLs from the environment, by variable name (read by the CLI).
#[derive(Debug, Clone, Default)]
pub struct ChainEnv {
    pub signers: BTreeMap<String, Signer>,
    pub rpc_urls: BTreeMap<String, String>,
}

/// The [`OnChain`] implementation the CLI uses.
pub struct Registrar {
    pub env: ChainEnv,
    /// Stop after the API prepared the update (multisig flow): never sign.
    pub prepare_only: bool,
    /// `apply --resume`: never replace a paused update, and wait this long for the chain.
    pub resume: Option<Duration>,
    /// `apply --resume --tx-hash`: the transaction that registered the hash.
    pub tx_hash: Option<String>,
    /// One registration at a time per app contract and hash: the instances of a replicated
    /// CVM share their app, and the second to ask finds the hash allowed rather than sending
    /// another transaction.
    pub registering: Registering,
}

/// The locks behind [`Registrar::registering`], by (app contract, compose hash).
#[derive(Default)]
pub struct Registering(std::sync::Mutex<BTreeMap<(String, String), RegistrationLock>>);

/// Held while one app contract's hash is checked, registered and confirmed.
type RegistrationLock = Arc<tokio::sync::Mutex<()>>;

impl Registering {
    fn lock_for(&self, contract: &str, hash: &str) -> RegistrationLock {
        let key = (contract.to_ascii_lowercase(), hash.to_ascii_lowercase());
        self.0.lock().expect("registration locks").entry(key).or_default().clone()
    }
}

fn pending_entries(entries: Vec<JournalEntry>, address: &Address, kind: PendingKind) -> Vec<(JournalEntry, Pending)> {
    entries
        .into_iter()
        .filter(|e| e.address == *address)
        .filter_map(|e| Pending::from_entry(&e).map(|p| (e, p)))
        .filter(|(_, p)| p.kind == kind)
        .collect()
}

/// Attributes compared for "is this still the update that was paused": env as state keeps it.
fn comparable(a: &CvmAttrs) -> CvmAttrs {
    let mut a = a.clone();
    a.env = a.env.iter().map(|(k, v)| (k.clone(), v.for_state())).collect();
    a
}

fn short(h: &str) -> String {
    crate::plan::render::short_hash(h.trim_start_matches("0x"))
}

impl Registrar {
    /// The chain for a pending entry: the manifest's `kms.rpc_url` (as this run's plan has
    /// it), else one an older version stored, else `$rpc_url_env`.
    fn rpc_for(&self, c: &Change, p: &Pending) -> Option<Result<Rpc, ChainError>> {
        let url = c
            .kms
            .as_ref()
            .and_then(|k| k.rpc_url.clone())
            .or_else(|| p.rpc_url.clone())
            .or_else(|| self.env.rpc_urls.get(&p.rpc_url_env).cloned())?;
        Some(Rpc::new(&url))
    }

    fn no_rpc(p: &Pending) -> StepError {
        StepError::refused(format!(
            "no RPC URL for chain {}: set ${} (or `kms.rpc_url` in the manifest)",
            p.chain_id, p.rpc_url_env
        ))
    }

    /// Writes the entry's new facts (e.g. a signed transaction) before anything depends on them.
    async fn save(&self, store: &dyn Store, entry: &mut JournalEntry, p: &Pending) -> Result<(), StepError> {
        entry.detail = super::to_json(p)?;
        store
            .commit(Batch { journal_put: vec![entry.clone()], ..Default::default() })
            .await
            .map_err(StepError::state_write)?;
        Ok(())
    }

    /// The transaction teeform sent earlier (or was given), mined; `Ok(None)` when there is none.
    async fn known_tx(
        &self,
        ctx: &OnChainCtx<'_>,
        rpc: &Rpc,
        entry: &mut JournalEntry,
        p: &mut Pending,
    ) -> Result<Option<String>, StepError> {
        let timeout = self.resume.unwrap_or(TX_TIMEOUT);
        if let Some(tx) = p.tx_hash.clone() {
            if rpc.receipt(&tx).await?.is_none()
                && let Some(raw) = &p.raw_tx
            {
                // Sent before a crash, or never: the same signed bytes can land only once.
                ctx.events.status(ctx.change.address.as_str(), &format!("re-sending transaction {tx}"));
                rpc.broadcast(&chain::SignedTx { hash: tx.clone(), raw: raw.clone() }).await?;
            }
            ctx.events.status(ctx.change.address.as_str(), &format!("waiting for transaction {tx}"));
            return match rpc.wait_mined(&tx, p.confirmations, timeout).await {
                Ok(_) => Ok(Some(tx)),
                Err(e @ ChainError::Reverted { .. }) => {
                    // Nothing was registered; forget the transaction so a retry may send another.
                    p.tx_hash = None;
                    p.raw_tx = None;
                    self.save(ctx.store, entry, p).await?;
                    Err(e.into())
                }
                Err(e) => Err(e.into()),
            };
        }
        let Some(tx) = self.tx_hash.clone() else {
            return Ok(None);
        };
        ctx.events.status(ctx.change.address.as_str(), &format!("checking transaction {tx}"));
        let receipt = match rpc.wait_mined(&tx, p.confirmations, timeout).await {
            Err(ChainError::NotMined { .. }) if !rpc.knows(&tx).await.unwrap_or(false) => {
                return Err(ChainError::UnknownTx(tx).into());
            }
            r => r?,
        };
        if !receipt.registers(&p.contract, &p.compose_hash) {
            let got: Vec<String> = receipt.registered.iter().map(|(c, h)| format!("0x{h} on {c}")).collect();
            return Err(StepError::refused(format!(
                "transaction {tx} does not register compose hash 0x{} on app contract {}: it registered {}. The CVM boots only with the hash the API returned; register 0x{} and resume",
                p.compose_hash,
                p.contract,
                if got.is_empty() { "no compose hash".to_string() } else { got.join(", ") },
                p.compose_hash
            )));
        }
        p.tx_hash = Some(tx.clone());
        self.save(ctx.store, entry, p).await?;
        Ok(Some(tx))
    }

    /// Takes a pending update as far as it can go: register (with a signer), wait (on
    /// resume), then confirm with the API.
    async fn advance(
        &self,
        ctx: &OnChainCtx<'_>,
        mut entry: JournalEntry,
        mut p: Pending,
    ) -> Result<OnChainOutcome, StepError> {
        let waiting = format!(
            "awaiting on-chain registration of compose hash 0x{} on app contract {} (chain {})",
            p.compose_hash, p.contract, p.chain_id
        );
        if self.prepare_only {
            // This run only prepares; committing is for a later apply once the chain allows it.
            return Ok(OnChainOutcome::Paused(format!("prepared (commit token saved); {waiting}")));
        }
        let signer = self.env.signers.get(&p.private_key_env);
        let rpc = match self.rpc_for(ctx.change, &p) {
            Some(r) => r?,
            // Without a signer there is nothing to send; pausing needs no chain.
            None if signer.is_none() && self.resume.is_none() => return Ok(OnChainOutcome::Paused(waiting)),
            None => return Err(Self::no_rpc(&p)),
        };
        let lock = self.registering.lock_for(&p.contract, &p.compose_hash);
        let _registering = lock.lock().await;
        // The update stays in the journal whatever fails from here: `apply --resume` retries.
        let paused = |e: StepError| e.resumable();
        let chain_paused = |e: ChainError| StepError::from(e).resumable();
        rpc.check_chain(p.chain_id).await.map_err(chain_paused)?;
        let mut tx = self.known_tx(ctx, &rpc, &mut entry, &mut p).await.map_err(paused)?;
        let mut allowed = rpc.is_allowed(&p.contract, &p.compose_hash).await.map_err(chain_paused)?;
        if !allowed
            && tx.is_none()
            && !p.prepare_only
            && let Some(signer) = signer
        {
            let owner = rpc.owner(&p.contract).await.map_err(chain_paused)?;
            if owner != signer.address() {
                // E.g. a Safe owns the app: the owner registers, teeform waits.
                return Ok(OnChainOutcome::Paused(format!(
                    "{waiting}; the signer from ${} ({}) is not the contract's owner ({owner}), so the owner must register it",
                    p.private_key_env,
                    signer.address()
                )));
            }
            let sent = self.register(ctx, &rpc, signer, &mut entry, &mut p).await.map_err(paused)?;
            allowed = rpc.is_allowed(&p.contract, &p.compose_hash).await?;
            if !allowed {
                return Err(StepError::refused(format!(
                    "transaction {sent} was mined, but app contract {} still does not allow 0x{}",
                    p.contract, p.compose_hash
                ))
                .resumable());
            }
            tx = Some(sent);
        }
        if !allowed {
            let Some(limit) = self.resume else {
                return Ok(OnChainOutcome::Paused(waiting));
            };
            if let Some(paused) = wait_allowed(ctx, &rpc, &p, limit, &waiting).await? {
                return Ok(paused);
            }
        }
        self.commit(ctx, entry, p, tx).await
    }

    /// Signs `addComposeHash`, journals the transaction, sends it and waits for it.
    async fn register(
        &self,
        ctx: &OnChainCtx<'_>,
        rpc: &Rpc,
        signer: &Signer,
        entry: &mut JournalEntry,
        p: &mut Pending,
    ) -> Result<String, StepError> {
        let signed = rpc.sign_add_compose_hash(signer, &p.contract, &p.compose_hash).await?;
        p.tx_hash = Some(signed.hash.clone());
        p.raw_tx = Some(signed.raw.clone());
        self.save(ctx.store, entry, p).await?;
        ctx.events
            .status(ctx.change.address.as_str(), &format!("registering compose hash on chain (tx {})", signed.hash));
        rpc.broadcast(&signed).await?;
        rpc.wait_mined(&signed.hash, p.confirmations, self.resume.unwrap_or(TX_TIMEOUT)).await?;
        Ok(signed.hash)
    }

    /// Confirms the update with the API (or commits it with its token).
    async fn commit(
        &self,
        ctx: &OnChainCtx<'_>,
        entry: JournalEntry,
        p: Pending,
        tx: Option<String>,
    ) -> Result<OnChainOutcome, StepError> {
        let cvm = p.cvm_id.clone().ok_or_else(|| StepError::internal("the paused update does not name its CVM"))?;
        // The `phala` CLI's convention when the hash was registered by someone else.
        let tx = tx.unwrap_or_else(|| "already-registered".into());
        ctx.events.status(ctx.change.address.as_str(), "confirming the update");
        let r = match (&p.commit_token, p.prepare_only) {
            (Some(token), true) => ctx.api.commit_update(&cvm, token, &p.compose_hash, &tx).await,
            _ => ctx.api.confirm_patch(&cvm, &p.compose_hash, &tx).await,
        };
        match r {
            Ok(_) => Ok(OnChainOutcome::Committed { journal_id: entry.id, attrs: Box::new(p.attrs) }),
            Err(e) if e.kind == ErrorKind::HashExpired => {
                // Either committed before a crash, or expired: the CVM's hash tells which.
                let now = ctx.api.get_cvm(&cvm).await?;
                if now.and_then(|c| c.compose_hash).as_deref() == Some(p.compose_hash.as_str()) {
                    return Ok(OnChainOutcome::Committed { journal_id: entry.id, attrs: Box::new(p.attrs) });
                }
                ctx.store
                    .commit(Batch { journal_done: vec![entry.id], ..Default::default() })
                    .await
                    .map_err(StepError::state_write)?;
                Err(StepError::from(e).context("the API no longer holds this update (expired)").then(Next::ApplyAgain))
            }
            // Any other refusal (467 the transaction did not verify, 468 the hash is not on
            // chain yet, or the API was out of reach): the update stays paused.
            Err(e) => Err(StepError::from(e).resumable()),
        }
    }
}

/// `apply --resume`: polls until the app contract allows the hash (`None`), or pauses again
/// after `limit` or on Ctrl-C.
async fn wait_allowed(
    ctx: &OnChainCtx<'_>,
    rpc: &Rpc,
    p: &Pending,
    limit: Duration,
    waiting: &str,
) -> Result<Option<OnChainOutcome>, StepError> {
    let start = Instant::now();
    loop {
        if start.elapsed() >= limit {
            return Ok(Some(OnChainOutcome::Paused(format!(
                "compose hash 0x{} is still not allowed on app contract {} after {}s",
                p.compose_hash,
                p.contract,
                limit.as_secs()
            ))));
        }
        ctx.events.status(
            ctx.change.address.as_str(),
            &format!("waiting for the chain to allow 0x{} ({}s)", short(&p.compose_hash), start.elapsed().as_secs()),
        );
        tokio::select! {
            _ = tokio::time::sleep(poll_interval(rpc)) => {}
            _ = ctx.cancel.cancelled() => {
                return Ok(Some(OnChainOutcome::Paused(format!("interrupted while {waiting}"))));
            }
        }
        if rpc.is_allowed(&p.contract, &p.compose_hash).await.map_err(|e| StepError::from(e).resumable())? {
            return Ok(None);
        }
    }
}

fn poll_interval(rpc: &Rpc) -> Duration {
    if rpc.shown().contains("://127.0.0.1") || rpc.shown().contains("://localhost") {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(4)
    }
}

/// The app contract an update registers on: the manifest's, else the API's app id (which,
/// for on-chain KMS, is the contract address).
fn app_contract(spec: &KmsSpec, api_app_id: Option<&str>) -> Result<String, StepError> {
    let raw = spec.contract.as_deref().or(api_app_id).ok_or_else(|| {
        StepError::refused("the API did not name the app contract; set `kms.contract` for this CVM in the manifest")
    })?;
    Ok(chain::format_address(raw)?)
}

fn chain_id_of(kms_info: Option<&serde_json::Value>) -> Option<u64> {
    kms_info?.get("chain_id")?.as_u64()
}

fn check_chain_id(spec: &KmsSpec, kms_info: Option<&serde_json::Value>) -> Result<(), StepError> {
    match chain_id_of(kms_info) {
        Some(id) if id != spec.chain_id => Err(StepError::refused(format!(
            "the CVM's KMS is on chain {id}, but the manifest says chain {}; fix `kms:` in the manifest",
            spec.chain_id
        ))),
        _ => Ok(()),
    }
}

fn new_entry(c: &Change, cvm_id: Option<&str>, p: &Pending, endpoint: &str) -> Result<JournalEntry, StepError> {
    Ok(JournalEntry {
        id: format!("{}-{}", now_rfc3339(), uuid::Uuid::new_v4().simple()),
        address: c.address.clone(),
        op: PENDING_OP.into(),
        name: c.after.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
        cloud_id: cvm_id.map(str::to_string),
        started_at: now_rfc3339(),
        detail: super::to_json(p)?,
        endpoint: Some(endpoint.to_string()),
    })
}

#[async_trait::async_trait]
impl OnChain for Registrar {
    fn prepare_only(&self) -> bool {
        self.prepare_only
    }

    async fn continue_pending(&self, ctx: &OnChainCtx<'_>) -> Result<Option<OnChainOutcome>, StepError> {
        let entries = ctx.store.journal().await.map_err(StepError::state_read)?;
        let mut found = pending_entries(entries, &ctx.change.address, PendingKind::Update);
        let Some((entry, p)) = found.pop() else {
            return Ok(None);
        };
        if comparable(&p.attrs) == comparable(ctx.attrs) {
            return self.advance(ctx, entry, p).await.map(Some);
        }
        if self.resume.is_some() {
            return Err(StepError::refused(format!(
                "the manifest changed since this update was paused (awaiting 0x{}); run apply to send the new desired state instead",
                p.compose_hash
            ))
            .then(Next::ApplyAgain));
        }
        // The desired state moved on: the paused update is replaced by a new one.
        ctx.events.status(
            ctx.change.address.as_str(),
            &format!("the paused update (0x{}) is replaced by the new desired state", short(&p.compose_hash)),
        );
        ctx.store
            .commit(Batch { journal_done: vec![entry.id], ..Default::default() })
            .await
            .map_err(StepError::state_write)?;
        Ok(None)
    }

    async fn on_hash_required(&self, ctx: &OnChainCtx<'_>) -> Result<OnChainOutcome, StepError> {
        let h = ctx.required.ok_or_else(|| StepError::internal("no on-chain requirement to handle"))?;
        let c = ctx.change;
        let spec = c.kms.as_ref().ok_or_else(|| {
            StepError::refused(format!(
                "the API requires compose hash 0x{} to be registered on chain first (HTTP 465), but the manifest does not give this CVM an on-chain `kms:`",
                h.compose_hash
            ))
        })?;
        check_chain_id(spec, h.kms_info.as_ref())?;
        let contract = app_contract(spec, h.app_id.as_deref())?;
        let planned = c.compose_hash.as_ref().map(|x| x.after.clone());
        if let Some(pl) = planned.as_ref().filter(|pl| **pl != h.compose_hash) {
            tracing::warn!(address = %c.address, planned = %pl, api = %h.compose_hash, "the API's compose hash differs from the planned preview; registering the API's");
            ctx.events.status(
                c.address.as_str(),
                &format!(
                    "note: the API's compose hash 0x{} differs from the preview 0x{}; the API's is registered",
                    h.compose_hash, pl
                ),
            );
        }
        let p = Pending {
            kind: PendingKind::Update,
            cvm_id: ctx.cvm_id.map(str::to_string),
            compose_hash: h.compose_hash.clone(),
            planned_hash: planned,
            chain_id: spec.chain_id,
            contract,
            rpc_url: None,
            rpc_url_env: spec.rpc_url_env.clone(),
            private_key_env: spec.private_key_env.clone(),
            confirmations: spec.confirmations,
            commit_token: h.commit_token.clone(),
            prepare_only: self.prepare_only,
            tx_hash: None,
            raw_tx: None,
            attrs: ctx.attrs.clone(),
            dependencies: c.dependencies.clone(),
        };
        let entry = new_entry(c, ctx.cvm_id, &p, ctx.endpoint)?;
        // The paused update replaces the plain update entry in one atomic write.
        ctx.store
            .commit(Batch {
                journal_put: vec![entry.clone()],
                journal_done: ctx.update_journal_id.map(str::to_string).into_iter().collect(),
                ..Default::default()
            })
            .await
            .map_err(StepError::state_write)?;
        self.advance(ctx, entry, p).await
    }

    /// Check, sign, journal, broadcast, wait, check: the journal entry is written before the
    /// broadcast, so a crash in between finds the signed transaction and sends it again, never a
    /// second deployment.
    async fn deploy_app(&self, ctx: &OnChainCtx<'_>, prov: &Provisioned) -> Result<DeployedApp, StepError> {
        let c = ctx.change;
        let (spec, signer, mut p) = self.deployment(ctx, prov)?;
        let rpc = self.rpc_for(c, &p).ok_or_else(|| Self::no_rpc(&p))??;
        rpc.check_chain(spec.chain_id).await?;
        let (entry, signed) = match earlier_deployment(ctx, prov, &p.contract).await? {
            Some(found) => found,
            None => {
                let signed =
                    rpc.sign_deploy_app(signer, &p.contract, prov.device_id.as_deref(), &prov.compose_hash).await?;
                p.tx_hash = Some(signed.hash.clone());
                p.raw_tx = Some(signed.raw.clone());
                let entry = new_entry(c, None, &p, ctx.endpoint)?;
                ctx.store
                    .commit(Batch { journal_put: vec![entry.clone()], ..Default::default() })
                    .await
                    .map_err(StepError::state_write)?;
                (entry, signed)
            }
        };
        ctx.events.status(c.address.as_str(), &format!("deploying the app contract (tx {})", signed.hash));
        if rpc.receipt(&signed.hash).await?.is_none() {
            rpc.broadcast(&signed).await?;
        }
        let receipt = rpc.wait_mined(&signed.hash, spec.confirmations, TX_TIMEOUT).await?;
        let app = receipt.deployed_apps.first().cloned().ok_or_else(|| {
            StepError::refused(format!(
                "transaction {} deployed no app contract (no AppDeployedViaFactory event)",
                signed.hash
            ))
        })?;
        if !rpc.is_allowed(&app, &prov.compose_hash).await? {
            return Err(StepError::refused(format!(
                "the new app contract {app} does not allow compose hash 0x{}",
                prov.compose_hash
            )));
        }
        Ok(DeployedApp {
            app_id: app.trim_start_matches("0x").to_string(),
            contract_address: app,
            deployer_address: signer.address(),
            journal_id: entry.id,
        })
    }
}

impl Registrar {
    /// What deploying a new CVM's app contract needs, checked before anything is signed: the
    /// manifest's on-chain `kms:`, the KMS contract the provision answer names (the record's
    /// `contract`), and the wallet; the journal record without a transaction yet.
    fn deployment<'c>(
        &'c self,
        ctx: &'c OnChainCtx<'_>,
        prov: &Provisioned,
    ) -> Result<(&'c KmsSpec, &'c Signer, Pending), StepError> {
        let c = ctx.change;
        let spec = c.kms.as_ref().ok_or_else(|| {
            StepError::refused("the API wants an app contract, but the manifest gives no on-chain `kms:`")
        })?;
        check_chain_id(spec, prov.kms_info.as_ref())?;
        let kms_contract =
            prov.kms_info.as_ref().and_then(|k| k.get("kms_contract_address")).and_then(|a| a.as_str()).ok_or_else(
                || StepError::refused("the API did not name the KMS contract that deploys the app contract"),
            )?;
        let kms_contract = chain::format_address(kms_contract)?;
        let signer = self.env.signers.get(&spec.private_key_env).ok_or_else(|| {
            StepError::refused(format!(
                "creating a CVM with on-chain KMS deploys its app contract from your wallet: set ${} (and ${}), or create it with the phala CLI and `teeform import` it",
                spec.private_key_env, spec.rpc_url_env
            ))
        })?;
        let p = Pending {
            kind: PendingKind::DeployApp,
            cvm_id: None,
            compose_hash: prov.compose_hash.clone(),
            planned_hash: c.compose_hash.as_ref().map(|h| h.after.clone()),
            chain_id: spec.chain_id,
            contract: kms_contract,
            rpc_url: None,
            rpc_url_env: spec.rpc_url_env.clone(),
            private_key_env: spec.private_key_env.clone(),
            confirmations: spec.confirmations,
            commit_token: None,
            prepare_only: false,
            tx_hash: None,
            raw_tx: None,
            attrs: ctx.attrs.clone(),
            dependencies: c.dependencies.clone(),
        };
        Ok((spec, signer, p))
    }
}

/// A deployment an earlier run signed and journaled for the same compose hash and KMS contract:
/// reused, never repeated.
async fn earlier_deployment(
    ctx: &OnChainCtx<'_>,
    prov: &Provisioned,
    kms_contract: &str,
) -> Result<Option<(JournalEntry, chain::SignedTx)>, StepError> {
    let entries = ctx.store.journal().await.map_err(StepError::state_read)?;
    let earlier = pending_entries(entries, &ctx.change.address, PendingKind::DeployApp)
        .into_iter()
        .find(|(_, e)| e.compose_hash == prov.compose_hash && e.contract == kms_contract && e.tx_hash.is_some());
    Ok(earlier.map(|(entry, e)| {
        let signed = chain::SignedTx { hash: e.tx_hash.unwrap_or_default(), raw: e.raw_tx.unwrap_or_default() };
        (entry, signed)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EnvVal;

    #[test]
    fn a_pending_entry_round_trips_and_holds_no_template() {
        let mut attrs = CvmAttrs { name: "web-app".into(), ..Default::default() };
        attrs.env.insert("A".into(), EnvVal { value: None, digest: Some("d".into()), template: None });
        let p = Pending {
            kind: PendingKind::Update,
            cvm_id: Some("u".into()),
            compose_hash: "ab".repeat(32),
            planned_hash: None,
            chain_id: 31337,
            contract: format!("0x{}", "11".repeat(20)),
            rpc_url: None,
            rpc_url_env: "ETH_RPC_URL".into(),
            private_key_env: "PRIVATE_KEY".into(),
            confirmations: 1,
            commit_token: Some("t".into()),
            prepare_only: true,
            tx_hash: None,
            raw_tx: None,
            attrs,
            dependencies: vec![],
        };
        let e = JournalEntry {
            id: "1".into(),
            address: "cvm.web".into(),
            op: PENDING_OP.into(),
            name: "web-app".into(),
            cloud_id: Some("u".into()),
            started_at: "now".into(),
            detail: serde_json::to_value(&p).unwrap(),
            endpoint: None,
        };
        assert_eq!(Pending::from_entry(&e), Some(p.clone()));
        assert!(p.calldata().starts_with("0xdfc77223"));
        // An RPC URL an older version stored is read, and never written again.
        let mut old = e.detail.clone();
        old["rpc_url"] = "https://rpc.example/v2/KEY0123456789abcdef".into();
        let read: Pending = serde_json::from_value(old).unwrap();
        assert_eq!(read.rpc_url.as_deref(), Some("https://rpc.example/v2/KEY0123456789abcdef"));
        assert!(!serde_json::to_string(&read).unwrap().contains("KEY0123456789abcdef"));
        let other = JournalEntry { op: "update".into(), ..e };
        assert_eq!(Pending::from_entry(&other), None);
    }

    #[test]
    fn the_same_update_is_recognised_whatever_templates_it_carries() {
        let mut a = CvmAttrs { name: "web-app".into(), ..Default::default() };
        a.env.insert("S".into(), EnvVal { value: None, digest: Some("d1".into()), template: None });
        let mut b = a.clone();
        b.env.get_mut("S").unwrap().template = Some(crate::manifest::Template::literal("x"));
        assert_eq!(comparable(&a), comparable(&b));
        b.env.get_mut("S").unwrap().digest = Some("d2".into());
        assert_ne!(comparable(&a), comparable(&b));
    }

    #[test]
    fn the_contract_comes_from_the_manifest_else_the_app_id() {
        let spec = KmsSpec {
            chain_id: 8453,
            rpc_url: None,
            rpc_url_fingerprint: None,
            contract: None,
            private_key_env: "PRIVATE_KEY".into(),
            rpc_url_env: "ETH_RPC_URL".into(),
            confirmations: 1,
        };
        let app = "AB".repeat(20);
        assert_eq!(app_contract(&spec, Some(&app)).unwrap(), format!("0x{}", "ab".repeat(20)));
        assert!(app_contract(&spec, None).is_err());
        let spec2 = KmsSpec { contract: Some(format!("0x{}", "cd".repeat(20))), ..spec.clone() };
        assert_eq!(app_contract(&spec2, Some(&app)).unwrap(), format!("0x{}", "cd".repeat(20)));
        assert!(check_chain_id(&spec, Some(&serde_json::json!({"chain_id": 1}))).is_err());
        assert!(check_chain_id(&spec, Some(&serde_json::json!({"chain_id": 8453}))).is_ok());
        assert!(check_chain_id(&spec, None).is_ok());
    }
}
