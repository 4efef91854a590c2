//! The CLI's side of on-chain KMS: signer and RPC URL from the environment, the plan's
//! read-only chain check, and the instructions printed for a paused update.
//!
//! The private key is read here and handed to the executor as a [`Signer`]; it is never
//! printed, stored or put in an error (only the variable's name is).

use std::collections::BTreeSet;

use crate::apply::onchain::{ChainEnv, PENDING_OP, Pending, PendingKind};
use crate::chain::{self, Rpc, Signer};
use crate::cli::context::Ctx;
use crate::cli::error::{CliError, CliResult};
use crate::plan::{Plan, Reason};
use crate::state::{JournalEntry, Store};

/// Environment variable names (signer key, RPC URL) the plan's on-chain changes and the
/// paused updates in the journal use.
pub fn env_names(plan: Option<&Plan>, pending: &[(JournalEntry, Pending)]) -> BTreeSet<(String, String)> {
    let from_plan = plan
        .into_iter()
        .flat_map(|p| p.changes.iter())
        .filter_map(|c| c.kms.as_ref())
        .map(|k| (k.private_key_env.clone(), k.rpc_url_env.clone()));
    let from_journal = pending.iter().map(|(_, p)| (p.private_key_env.clone(), p.rpc_url_env.clone()));
    from_plan.chain(from_journal).collect()
}

/// Reads RPC URLs and (with `signers`) signing keys; an unset or empty variable means "none".
pub fn read_env(names: &BTreeSet<(String, String)>, signers: bool) -> CliResult<ChainEnv> {
    let mut env = ChainEnv::default();
    let get = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    for (key_var, rpc_var) in names {
        if let Some(v) = get(key_var).filter(|_| signers) {
            let s = Signer::from_hex(&v, key_var)?;
            env.signers.insert(key_var.clone(), s);
        }
        if let Some(v) = get(rpc_var) {
            crate::redact::url(&v);
            env.rpc_urls.insert(rpc_var.clone(), v);
        }
    }
    Ok(env)
}

/// Paused on-chain work in the journal, oldest first.
pub async fn pending(store: &dyn Store) -> CliResult<Vec<(JournalEntry, Pending)>> {
    let mut out: Vec<(JournalEntry, Pending)> = store
        .journal()
        .await?
        .into_iter()
        .filter(|e| e.op == PENDING_OP)
        .filter_map(|e| Pending::from_entry(&e).map(|p| (e, p)))
        .collect();
    out.sort_by(|a, b| a.0.started_at.cmp(&b.0.started_at));
    Ok(out)
}

/// Drops paused updates of CVMs no longer in state (destroyed or forgotten since).
pub async fn forget_gone(
    ctx: &Ctx,
    store: &dyn Store,
    pending: Vec<(JournalEntry, Pending)>,
) -> CliResult<Vec<(JournalEntry, Pending)>> {
    let resources = store.snapshot().await?.resources;
    let (keep, gone): (Vec<_>, Vec<_>) =
        pending.into_iter().partition(|(e, p)| p.kind != PendingKind::Update || resources.contains_key(&e.address));
    if !gone.is_empty() {
        for (e, p) in &gone {
            ctx.shell.warn(&format!(
                "{}: dropping the update paused for compose hash 0x{}: the CVM is no longer in state",
                e.address, p.compose_hash
            ));
        }
        let done = gone.into_iter().map(|(e, _)| e.id).collect();
        store.commit(crate::state::Batch { journal_done: done, ..Default::default() }).await?;
    }
    Ok(keep)
}

/// Drops paused updates the cloud already matches: a freshly refreshed plan has no change for
/// their CVM (e.g. the update was confirmed just before a crash, or outside teeform).
pub async fn forget_in_effect(
    ctx: &Ctx,
    store: &dyn Store,
    pending: Vec<(JournalEntry, Pending)>,
    plan: &Plan,
) -> CliResult<Vec<(JournalEntry, Pending)>> {
    let (keep, done): (Vec<_>, Vec<_>) = pending
        .into_iter()
        .partition(|(e, p)| p.kind != PendingKind::Update || plan.changes.iter().any(|c| c.address == e.address));
    if !done.is_empty() {
        for (e, p) in &done {
            ctx.shell.status(
                "Settled",
                &format!("{}: the update paused for compose hash 0x{} is already in effect", e.address, p.compose_hash),
            );
        }
        let ids = done.into_iter().map(|(e, _)| e.id).collect();
        store.commit(crate::state::Batch { journal_done: ids, ..Default::default() }).await?;
    }
    Ok(keep)
}

/// Fills in whether each on-chain note's hash is already allowed (a read-only call). A chain
/// that cannot be asked leaves the note unknown and adds a warning; planning goes on.
pub async fn annotate(plan: &mut Plan, env: &ChainEnv) {
    let mut warnings = Vec::new();
    for c in &mut plan.changes {
        let Some(spec) = c.kms.clone() else { continue };
        for r in &mut c.reasons {
            let Reason::OnChainRegistration(note) = r else { continue };
            let Some(contract) = note.contract.clone() else { continue };
            let Some(url) = spec.rpc_url.clone().or_else(|| env.rpc_urls.get(&spec.rpc_url_env).cloned()) else {
                warnings.push(format!(
                    "{}: cannot check the chain (no RPC URL: set ${} or `kms.rpc_url`)",
                    c.address, spec.rpc_url_env
                ));
                continue;
            };
            let checked = async {
                let rpc = Rpc::new(&url)?;
                rpc.check_chain(spec.chain_id).await?;
                rpc.is_allowed(&contract, &note.compose_hash).await
            };
            match checked.await {
                Ok(allowed) => note.allowed = Some(allowed),
                Err(e) => warnings.push(format!("{}: cannot check the chain: {e}", c.address)),
            }
        }
    }
    // Shown with the plan (and kept in saved and JSON plans).
    plan.warnings.extend(warnings);
}

/// The instructions for finishing paused updates: what to register, where, and how.
/// `resume` is the command that resumes (`teeform apply --resume` with the run's flags).
pub fn instructions(pending: &[(JournalEntry, Pending)], resume: &str) -> String {
    let mut out = String::new();
    for (e, p) in pending.iter().filter(|(_, p)| p.kind == PendingKind::Update) {
        let hash = format!("0x{}", p.compose_hash.trim_start_matches("0x"));
        out.push_str(&format!("\n{}: the update waits until the app contract allows its compose hash\n", e.address));
        out.push_str(&format!("    compose hash:  {hash}\n"));
        if let Some(pl) = p.planned_hash.as_ref().filter(|pl| **pl != p.compose_hash) {
            out.push_str(&format!("    (the plan's preview was 0x{pl}; register the hash above, the API's)\n"));
        }
        out.push_str(&format!("    chain:         {}\n", chain_name(p.chain_id)));
        out.push_str(&format!("    app contract:  {}\n", p.contract));
        out.push_str(&format!("    calldata:      {}\n", p.calldata()));
        if let Some(t) = p.commit_token.as_ref().filter(|_| p.prepare_only) {
            out.push_str(&format!("    commit token:  {t}\n"));
        }
        if let Some(tx) = &p.tx_hash {
            out.push_str(&format!("    transaction:   {tx} (sent by teeform)\n"));
        }
        out.push_str(&format!(
            "  register it from the app owner's wallet:\n    cast send {} 'addComposeHash(bytes32)' {hash} --rpc-url \"${}\" --private-key \"${}\"\n",
            p.contract, p.rpc_url_env, p.private_key_env
        ));
        out.push_str(&format!("  or propose it to a Safe: to {}, value 0, data {}\n", p.contract, p.calldata()));
    }
    if !out.is_empty() {
        out.push_str(&format!("\nThen run `{resume}` (add `--tx-hash 0x…` to name the transaction).\n"));
    }
    out
}

pub fn chain_name(id: u64) -> String {
    match id {
        1 => "ethereum (1)".into(),
        8453 => "base (8453)".into(),
        31337 => "anvil (31337)".into(),
        n => n.to_string(),
    }
}

/// Checks a `--tx-hash` argument's form before anything else happens.
pub fn check_tx_hash(tx: &str) -> CliResult<String> {
    chain::parse_b256(tx)
        .map(|h| format!("{h:#x}"))
        .map_err(|_| CliError::new(format!("--tx-hash `{tx}` is not a transaction hash (0x and 64 hex digits)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CvmAttrs;

    fn paused(prepare_only: bool, planned: Option<&str>) -> (JournalEntry, Pending) {
        let p = Pending {
            kind: PendingKind::Update,
            cvm_id: Some("u1".into()),
            compose_hash: "ab".repeat(32),
            planned_hash: planned.map(str::to_string),
            chain_id: 8453,
            contract: format!("0x{}", "12".repeat(20)),
            rpc_url: None,
            rpc_url_env: "BASE_RPC".into(),
            private_key_env: "DEPLOYER_KEY".into(),
            confirmations: 2,
            commit_token: Some("tok123".into()),
            prepare_only,
            tx_hash: None,
            raw_tx: None,
            attrs: CvmAttrs::default(),
            dependencies: vec![],
        };
        let e = JournalEntry {
            id: "1".into(),
            address: crate::model::Address::cvm("web"),
            op: PENDING_OP.into(),
            name: "web".into(),
            cloud_id: None,
            started_at: "t".into(),
            detail: serde_json::to_value(&p).unwrap(),
            endpoint: None,
        };
        (e, p)
    }

    #[test]
    fn instructions_name_everything_needed_and_no_secret() {
        let hash = format!("0x{}", "ab".repeat(32));
        let contract = format!("0x{}", "12".repeat(20));
        // (prepare-only, planned preview, expected lines, lines that must be absent)
        type Case<'a> = (bool, Option<&'a str>, Vec<String>, Vec<&'a str>);
        let cases: [Case; 2] = [
            (
                false,
                None,
                vec![
                    format!(
                        "cast send {contract} 'addComposeHash(bytes32)' {hash} --rpc-url \"$BASE_RPC\" --private-key \"$DEPLOYER_KEY\""
                    ),
                    format!("calldata:      0xdfc77223{}", &hash[2..]),
                    "chain:         base (8453)".into(),
                    format!("to {contract}, value 0, data 0xdfc77223"),
                ],
                vec!["commit token", "preview"],
            ),
            (
                true,
                Some(&"cd".repeat(32)),
                vec!["commit token:  tok123".into(), format!("the plan's preview was 0x{}", "cd".repeat(32))],
                vec![],
            ),
        ];
        for (prepare, planned, want, absent) in cases {
            let out = instructions(&[paused(prepare, planned)], "teeform -f staging.yaml apply --resume");
            for w in &want {
                assert!(out.contains(w.as_str()), "missing `{w}` in\n{out}");
            }
            for a in absent {
                assert!(!out.contains(a), "unexpected `{a}` in\n{out}");
            }
            assert!(out.contains("`teeform -f staging.yaml apply --resume`"));
        }
        assert_eq!(instructions(&[], "teeform apply --resume"), "");
    }
}
