//! `teeform verify [ADDR…] [--json] [--pccs-url URL]`: checks that each CVM in state runs what
//! state says was applied, from its attestation (see [`crate::verify`]). It holds the state
//! lock while it checks, settles what an earlier run left in flight (as `plan` does), and
//! writes what it proved into state as the apply gate does: a CVM whose attestation differs
//! is marked `unverified`, one that verifies has its mark cleared; a CVM that could not be
//! checked (not running, no RPC URL for its app contract) keeps its mark as it was; one stopped
//! on purpose (`power: stopped` in state) is listed as `stopped`, not checked. Exit 0
//! when every CVM checked is verified, 1 otherwise; without a PCCS a quote that was not
//! verified does not fail it, and the table, the JSON and a note say so; with one
//! (`--pccs-url`, `TEEFORM_PCCS_URL`), a quote that cannot be verified fails it.

use super::QuoteArgs;
use super::context::{Api, Ctx};
use super::error::{CliError, CliResult, exit};
use super::shared::session::{reconcile, same_endpoint};
use super::shared::verifying;
use crate::manifest::Config;
use crate::manifest::diag::did_you_mean;
use crate::model::{Address, Power, ResourceRecord};

use crate::state::{Batch, Store};
use crate::verify::{QuoteStatus, Verdict};

pub async fn run(ctx: &Ctx, addresses: &[String], as_json: bool, quote: &QuoteArgs) -> CliResult {
    let cfg = ctx.load(&[])?;
    let Some(store) = ctx.open_state_read("verify").await? else {
        return Err(CliError::new("the state is empty: nothing to verify"));
    };
    let api = ctx.api(&cfg.endpoint).await?;
    let r = verify_locked(ctx, store.as_ref(), &api, &cfg, addresses, as_json, quote).await;
    store.close().await?;
    r
}

/// `verify` with the state locked: the verdicts, and each CVM's mark set or cleared by them.
async fn verify_locked(
    ctx: &Ctx,
    store: &dyn Store,
    api: &Api,
    cfg: &Config,
    addresses: &[String],
    as_json: bool,
    quote: &QuoteArgs,
) -> CliResult {
    reconcile(ctx, store, api).await?;
    let snap = store.snapshot().await?;
    let mut chosen = Vec::new();
    for a in addresses {
        let rec = Address::parse(a).ok().and_then(|addr| snap.resources.get(&addr));
        match rec {
            Some(r) => chosen.push(r),
            None => {
                let mut e = CliError::new(format!("`{a}` is not in state"));
                if let Some(s) = did_you_mean(a, snap.resources.keys().map(Address::as_str)) {
                    e = e.hint(format!("did you mean `{s}`?"));
                }
                return Err(e);
            }
        }
    }
    if addresses.is_empty() {
        chosen.extend(snap.resources.values());
    }
    let checker = verifying::checker(ctx, quote, &cfg.verify, verifying::onchain_of_config(cfg)?)?;
    same_endpoint(api, chosen.iter().map(|r| (r.address.as_str(), r.endpoint.as_deref())))?;
    // A CVM stopped on purpose (`power: stopped`) has no attestation to give: not checked,
    // not a failure, its mark left as it was.
    let (stopped, chosen): (Vec<&ResourceRecord>, Vec<&ResourceRecord>) =
        chosen.into_iter().partition(|r| r.attrs.power == Some(Power::Stopped));
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(chosen.len());
    let mut marks = Vec::new();
    for r in chosen {
        let v = checker.verify_record(api.client.as_ref(), r, None).await?;
        if let Some(mark) = mark_of(&v).filter(|m| *m != r.unverified) {
            marks.push(ResourceRecord { unverified: mark, ..r.clone() });
        }
        verdicts.push(v);
    }
    write_marks(ctx, store, marks).await?;
    let all = verdicts.iter().all(|v| v.verified);
    if as_json {
        ctx.shell.print_json(&serde_json::json!({
            "format_version": "1",
            "verified": all,
            "quote_verified": verdicts.iter().all(|v| v.quote.status == QuoteStatus::Verified),
            "cvms": verdicts,
            "stopped": stopped.iter().map(|r| &r.address).collect::<Vec<_>>(),
        }))?;
    } else {
        ctx.shell.print(&table(&verdicts, &stopped))?;
        verifying::tcb_warnings(ctx, &verdicts);
        if !verdicts.is_empty() {
            ctx.shell.note(&verifying::quote_summary(&verdicts));
        }
    }
    if all {
        Ok(exit::OK)
    } else {
        let n = verdicts.iter().filter(|v| !v.verified).count();
        Err(CliError::new(format!("{n} of {} CVMs not verified", verdicts.len())))
    }
}

/// The table `verify` prints: a row per CVM checked, then one per CVM stopped on purpose.
fn table(verdicts: &[Verdict], stopped: &[&ResourceRecord]) -> String {
    let addresses = verdicts.iter().map(|v| &v.address).chain(stopped.iter().map(|r| &r.address));
    let width = addresses.map(|a| a.as_str().len()).max().unwrap_or(0).max(7);
    let mut text = format!("{:<width$}  {:<10}  {:<12}  DETAIL\n", "ADDRESS", "RESULT", "QUOTE");
    for v in verdicts {
        let (result, detail) = match v.problem() {
            None => ("verified", String::new()),
            Some(p) => ("UNVERIFIED", p),
        };
        let q = match (v.quote.status, v.quote.tcb_status.as_deref()) {
            (QuoteStatus::Verified, Some(tcb)) => tcb.to_string(),
            (QuoteStatus::Verified, None) => "verified".into(),
            (QuoteStatus::NotVerified, _) => "not verified".into(),
            (QuoteStatus::Failed, _) => "FAILED".into(),
        };
        text.push_str(format!("{:<width$}  {result:<10}  {q:<12}  {detail}", v.address.as_str()).trim_end());
        text.push('\n');
    }
    for r in stopped {
        let (a, result, q) = (r.address.as_str(), "stopped", "-");
        text.push_str(&format!("{a:<width$}  {result:<10}  {q:<12}  not checked: `power: stopped` keeps it stopped\n"));
    }
    text
}

/// Records whose `unverified` mark this run changed, written in one batch, each said.
async fn write_marks(ctx: &Ctx, store: &dyn Store, marks: Vec<ResourceRecord>) -> CliResult<()> {
    if marks.is_empty() {
        return Ok(());
    }
    let notes: Vec<String> = marks
        .iter()
        .map(|r| match r.unverified {
            None => format!("{}: verified; its `unverified` mark in state was cleared", r.address),
            Some(_) => format!("{}: marked `unverified` in state", r.address),
        })
        .collect();
    store.commit(Batch { put: marks, ..Default::default() }).await?;
    notes.iter().for_each(|n| ctx.shell.note(n));
    Ok(())
}

/// The mark a verdict leaves on its record: `Some(None)` clears it (verified), `Some(Some(why))`
/// sets it (the attestation differs from state), `None` leaves it (not checked: `error` only).
fn mark_of(v: &Verdict) -> Option<Option<String>> {
    match (v.verified, v.mismatches.is_empty()) {
        (true, _) => Some(None),
        (false, false) => Some(v.problem()),
        (false, true) => None,
    }
}
