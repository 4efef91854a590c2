//! `teeform state rm ADDRESS...`: forget resources (the CVMs themselves are left alone).

use super::context::Ctx;
use super::error::{CliResult, exit};
use super::shared::records::not_in_state;
use crate::model::Address;
use crate::state::Batch;

pub async fn run(ctx: &Ctx, addresses: &[String]) -> CliResult {
    let Some(store) = ctx.open_state_read("state").await? else {
        return Err(not_in_state(&addresses[0], std::iter::empty()));
    };
    let snap = store.snapshot().await?;
    let mut remove: Vec<Address> = Vec::new();
    for a in addresses {
        // An address without an index names every instance of a replicated CVM.
        let held: Vec<&Address> = match snap.resources.get_key_value(a.as_str()) {
            Some((held, _)) => vec![held],
            None => match Address::parse(a) {
                Ok(whole) if whole.index().is_none() => {
                    snap.resources.keys().filter(|k| k.key() == whole.key() && k.index().is_some()).collect()
                }
                _ => vec![],
            },
        };
        if held.is_empty() {
            return Err(not_in_state(a, snap.resources.keys()));
        }
        for h in held {
            if !remove.contains(h) {
                remove.push(h.clone());
            }
        }
    }
    store.commit(Batch { remove: remove.clone(), ..Default::default() }).await?;
    store.close().await?;
    for a in &remove {
        ctx.shell.println(&format!("Removed {a} from state (the CVM itself was not touched)."))?;
    }
    Ok(exit::OK)
}
