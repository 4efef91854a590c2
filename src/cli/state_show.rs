//! `teeform state show ADDRESS [--json]`: one resource as state records it.

use super::context::Ctx;
use super::error::{CliResult, exit};
use super::shared::records::{not_in_state, record_json, record_text};

pub async fn run(ctx: &Ctx, address: &str, json: bool) -> CliResult {
    let Some(store) = ctx.open_state_read("state").await? else {
        return Err(not_in_state(address, std::iter::empty()));
    };
    let snap = store.snapshot().await?;
    store.close().await?;
    let Some(r) = snap.resources.get(address) else {
        return Err(not_in_state(address, snap.resources.keys()));
    };
    if json {
        ctx.shell.print_json(&record_json(r)?)?;
    } else {
        ctx.shell.print(&record_text(r))?;
    }
    Ok(exit::OK)
}
