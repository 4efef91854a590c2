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
    let mut remove = Vec::new();
    for a in addresses {
        let Some((held, _)) = snap.resources.get_key_value(a.as_str()) else {
            return Err(not_in_state(a, snap.resources.keys()));
        };
        remove.push(held.clone());
    }
    store.commit(Batch { remove, ..Default::default() }).await?;
    store.close().await?;
    for a in addresses {
        ctx.shell.println(&format!("Removed {a} from state (the CVM itself was not touched)."))?;
    }
    Ok(exit::OK)
}
