//! `teeform state mv SOURCE DESTINATION`: move a CVM to another address in state, as after
//! renaming its key in the manifest (a `moved:` entry does the same at apply). The CVM itself
//! is left alone: its app id, keys and disk are what they were.

use super::context::Ctx;
use super::error::{CliError, CliResult, Hint, exit};
use super::shared::records::not_in_state;
use crate::model::{Address, moved_records};
use crate::state::Batch;

pub async fn run(ctx: &Ctx, source: &Address, destination: &Address) -> CliResult {
    let Some(store) = ctx.open_state_read("state").await? else {
        return Err(not_in_state(source.as_str(), std::iter::empty()));
    };
    let result = mv(&*store, source, destination).await;
    store.close().await?;
    result?;
    ctx.shell.println(&format!("Moved {source} to {destination} (the CVM itself was not touched)."))?;
    ctx.shell.note(&format!(
        "rename `{}:` to `{}:` under `cvms:` in the manifest too, or the next plan creates {source} again and destroys {destination}",
        source.key(),
        destination.key()
    ));
    Ok(exit::OK)
}

async fn mv(store: &dyn crate::state::Store, source: &Address, destination: &Address) -> CliResult<()> {
    let snap = store.snapshot().await?;
    if !snap.resources.contains_key(source) {
        return Err(not_in_state(source.as_str(), snap.resources.keys()));
    }
    if source == destination {
        return Err(CliError::new(format!("{source} is already at {destination}; nothing was changed")));
    }
    if snap.resources.contains_key(destination) {
        return Err(CliError::new(format!("state already holds a CVM at {destination}; nothing was changed")).hint(
            Hint::run("", format!("state rm {destination}"), " forgets it first (the CVM itself is left alone)"),
        ));
    }
    // An operation in flight (or paused for on-chain registration) names the old address.
    if let Some(e) = store.journal().await?.iter().find(|e| e.address == *source) {
        let (what, next) = if e.op == crate::apply::onchain::PENDING_OP {
            ("an update paused for on-chain registration", "apply --resume")
        } else {
            ("an interrupted operation", "plan")
        };
        return Err(CliError::new(format!("{source} has {what}; nothing was changed")).hint(Hint::run(
            "finish it first (",
            next,
            "), then move the CVM",
        )));
    }
    let records = moved_records(&snap.resources, &[(source.clone(), destination.clone())]);
    let put = records.into_values().filter(|r| snap.resources.get(&r.address) != Some(r)).collect();
    store.commit(Batch { put, remove: vec![source.clone()], ..Default::default() }).await?;
    Ok(())
}
