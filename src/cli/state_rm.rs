//! `teeform state rm ADDRESS...`: forget resources (the CVMs themselves are left alone).

use super::context::Ctx;
use super::error::{CliResult, exit};
use super::shared::records::not_in_state;
use crate::state::Batch;

pub async fn run(ctx: &Ctx, addresses: &[String]) -> CliResult {
    let Some(store) = ctx.open_state_read("state").await? else {
        return Err(not_in_state(&addresses[0], std::iter::empty()));
    };
    let snap = store.snapshot().await?;
    for a in addresses {
        if !snap.resources.contains_key(a) {
            return Err(not_in_state(a, snap.resources.keys()));
        }
    }
    store.commit(Batch { remove: addresses.to_vec(), ..Default::default() }).await?;
    store.close().await?;
    for a in addresses {
        ctx.shell.println(&format!("Removed {a} from state (the CVM itself was not touched)."))?;
    }
    Ok(exit::OK)
}
