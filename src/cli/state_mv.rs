//! `teeform state mv SOURCE DESTINATION`: move a CVM to another address in state, as after
//! renaming its key in the manifest (a `moved:` entry does the same at apply). The CVM itself
//! is left alone: its app id, keys and disk are what they were.

use super::context::Ctx;
use super::error::{CliError, CliResult, Hint, exit};
use super::shared::records::not_in_state;
use crate::model::{Address, moved_records, moves};
use crate::state::Batch;

pub async fn run(ctx: &Ctx, source: &Address, destination: &Address) -> CliResult {
    let Some(store) = ctx.open_state_read("state").await? else {
        return Err(not_in_state(source.as_str(), std::iter::empty()));
    };
    let result = mv(&*store, source, destination).await;
    store.close().await?;
    for (from, to) in result? {
        ctx.shell.println(&format!("Moved {from} to {to} (the CVM itself was not touched)."))?;
    }
    if source.key() == destination.key() {
        return Ok(exit::OK);
    }
    let (from, to) = (source.key(), destination.key());
    // What the manifest declares decides what the next plan does; unreadable, assume the rename is to do.
    let declared = crate::manifest::declared_cvms(ctx.manifest_path());
    let has = |k: &str| declared.as_ref().is_none_or(|d| d.contains(k));
    let both = declared.as_ref().is_some_and(|d| d.contains(from) && d.contains(to));
    if both {
        ctx.shell.note(&format!(
            "the manifest still has `{from}:` under `cvms:`: the next plan creates {source} again unless you remove it"
        ));
    } else if has(from) {
        ctx.shell.note(&format!(
            "rename `{from}:` to `{to}:` under `cvms:` in the manifest too, or the next plan creates {source} again and destroys {destination}"
        ));
    } else if !has(to) {
        ctx.shell.note(&format!(
            "the manifest has no `{to}:` under `cvms:`: add it (as `{from}:` was), or the next plan destroys {destination}"
        ));
    }
    Ok(exit::OK)
}

/// Moves what `source` names (every instance of a replicated CVM for an address without an
/// index, each keeping its index: `model::moves::resolve`); returns the moves made.
async fn mv(
    store: &dyn crate::state::Store,
    source: &Address,
    destination: &Address,
) -> CliResult<Vec<(Address, Address)>> {
    let snap = store.snapshot().await?;
    if source == destination {
        return Err(CliError::new(format!("{source} is already at {destination}; nothing was changed")));
    }
    let pairs = moves::resolve(&snap.resources, source, destination, None)?;
    if pairs.is_empty() {
        return Err(not_in_state(source.as_str(), snap.resources.keys()));
    }
    // An operation in flight (or paused for on-chain registration) names the old address.
    let journal = store.journal().await?;
    if let Some(e) = journal.iter().find(|e| pairs.iter().any(|(from, _)| e.address == *from)) {
        let (what, next) = if e.op == crate::apply::onchain::PENDING_OP {
            ("an update paused for on-chain registration", "apply --resume")
        } else {
            ("an interrupted operation", "plan")
        };
        return Err(CliError::new(format!("{} has {what}; nothing was changed", e.address)).hint(Hint::run(
            "finish it first (",
            next,
            "), then move the CVM",
        )));
    }
    let records = moved_records(&snap.resources, &pairs);
    let put = records.into_values().filter(|r| snap.resources.get(&r.address) != Some(r)).collect();
    let remove = pairs.iter().map(|(from, _)| from.clone()).filter(|f| !pairs.iter().any(|(_, to)| to == f)).collect();
    store.commit(Batch { put, remove, ..Default::default() }).await?;
    Ok(pairs)
}
